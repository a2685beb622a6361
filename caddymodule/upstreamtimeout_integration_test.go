package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/internal/testkit"
)

// Through a running Caddy: a homeserver that accepts a request and never
// answers is cut at the class's upstream_timeout with Caddy's 504 (not a
// 499 for a client that left, not a 502 for a dead upstream), the slot is
// freed, ride-through does not hold traffic for it, and long-poll /sync,
// which has no such timeout, is left to the homeserver.
func TestCaddyUpstreamTimeoutAnswers504(t *testing.T) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/sync") {
			time.Sleep(900 * time.Millisecond)
		} else {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, `{}`)
	}))
	defer up.Close()
	defer close(release) // before up.Close: the stuck handlers return
	port := testkit.FreePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin off
}
http://127.0.0.1:%d {
	mxgate {
		state_file off
		ride_through
		class history {
			upstream_timeout 300ms
		}
	}
	reverse_proxy %s
}`, port, strings.TrimPrefix(up.URL, "http://")))
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (*http.Response, time.Duration) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
		req.Header.Set("Authorization", "Bearer tok")
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, time.Since(start)
	}
	for range 4 { // more than ride-through's failures: still not "down"
		resp, took := get("/_matrix/client/v3/rooms/%21r%3Ax/messages")
		if resp.StatusCode != http.StatusGatewayTimeout || took < 300*time.Millisecond || took > 5*time.Second {
			t.Fatalf("a stuck history request: %d after %v, want 504 after 300ms", resp.StatusCode, took)
		}
	}
	resp, _ := get("/_matrix/client/v3/sync?since=s1&timeout=30000")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("a long-poll of 900ms: %d, want 200", resp.StatusCode)
	}
	zoneGates(func(_ string, g *gate.Gate) {
		st := g.Status(time.Now())
		if st.Global.Inflight != 0 || st.RideThrough.Down {
			t.Errorf("after the timeouts: %d in flight, ride-through down %v", st.Global.Inflight, st.RideThrough.Down)
		}
	})
}
