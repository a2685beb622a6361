package limiter

import (
	"sync"
	"time"
)

// ErrorRate counts upstream outcomes over a sliding window made of a fixed
// ring of buckets, so its memory does not depend on traffic. A bucket covers
// window/buckets; the oldest bucket drops out whole, so the effective window
// is between window − window/buckets and window.
//
// Times are wall-clock (they are bucketed by UnixNano), so the zero Time is
// not a valid now. A record older than the window is dropped. ErrorRate is
// safe for concurrent use.
type ErrorRate struct {
	width int64 // bucket width in nanoseconds, ≥ 1

	mu      sync.Mutex
	buckets []errorBucket
}

type errorBucket struct {
	epoch  int64 // UnixNano / width of the span this bucket holds
	total  int
	failed int
}

// NewErrorRate returns an ErrorRate over window split into buckets.
// window ≤ 0 means the default 10s; buckets < 1 means the default 10.
func NewErrorRate(window time.Duration, buckets int) *ErrorRate {
	if window <= 0 {
		window = 10 * time.Second
	}
	if buckets < 1 {
		buckets = 10
	}
	return &ErrorRate{
		width:   max(int64(window)/int64(buckets), 1),
		buckets: make([]errorBucket, buckets),
	}
}

// Record counts one upstream response at now; failed is a 5xx or a failure
// to connect or read the response.
func (e *ErrorRate) Record(failed bool, now time.Time) {
	epoch := e.epoch(now)
	e.mu.Lock()
	defer e.mu.Unlock()
	b := &e.buckets[e.slot(epoch)]
	switch {
	case b.epoch == epoch:
	case b.epoch < epoch:
		*b = errorBucket{epoch: epoch}
	default:
		return // the slot already holds a newer span: this record expired
	}
	b.total++
	if failed {
		b.failed++
	}
}

// Ratio returns the share of failed responses among the total recorded in
// the window ending at now; ratio is 0 when total is 0.
func (e *ErrorRate) Ratio(now time.Time) (ratio float64, total int) {
	cur := e.epoch(now)
	oldest := cur - int64(len(e.buckets)) + 1
	e.mu.Lock()
	defer e.mu.Unlock()
	failed := 0
	for _, b := range e.buckets {
		if b.epoch >= oldest && b.epoch <= cur {
			total += b.total
			failed += b.failed
		}
	}
	if total == 0 {
		return 0, 0
	}
	return float64(failed) / float64(total), total
}

func (e *ErrorRate) epoch(now time.Time) int64 {
	return now.UnixNano() / e.width
}

func (e *ErrorRate) slot(epoch int64) int {
	n := int64(len(e.buckets))
	return int((epoch%n + n) % n) // non-negative even for pre-1970 times
}

// Tripwire turns an error ratio into an on/off shedding signal with
// hysteresis: it trips when the ratio reaches the threshold over at least
// minSamples responses, and resets only when the ratio falls below half the
// threshold, so a ratio hovering around the threshold does not flap.
//
// Resetting needs no minimum sample count: an emptied window (ratio 0, for
// instance because everything sheddable is being shed) resets it, so the
// tripwire never latches on without current evidence; the next failures trip
// it again.
//
// A Tripwire is safe for concurrent use.
type Tripwire struct {
	threshold  float64
	minSamples int

	mu      sync.Mutex
	tripped bool
}

// NewTripwire returns an untripped Tripwire. threshold outside (0, 1] means
// the default 0.5; minSamples < 1 means the default 20.
func NewTripwire(threshold float64, minSamples int) *Tripwire {
	if !(threshold > 0 && threshold <= 1) {
		threshold = 0.5
	}
	if minSamples < 1 {
		minSamples = 20
	}
	return &Tripwire{threshold: threshold, minSamples: minSamples}
}

// Update feeds the current ratio and sample count (as from ErrorRate.Ratio)
// and returns whether the tripwire is tripped afterwards. A NaN ratio changes
// nothing.
func (t *Tripwire) Update(ratio float64, total int) (tripped bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tripped {
		if ratio < t.threshold/2 {
			t.tripped = false
		}
	} else if total >= t.minSamples && ratio >= t.threshold {
		t.tripped = true
	}
	return t.tripped
}
