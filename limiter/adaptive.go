package limiter

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// GradientConfig tunes a Gradient. Zero fields take the documented defaults;
// out-of-range values are replaced by the default as well.
type GradientConfig struct {
	// MinLimit and MaxLimit clamp the limit. Defaults 1 and 1000; MaxLimit
	// below MinLimit is raised to MinLimit.
	MinLimit, MaxLimit int
	// InitialLimit is the limit before any sample has been seen. Default 16,
	// clamped into [MinLimit, MaxLimit].
	InitialLimit int

	// Tolerance is how many times the no-load RTT a window's mean RTT may be
	// before the limit shrinks. Must be ≥ 1; default 1.1 (Envoy's 10%
	// min-RTT buffer). The limit settles where queueing adds this much
	// latency, so it is the knob between throughput and queueing delay.
	//
	// It is not Gradient2's rttTolerance (2.0 there): Gradient2 compares a
	// short-term with a long-term average that itself drifts upward under
	// load, while this compares with the measured no-load RTT, against which
	// 2.0 would mean "run the upstream at twice its capacity".
	Tolerance float64

	// MinRTTInterval is how often the no-load RTT is re-measured, jittered by
	// ±25% so several gateways (or classes) do not probe in step. Default 60s.
	MinRTTInterval time.Duration
	// ProbeFraction is the share of the current limit admitted while the
	// no-load RTT is re-measured. In (0, 1); default 0.5.
	ProbeFraction float64
	// SamplesPerUpdate is the least number of fresh samples that make one
	// limit update (or one re-measure). Default 32. A window also waits for
	// at least as many samples as the limit in force (about one round trip of
	// completions): the first completions after an update are the fastest
	// requests of the cohort that started after it, and a window much smaller
	// than the cohort would read a biased-low RTT and creep the limit up.
	SamplesPerUpdate int
	// Smoothing is the weight of each update's new limit against the old one.
	// In (0, 1]; default 0.5.
	Smoothing float64
}

func (c GradientConfig) withDefaults() GradientConfig {
	if c.MinLimit < 1 {
		c.MinLimit = 1
	}
	if c.MaxLimit <= 0 {
		c.MaxLimit = 1000
	}
	c.MaxLimit = max(c.MaxLimit, c.MinLimit)
	if c.InitialLimit <= 0 {
		c.InitialLimit = 16
	}
	c.InitialLimit = min(max(c.InitialLimit, c.MinLimit), c.MaxLimit)
	if !(c.Tolerance >= 1) || math.IsInf(c.Tolerance, 0) {
		c.Tolerance = 1.1
	}
	if c.MinRTTInterval <= 0 {
		c.MinRTTInterval = 60 * time.Second
	}
	if !(c.ProbeFraction > 0 && c.ProbeFraction < 1) {
		c.ProbeFraction = 0.5
	}
	if c.SamplesPerUpdate < 1 {
		c.SamplesPerUpdate = 32
	}
	if !(c.Smoothing > 0 && c.Smoothing <= 1) {
		c.Smoothing = 0.5
	}
	return c
}

