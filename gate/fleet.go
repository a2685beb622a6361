package gate

import (
	"cmp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/fleet"
	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// HerdCounter counts distinct users per (class, room) over every gateway of
// a fleet: DistinctUsers adds user and returns the fleet-wide count in the
// window ending at now, or ok=false when it cannot (the local count then
// stands alone).
type HerdCounter interface {
	DistinctUsers(class matrix.Class, room string, user matrix.TokenID, window time.Duration, now time.Time) (users int, ok bool)
}

// CapShares divides in-flight caps among a fleet's gateways: Share is this
// gateway's part of cap (0 = no cap stays 0), HerdShare its part of a
// class's herd allowance (down to 0), and SharesVersion changes whenever
// the shares do.
type CapShares interface {
	Share(cap int) int
	HerdShare(allowance int) int
	SharesVersion() uint64
}

// fleetHooks are the gate's seams to a fleet; all nil outside one. The
// fleet's toggle and rate stores replace the gate's own (which they keep as
// their local copy and fallback), so the pipeline itself does not change.
type fleetHooks struct {
	member *fleet.Fleet
	herds  HerdCounter
	shares CapShares

	mu      sync.Mutex    // serialises scaling and applying the admission config
	applied atomic.Uint64 // SharesVersion the admission caps were scaled with
}

// joinFleet wraps the gate's stores with f's shared ones and joins the
// fleet (one heartbeat, bounded by its call deadline). f nil: no fleet.
func (g *Gate) joinFleet(f *fleet.Fleet) {
	if f == nil {
		return
	}
	g.fleet.member, g.fleet.herds, g.fleet.shares = f, f, f
	g.toggles = f.Toggles(g.toggles)
	g.rates = f.Rates(g.rates)
	f.ShareVerdicts(g.accepted.apply)
	f.Start()
}

// leaveFleet leaves the fleet, so the others re-balance at once.
func (g *Gate) leaveFleet() {
	if g.fleet.member != nil {
		g.fleet.member.Close()
	}
}

// capShare returns what scales a configured cap to this gateway's share of
// the fleet's (0 = no cap stays 0; outside a fleet the cap itself), and
// marks the shares it reads as applied. admissionConfig calls it.
func (g *Gate) capShare() func(int) int {
	s := g.fleet.shares
	if s == nil {
		return func(n int) int { return n }
	}
	g.fleet.applied.Store(s.SharesVersion())
	return s.Share
}

// herdMax is limiter.ClassLimits.HerdMax for a class capped at limit: in a
// fleet, this gateway's part of the herd allowance of the fleet's cap
// (NoHerd if none), so that the fleet's herd holds no more than one
// gateway's would and the fleet keeps one gateway's reserve; outside a
// fleet, or without a cap, 0.
func (g *Gate) herdMax(limit int) int {
	s := g.fleet.shares
	if s == nil || limit <= 0 {
		return 0
	}
	if h := s.HerdShare(limiter.HerdAllowance(limit)); h > 0 {
		return h
	}
	return limiter.NoHerd
}

// configureAdmission applies cfg's caps, scaled to the fleet share, to
// admission.
func (g *Gate) configureAdmission(cfg *Config) {
	g.fleet.mu.Lock()
	defer g.fleet.mu.Unlock()
	g.adm.Configure(g.admissionConfig(cfg))
}

// rebalanceFleet re-applies the caps when the fleet's shares changed (a
// gateway joined or left). Called every housekeeping tick.
func (g *Gate) rebalanceFleet() {
	if s := g.fleet.shares; s != nil && s.SharesVersion() != g.fleet.applied.Load() {
		g.configureAdmission(g.cfg.Load())
	}
}

// observeDetector records a request in the herd detector, with the fleet's
// distinct-user count when there is one.
func (g *Gate) observeDetector(d *herd.Detector, cfg *Config, route matrix.Route, user matrix.TokenID, now time.Time) (active, started bool) {
	if h := g.fleet.herds; h != nil {
		window := cmp.Or(cfg.Herd.Window, herd.DefaultHerdWindow)
		if n, ok := h.DistinctUsers(route.Class, route.Room, user, window, now); ok {
			return d.ObserveFleet(route.Class, route.Room, user, n, now)
		}
	}
	return d.Observe(route.Class, route.Room, user, now)
}

// fleetStatus is the fleet as this gateway sees it, with every instance's
// share of the configured caps; nil outside a fleet.
func (g *Gate) fleetStatus() *fleet.Status {
	if g.fleet.member == nil {
		return nil
	}
	st := g.fleet.member.Status()
	cfg := g.cfg.Load()
	n := len(st.Instances)
	for i := range st.Instances {
		in := &st.Instances[i]
		in.GlobalShare = fleet.ShareOf(cfg.MaxInflight, i, n)
		in.ClassShares = make(map[string]int)
		for _, c := range matrix.Classes() {
			if cp := cfg.Classes[c].MaxInflight; cp > 0 {
				in.ClassShares[c.String()] = fleet.ShareOf(cp, i, n)
			}
		}
	}
	return &st
}

// admissionConfig is the one place the gate's caps reach admission: a
// fleet's cap share (cap ÷ live instances, fleet.go) is applied here.
func (g *Gate) admissionConfig(cfg *Config) limiter.Config {
	share := g.capShare()
	ac := limiter.Config{MaxInflight: share(cfg.MaxInflight), Classes: make([]limiter.ClassLimits, matrix.NumClasses),
		Liveness: cfg.RideThrough.liveness(cfg.UpstreamAddr)}
	for i, l := range cfg.Classes {
		ac.Classes[i] = limiter.ClassLimits{
			MaxInflight:  share(l.MaxInflight),
			Queue:        l.Queue,
			QueueTimeout: l.QueueTimeout,
			LIFOAfter:    cfg.LIFOAfter,
			OwnBudget:    l.OwnBudget,
			Adaptive:     l.Adaptive,
			HerdMax:      g.herdMax(l.MaxInflight),
		}
	}
	return ac
}
