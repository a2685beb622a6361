package gate

import (
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
