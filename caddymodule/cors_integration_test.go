package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/internal/testkit"
)

// corsRequest sends method path to base with an Origin (and, for a
// preflight, Access-Control-Request-Method) as a browser would.
func corsRequest(t *testing.T, base, method, path string, preflight bool) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Origin", "http://127.0.0.1:1")
	if preflight {
		req.Header.Set("Access-Control-Request-Method", "POST")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func checkCORS(t *testing.T, what string, h http.Header, origin string) {
	t.Helper()
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin":   origin,
		"Access-Control-Allow-Methods":  gate.DefaultCORSAllowMethods,
		"Access-Control-Allow-Headers":  gate.DefaultCORSAllowHeaders,
		"Access-Control-Expose-Headers": gate.DefaultCORSExposeHeaders,
	} {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: %s = %q, want [%q]", what, k, got, v)
		}
	}
}

// In Caddy: a 429 rendered by handle_errors and Caddy's own 502 for a dead
// upstream carry mxgate's CORS headers, and so does the 204 mxgate answers
// a preflight with when the upstream refuses it; a preflight passes while
// its class is shed; the homeserver's own answers keep exactly its headers.
func TestCaddyCORSOnOwnAnswersOnly(t *testing.T) {
	up := newCountingUpstream(t, nil)
	port, admin, dead := testkit.FreePort(t), testkit.FreePort(t), testkit.FreePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
http://127.0.0.1:%d {
	mxgate {
		handle_errors
		shed search
		cors {
			allow_origin https://app.example
		}
	}
	reverse_proxy /dead/* 127.0.0.1:%d
	reverse_proxy %s
	handle_errors {
		respond "{http.vars.mxgate_reason}" {err.status_code}
	}
}`, admin, port, dead, up.addr))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	resp := corsRequest(t, base, "POST", "/_matrix/client/v3/search", false)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("shed search: %d", resp.StatusCode)
	}
	checkCORS(t, "429 through handle_errors", resp.Header, "https://app.example")

	resp = corsRequest(t, base, "GET", "/dead/x", false)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("dead upstream: %d", resp.StatusCode)
	}
	checkCORS(t, "Caddy's 502", resp.Header, "https://app.example")

	// A preflight to a homeserver that refuses connections: mxgate answers.
	resp = corsRequest(t, base, "OPTIONS", "/dead/x", true)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight to a dead upstream: %d", resp.StatusCode)
	}
	checkCORS(t, "preflight answered by mxgate", resp.Header, "https://app.example")

	resp = corsRequest(t, base, "OPTIONS", "/_matrix/client/v3/search", true)
	if resp.StatusCode != http.StatusOK || up.seen("/_matrix/client/v3/search") != 1 {
		t.Fatalf("preflight of a shed class: %d, upstream saw %d", resp.StatusCode, up.seen("/_matrix/client/v3/search"))
	}
	for k := range resp.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("the homeserver's answer got mxgate's %s", k)
		}
	}
}
