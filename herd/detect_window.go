package herd

import (
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// userWindow tracks the distinct users of one (class, room) in a sliding
// window, in bounded memory.
//
// It keeps at most cap users with the time each was last seen, ordered by
// that time, evicting the least recently seen when full. cap >= MinUsers
// suffices to answer "are there at least MinUsers distinct users in the
// window?" exactly: if D users were seen in the window and D <= cap, all of
// them are held (they are more recent than anyone outside it); if D > cap,
// cap users all inside the window are held, and cap >= MinUsers. The reported
// user count is min(D, cap); cap = 2*MinUsers keeps it informative well past
// the threshold. A flat sorted slice of 16-byte entries beats a map plus a
// list here: cap is small, scans are cache-friendly, and a full window costs
// 16*cap bytes.
//
// Timestamps are clamped to be non-decreasing per key (an observation
// reported slightly out of order counts as "now"), which keeps the slice
// sorted.
type userWindow struct {
	seen  []seenUser // ascending by at
	rates rateBuckets
	// herd state
	active bool
	since  time.Time
	// fleet is the last fleet-wide distinct-user count and when it was
	// taken (detect_fleet.go).
	fleet   int
	fleetAt int64
}

type seenUser struct {
	user matrix.TokenID
	at   int64 // unix nanoseconds
}

// observe records user at t (unix ns) and returns the distinct users in the
// window ending at t.
func (w *userWindow) observe(user matrix.TokenID, t int64, window time.Duration, capUsers int) int {
	if n := len(w.seen); n > 0 && t < w.seen[n-1].at {
		t = w.seen[n-1].at
	}
	w.prune(t, window)
	w.rates.add(t, window)
	for i := range w.seen {
		if w.seen[i].user == user {
			// Move to the end (most recent), keeping the order.
			copy(w.seen[i:], w.seen[i+1:])
			w.seen[len(w.seen)-1] = seenUser{user: user, at: t}
			return len(w.seen)
		}
	}
	if len(w.seen) >= capUsers {
		copy(w.seen, w.seen[1:])
		w.seen = w.seen[:len(w.seen)-1]
	}
	w.seen = append(w.seen, seenUser{user: user, at: t})
	return len(w.seen)
}

// prune forgets users last seen before the window ending at t and returns
// how many remain.
func (w *userWindow) prune(t int64, window time.Duration) int {
	cutoff := t - int64(window)
	i := 0
	for i < len(w.seen) && w.seen[i].at < cutoff {
		i++
	}
	if i > 0 {
		// Shift down rather than reslice, so the backing array is reused
		// and never grows past cap.
		n := copy(w.seen, w.seen[i:])
		w.seen = w.seen[:n]
	}
	return len(w.seen)
}

// rateBuckets counts requests in the window with numRateBuckets fixed
// counters, each covering window/numRateBuckets.
type rateBuckets struct {
	slot [numRateBuckets]int64 // bucket number each counter belongs to
	n    [numRateBuckets]uint32
}

const numRateBuckets = 8

func bucketWidth(window time.Duration) int64 {
	return max(int64(window)/numRateBuckets, 1)
}

func (b *rateBuckets) add(t int64, window time.Duration) {
	s := t / bucketWidth(window)
	i := s % numRateBuckets
	if b.slot[i] != s {
		b.slot[i], b.n[i] = s, 0
	}
	b.n[i]++
}

// perSecond returns the requests per second over the window ending at t.
func (b *rateBuckets) perSecond(t int64, window time.Duration) float64 {
	cur := t / bucketWidth(window)
	var total uint64
	for i := range b.slot {
		if b.slot[i] > cur-numRateBuckets && b.slot[i] <= cur {
			total += uint64(b.n[i])
		}
	}
	return float64(total) / window.Seconds()
}
