package scenario

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/matrix"
)

// Peer is what stands between the clients and the homeserver in a run:
// nothing, mxgate, or another proxy operators use today.
type Peer interface {
	// Name identifies the peer in reports.
	Name() string
	// Start puts the peer in front of upstream and returns the URL clients
	// should use.
	Start(upstream string) (frontURL string, err error)
	// Stop shuts the peer down and releases everything it started.
	Stop() error
}

// ErrNotInstalled is returned (wrapped) by Start when a peer's program is
// missing; runners skip such peers.
var ErrNotInstalled = errors.New("not installed")

// Direct is no proxy at all: clients talk to the homeserver.
type Direct struct{}

func (Direct) Name() string                          { return "direct" }
func (Direct) Start(upstream string) (string, error) { return upstream, nil }
func (Direct) Stop() error                           { return nil }

// InProcess is mxgate's gate (gate.Proxy) around httputil.ReverseProxy on a
// loopback listener in this process. Its durations and rates are scaled by
// Scale like the rest of the run.
type InProcess struct {
	// Config is the gate configuration in model time; nil means
	// gate.DefaultConfig() with ride-through on, as in `mxgate gateway`.
	Config *gate.Config
	// Scale divides the config's durations and multiplies its rates.
	Scale float64
	// Classes overrides class settings of the config (PeerOptions.Classes).
	Classes map[string]json.RawMessage

	gate *gate.Gate
	srv  *http.Server
	tr   *http.Transport
	done <-chan struct{}
}

func (p *InProcess) Name() string { return "mxgate-inprocess" }

// Start builds the gate and serves it on 127.0.0.1.
func (p *InProcess) Start(upstream string) (string, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return "", err
	}
	cfg := gate.DefaultConfig()
	// Ride-through, as `mxgate gateway` has it by default.
	cfg.RideThrough = gate.DefaultRideThrough()
	cfg.RideThrough.Enabled = true
	if p.Config != nil {
		cfg = *p.Config
	}
	if err := configureClasses(&cfg, p.Classes); err != nil {
		return "", fmt.Errorf("mxgate-inprocess: %w", err)
	}
	cfg.UpstreamAddr = target.Host
	g, err := gate.New(scaleGateConfig(cfg, p.Scale), gate.Options{})
	if err != nil {
		return "", fmt.Errorf("mxgate-inprocess: %w", err)
	}
	// Caddy's reverse_proxy keeps 32 idle connections per host by default.
	p.tr = &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = p.tr
	// Clients that give up mid-request are the point of the exercise; do
	// not log every one of them.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		g.Close()
		return "", err
	}
	p.gate = g
	p.srv = &http.Server{Handler: g.Proxy(rp), ReadHeaderTimeout: 10 * time.Second}
	p.done = serveInBackground(p.srv, ln)
	return "http://" + ln.Addr().String(), nil
}

// Stop closes the listener, every connection and the gate.
func (p *InProcess) Stop() error {
	if p.srv == nil {
		return nil
	}
	err := p.srv.Close()
	<-p.done
	p.gate.Close()
	p.tr.CloseIdleConnections()
	p.srv = nil
	return err
}

// scaleGateConfig runs a gate configuration scale times faster: every
// duration divided, every rate multiplied. Retry-After values then come out
// in wall-clock time, which is how the simulated clients read them.
func scaleGateConfig(c gate.Config, scale float64) gate.Config {
	if scale <= 0 || scale == 1 {
		return c
	}
	d := func(x time.Duration) time.Duration { return time.Duration(float64(x) / scale) }
	c.RetryAfterMin, c.RetryAfterMax = d(c.RetryAfterMin), d(c.RetryAfterMax)
	c.LIFOAfter = d(c.LIFOAfter)
	c.Herd.Window = d(c.Herd.Window)
	c.Herd.RetryAfterMin, c.Herd.RetryAfterMax = d(c.Herd.RetryAfterMin), d(c.Herd.RetryAfterMax)
	c.RideThrough.ProbeInterval, c.RideThrough.SlowStart = d(c.RideThrough.ProbeInterval), d(c.RideThrough.SlowStart)
	for i := range c.Classes {
		l := &c.Classes[i]
		l.QueueTimeout = d(l.QueueTimeout)
		l.Coalesce = d(l.Coalesce)
		l.Rate *= scale
	}
	return c
}

// configureClasses applies per-class settings (class name to a JSON object
// of settings) over cfg's.
func configureClasses(cfg *gate.Config, classes map[string]json.RawMessage) error {
	for name, raw := range classes {
		c, err := matrix.ParseClass(name)
		if err != nil {
			return err
		}
		l := cfg.Classes[c]
		if err := l.Configure(raw); err != nil {
			return fmt.Errorf("class %s: %w", name, err)
		}
		if err := l.Validate(c); err != nil {
			return fmt.Errorf("class %s: %w", name, err)
		}
		cfg.Classes[c] = l
	}
	return nil
}

// serveInBackground serves srv on ln until srv is closed; the channel it
// returns is closed once Serve has returned.
func serveInBackground(srv *http.Server, ln net.Listener) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	return done
}
