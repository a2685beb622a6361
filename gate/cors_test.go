package gate

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// wantCORS fails unless h carries exactly one of each default CORS header.
func wantCORS(t *testing.T, what string, h http.Header) {
	t.Helper()
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin":   DefaultCORSAllowOrigin,
		"Access-Control-Allow-Methods":  DefaultCORSAllowMethods,
		"Access-Control-Allow-Headers":  DefaultCORSAllowHeaders,
		"Access-Control-Expose-Headers": DefaultCORSExposeHeaders,
	} {
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s: %s = %q, want [%q]", what, k, got, v)
		}
	}
}

// wantNoCORS fails if h carries any CORS header.
func wantNoCORS(t *testing.T, what string, h http.Header) {
	t.Helper()
	for k := range h {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("%s: unexpected %s: %q", what, k, h.Values(k))
		}
	}
}

// holdUpstream answers each request once released, so a test can keep a
// class's slots taken.
type holdUpstream struct {
	arrived chan struct{}
	release chan struct{}
}

func newHoldUpstream() *holdUpstream {
	return &holdUpstream{arrived: make(chan struct{}, 16), release: make(chan struct{})}
}

func (u *holdUpstream) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	u.arrived <- struct{}{}
	<-u.release
	w.Write([]byte(`{}`))
}

// occupy sends one request that takes a slot and waits until it is at the
// upstream; the returned func releases it and waits for its answer.
func occupy(t *testing.T, h http.Handler, u *holdUpstream, path, token string) func() {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		serveReq(h, "GET", path, token)
	}()
	select {
	case <-u.arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("occupying request never reached the upstream")
	}
	return func() { close(u.release); wg.Wait() }
}

// Every kind of 429 the gate writes carries the CORS headers, once each,
// written whole (Write) or as headers only for handle_errors (SetHeaders).
func TestEvery429CarriesCORS(t *testing.T) {
	const roomState = "/_matrix/client/v3/rooms/%21r%3Ax/state"
	cases := map[string]func(t *testing.T) *httptest.ResponseRecorder{
		"shed": func(t *testing.T) *httptest.ResponseRecorder {
			cfg := DefaultConfig()
			cfg.Shed = []matrix.Class{matrix.Search}
			return serveReq(newTestGate(t, cfg, Options{}).Middleware(okHandler()), "POST", searchURL, "tok")
		},
		"brownout": func(t *testing.T) *httptest.ResponseRecorder {
			g := newTestGate(t, DefaultConfig(), Options{})
			now := time.Now()
			if err := g.SetToggle(limiter.Toggle{Target: "*", Priority: "normal", Mode: limiter.ModeShed,
				Reason: "brownout", Since: now, Until: now.Add(time.Minute)}); err != nil {
				t.Fatal(err)
			}
			return serveReq(g.Middleware(okHandler()), "GET", roomState, "tok")
		},
		"rate limited": func(t *testing.T) *httptest.ResponseRecorder {
			cfg := DefaultConfig()
			cfg.Classes[matrix.Search].Rate, cfg.Classes[matrix.Search].Burst = 0.001, 1
			h := newTestGate(t, cfg, Options{}).Middleware(okHandler())
			serveReq(h, "POST", searchURL, "tok")
			return serveReq(h, "POST", searchURL, "tok")
		},
		"queue full": func(t *testing.T) *httptest.ResponseRecorder {
			cfg := DefaultConfig()
			cfg.Herd.MinUsers = 0
			cfg.Classes[matrix.RoomState] = matrix.Limits{MaxInflight: 1}
			u := newHoldUpstream()
			h := newTestGate(t, cfg, Options{}).Middleware(u)
			defer occupy(t, h, u, roomState, "a")()
			return serveReq(h, "GET", roomState, "b")
		},
		"queue timeout": func(t *testing.T) *httptest.ResponseRecorder {
			cfg := DefaultConfig()
			cfg.Herd.MinUsers = 0
			cfg.Classes[matrix.RoomState] = matrix.Limits{MaxInflight: 1, Queue: 1, QueueTimeout: time.Millisecond}
			u := newHoldUpstream()
			h := newTestGate(t, cfg, Options{}).Middleware(u)
			defer occupy(t, h, u, roomState, "a")()
			return serveReq(h, "GET", roomState, "b")
		},
		"herd": func(t *testing.T) *httptest.ResponseRecorder {
			cfg := DefaultConfig()
			cfg.Herd.MinUsers = 2
			cfg.Classes[matrix.RoomState] = matrix.Limits{MaxInflight: 1}
			u := newHoldUpstream()
			g := newTestGate(t, cfg, Options{})
			for _, tok := range []string{"a", "b"} { // herds count only tokens the homeserver accepted
				serveReq(g.Middleware(okHandler()), "GET", "/_matrix/client/v3/sync?since=s", tok)
			}
			h := g.Middleware(u)
			defer occupy(t, h, u, roomState, "a")()
			rec := serveReq(h, "GET", roomState, "b")
			if len(g.Status(time.Now()).Herds) == 0 {
				t.Error("no herd detected: this is not a herd 429")
			}
			return rec
		},
		"upstream down": func(t *testing.T) *httptest.ResponseRecorder {
			cfg := rideThroughConfig()
			g := newTestGate(t, cfg, Options{})
			up := &restartingUpstream{}
			up.down.Store(true)
			serveNext(g, up, "POST", "/_matrix/client/v3/createRoom", "{}") // refused: marks it down
			if !g.adm.Down() {
				t.Fatal("a refused connection did not mark the upstream down")
			}
			return serveNext(g, up, "POST", "/_matrix/client/v3/createRoom", "{}")
		},
	}
	reasons := map[string]string{"shed": "shed", "brownout": "shed", "rate limited": "too many",
		"queue full": "at capacity", "queue timeout": "timed out", "herd": "at capacity", "upstream down": "upstream unavailable"}
	for name, run := range cases {
		t.Run(name, func(t *testing.T) {
			rec := run(t)
			if body := limitExceeded(t, rec); !strings.Contains(body.Error, reasons[name]) {
				t.Errorf("reason %q, want one about %q", body.Error, reasons[name])
			}
			wantCORS(t, name, rec.Header())
		})
	}

	// handle_errors: the glue sets the headers and Caddy renders the body.
	cfg := DefaultConfig()
	cfg.Shed = []matrix.Class{matrix.Search}
	err := newTestGate(t, cfg, Options{}).ServeNext(httptest.NewRecorder(), httptest.NewRequest("POST", searchURL, nil), nil)
	var rej *Rejection
	if !errors.As(err, &rej) {
		t.Fatalf("shed search: %v", err)
	}
	h := http.Header{}
	rej.SetHeaders(h)
	wantCORS(t, "SetHeaders", h)
}

