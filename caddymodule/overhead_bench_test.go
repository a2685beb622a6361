package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mxgate/mxgate/internal/testkit"
)

// overheadBody is a profile answer's size class: the cheap endpoint the
// overhead is measured on.
const overheadBody = `{"displayname":"Benchmark User","avatar_url":"mxc://example.org/abcdefghijklmnop"}`

// BenchmarkCaddyHandler is one request through a whole Caddy server —
// Caddy's own request preparation, the route, reverse_proxy to a loopback
// upstream and back — once without mxgate (plain) and once with the mxgate
// handler at its defaults in front (mxgate). The difference between the two
// is what mxgate costs per request; run with -benchmem (allocs/op include
// the in-process upstream's, alike on both sides).
//
// Endpoints: a profile lookup (class other, not coalesced) and /messages
// (class history, coalesced) whose upstream answers as Synapse does,
// Cache-Control: no-cache, no-store, must-revalidate, so every request is
// proxied. Every request carries a token of its own, as bench/overhead.sh
// sends them: the gate's per-token state (the accepted set, the herd
// detector's users) fills as it would with many clients.
func BenchmarkCaddyHandler(b *testing.B) {
	b.Setenv("XDG_DATA_HOME", b.TempDir())
	upstream := startOverheadUpstream(b)
	ports := [2]int{testkit.FreePort(b), testkit.FreePort(b)}
	cfg := fmt.Appendf(nil, `{
	"admin": {"disabled": true, "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "ERROR"}}},
	"apps": {"http": {"servers": {
		"plain": {"listen": ["127.0.0.1:%[2]d"], "automatic_https": {"disable": true},
			"routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": %[1]q}]}]}]},
		"mxgate": {"listen": ["127.0.0.1:%[3]d"], "automatic_https": {"disable": true},
			"routes": [{"handle": [{"handler": "mxgate", "state_file": "off"},
				{"handler": "reverse_proxy", "upstreams": [{"dial": %[1]q}]}]}]}
	}}}
}`, upstream, ports[0], ports[1])
	if err := caddy.Load(cfg, true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = caddy.Stop() })
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		b.Fatal(err)
	}
	servers := app.(*caddyhttp.App).Servers

	for _, ep := range []struct{ name, target string }{
		{"other", "/_matrix/client/v3/profile/@u:x"},
		{"history_nostore", "/_matrix/client/v3/rooms/%21abc%3Aexample.org/messages?dir=b&limit=20"},
	} {
		for _, side := range []string{"plain", "mxgate"} {
			srv := servers[side]
			b.Run(ep.name+"/"+side, func(b *testing.B) {
				b.ReportAllocs()
				token := 0
				for b.Loop() {
					token++
					req := httptest.NewRequest(http.MethodGet, ep.target, nil)
					req.Header.Set("Authorization", "Bearer syt_benchmark_"+side+"_"+strconv.Itoa(token))
					w := httptest.NewRecorder()
					srv.ServeHTTP(w, req)
					if w.Code != http.StatusOK || w.Body.Len() != len(overheadBody) {
						b.Fatalf("%s: status %d, %d bytes", side, w.Code, w.Body.Len())
					}
				}
			})
		}
	}
}

// startOverheadUpstream serves the benchmark's answers on loopback: every
// answer the same small JSON body, /messages marked no-store as Synapse
// marks it.
func startOverheadUpstream(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Content-Type", "application/json")
			h.Set("Content-Length", strconv.Itoa(len(overheadBody)))
			if strings.HasSuffix(r.URL.Path, "/messages") {
				h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
			}
			_, _ = w.Write([]byte(overheadBody))
		})}
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}
