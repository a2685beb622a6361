package fleet

import (
	"testing"
	"time"

	"github.com/mxgate/mxgate/fleet/redistest"
	"github.com/mxgate/mxgate/limiter"
)

// With the background loop running, a toggle put on one gateway is in
// force on the other within a second (pub/sub), and a gateway that closes
// leaves the fleet at once.
func TestBackgroundLoopPropagatesAndLeaves(t *testing.T) {
	srv := redistest.Start(t)
	var fs []*Fleet
	for _, name := range []string{"a", "b"} {
		f, err := New(Config{Redis: srv.URL(), Name: name, Zone: "loop", CallTimeout: 500 * time.Millisecond,
			ResyncInterval: time.Hour}) // no periodic resync: only pub/sub can deliver in time
		if err != nil {
			t.Fatal(err)
		}
		f.Toggles(limiter.NewMemoryToggles())
		f.Start()
		t.Cleanup(f.Close)
		fs = append(fs, f)
	}
	now := time.Now()
	if err := fs[0].toggles.Put(shed("search", now, time.Minute)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Second)
	for len(fs[1].toggles.Active(time.Now())) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the toggle did not reach the other gateway within 1s")
		}
		time.Sleep(10 * time.Millisecond) // polling the other gateway's loop, bounded above
	}
	// b sees a at its next heartbeat; then a leaves and b is alone again.
	waitCount := func(f *Fleet, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for f.members.count() != n {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %d gateways, want %d", f.cfg.Name, f.members.count(), n)
			}
			time.Sleep(20 * time.Millisecond) // polling the heartbeat loop, bounded above
		}
	}
	waitCount(fs[1], 2)
	fs[0].Close()
	waitCount(fs[1], 1)
}