// Gradient is an adaptive concurrency limit for one class of requests, in the
// spirit of Envoy's adaptive concurrency filter and Netflix's Gradient2.
//
// After each window of fresh samples (see SamplesPerUpdate) it compares the
// window's mean RTT with the no-load RTT (the baseline):
//
//	gradient = clamp(Tolerance × baseline / windowRTT, 0.5, 1)
//	target   = limit × gradient, + √limit / 2 if gradient is 1 and saturated
//	limit    = (1 − Smoothing) × limit + Smoothing × target
//
// so the limit grows by a square-root allowance while latency stays within
// Tolerance of the baseline and shrinks in proportion to the excess when it
// does not. It settles near Tolerance × the upstream's real concurrency.
// Unlike Envoy, which adds its √limit headroom on every update, the allowance
// is only added below the tolerance: added always, it becomes a permanent
// queue of √limit requests, which at small capacities (8 workers → ~3) is a
// large share of the limit.
//
// Only samples from requests that started after the previous update count
// ("fresh"): older ones ran under the previous limit, and letting them in
// makes the controller react to its own past and overshoot.
//
// The allowance is added only when the window's peak in-flight reached half
// the limit (Gradient2's rule): an app-limited class says nothing about
// whether the upstream could take more, so its limit must not creep up.
//
// # Re-measuring the no-load RTT
//
// The baseline must be re-learnt because an upstream's no-load latency
// drifts (database growth, a redeploy), but it cannot be learnt while the
// upstream is saturated: above its capacity only the throughput is
// observable, not the latency it would have without a queue. That rules out
// letting the baseline decay toward recent windowed minimums: under sustained
// load every recent window is queued, so the baseline would ratchet up with
// each re-measure and the limit with it. Some samples must come from below
// capacity.
//
// Envoy gets them by pinning concurrency to a small fixed number (3 by
// default) for the whole measurement window and answering 503 to everything
// above it, which users see as periodic error bursts. Here the re-measure,
// every MinRTTInterval ±25%, is a short, shallow dip:
//   - Limit reports ProbeFraction × the current limit (not a fixed tiny
//     number): below the upstream's capacity whenever the limit is within
//     1/ProbeFraction of it (it settles near Tolerance × capacity), while
//     keeping that fraction of the throughput;
//   - the dip lasts only until one window of requests that started under it
//     (and saw no more in flight than it allows) has completed, a few round
//     trips, or at most a quarter of MinRTTInterval;
//   - the caller is expected to let requests above the limit wait in their
//     class queue rather than refuse them, so the dip costs a little latency,
//     not errors.
//
// The baseline is then that probe window's median RTT, whether higher or
// lower than before. A Gradient starts in a probe, so the first baseline is
// measured at ProbeFraction of the initial limit.
//
// A Gradient is safe for concurrent use.
type Gradient struct {
	mu  sync.Mutex
	cfg GradientConfig
	rng *rand.Rand

	limit    float64 // current limit, in [MinLimit, MaxLimit]
	baseline float64 // no-load RTT in nanoseconds; 0 until first measured

	// The current window: samples of requests started at or after
	// windowStart.
	windowStart time.Time
	sum         float64 // RTT nanoseconds
	count       int
	peak        int // highest in-flight seen at a sample's start

	probing       bool
	probeRTTs     []float64 // the probe window's samples, at most maxProbeSamples
	probeLimit    int
	probeDeadline time.Time // zero until the probe's first sample
	nextProbe     time.Time // zero until the first probe ends
}

// NewGradient returns a Gradient at cfg.InitialLimit, in its initial
// baseline probe. seed drives the re-measure jitter; give each instance a
// different one.
func NewGradient(cfg GradientConfig, seed uint64) *Gradient {
	cfg = cfg.withDefaults()
	g := &Gradient{
		cfg:   cfg,
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		limit: float64(cfg.InitialLimit),
	}
	g.startProbe(time.Time{})
	return g
}

// Limit is the number of requests that may be in flight now: the adaptive
// limit, or the lower probe limit while the no-load RTT is re-measured.
// Always within [MinLimit, MaxLimit].
func (g *Gradient) Limit() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.probing {
		return g.probeLimit
	}
	return int(g.limit)
}

// Baseline is the current no-load RTT estimate, 0 before the first one.
func (g *Gradient) Baseline() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.baseline >= math.MaxInt64 {
		return math.MaxInt64 // float64(MaxInt64) rounds up past it
	}
	return time.Duration(g.baseline)
}

