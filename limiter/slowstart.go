package limiter

import (
	"math"
	"sync"
	"time"
)

// SlowStart ramps admitted concurrency up after the upstream returns from an
// outage, so the clients that waited (or retried) through it do not arrive
// as one herd at a cold upstream. During the ramp the limit is scaled
// linearly from minFraction of itself to all of it over the window.
//
// The zero value is not usable; use NewSlowStart. A SlowStart is safe for
// concurrent use.
type SlowStart struct {
	window      time.Duration
	minFraction float64

	mu     sync.Mutex
	began  time.Time
	active bool // Begin has been called at least once
}

// NewSlowStart returns a SlowStart that ramps over window starting at
// minFraction of the limit. window ≤ 0 means the default 30s; minFraction
// outside (0, 1] means the default 0.1. It is not ramping until Begin.
func NewSlowStart(window time.Duration, minFraction float64) *SlowStart {
	if window <= 0 {
		window = 30 * time.Second
	}
	if !(minFraction > 0 && minFraction <= 1) {
		minFraction = 0.1
	}
	return &SlowStart{window: window, minFraction: minFraction}
}

// Begin starts (or restarts) the ramp at now: call it when the upstream
// answers again after an outage.
func (s *SlowStart) Begin(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.began = now
	s.active = true
}

// Ramping reports whether now is within the ramp window of the last Begin.
func (s *SlowStart) Ramping(now time.Time) bool {
	_, ramping := s.fraction(now)
	return ramping
}

// Scale returns the limit to admit at now. For limit ≥ 1 the result is in
// [1, limit], non-decreasing in now (for a fixed limit and Begin), and equal
// to limit once the window has passed since Begin (or if Begin was never
// called). A limit below 1 is returned unchanged: there is nothing to ramp.
func (s *SlowStart) Scale(limit int, now time.Time) int {
	f, ramping := s.fraction(now)
	if !ramping || limit < 1 {
		return limit
	}
	return min(max(int(math.Round(float64(limit)*f)), 1), limit)
}

// fraction is the share of the limit admitted at now and whether the ramp is
// still on. A now before Begin (a clock stepped back) counts as the ramp's
// start, so the result never jumps up by going back in time.
func (s *SlowStart) fraction(now time.Time) (float64, bool) {
	s.mu.Lock()
	began, active := s.began, s.active
	s.mu.Unlock()
	if !active {
		return 1, false
	}
	elapsed := max(now.Sub(began), 0)
	if elapsed >= s.window {
		return 1, false
	}
	return s.minFraction + (1-s.minFraction)*float64(elapsed)/float64(s.window), true
}
