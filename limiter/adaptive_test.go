package limiter

import (
	"container/heap"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

var simEpoch = time.Unix(1_700_000_000, 0)

// queueingUpstream is a pure model of an upstream with a fixed number of
// workers: a request that starts with at most workers in flight takes base;
// above that it queues, and takes base × inflight / workers. With noise > 0
// each latency is further multiplied by a uniform factor in [1−noise,
// 1+noise] drawn from rng.
type queueingUpstream struct {
	base    time.Duration
	workers int
	noise   float64
	rng     *rand.Rand
}

func (u *queueingUpstream) latency(inflight int) time.Duration {
	d := u.base
	if inflight > u.workers {
		d = time.Duration(int64(u.base) * int64(inflight) / int64(u.workers))
	}
	if u.noise > 0 {
		d = time.Duration(float64(d) * (1 + u.noise*(2*u.rng.Float64()-1)))
	}
	return d
}

type simRequest struct {
	started  time.Time
	done     time.Time
	inflight int
}

type simHeap []simRequest

func (h simHeap) Len() int           { return len(h) }
func (h simHeap) Less(i, j int) bool { return h[i].done.Before(h[j].done) }
func (h simHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *simHeap) Push(x any)        { *h = append(*h, x.(simRequest)) }
func (h *simHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// closedLoop drives a Gradient against an upstream in virtual time with
// unlimited demand: whenever fewer than Limit() requests are in flight, new
// ones start at once. No real time passes.
type closedLoop struct {
	g        *Gradient
	upstream *queueingUpstream
	now      time.Time
	inflight simHeap
}

func newClosedLoop(g *Gradient, u *queueingUpstream) *closedLoop {
	return &closedLoop{g: g, upstream: u, now: simEpoch}
}

// step completes one request (feeding its sample) after topping up the
// in-flight set to the limit, and returns the limit after the sample.
func (c *closedLoop) step() int {
	for len(c.inflight) < c.g.Limit() {
		n := len(c.inflight) + 1
		heap.Push(&c.inflight, simRequest{started: c.now, done: c.now.Add(c.upstream.latency(n)), inflight: n})
	}
	r := heap.Pop(&c.inflight).(simRequest)
	c.now = r.done
	c.g.Sample(r.done.Sub(r.started), r.inflight, c.now)
	return c.g.Limit()
}

// converge runs until the limit has stayed within ±25% of the upstream's
// workers for `hold` consecutive samples, and returns how many samples that
// took (counting the hold), or -1 if it did not within maxSamples.
func (c *closedLoop) converge(maxSamples, hold int) int {
	lo := 0.75 * float64(c.upstream.workers)
	hi := 1.25 * float64(c.upstream.workers)
	inBand := 0
	for i := 1; i <= maxSamples; i++ {
		l := float64(c.step())
		if l >= lo && l <= hi {
			inBand++
			if inBand >= hold {
				return i
			}
		} else {
			inBand = 0
		}
	}
	return -1
}

const (
	convergeWithin = 5000 // samples
	convergeHold   = 1000 // consecutive in-band samples that count as converged
)

func TestGradientConvergesToUpstreamCapacity(t *testing.T) {
	for _, workers := range []int{8, 32, 100} {
		u := &queueingUpstream{base: 20 * time.Millisecond, workers: workers}
		loop := newClosedLoop(NewGradient(GradientConfig{}, 1), u)
		n := loop.converge(convergeWithin, convergeHold)
		if n < 0 {
			t.Errorf("workers=%d: limit %d did not settle within ±25%% in %d samples", workers, loop.g.Limit(), convergeWithin)
			continue
		}
		t.Logf("workers=%d: converged after %d samples, limit %d", workers, n, loop.g.Limit())
	}
}

func TestGradientFollowsCapacityChange(t *testing.T) {
	for _, tc := range []struct{ from, to int }{{32, 8}, {8, 32}} {
		u := &queueingUpstream{base: 20 * time.Millisecond, workers: tc.from}
		loop := newClosedLoop(NewGradient(GradientConfig{}, 2), u)
		if loop.converge(convergeWithin, convergeHold) < 0 {
			t.Fatalf("%d→%d: no initial convergence, limit %d", tc.from, tc.to, loop.g.Limit())
		}
		u.workers = tc.to
		n := loop.converge(convergeWithin, convergeHold)
		if n < 0 {
			t.Errorf("%d→%d: limit %d did not follow within %d samples", tc.from, tc.to, loop.g.Limit(), convergeWithin)
			continue
		}
		t.Logf("%d→%d: followed after %d samples, limit %d", tc.from, tc.to, n, loop.g.Limit())
	}
}

// Real latencies vary request by request. With ±30% noise on every latency
// the limit must still average within ±25% of the capacity, and never
// collapse (probes aside).
func TestGradientConvergesWithNoisyLatency(t *testing.T) {
	for _, workers := range []int{8, 32, 100} {
		u := &queueingUpstream{base: 20 * time.Millisecond, workers: workers,
			noise: 0.3, rng: rand.New(rand.NewPCG(uint64(workers), 1))}
		g := NewGradient(GradientConfig{MinRTTInterval: 5 * time.Second}, 11)
		loop := newClosedLoop(g, u)
		for range convergeWithin {
			loop.step()
		}
		sum, n, lowest := 0, 0, math.MaxInt
		for range 30_000 {
			l := loop.step()
			if g.probing {
				continue
			}
			sum += l
			n++
			lowest = min(lowest, l)
		}
		mean := float64(sum) / float64(n)
		if mean < 0.75*float64(workers) || mean > 1.25*float64(workers) {
			t.Errorf("workers=%d: mean limit %.1f, want within ±25%%", workers, mean)
		}
		if lowest < workers/2 {
			t.Errorf("workers=%d: limit fell to %d outside a probe", workers, lowest)
		}
		t.Logf("workers=%d: mean limit %.1f, lowest %d", workers, mean, lowest)
	}
}

// Two classes with their own Gradient against their own upstream path: a
// latency spike in one must shrink only that one's limit.
func TestGradientSpikeShrinksOnlyItsClass(t *testing.T) {
	ua := &queueingUpstream{base: 20 * time.Millisecond, workers: 32}
	ub := &queueingUpstream{base: 20 * time.Millisecond, workers: 32}
	a := newClosedLoop(NewGradient(GradientConfig{}, 3), ua)
	b := newClosedLoop(NewGradient(GradientConfig{}, 4), ub)
	if a.converge(convergeWithin, convergeHold) < 0 || b.converge(convergeWithin, convergeHold) < 0 {
		t.Fatalf("no initial convergence: a=%d b=%d", a.g.Limit(), b.g.Limit())
	}
	beforeA, beforeB := a.g.Limit(), b.g.Limit()

	ua.base = 200 * time.Millisecond // class A's endpoints get 10× slower
	for range 500 {
		a.step()
		b.step()
	}
	if got := a.g.Limit(); got > beforeA/2 {
		t.Errorf("spiking class limit %d → %d, want at most half", beforeA, got)
	}
	if got := b.g.Limit(); math.Abs(float64(got-beforeB)) > 0.25*float64(beforeB) {
		t.Errorf("quiet class limit moved %d → %d", beforeB, got)
	}
}

// The no-load RTT rises for good (say a slower database): the stale baseline
// first makes the controller shrink, and the periodic re-measure must bring
// it back to the upstream's capacity — and the re-measure must never pin
// concurrency below ProbeFraction of the limit.
func TestGradientRemeasuresBaseline(t *testing.T) {
	cfg := GradientConfig{MinRTTInterval: 2 * time.Second}
	u := &queueingUpstream{base: 20 * time.Millisecond, workers: 32}
	loop := newClosedLoop(NewGradient(cfg, 5), u)
	if loop.converge(convergeWithin, convergeHold) < 0 {
		t.Fatalf("no initial convergence, limit %d", loop.g.Limit())
	}
	u.base = 60 * time.Millisecond
	prev, lowest := loop.g.Limit(), math.MaxInt
	deadline := loop.now.Add(10 * cfg.MinRTTInterval)
	for loop.now.Before(deadline) {
		l := loop.step()
		// Neither a probe (ProbeFraction 0.5) nor an update (gradient ≥ 0.5,
		// smoothed) may more than halve the limit at once: no Envoy-style
		// pin to a tiny concurrency.
		if l < (prev+1)/2 {
			t.Fatalf("limit fell from %d to %d in one sample", prev, l)
		}
		prev, lowest = l, min(lowest, l)
	}
	if lowest > 16 {
		t.Fatalf("lowest limit %d: the stale baseline should have shrunk it first", lowest)
	}
	if n := loop.converge(convergeWithin, convergeHold); n < 0 {
		t.Fatalf("after the re-measure the limit is %d, want 32 ±25%%", loop.g.Limit())
	}
	if got := loop.g.Baseline(); got < 55*time.Millisecond || got > 66*time.Millisecond {
		t.Errorf("baseline %v, want about 60ms", got)
	}
}

// Requests admitted above the probe limit (the caller had not applied the
// dip yet) measured queueing, not the no-load RTT: they must not become the
// baseline.
func TestGradientProbeIgnoresSamplesAboveProbeLimit(t *testing.T) {
	g := NewGradient(GradientConfig{InitialLimit: 16}, 12) // starts probing at 8
	if got := g.Limit(); got != 8 {
		t.Fatalf("initial probe limit %d, want 8", got)
	}
	now := simEpoch
	for range 100 {
		now = now.Add(time.Millisecond)
		g.Sample(100*time.Millisecond, 16, now)
	}
	if got := g.Baseline(); got != 0 {
		t.Fatalf("baseline %v from over-limit samples", got)
	}
	for range 32 {
		now = now.Add(time.Millisecond)
		g.Sample(10*time.Millisecond, 8, now)
	}
	if got := g.Baseline(); got != 10*time.Millisecond {
		t.Errorf("baseline %v, want 10ms", got)
	}
	if got := g.Limit(); got != 16 {
		t.Errorf("limit after the probe %d, want 16 again", got)
	}
}

// A request that started before the last update ran under the old limit;
// its latency says nothing about the new one and must not move it.
func TestGradientIgnoresSamplesStartedBeforeLastUpdate(t *testing.T) {
	g := NewGradient(GradientConfig{InitialLimit: 16}, 13)
	now := simEpoch
	for range 32 { // complete the initial probe
		now = now.Add(time.Millisecond)
		g.Sample(10*time.Millisecond, 8, now)
	}
	for range 100 {
		now = now.Add(time.Millisecond)
		g.Sample(time.Second, 16, now) // started a second ago: stale
	}
	if got := g.Limit(); got != 16 {
		t.Fatalf("stale samples moved the limit to %d", got)
	}
	for range 32 {
		now = now.Add(time.Millisecond)
		g.Sample(10*time.Millisecond, 16, now)
	}
	if got := g.Limit(); got <= 16 {
		t.Errorf("fresh fast saturated window left the limit at %d, want growth", got)
	}
}

// An app-limited class (fewer requests than half the limit in flight) must
// not grow its limit however fast the upstream is.
func TestGradientAppLimitedDoesNotGrow(t *testing.T) {
	g := NewGradient(GradientConfig{InitialLimit: 20}, 6)
	now := simEpoch
	for range 10_000 {
		now = now.Add(time.Millisecond)
		g.Sample(time.Millisecond, 3, now)
	}
	if got := g.Limit(); got != 20 {
		t.Errorf("app-limited limit %d, want unchanged 20", got)
	}
}

func TestGradientClamps(t *testing.T) {
	g := NewGradient(GradientConfig{MinLimit: 4, MaxLimit: 40, InitialLimit: 10}, 7)
	loop := newClosedLoop(g, &queueingUpstream{base: 10 * time.Millisecond, workers: 1000})
	for range 20_000 {
		if l := loop.step(); l < 4 || l > 40 {
			t.Fatalf("limit %d outside [4, 40]", l)
		}
	}
	if got := g.Limit(); got != 40 {
		t.Errorf("uncongested limit %d, want MaxLimit 40", got)
	}
	loop.upstream.workers = 1
	loop.upstream.base = time.Second
	for range 20_000 {
		if l := loop.step(); l < 4 || l > 40 {
			t.Fatalf("limit %d outside [4, 40]", l)
		}
	}
	if got := g.Limit(); got != 4 {
		t.Errorf("congested limit %d, want MinLimit 4", got)
	}
}

func TestGradientConfigDefaults(t *testing.T) {
	got := GradientConfig{MaxLimit: -3, Tolerance: math.NaN(), ProbeFraction: 1, Smoothing: 2}.withDefaults()
	want := GradientConfig{MinLimit: 1, MaxLimit: 1000, InitialLimit: 16, Tolerance: 1.1,
		MinRTTInterval: time.Minute, ProbeFraction: 0.5, SamplesPerUpdate: 32, Smoothing: 0.5}
	if got != want {
		t.Errorf("defaults %+v, want %+v", got, want)
	}
	got = GradientConfig{MinLimit: 50, MaxLimit: 10, InitialLimit: 5}.withDefaults()
	if got.MinLimit != 50 || got.MaxLimit != 50 || got.InitialLimit != 50 {
		t.Errorf("inverted clamps gave min=%d max=%d initial=%d, want 50/50/50", got.MinLimit, got.MaxLimit, got.InitialLimit)
	}
}

// Extreme and degenerate RTTs must never make the limit NaN, out of range or
// negative.
func TestGradientExtremeRTTs(t *testing.T) {
	rtts := []time.Duration{0, 1, -1, time.Nanosecond, time.Hour, math.MaxInt64, math.MinInt64}
	for _, first := range rtts {
		for _, then := range rtts {
			g := NewGradient(GradientConfig{SamplesPerUpdate: 2}, 8)
			now := simEpoch
			for i := range 200 {
				rtt := then
				if i < 4 {
					rtt = first
				}
				g.Sample(rtt, g.Limit(), now)
				now = now.Add(time.Second)
				if l := g.Limit(); l < 1 || l > 1000 {
					t.Fatalf("first=%v then=%v: limit %d", first, then, l)
				}
			}
			if b := g.Baseline(); b < 0 {
				t.Fatalf("first=%v then=%v: baseline %v", first, then, b)
			}
		}
	}
}

func FuzzGradientSample(f *testing.F) {
	f.Add(int64(20e6), 10, int64(1e6))
	f.Add(int64(0), 0, int64(0))
	f.Add(int64(math.MaxInt64), math.MaxInt, int64(math.MaxInt64))
	f.Fuzz(func(t *testing.T, rtt int64, inflight int, step int64) {
		g := NewGradient(GradientConfig{SamplesPerUpdate: 3, MaxLimit: 500}, uint64(rtt))
		now := simEpoch
		for i := range 50 {
			g.Sample(time.Duration(rtt>>(i%8)), inflight, now)
			now = now.Add(time.Duration(step))
			if l := g.Limit(); l < 1 || l > 500 {
				t.Fatalf("limit %d", l)
			}
		}
	})
}

func BenchmarkGradientSample(b *testing.B) {
	g := NewGradient(GradientConfig{}, 9)
	now := simEpoch
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(time.Millisecond)
		g.Sample(20*time.Millisecond+time.Duration(i%7)*time.Millisecond, 16, now)
	}
}

func BenchmarkGradientSampleParallel(b *testing.B) {
	g := NewGradient(GradientConfig{}, 10)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		now := simEpoch
		for pb.Next() {
			now = now.Add(time.Millisecond)
			g.Sample(20*time.Millisecond, 16, now)
			_ = g.Limit()
		}
	})
}

