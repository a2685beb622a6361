package caddymodule

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
)

// In a class whose answers are slow, a coalescing leader's fetch is
// detached from its client; once the client has gone and nobody waits, the
// fetch is cancelled, and Caddy's reverse proxy answers that cancelled
// request 499 without an error. The client that asks again is served by a
// fetch of its own, never by a recorded 499.
func TestCaddyOrphanCancelledFetchIsNotServedAgain(t *testing.T) {
	const slowRoom, stuckRoom = "/_matrix/client/v3/rooms/%21slow%3Ax/state", "/_matrix/client/v3/rooms/%21stuck%3Ax/state"
	var stuckOnce atomic.Bool
	up := newCountingUpstream(t, func(r *http.Request) {
		switch r.URL.RawPath {
		case slowRoom:
			time.Sleep(150 * time.Millisecond) // makes room_state a slow class: its leaders detach
		case stuckRoom:
			if stuckOnce.CompareAndSwap(false, true) {
				<-r.Context().Done() // stuck until the gate cancels the orphaned fetch
			}
		}
	})
	port := testkit.FreePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin off
}
http://127.0.0.1:%d {
	mxgate
	reverse_proxy %s
}`, port, up.addr))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	if resp, _, err := get(context.Background(), base+slowRoom, "alice"); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("priming request: %v %v", resp, err)
	}
	ctx, leave := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer leave()
	if _, _, err := get(ctx, base+stuckRoom, "alice"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the stuck request ended with %v, want the client's own deadline", err)
	}
	// The orphaned fetch is cancelled after the gate's orphan grace (1 s).
	testkit.Eventually(t, "the orphaned fetch to be cancelled", func() bool { return up.cur.Load() == 0 })

	resp, body, err := get(context.Background(), base+stuckRoom, "alice")
	if err != nil || resp.StatusCode != http.StatusOK || string(body) != fmt.Sprintf(`{"path":%q}`, "/_matrix/client/v3/rooms/!stuck:x/state") {
		t.Fatalf("asking again: %v %q %v, want the upstream's own 200", resp, body, err)
	}
	if n := up.seen("/_matrix/client/v3/rooms/!stuck:x/state"); n != 2 {
		t.Fatalf("the upstream saw %d requests for the stuck room, want 2", n)
	}
}
