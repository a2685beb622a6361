package fleet

import (
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/fleet/redistest"
	"github.com/mxgate/mxgate/limiter"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// testFleets joins n gateways (g0, g1, ...) to one zone of srv, each with
// its own in-memory stores and metrics, heartbeats them at now and closes
// them when t ends. Nothing runs in the background: tests drive heartbeats
// and resyncs with the virtual clock.
func testFleets(t *testing.T, srv *redistest.Server, n int, now time.Time) []*Fleet {
	t.Helper()
	zone := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	out := make([]*Fleet, n)
	for i := range out {
		f, err := New(Config{Redis: srv.URL(), Name: "g" + string(rune('0'+i)), Zone: zone, Metrics: NewMetrics(),
			CallTimeout: 500 * time.Millisecond}) // generous: the race detector slows everything
		if err != nil {
			t.Fatal(err)
		}
		f.Toggles(limiter.NewMemoryToggles())
		t.Cleanup(f.Close)
		out[i] = f
	}
	for _, f := range out {
		if err := f.members.heartbeat(now); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	for _, f := range out { // everyone sees everyone
		if err := f.members.heartbeat(now); err != nil {
			t.Fatalf("heartbeat: %v", err)
		}
	}
	return out
}
