package gate

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// Through Proxy, a homeserver restart is invisible to GET clients: the gate
// sees the refused connections, holds the requests and retries them when it
// is back.
func TestProxyRidesThroughRestart(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) })}
	go hs.Serve(l)

	cfg := DefaultConfig()
	cfg.RideThrough = DefaultRideThrough()
	cfg.RideThrough.Enabled = true
	cfg.RideThrough.ProbeInterval = 50 * time.Millisecond
	cfg.RideThrough.SlowStart = 0
	cfg.UpstreamAddr = addr
	g, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	target, _ := url.Parse("http://" + addr)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{DisableKeepAlives: true}
	front := httptest.NewServer(g.Proxy(rp))
	defer front.Close()

	hs.Close() // the homeserver goes away...
	var wg sync.WaitGroup
	codes := make([]int, 10)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(front.URL + "/_matrix/client/v3/rooms/%21r%3Ax/messages")
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	time.Sleep(300 * time.Millisecond)
	// ...and comes back on the same address.
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("address taken meanwhile: %v", err)
	}
	hs2 := &http.Server{Handler: hs.Handler}
	go hs2.Serve(l2)
	defer hs2.Close()
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("request %d got %d during the restart", i, c)
		}
	}
}

// Through Proxy, a GET whose connection the homeserver closes before
// answering (a restart catching a long-poll) is a failed round trip, as
// behind Caddy: ride-through sends it again, and the client gets the answer.
func TestProxyRetriesARoundTripTheUpstreamClosed(t *testing.T) {
	var calls atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.Write([]byte(`{"next_batch":"s2"}`))
	}))
	defer hs.Close()
	cfg := DefaultConfig()
	cfg.RideThrough = DefaultRideThrough()
	cfg.RideThrough.Enabled = true
	cfg.RideThrough.ProbeInterval = 20 * time.Millisecond
	g := newTestGate(t, cfg, Options{})
	target, _ := url.Parse(hs.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rec := serveReq(g.Proxy(rp), "GET", "/_matrix/client/v3/sync?timeout=0", "tok")
	if rec.Code != http.StatusOK || rec.Body.String() != `{"next_batch":"s2"}` || calls.Load() != 2 {
		t.Fatalf("got %d %q after %d round trips, want the second one's answer", rec.Code, rec.Body, calls.Load())
	}
}

// A request httputil.ReverseProxy refuses itself before any round trip (a
// client's non-ASCII Upgrade header, which Go's server accepts as
// obs-text) is not the upstream's failure: a few of them neither mark the
// answering upstream down nor get another client's POST refused.
func TestProxyClientsBadUpgradeIsNotAnUpstreamFailure(t *testing.T) {
	var calls atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Write([]byte(`{}`))
	}))
	defer hs.Close()
	cfg := DefaultConfig()
	cfg.RideThrough = DefaultRideThrough()
	cfg.RideThrough.Enabled = true
	cfg.RideThrough.ProbeInterval = 20 * time.Millisecond
	cfg.Classes[matrix.History].QueueTimeout = 2 * time.Second
	g := newTestGate(t, cfg, Options{})
	target, _ := url.Parse(hs.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	h := g.Proxy(rp)

	var wg sync.WaitGroup
	for range 4 { // a few such requests from one client
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest("GET", "/_matrix/client/v3/rooms/%21r%3Ax/messages", nil)
			req.Header.Set("Authorization", "Bearer attacker")
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "\xffws")
			h.ServeHTTP(httptest.NewRecorder(), req)
		}()
	}
	wg.Wait()
	down := g.adm.Down()
	rec := serveReq(h, "POST", "/_matrix/client/v3/keys/query", "victim")
	if down || rec.Code != http.StatusOK {
		t.Fatalf("a client's malformed Upgrade header: upstream marked down %v (it answered every one of its %d requests), another client's POST got %d %q",
			down, calls.Load(), rec.Code, strings.TrimSpace(rec.Body.String()))
	}
}

// Through Proxy as behind Caddy (caddymodule/upstreamerror.go), a dial
// that fails, even by timing out (an upstream whose address went dark in a
// redeploy), is ErrUpstreamUnreachable: nothing was sent, and a GET rides
// through.
func TestProxyDialTimeoutIsUnreachable(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) }))
	defer hs.Close()
	cfg := DefaultConfig()
	cfg.RideThrough = DefaultRideThrough()
	cfg.RideThrough.Enabled = true
	cfg.RideThrough.ProbeInterval = 20 * time.Millisecond
	cfg.RideThrough.SlowStart = 0
	g := newTestGate(t, cfg, Options{})
	target, _ := url.Parse(hs.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	var dials atomic.Int64
	var d net.Dialer
	rp.Transport = &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if dials.Add(1) <= 2 {
			return nil, &net.OpError{Op: "dial", Net: network, Err: os.ErrDeadlineExceeded}
		}
		return d.DialContext(ctx, network, addr)
	}}
	rec := serveReq(g.Proxy(rp), "GET", "/_matrix/client/v3/rooms/%21r%3Ax/messages", "tok")
	if rec.Code != http.StatusOK || dials.Load() != 3 {
		t.Fatalf("a GET whose dial timed out twice got %d %q after %d dials, want 200 after 3",
			rec.Code, strings.TrimSpace(rec.Body.String()), dials.Load())
	}
}

// A request cut by its class's upstream timeout is answered 504 through
// Proxy, as behind Caddy: the upstream is slow, not failed.
func TestProxyAnswersAnUpstreamTimeout504(t *testing.T) {
	release := make(chan struct{})
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hs.Close()
	defer close(release)
	cfg := DefaultConfig()
	cfg.Classes[matrix.Other].UpstreamTimeout = 50 * time.Millisecond
	g := newTestGate(t, cfg, Options{})
	target, _ := url.Parse(hs.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rec := serveReq(g.Proxy(rp), "GET", "/_matrix/client/v3/profile/%40u%3Ax", "tok")
	if rec.Code != http.StatusGatewayTimeout {
		t.Fatalf("got %d %q, want 504", rec.Code, rec.Body)
	}
}
