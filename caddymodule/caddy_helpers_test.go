package caddymodule

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// startCaddy adapts a Caddyfile and runs it in this process until the test
// ends. Caddy is a process-wide singleton: tests using it must not be
// parallel.
func startCaddy(t *testing.T, caddyfile string) {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // toggle state files
	loadCaddyfile(t, caddyfile)
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
}

// loadCaddyfile adapts and loads a Caddyfile into the running Caddy: a
// config reload when one is running.
func loadCaddyfile(t *testing.T, caddyfile string) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, caddyfile)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
}

// countingUpstream is a test homeserver that counts concurrent requests
// (except long-poll /sync, which has its own budget) and holds each one until
// its hold function returns.
type countingUpstream struct {
	cur, peak, total atomic.Int64
	byPath           sync.Map // path -> *atomic.Int64
	hold             func(r *http.Request)
	srv              *http.Server
	addr             string
}

func newCountingUpstream(t *testing.T, hold func(r *http.Request)) *countingUpstream {
	t.Helper()
	u := &countingUpstream{hold: hold}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = l.Addr().String()
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 5 * time.Second}
	go u.srv.Serve(l)
	t.Cleanup(func() { u.srv.Close() })
	return u
}

func (u *countingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.total.Add(1)
	var n int64
	if !strings.HasSuffix(r.URL.Path, "/sync") {
		n = u.cur.Add(1)
		defer u.cur.Add(-1)
	}
	c, _ := u.byPath.LoadOrStore(r.URL.Path, new(atomic.Int64))
	c.(*atomic.Int64).Add(1)
	for p := u.peak.Load(); n > p && !u.peak.CompareAndSwap(p, n); p = u.peak.Load() {
	}
	if u.hold != nil {
		u.hold(r)
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"path":%q}`, r.URL.Path)
}

func (u *countingUpstream) seen(path string) int64 {
	if c, ok := u.byPath.Load(path); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}