// A probe ends only with samples; EndProbe ends it for a caller that stops
// sampling, and the next probe still comes on schedule.
func TestGradientEndProbeRestoresTheLimitAndKeepsTheSchedule(t *testing.T) {
	cfg := GradientConfig{MaxLimit: 40, MinRTTInterval: 4 * time.Second}
	g := NewGradient(cfg, 9)
	if l := g.Limit(); l != 8 {
		t.Fatalf("limit in the initial probe %d, want 8 (half of 16)", l)
	}
	now := simEpoch
	for range 5 {
		now = now.Add(10 * time.Millisecond)
		g.Sample(10*time.Millisecond, 1, now)
	}
	if g.Limit() != 8 {
		t.Fatalf("the probe ended after 5 of 32 samples: limit %d", g.Limit())
	}
	g.EndProbe(now)
	if l, b := g.Limit(), g.Baseline(); l != 16 || b != 10*time.Millisecond {
		t.Fatalf("after EndProbe: limit %d, baseline %v; want 16 and the probe's median 10ms", l, b)
	}
	g.EndProbe(now) // not probing: no-op
	if g.Limit() != 16 {
		t.Fatalf("a second EndProbe changed the limit to %d", g.Limit())
	}
	// The next probe starts at the first sample 3-5 s later (MinRTTInterval
	// jittered ±25%).
	start := now
	for g.Limit() == 16 && now.Sub(start) < 6*time.Second {
		now = now.Add(100 * time.Millisecond)
		g.Sample(10*time.Millisecond, 1, now)
	}
	if d := now.Sub(start); g.Limit() != 8 || d < 3*time.Second || d > 5100*time.Millisecond {
		t.Fatalf("after %v the limit is %d; want the next probe (8) 3-5s after the last", d, g.Limit())
	}
}
