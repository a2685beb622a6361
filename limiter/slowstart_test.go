package limiter

import (
	"sync"
	"testing"
	"time"
)

func TestSlowStartBeforeBeginIsFullLimit(t *testing.T) {
	s := NewSlowStart(10*time.Second, 0.1)
	if got := s.Scale(50, simEpoch); got != 50 {
		t.Errorf("Scale before Begin = %d, want 50", got)
	}
	if s.Ramping(simEpoch) {
		t.Error("Ramping before Begin")
	}
}

func TestSlowStartRampIsMonotoneBoundedAndReachesLimit(t *testing.T) {
	for _, limit := range []int{1, 2, 7, 100, 1000} {
		s := NewSlowStart(10*time.Second, 0.1)
		s.Begin(simEpoch)
		prev := 0
		for ms := int64(0); ms <= 12_000; ms += 37 {
			now := simEpoch.Add(time.Duration(ms) * time.Millisecond)
			got := s.Scale(limit, now)
			if got < 1 || got > limit {
				t.Fatalf("limit %d at +%dms: %d outside [1, %d]", limit, ms, got, limit)
			}
			if got < prev {
				t.Fatalf("limit %d at +%dms: %d after %d, not monotone", limit, ms, got, prev)
			}
			prev = got
		}
		if got := s.Scale(limit, simEpoch.Add(10*time.Second)); got != limit {
			t.Errorf("limit %d after the window: %d", limit, got)
		}
	}
}

func TestSlowStartRampShape(t *testing.T) {
	s := NewSlowStart(10*time.Second, 0.1)
	s.Begin(simEpoch)
	for _, tc := range []struct {
		after time.Duration
		want  int
	}{
		{0, 10},                 // minFraction of 100
		{5 * time.Second, 55},   // halfway: 0.1 + 0.9/2
		{9 * time.Second, 91},   // 0.1 + 0.9×0.9
		{-time.Second, 10},      // clock stepped back: still the start
		{10 * time.Second, 100}, // done
		{time.Hour, 100},        // long done
	} {
		if got := s.Scale(100, simEpoch.Add(tc.after)); got != tc.want {
			t.Errorf("Scale(100) at %v = %d, want %d", tc.after, got, tc.want)
		}
	}
	if !s.Ramping(simEpoch.Add(9*time.Second)) || s.Ramping(simEpoch.Add(10*time.Second)) {
		t.Error("Ramping should be true inside the window and false at its end")
	}
}

func TestSlowStartBeginAgainRestarts(t *testing.T) {
	s := NewSlowStart(10*time.Second, 0.2)
	s.Begin(simEpoch)
	later := simEpoch.Add(20 * time.Second)
	if got := s.Scale(100, later); got != 100 {
		t.Fatalf("after the first ramp: %d, want 100", got)
	}
	s.Begin(later)
	if got := s.Scale(100, later); got != 20 {
		t.Errorf("right after a second Begin: %d, want 20", got)
	}
}

func TestSlowStartDefaultsAndDegenerateLimits(t *testing.T) {
	s := NewSlowStart(0, 7) // both invalid: 30s, 0.1
	s.Begin(simEpoch)
	if got := s.Scale(100, simEpoch); got != 10 {
		t.Errorf("default minFraction: Scale(100) = %d, want 10", got)
	}
	if got := s.Scale(100, simEpoch.Add(29*time.Second)); got == 100 {
		t.Error("default window should still be ramping at 29s")
	}
	if got := s.Scale(100, simEpoch.Add(30*time.Second)); got != 100 {
		t.Errorf("default window: Scale at 30s = %d, want 100", got)
	}
	for _, limit := range []int{0, -5} {
		if got := s.Scale(limit, simEpoch); got != limit {
			t.Errorf("Scale(%d) = %d, want unchanged", limit, got)
		}
	}
}

func TestSlowStartConcurrentUse(t *testing.T) {
	s := NewSlowStart(time.Second, 0.1)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 1000 {
				now := simEpoch.Add(time.Duration(i*1000+j) * time.Millisecond)
				if j%100 == 0 {
					s.Begin(now)
				}
				if got := s.Scale(10, now); got < 1 || got > 10 {
					t.Errorf("Scale = %d", got)
					return
				}
			}
		})
	}
	wg.Wait()
}
