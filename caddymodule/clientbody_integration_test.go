package caddymodule

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"

	"github.com/mxgate/mxgate/gate"
)

// brokenBodyRequests are requests whose client breaks its own body: chunked
// garbage, and uploads abandoned mid-way (a declared length never sent, then
// the connection closed). Caddy's reverse proxy answers each one 502, as if
// the homeserver had failed.
var brokenBodyRequests = []string{
	"PUT /_matrix/client/v3/rooms/%%21r%%3Ax/send/m.room.message/t%d HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tok\r\nTransfer-Encoding: chunked\r\n\r\nzz-not-a-chunk-size\r\n",
	"POST /_matrix/client/v3/keys/upload?n=%d HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tok\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
	"POST /_matrix/media/v3/upload?n=%d HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer tok\r\nContent-Length: 100000\r\n\r\n{\"partial\":",
}

// sendBroken writes one broken request on a raw connection and closes it
// after a short bounded read (a truncated upload is abandoned, not answered).
func sendBroken(t *testing.T, addr, raw string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(raw, "zz-not-a-chunk-size") {
		time.Sleep(20 * time.Millisecond) // let the upload start before it is abandoned
		return
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		resp.Body.Close()
	}
}

// The failure model through a running Caddy: clients' broken bodies are
// nobody's upstream failure. Thirty of them (three times the failures that
// mark the upstream down, and more than error_shed's min_samples) leave the
// upstream up, sheddable classes unshed, the upstream's 5xx ratio at 0, and
// a healthy request still answered at once.
func TestCaddyBrokenClientBodiesNeverBlameTheUpstream(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			return // the proxy could not send the body; nothing to answer
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{}`)
	}))
	defer up.Close()
	upAddr := strings.TrimPrefix(up.URL, "http://")
	port, admin := testkit.FreePort(t), testkit.FreePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
http://127.0.0.1:%d {
	mxgate {
		ride_through {
			failures 3
			probe_interval 100ms
		}
		error_shed {
			threshold 0.5
			min_samples 5
			window 1m
		}
		herd {
			off
		}
	}
	reverse_proxy %s
}`, admin, port, upAddr))
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	for i := range 30 {
		sendBroken(t, addr, fmt.Sprintf(brokenBodyRequests[i%len(brokenBodyRequests)], i))
	}
	// The gate has seen every broken request once nothing is in flight.
	testkit.Eventually(t, "the broken requests to finish", func() bool {
		done := true
		zoneGates(func(_ string, g *gate.Gate) {
			st := g.Status(time.Now())
			var admitted uint64
			for _, c := range st.Classes {
				admitted += c.Counters.Admitted
			}
			done = done && st.Global.Inflight == 0 && admitted >= 30
		})
		return done
	})
	zoneGates(func(_ string, g *gate.Gate) {
		st := g.Status(time.Now())
		if st.RideThrough.Down {
			t.Errorf("broken client bodies marked the upstream down: %+v", st.RideThrough)
		}
		if st.ErrorShed.Shedding || st.ErrorShed.ErrorRatio != 0 {
			t.Errorf("broken client bodies count as upstream 5xx: %+v", st.ErrorShed)
		}
		if st.Upstream.ErrorRatio != 0 {
			t.Errorf("upstream health blames the upstream: %+v", st.Upstream)
		}
	})
	client := &http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/_matrix/client/v3/search", "/_matrix/client/v3/rooms/%21r%3Ax/messages"} {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s after the broken bodies: %d, want 200 (not held, not shed)", path, resp.StatusCode)
		}
	}
}