// Sample feeds one completed request: its upstream latency rtt, the number of
// requests in flight (counting itself) when it started, and the time it
// completed. Callers must NOT feed samples from cancelled, shed or
// coalesced-waiter requests: their latency is not the upstream's.
// A negative rtt is ignored; zero counts as one nanosecond.
func (g *Gradient) Sample(rtt time.Duration, inflight int, now time.Time) {
	if rtt < 0 {
		return
	}
	started := now.Add(-rtt)
	ns := max(float64(rtt), 1)

	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.probing && !g.nextProbe.IsZero() && !now.Before(g.nextProbe) {
		g.startProbe(now)
	}
	if started.Before(g.windowStart) {
		return // ran under an earlier limit
	}
	if g.probing {
		g.probeSample(ns, inflight, now)
		return
	}
	g.sum += ns
	g.count++
	g.peak = max(g.peak, inflight)
	if g.count >= max(g.cfg.SamplesPerUpdate, int(g.limit)) {
		g.update(now)
	}
}

// update applies the gradient rule to the completed window.
func (g *Gradient) update(now time.Time) {
	windowRTT := g.sum / float64(g.count)
	if g.baseline == 0 {
		// Only when the initial probe saw no usable sample.
		g.baseline = windowRTT
	}
	gradient := min(max(g.cfg.Tolerance*g.baseline/windowRTT, 0.5), 1)
	target := g.limit * gradient
	if gradient == 1 && 2*g.peak >= int(g.limit) {
		target += math.Sqrt(g.limit) / 2
	}
	s := g.cfg.Smoothing
	g.limit = g.clampLimit((1-s)*g.limit + s*target)
	g.resetWindow(now)
}

func (g *Gradient) clampLimit(l float64) float64 {
	return min(max(l, float64(g.cfg.MinLimit)), float64(g.cfg.MaxLimit))
}

func (g *Gradient) resetWindow(now time.Time) {
	g.windowStart = now
	g.sum, g.count, g.peak = 0, 0, 0
}

// startProbe lowers the reported limit to measure the no-load RTT.
func (g *Gradient) startProbe(now time.Time) {
	g.probing = true
	g.probeLimit = max(g.cfg.MinLimit, int(math.Ceil(g.limit*g.cfg.ProbeFraction)))
	g.probeDeadline = time.Time{}
	g.resetWindow(now)
}

// EndProbe ends a probe in progress as if its window were complete: the
// baseline is its samples' median if it has any (else, for the first
// probe, the first window's mean), and the next probe comes on schedule.
// For a caller that stops feeding samples for a while (the gate does during
// a herd): a probe never ends without samples, and would hold the limit at
// its reduced level all along.
func (g *Gradient) EndProbe(now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.probing {
		g.endProbe(now)
	}
}

// probeSample collects one sample for the baseline. Requests that started
// while more than the probe limit were in flight (the dip had not drained
// yet) measure queueing, not the no-load RTT, so they are skipped.
func (g *Gradient) probeSample(ns float64, inflight int, now time.Time) {
	if g.probeDeadline.IsZero() {
		g.probeDeadline = now.Add(g.cfg.MinRTTInterval / 4)
	}
	if inflight <= g.probeLimit {
		g.sum += ns
		g.count++
		if len(g.probeRTTs) < maxProbeSamples {
			g.probeRTTs = append(g.probeRTTs, ns)
		}
	}
	if g.count >= max(g.cfg.SamplesPerUpdate, g.probeLimit) || !now.Before(g.probeDeadline) {
		g.endProbe(now)
	}
}

// maxProbeSamples bounds the samples a probe keeps for its median.
const maxProbeSamples = 256

// endProbe adopts the probe window's median RTT as the baseline (if it has
// any sample) and schedules the next probe. The median, not the mean: one
// sample inflated by a GC pause or a descheduled thread would otherwise
// raise the baseline, and with it the limit, until the next probe.
func (g *Gradient) endProbe(now time.Time) {
	if n := len(g.probeRTTs); n > 0 {
		slices.Sort(g.probeRTTs)
		g.baseline = g.probeRTTs[n/2]
		g.probeRTTs = g.probeRTTs[:0]
	}
	g.probing = false
	g.resetWindow(now)
	jitter := 0.75 + 0.5*g.rng.Float64()
	g.nextProbe = now.Add(time.Duration(float64(g.cfg.MinRTTInterval) * jitter))
}
