package gate

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
	"github.com/mxgate/mxgate/matrix"
)

// closedAddr is a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A wrong probe address (nothing ever listens there) must not turn a
// restart into a permanent hold: the probe falls back to a canary request,
// whose answer ends the hold, and the address is reported.
func TestWrongProbeAddressDoesNotHoldTraffic(t *testing.T) {
	cfg := rideThroughConfig()
	cfg.UpstreamAddr = closedAddr(t)
	g := newTestGate(t, cfg, Options{})
	up := &restartingUpstream{latency: time.Millisecond}
	up.down.Store(true)
	done := make(chan int, 1)
	go func() { done <- serveNext(g, up, "GET", historyPath, "").Code }()
	testkit.Eventually(t, "the upstream marked down", func() bool { return g.Status(time.Now()).RideThrough.Down })
	up.down.Store(false) // the homeserver is back; its probe address never answers
	select {
	case code := <-done:
		if code != http.StatusOK {
			t.Fatalf("held request got %d, want 200", code)
		}
	case <-time.After(testkit.WaitBound):
		t.Fatal("a wrong probe address holds traffic after the homeserver is back")
	}
	if st := g.Status(time.Now()).RideThrough; st.Down || !st.ProbeAddressSuspect {
		t.Fatalf("after the return: %+v, want up and the probe address reported", st)
	}
}

// A stuck upstream frees every slot of a coalescing class within the
// class's deadline plus the orphan grace once its clients have left: the
// detached fetch nobody waits for is cancelled, and a new request is
// admitted rather than refused for a full class.
func TestStuckUpstreamFreesSlotsAfterClientsLeave(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	cfg := DefaultConfig()
	cfg.Herd.MinUsers = 0
	cfg.Classes[matrix.RoomState].MaxInflight = 2
	cfg.Classes[matrix.RoomState].QueueTimeout = 300 * time.Millisecond
	g := newTestGate(t, cfg, Options{})
	stuck := func(w http.ResponseWriter, r *http.Request) error {
		<-r.Context().Done() // only its context ends it
		return r.Context().Err()
	}
	clients, leave := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer leave()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			// Two distinct coalescing groups fill both slots; the rest wait.
			path := []string{statePath, statePath + "?x=1"}[i%2]
			req := httptest.NewRequest(http.MethodGet, path, nil).WithContext(clients)
			req.Header.Set("Authorization", "Bearer tok")
			g.ServeNext(httptest.NewRecorder(), req, stuck)
		})
	}
	<-clients.Done() // every client has left (a leader's handler still runs its fetch)
	left := time.Now()
	testkit.Eventually(t, "the slots to be freed", func() bool {
		return g.Status(time.Now()).Classes[matrix.RoomState].Inflight == 0
	})
	if took, bound := time.Since(left), cfg.Classes[matrix.RoomState].QueueTimeout+coalesceOrphanGrace; took > bound+2*time.Second {
		t.Fatalf("slots freed %v after the clients left, want within %v (+ slack)", took, bound)
	}
	wg.Wait() // the leaders' handlers end with their cancelled fetches
	ok := func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(http.StatusOK); return nil }
	req := httptest.NewRequest(http.MethodGet, statePath+"?fresh=1", nil)
	if err := g.ServeNext(httptest.NewRecorder(), req, ok); err != nil {
		t.Fatalf("a new request after the stuck ones: %v", err)
	}
}
