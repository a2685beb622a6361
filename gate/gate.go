// Package gate is mxgate's request pipeline as plain net/http middleware:
// classify, operator toggles, per-user rate, coalescing, admission, then the
// next handler. It wires the matrix, limiter and herd packages together and
// imports nothing from Caddy; serve.go follows one request through it.
package gate

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/fleet"
	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// Options are a gate's collaborators. Every field may be left zero.
type Options struct {
	// Logger receives herd and toggle events; nil discards them.
	Logger *slog.Logger
	// Metrics receives the gate's measurements; nil uses private collectors
	// registered nowhere.
	Metrics *Metrics
	// ClientIP names the client of an anonymous request for its rate bucket;
	// nil uses the connection's remote address. Behind a trusted proxy, pass
	// one that honours X-Forwarded-For (Caddy's glue passes client_ip).
	ClientIP func(*http.Request) string
	// Rates and Toggles are the stores a fleet of gateways may one day share;
	// nil uses in-memory ones.
	Rates   limiter.RateStore
	Toggles limiter.ToggleStore
	// Fleet, if set, makes the gate a member of a fleet of gateways sharing
	// toggles, rates, herd counts and caps (fleet.go); the gate starts it
	// and closes it with itself.
	Fleet *fleet.Fleet
	// Now is the clock; nil uses time.Now. It is called from several
	// goroutines at once.
	Now func() time.Time
}

// Gate is the admission pipeline. Build it with New; it is safe for
// concurrent use and survives Configure calls with its in-flight requests,
// queues, buckets and toggles intact.
type Gate struct {
	cfg      atomic.Pointer[Config]
	adm      *limiter.Admission
	rates    limiter.RateStore
	toggles  limiter.ToggleStore
	modes    atomic.Pointer[modeTable]
	modesMu  sync.Mutex // serializes rebuilding modes
	metrics  *Metrics
	log      *slog.Logger
	clientIP func(*http.Request) string
	now      func() time.Time

	coalescer *herd.Coalescer
	detector  atomic.Pointer[herd.Detector]
	herdOn    atomic.Bool                        // a herd is active somewhere (herd.go)
	answers   answerTimes                        // per class, for coalescingLead
	deadlines [matrix.NumClasses]answerDeadlines // armed upstream timeouts (upstreamtimeout.go)
	sharer    *stateSharer                       // share_state (sharestate.go)
	accepted  *acceptedTokens                    // tokens the homeserver accepted (identity.go)

	counters outcomeCounters // per-class totals for Status (counters.go)
	upstream upstreamHealth  // upstream answers for UpstreamHealth (health.go)
	errShed  errorShed       // 5xx shedding (errorshed.go)

	shadow shadowState // shadow mode's would-be queues and log (shadow.go)
	fleet  fleetHooks  // fleet.go

	stop          chan struct{}
	stopOnce      sync.Once
	done          chan struct{} // closed when housekeep returns
	wake          chan struct{} // cap 1: the upstream's state changed (supervise.go)
	superviseDone chan struct{} // closed when superviseUpstream returns
}

// New builds a gate for cfg and starts its housekeeping (toggle expiry,
// gauges); Close stops it.
func New(cfg Config, opts Options) (*Gate, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	g := &Gate{
		rates:    opts.Rates,
		toggles:  opts.Toggles,
		metrics:  opts.Metrics,
		log:      opts.Logger,
		clientIP: opts.ClientIP,
		now:      opts.Now,
		stop:     make(chan struct{}),
		done:     make(chan struct{}),

		wake:          make(chan struct{}, 1),
		superviseDone: make(chan struct{}),
	}
	if g.rates == nil {
		g.rates = limiter.NewMemoryRates(0)
	}
	if g.toggles == nil {
		g.toggles = limiter.NewMemoryToggles()
	}
	if g.metrics == nil {
		g.metrics = NewMetrics()
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.clientIP == nil {
		g.clientIP = remoteIP
	}
	if g.now == nil {
		g.now = time.Now
	}
	g.accepted = newAcceptedTokens()
	g.joinFleet(opts.Fleet) // fleet.go: shared stores and verdicts, then caps scaled to the share
	g.adm = limiter.NewAdmission(g.admissionConfig(&cfg), g.now)
	g.coalescer = newCoalescer()
	g.sharer = newStateSharer()
	g.detector.Store(newDetector(cfg.Herd))
	g.cfg.Store(&cfg)
	g.configureErrorShed(&cfg)
	if err := g.applyStartupSheds(&cfg); err != nil {
		g.leaveFleet()
		return nil, err
	}
	g.refreshModes(g.now())
	go g.housekeep()
	go g.superviseUpstream() // ride-through probes and slow start (supervise.go)
	return g, nil
}

// Configure applies a new configuration (a config reload) and keeps all
// state. Classes named in cfg.Shed get a fresh startup toggle.
func (g *Gate) Configure(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if old := g.cfg.Load(); old.Herd.Window != cfg.Herd.Window || old.Herd.MinUsers != cfg.Herd.MinUsers {
		g.detector.Store(newDetector(cfg.Herd))
	}
	g.cfg.Store(&cfg)
	g.configureAdmission(&cfg) // scaled to the fleet share (fleet.go)
	g.configureErrorShed(&cfg)
	g.wakeSupervisor()           // the probe schedule may have changed
	g.dropStaleConfigSheds(&cfg) // a `shed` removed from the config ends (control.go)
	if err := g.applyStartupSheds(&cfg); err != nil {
		return err
	}
	g.modes.Store(nil) // class priorities may have changed
	g.refreshModes(g.now())
	return nil
}

// Close stops the gate's housekeeping. It is idempotent. Requests in flight
// are not interrupted.
func (g *Gate) Close() {
	g.stopOnce.Do(func() { close(g.stop) })
	<-g.done
	<-g.superviseDone
	g.leaveFleet() // fleet.go
}

// Config returns the configuration in force.
func (g *Gate) Config() Config { return *g.cfg.Load() }

// Toggles returns the gate's toggle store, for the admin API.
func (g *Gate) Toggles() limiter.ToggleStore { return g.toggles }

// StartupShedDuration is how long a Caddyfile `shed CLASS` lasts: toggles
// always expire, and a config reload renews it.
const StartupShedDuration = 365 * 24 * time.Hour

func (g *Gate) applyStartupSheds(cfg *Config) error {
	now := g.now()
	for _, c := range cfg.Shed {
		t := limiter.Toggle{Target: c.String(), Mode: limiter.ModeShed, Reason: "shed in config",
			Since: now, Until: now.Add(StartupShedDuration), FromConfig: true}
		if err := g.toggles.Put(t); err != nil {
			return fmt.Errorf("shed %s: %w", c, err)
		}
	}
	return nil
}

// housekeepInterval bounds how late an expired toggle is noticed when no
// request arrives to notice it.
const housekeepInterval = 500 * time.Millisecond

func (g *Gate) housekeep() {
	defer close(g.done)
	t := time.NewTicker(housekeepInterval)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
			now := g.now()
			g.evaluateErrorShed(now) // before refreshModes, which applies it
			g.refreshModes(now)
			g.rebalanceFleet() // a gateway joined or left (fleet.go)
			g.updateGauges()
			g.updateHerdGauges(now)
		}
	}
}

func (g *Gate) updateGauges() {
	_, classes := g.adm.Snapshot()
	for i, c := range classes {
		g.metrics.Limit.WithLabelValues(matrix.Class(i).String()).Set(float64(c.Cap))
	}
}

func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
