package scenario

import (
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/fleet"
	"github.com/mxgate/mxgate/fleet/redistest"
	"github.com/mxgate/mxgate/gate"
)

// Fleet peers: three in-process gateways behind a round-robin balancer, as
// a homeserver with several proxies runs them, either sharing a real
// redis-server (fleet mode) or each on its own (islands: every gateway
// admits the whole cap, which is the flaw fleet mode exists to fix).
const (
	peerFleet   = "mxgate-fleet"
	peerIslands = "mxgate-islands"
	// fleetSize is how many gateways the fleet peers run.
	fleetSize = 3
)

// InProcessFleet is fleetSize gates, each with its own reverse proxy and
// connection pool, behind one loopback listener that hands requests to
// them in turn. With Shared, the gates form a fleet on a redis-server the
// peer starts (installing Debian's package if needed, as root).
type InProcessFleet struct {
	Shared bool
	// Scale divides the config's durations and multiplies its rates.
	Scale float64

	redis *redistest.Server
	dir   string
	gates []*gate.Gate
	trs   []*http.Transport
	srv   *http.Server
	done  <-chan struct{}
}

func newFleetPeer(name string, o PeerOptions) *InProcessFleet {
	return &InProcessFleet{Shared: name == peerFleet, Scale: o.Scale}
}

func (p *InProcessFleet) Name() string {
	if p.Shared {
		return peerFleet
	}
	return peerIslands
}

// Start starts Redis (when shared), the gates and the balancer.
func (p *InProcessFleet) Start(upstream string) (string, error) {
	target, err := url.Parse(upstream)
	if err != nil {
		return "", err
	}
	if p.Shared {
		if p.dir, err = os.MkdirTemp("", "mxbench-redis-"); err != nil {
			return "", err
		}
		if _, err := redistest.Binary(); err != nil {
			p.Stop()
			return "", fmt.Errorf("%s: %w: %v", p.Name(), ErrNotInstalled, err)
		}
		if p.redis, err = redistest.StartIn(p.dir); err != nil {
			p.Stop()
			return "", fmt.Errorf("%s: %w", p.Name(), err)
		}
	}
	cfg := gate.DefaultConfig()
	cfg.RideThrough = gate.DefaultRideThrough()
	cfg.RideThrough.Enabled = true
	cfg.UpstreamAddr = target.Host
	cfg = scaleGateConfig(cfg, p.Scale)
	handlers := make([]http.Handler, fleetSize)
	zone := fmt.Sprintf("bench-%d", time.Now().UnixNano()) // a fresh fleet per run
	for i := range handlers {
		var opts gate.Options
		if p.Shared {
			f, err := fleet.New(fleet.Config{Redis: "redis://" + p.redis.Addr + "/0", Name: fmt.Sprintf("gw%d", i), Zone: zone})
			if err != nil {
				p.Stop()
				return "", err
			}
			opts.Fleet = f
		}
		g, err := gate.New(cfg, opts)
		if err != nil {
			p.Stop()
			return "", fmt.Errorf("%s: %w", p.Name(), err)
		}
		tr := &http.Transport{MaxIdleConnsPerHost: 32, DisableCompression: true}
		rp := httputil.NewSingleHostReverseProxy(target)
		rp.Transport = tr
		rp.ErrorLog = log.New(io.Discard, "", 0)
		p.gates, p.trs = append(p.gates, g), append(p.trs, tr)
		handlers[i] = g.Proxy(rp)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		p.Stop()
		return "", err
	}
	var next atomic.Uint64
	p.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers[next.Add(1)%fleetSize].ServeHTTP(w, r)
		})}
	p.done = serveInBackground(p.srv, ln)
	return "http://" + ln.Addr().String(), nil
}

// Stop closes the balancer, the gates (leaving the fleet) and Redis.
func (p *InProcessFleet) Stop() error {
	var err error
	if p.srv != nil {
		err = p.srv.Close()
		<-p.done
		p.srv = nil
	}
	for _, g := range p.gates {
		g.Close()
	}
	for _, tr := range p.trs {
		tr.CloseIdleConnections()
	}
	p.gates, p.trs = nil, nil
	if p.redis != nil {
		p.redis.Kill()
		p.redis = nil
	}
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
		p.dir = ""
	}
	return err
}
