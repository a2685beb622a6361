package herd

import (
	"testing"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// 20 local users with a fleet count of 60 are a herd at min_users 50; it
// ends a window after the fleet count was last refreshed.
func TestObserveFleetCountsTheWholeFleet(t *testing.T) {
	d := NewDetector(DetectorConfig{Window: 10 * time.Second, MinUsers: 50})
	t0 := time.Unix(1_700_000_000, 0)
	const room = "!r:example.org"
	var active bool
	starts := 0
	for u := range 20 {
		var started bool
		active, started = d.ObserveFleet(matrix.RoomState, room, matrix.TokenID(u+1), 3*(u+1), t0)
		if started {
			starts++
		}
	}
	if !active || starts != 1 {
		t.Fatalf("20 local users seen as 60 fleet-wide: active=%v, declared %d times; want one herd", active, starts)
	}
	if h := d.Active(t0); len(h) != 1 || h[0].Users != 60 {
		t.Fatalf("Active = %+v, want one herd of 60 users", h)
	}
	// Without fresh fleet counts the herd ends with the window.
	if h := d.Active(t0.Add(11 * time.Second)); len(h) != 0 {
		t.Errorf("herd still active a window after the last fleet count: %+v", h)
	}
	// A zero fleet count (store down) leaves the local judgement alone.
	d2 := NewDetector(DetectorConfig{Window: 10 * time.Second, MinUsers: 50})
	if active, _ := d2.ObserveFleet(matrix.RoomState, room, 1, 0, t0); active {
		t.Error("one local user with no fleet count made a herd")
	}
}
