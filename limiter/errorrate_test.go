package limiter

import (
	"sync"
	"testing"
	"time"
)

func TestErrorRateRatio(t *testing.T) {
	e := NewErrorRate(10*time.Second, 10)
	if r, n := e.Ratio(simEpoch); r != 0 || n != 0 {
		t.Fatalf("empty: ratio %v total %d, want 0 0", r, n)
	}
	for i := range 40 {
		e.Record(i%4 == 0, simEpoch.Add(time.Duration(i)*100*time.Millisecond))
	}
	r, n := e.Ratio(simEpoch.Add(4 * time.Second))
	if n != 40 || r != 0.25 {
		t.Errorf("ratio %v total %d, want 0.25 40", r, n)
	}
}

func TestErrorRateWindowExpiry(t *testing.T) {
	e := NewErrorRate(10*time.Second, 10) // 1s buckets
	start := simEpoch.Truncate(time.Second)
	for range 5 {
		e.Record(true, start) // bucket [0s, 1s)
	}
	for range 5 {
		e.Record(false, start.Add(5*time.Second)) // bucket [5s, 6s)
	}
	if r, n := e.Ratio(start.Add(9 * time.Second)); n != 10 || r != 0.5 {
		t.Errorf("at 9s: ratio %v total %d, want 0.5 10", r, n)
	}
	// At 10s the [0s, 1s) bucket has left the window.
	if r, n := e.Ratio(start.Add(10 * time.Second)); n != 5 || r != 0 {
		t.Errorf("at 10s: ratio %v total %d, want 0 5", r, n)
	}
	if _, n := e.Ratio(start.Add(16 * time.Second)); n != 0 {
		t.Errorf("at 16s: total %d, want 0", n)
	}
	// A new record reusing an expired bucket's slot must not inherit its counts.
	e.Record(false, start.Add(20*time.Second))
	if r, n := e.Ratio(start.Add(20 * time.Second)); n != 1 || r != 0 {
		t.Errorf("after reuse: ratio %v total %d, want 0 1", r, n)
	}
}

func TestErrorRateDropsRecordsOlderThanTheSlot(t *testing.T) {
	e := NewErrorRate(10*time.Second, 10)
	start := simEpoch.Truncate(time.Second)
	e.Record(false, start.Add(10*time.Second)) // same slot as start, newer span
	e.Record(true, start)                      // expired: must not touch it
	if r, n := e.Ratio(start.Add(10 * time.Second)); n != 1 || r != 0 {
		t.Errorf("ratio %v total %d, want 0 1", r, n)
	}
}

func TestErrorRateFixedMemory(t *testing.T) {
	e := NewErrorRate(time.Second, 4)
	now := simEpoch
	for i := range 100_000 {
		now = now.Add(time.Millisecond)
		e.Record(i%2 == 0, now)
	}
	if len(e.buckets) != 4 {
		t.Fatalf("%d buckets, want 4", len(e.buckets))
	}
	// 1s window of 250ms buckets at one record per ms: 3 full buckets and
	// the current one.
	if r, n := e.Ratio(now); n < 750 || n > 1000 || r < 0.45 || r > 0.55 {
		t.Errorf("ratio %v total %d", r, n)
	}
}

func TestErrorRateDefaults(t *testing.T) {
	e := NewErrorRate(0, 0)
	if len(e.buckets) != 10 || e.width != int64(time.Second) {
		t.Errorf("defaults: %d buckets of %v, want 10 of 1s", len(e.buckets), time.Duration(e.width))
	}
	e = NewErrorRate(3, 10) // narrower than one ns per bucket
	if e.width != 1 {
		t.Errorf("width %d, want 1", e.width)
	}
}

func TestErrorRateConcurrentUse(t *testing.T) {
	e := NewErrorRate(time.Second, 10)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 2000 {
				now := simEpoch.Add(time.Duration(j) * time.Microsecond)
				e.Record(i == 0, now)
				if r, _ := e.Ratio(now); r < 0 || r > 1 {
					t.Errorf("ratio %v", r)
					return
				}
			}
		})
	}
	wg.Wait()
	if r, n := e.Ratio(simEpoch.Add(2 * time.Millisecond)); n != 8000 || r != 0.25 {
		t.Errorf("ratio %v total %d, want 0.25 8000", r, n)
	}
}

func TestTripwireHysteresis(t *testing.T) {
	w := NewTripwire(0.4, 10)
	steps := []struct {
		ratio float64
		total int
		want  bool
	}{
		{0.39, 100, false}, // below threshold
		{0.9, 9, false},    // too few samples
		{0.4, 10, true},    // at threshold with minSamples: trips
		{0.3, 100, true},   // below threshold but not below half: holds
		{0.2, 100, true},   // exactly half: holds
		{0.19, 100, false}, // below half: resets
		{0.3, 100, false},  // between half and threshold: stays reset
		{0.5, 50, true},
		{0, 0, false}, // emptied window resets
	}
	for i, s := range steps {
		if got := w.Update(s.ratio, s.total); got != s.want {
			t.Fatalf("step %d Update(%v, %d) = %v, want %v", i, s.ratio, s.total, got, s.want)
		}
	}
}

func TestTripwireDefaults(t *testing.T) {
	w := NewTripwire(0, 0) // 0.5 over 20
	if w.Update(0.5, 19) {
		t.Error("tripped below the default 20 samples")
	}
	if w.Update(0.49, 20) {
		t.Error("tripped below the default 0.5 threshold")
	}
	if !w.Update(0.5, 20) {
		t.Error("did not trip at 0.5 over 20")
	}
}

func TestTripwireFollowsErrorRate(t *testing.T) {
	e := NewErrorRate(10*time.Second, 10)
	w := NewTripwire(0.5, 20)
	now := simEpoch.Truncate(time.Second)
	for range 30 {
		e.Record(true, now) // the upstream restarts: every response fails
	}
	if !w.Update(e.Ratio(now)) {
		t.Fatal("not tripped by 30/30 failures")
	}
	now = now.Add(5 * time.Second)
	for range 50 {
		e.Record(false, now) // recovered: 30/80 = 0.375 ≥ 0.25
	}
	if !w.Update(e.Ratio(now)) {
		t.Fatal("reset while the ratio is still above half the threshold")
	}
	now = now.Add(6 * time.Second) // the failures left the window
	if w.Update(e.Ratio(now)) {
		t.Fatal("still tripped with only successes in the window")
	}
}

func BenchmarkErrorRateRecord(b *testing.B) {
	e := NewErrorRate(10*time.Second, 10)
	now := simEpoch
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now = now.Add(time.Microsecond)
		e.Record(i%10 == 0, now)
	}
}
