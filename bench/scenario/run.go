package scenario

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/mxgate/mxgate/bench/simclient"
	"github.com/mxgate/mxgate/bench/simhs"
)

// Run plays scenario name through peer and returns what happened. It starts
// a fresh simulated homeserver, starts the peer in front of it, runs the
// clients for the scenario's duration (model time), and stops everything
// it started before returning.
func Run(ctx context.Context, name string, peer Peer, o Options) (*Result, error) {
	def, ok := definitions[name]
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q (known: %v)", name, Names)
	}
	o = o.withDefaults()
	duration := def.duration
	if o.Duration > 0 {
		duration = o.Duration
	}

	hs := simhs.New(*o.Homeserver)
	upstream, err := hs.Start("127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer hs.Close()
	front, err := peer.Start(upstream)
	if err != nil {
		return nil, fmt.Errorf("peer %s: %w", peer.Name(), err)
	}
	defer peer.Stop()

	// One transport for the whole population: one connection per request
	// in flight, like one connection per device.
	tr := &http.Transport{
		MaxIdleConnsPerHost: o.Clients + o.HerdClients + o.SlowWrites,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	rec := simclient.NewRecorder(0)
	e := &env{
		o:     o,
		hs:    hs,
		start: rec.Start(),
		copts: simclient.Options{
			Base: front, HTTP: &http.Client{Transport: tr}, Recorder: rec, Scale: o.Scale,
			GiveUpMin: o.GiveUpMin, GiveUpMax: o.GiveUpMax,
		},
	}

	runCtx, cancel := context.WithTimeout(ctx, o.real(duration))
	defer cancel()
	sampler := startSampler(runCtx, e)
	e.startBackground(runCtx)

	var causeEnd time.Duration
	var hasCause bool
	var causeWG sync.WaitGroup
	if def.cause != nil {
		causeWG.Go(func() { causeEnd, hasCause = def.cause(runCtx, e) })
	}
	causeWG.Wait()
	e.clients.Wait()
	samples := sampler.wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}

	recs, dropped := rec.Records()
	in := analysisInput{
		scenario: name, peer: peer.Name(), o: o, duration: duration,
		recs: recs, dropped: dropped, stats: hs.Stats(), samples: samples,
		herdOK: e.herdOK.Load(), herdDone: e.herdDone, causeEnd: causeEnd, hasCause: hasCause,
	}
	return analyse(in), nil
}

// sampler records the homeserver's concurrency once per model second.
type sampler struct {
	done    chan struct{}
	samples []int64
}

// maxSamples bounds the series (an hour of model time).
const maxSamples = 3600

func startSampler(ctx context.Context, e *env) *sampler {
	s := &sampler{done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(e.o.real(time.Second))
		defer t.Stop()
		for len(s.samples) < maxSamples {
			select {
			case <-t.C:
				s.samples = append(s.samples, e.hs.Stats().Current)
			case <-ctx.Done():
				return
			}
		}
	}()
	return s
}

func (s *sampler) wait() []int64 {
	<-s.done
	return s.samples
}
