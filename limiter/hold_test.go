package limiter

import (
	"context"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
)

// A liveness hold stops all admission without touching operator pauses; a
// canary probe lets exactly one waiter through it; its answer ends the hold
// and admits the rest.
func TestAdmissionHoldAndCanary(t *testing.T) {
	clock := testkit.NewClock(time.Unix(1000, 0))
	a := NewAdmission(Config{Classes: []ClassLimits{{MaxInflight: 10, Queue: 10, QueueTimeout: 5 * time.Second}, {MaxInflight: 10, Queue: 10}},
		Liveness: LivenessConfig{Enabled: true, Failures: 3, ProbeInterval: time.Second}}, clock.Now)
	a.SetPaused(1, true)
	first, err := a.Acquire(context.Background(), 0, LaneNormal)
	if err != nil {
		t.Fatal(err)
	}
	if tr := first.Done(Result{End: clock.Now(), Evidence: EvidenceRefused}); tr != WentDown {
		t.Fatalf("a refused connection: %v, want WentDown", tr)
	}
	if a.Probe(clock.Now()) {
		t.Fatal("dial without a probe address")
	}
	admitted := make(chan Ticket, 3)
	for range 3 {
		go func() {
			tk, err := a.Acquire(context.Background(), 0, LaneNormal)
			if err != nil {
				t.Error(err)
			}
			admitted <- tk
		}()
	}
	waitQueued(t, a, 0, 3)
	a.Probe(clock.Now()) // within the first interval: nothing passes
	clock.Advance(time.Second)
	a.Probe(clock.Now())
	canary := <-admitted
	select {
	case <-admitted:
		t.Fatal("a second waiter passed the hold")
	case <-time.After(50 * time.Millisecond):
	}
	if _, cs := a.Snapshot(); cs[0].Inflight != 1 {
		t.Fatalf("Inflight = %d, want 1", cs[0].Inflight)
	}
	if tr := canary.Done(Result{End: clock.Now(), Evidence: EvidenceAnswered}); tr != CameBack {
		t.Fatalf("the canary's answer: %v, want CameBack", tr)
	}
	for range 2 {
		<-admitted
	}
	_, classes := a.Snapshot()
	if classes[0].Inflight != 2 {
		t.Fatalf("Inflight = %d, want 2", classes[0].Inflight)
	}
	if !classes[1].Paused {
		t.Fatal("releasing the hold undid an operator pause")
	}
}
