package limiter

import (
	"context"
	"testing"
	"time"
)

// A hold stops all admission without touching operator pauses; PassOne
// lets exactly one waiter through it; releasing the hold admits the rest.
func TestAdmissionHoldAndPassOne(t *testing.T) {
	a := NewAdmission(Config{Classes: []ClassLimits{{MaxInflight: 10, Queue: 10, QueueTimeout: 5 * time.Second}, {MaxInflight: 10, Queue: 10}}}, nil)
	a.SetPaused(1, true)
	a.SetHeld(true)
	if a.PassOne() {
		t.Fatal("PassOne with nobody waiting")
	}
	admitted := make(chan error, 3)
	for range 3 {
		go func() {
			_, err := a.Acquire(context.Background(), 0, LaneNormal)
			admitted <- err
		}()
	}
	waitQueued(t, a, 0, 3)
	if !a.PassOne() {
		t.Fatal("PassOne admitted nobody")
	}
	if err := <-admitted; err != nil {
		t.Fatal(err)
	}
	select {
	case <-admitted:
		t.Fatal("a second waiter passed the hold")
	case <-time.After(50 * time.Millisecond):
	}
	if got := a.Inflight(0); got != 1 {
		t.Fatalf("Inflight = %d, want 1", got)
	}
	a.SetHeld(false)
	for range 2 {
		if err := <-admitted; err != nil {
			t.Fatal(err)
		}
	}
	if got := a.Inflight(0); got != 3 {
		t.Fatalf("Inflight = %d, want 3", got)
	}
	_, classes := a.Snapshot()
	if !classes[1].Paused {
		t.Fatal("releasing the hold undid an operator pause")
	}
}