// CORS can be turned off or given other values; mxgate's own 502 carries
// it too; the upstream's answers pass through as written, without a CORS
// header added or duplicated.
func TestCORSConfigAndPassThrough(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Shed = []matrix.Class{matrix.Search}
	cfg.CORS = CORSConfig{Enabled: true, AllowOrigin: "https://app.example", ExposeHeaders: "Retry-After, X-Custom"}
	rec := serveReq(newTestGate(t, cfg, Options{}).Middleware(okHandler()), "POST", searchURL, "tok")
	if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Errorf("custom allow origin: %q", got)
	}
	if got := rec.Header().Get("Access-Control-Expose-Headers"); got != "Retry-After, X-Custom" {
		t.Errorf("custom expose headers: %q", got)
	}
	if _, ok := rec.Header()["Access-Control-Allow-Methods"]; ok {
		t.Error("an empty value must not be sent")
	}

	cfg.CORS.Enabled = false
	rec = serveReq(newTestGate(t, cfg, Options{}).Middleware(okHandler()), "POST", searchURL, "tok")
	limitExceeded(t, rec)
	wantNoCORS(t, "cors off", rec.Header())

	g := newTestGate(t, DefaultConfig(), Options{})
	withCORS := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Write([]byte(`{}`))
	})
	rec = serveReq(g.Middleware(withCORS), "GET", "/_matrix/client/v3/sync?since=s", "tok")
	if got := rec.Header().Values("Access-Control-Allow-Origin"); len(got) != 1 {
		t.Errorf("upstream's own CORS header: %q, want it once", got)
	}
	if _, ok := rec.Header()["Access-Control-Expose-Headers"]; ok {
		t.Error("a header the upstream did not send was added to its answer")
	}
	rec = serveReq(g.Middleware(okHandler()), "GET", "/_matrix/client/v3/sync?since=s", "tok")
	wantNoCORS(t, "upstream answer without CORS", rec.Header())

	// Proxy's own 502, for an upstream that refuses connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	ln.Close()
	rec = serveReq(g.Proxy(httputil.NewSingleHostReverseProxy(closed)), "POST", "/_matrix/client/v3/createRoom", "tok")
	if rec.Code != http.StatusBadGateway {
		t.Fatalf("own 502: %d", rec.Code)
	}
	wantCORS(t, "own 502", rec.Header())
}
