package gate

import (
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// DefaultAdaptiveMax is the adaptive limit's ceiling for a class configured
// without a cap (max_inflight 0).
const DefaultAdaptiveMax = 1000

// adaptiveLimits holds one gradient controller per class with `adaptive`
// on (nil for the others). The controller's limit, lowered further by a
// slow-start ramp, is the class's dynamic cap in Admission (see
// dynamicCap); the configured max_inflight stays its ceiling.
type adaptiveLimits struct {
	classes [matrix.NumClasses]atomic.Pointer[adaptiveClass]
	// pushed is the dynamic cap last given to Admission per class, so that
	// the request path calls SetDynamicCap only when the cap changes.
	pushed [matrix.NumClasses]atomic.Int64
	salt   uint64 // makes each gate's seeds differ from another's
}

type adaptiveClass struct {
	grad     *limiter.Gradient
	maxLimit int
}

// configureAdaptive builds, keeps or drops each class's controller. A class
// whose ceiling is unchanged keeps its controller and what it has learnt;
// a new ceiling starts a new one.
func (g *Gate) configureAdaptive(cfg *Config) {
	a := &g.adaptive
	if a.salt == 0 {
		a.salt = rand.Uint64() | 1
	}
	for c := range a.classes {
		if !cfg.Adaptive[c] {
			a.classes[c].Store(nil)
			continue
		}
		maxLimit := cfg.Classes[c].MaxInflight
		if maxLimit <= 0 {
			maxLimit = DefaultAdaptiveMax
		}
		if cur := a.classes[c].Load(); cur != nil && cur.maxLimit == maxLimit {
			continue
		}
		grad := limiter.NewGradient(limiter.GradientConfig{MinLimit: 1, MaxLimit: maxLimit}, a.salt*uint64(c+1))
		a.classes[c].Store(&adaptiveClass{grad: grad, maxLimit: maxLimit})
	}
}

// gradientOf returns class's controller, nil if the class is not adaptive.
func (g *Gate) gradientOf(class matrix.Class) *limiter.Gradient {
	if ac := g.adaptive.classes[class].Load(); ac != nil {
		return ac.grad
	}
	return nil
}

// sampleAdaptive feeds one upstream round trip of class to its controller
// and pushes the new cap. The caller passes only requests that were
// admitted, whose client stayed and that the upstream answered below 500:
// anything else measures the client or an outage, not the upstream's
// capacity.
func (g *Gate) sampleAdaptive(grad *limiter.Gradient, cfg *Config, class matrix.Class, rtt time.Duration, inflightAtStart int, now time.Time) {
	grad.Sample(rtt, inflightAtStart, now)
	g.pushDynamicCap(cfg, class, now, false)
}

// dynamicCap is the cap class gets on top of its configured one: the
// adaptive limit, scaled down while slow start ramps after an outage;
// 0 means none (the configured cap alone).
func (g *Gate) dynamicCap(cfg *Config, class matrix.Class, now time.Time) int {
	n := 0
	if grad := g.gradientOf(class); grad != nil {
		n = grad.Limit()
	}
	if g.ride.ramping.Load() {
		base := n
		if base == 0 {
			base = cfg.Classes[class].MaxInflight
		}
		if base > 0 {
			n = g.ride.slowStart.Load().Scale(base, now)
		}
	}
	return n
}

// pushDynamicCap gives Admission class's current dynamic cap. Unless force
// is set it does so only when the cap changed since the last push; racing
// pushes may leave a stale cap for a moment, which the next forced push
// (every housekeeping tick) corrects.
func (g *Gate) pushDynamicCap(cfg *Config, class matrix.Class, now time.Time, force bool) {
	n := g.dynamicCap(cfg, class, now)
	if prev := g.adaptive.pushed[class].Swap(int64(n)); prev != int64(n) || force {
		g.adm.SetDynamicCap(int(class), n)
	}
}

// pushDynamicCaps refreshes every class's dynamic cap.
func (g *Gate) pushDynamicCaps(now time.Time) {
	cfg := g.cfg.Load()
	for _, c := range matrix.Classes() {
		g.pushDynamicCap(cfg, c, now, true)
	}
}

// configureResilience applies the issue-7 settings of cfg: adaptive limits,
// ride-through and 5xx shedding, then the resulting caps.
func (g *Gate) configureResilience(cfg *Config) {
	g.configureAdaptive(cfg)
	g.configureRideThrough(cfg)
	g.configureErrorShed(cfg)
	if g.cfg.Load() != nil {
		g.pushDynamicCaps(g.now())
	}
}

// fillAdaptiveStatus adds each adaptive class's controller state to its
// status entry (indexed by class, as Status builds them).
func (g *Gate) fillAdaptiveStatus(classes []ClassStatus) {
	for i := range classes {
		grad := g.gradientOf(matrix.Class(i))
		if grad == nil {
			continue
		}
		classes[i].Adaptive = true
		classes[i].AdaptiveLimit = grad.Limit()
		if b := grad.Baseline(); b > 0 {
			classes[i].BaselineRTT = b.Round(10 * time.Microsecond).String()
		}
	}
}
