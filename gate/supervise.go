package gate

import (
	"context"
	"net"
	"time"

	"github.com/mxgate/mxgate/limiter"
)

// probeDialTimeout bounds one TCP probe of the upstream.
const probeDialTimeout = time.Second

// superviseUpstream is the gate's goroutine for upstream liveness. It only
// sleeps and dials: limiter.Liveness (inside Admission) decides when to
// probe and how, lets canaries through and ramps caps; this loop asks it
// what is due, dials when told, and sleeps until the next thing is due or
// until woken by a change. It returns when the gate closes.
func (g *Gate) superviseUpstream() {
	defer close(g.superviseDone)
	for {
		if g.adm.Probe(g.now()) {
			g.observeLiveness(g.adm.DialResult(g.probeDial(context.Background()) == nil, g.now()), g.now())
		}
		if !g.sleep(g.adm.Tick(g.now())) {
			return
		}
	}
}

// probeDial dials the configured upstream address once, bounded by the
// probe interval and probeDialTimeout. It is the one probe of the
// upstream: the ride-through supervisor and the health check both use it.
func (g *Gate) probeDial(ctx context.Context) error {
	cfg := g.cfg.Load()
	timeout := probeDialTimeout
	if cfg.RideThrough.Enabled {
		timeout = min(timeout, cfg.RideThrough.ProbeInterval)
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", cfg.UpstreamAddr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// sleep waits for d (until woken if d is 0); it reports false if the gate
// closed meanwhile.
func (g *Gate) sleep(d time.Duration) bool {
	var tick <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		tick = t.C
	}
	select {
	case <-g.stop:
		return false
	case <-g.wake:
	case <-tick:
	}
	return true
}

// observeLiveness logs a change of the upstream's state and wakes the
// supervisor, whose schedule it changes.
func (g *Gate) observeLiveness(tr limiter.Transition, now time.Time) {
	switch tr {
	case limiter.NoTransition:
		return
	case limiter.WentDown:
		g.log.Warn("upstream down: holding requests until it answers", "probe", g.cfg.Load().UpstreamAddr)
	case limiter.CameBack:
		l := g.adm.Liveness(now)
		g.log.Info("upstream back", "slow_start", l.SlowStart)
		if l.ProbeAddressSuspect {
			g.log.Error("upstream answered while its probe address did not: check health_dial", "probe", g.cfg.Load().UpstreamAddr)
		}
	}
	g.wakeSupervisor()
}

// wakeSupervisor makes the supervisor re-read its schedule.
func (g *Gate) wakeSupervisor() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}
