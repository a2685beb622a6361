package gate

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// preflight is what a browser sends before a cross-origin request.
func preflight(path, method string) *http.Request {
	r := httptest.NewRequest(http.MethodOptions, path, nil)
	r.Header.Set("Origin", "http://127.0.0.1:9999")
	r.Header.Set("Access-Control-Request-Method", method)
	r.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	return r
}

// homeserverPreflight answers like Synapse: 200 with its CORS headers, and
// counts the preflights it got.
type homeserverPreflight struct{ got atomic.Int64 }

func (h *homeserverPreflight) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		h.got.Add(1)
	}
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Write([]byte(`{}`))
}

// A preflight reaches the homeserver whatever is shed or full: its own
// class, `other` (where OPTIONS would be classed), a brownout at normal
// priority, a class with no room left. It is not counted in any class.
func TestPreflightIsNeverShedQueuedOrCounted(t *testing.T) {
	const send = "/_matrix/client/v3/rooms/%21r%3Ax/send/m.room.message/t1"
	now := time.Now()
	toggle := func(target, priority string) func(*Gate) {
		return func(g *Gate) {
			if err := g.SetToggle(limiter.Toggle{Target: target, Priority: priority, Mode: limiter.ModeShed,
				Reason: "test", Since: now, Until: now.Add(time.Minute)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, tc := range map[string]struct {
		cfg   func(*Config)
		setup func(*Gate)
		path  string
	}{
		"own class shed":   {setup: toggle("send", ""), path: send},
		"other shed":       {setup: toggle("other", ""), path: "/_matrix/client/versions"},
		"normal brownout":  {setup: toggle("*", "normal"), path: "/_matrix/client/v3/sync"},
		"sheddable queued": {setup: func(g *Gate) { toggleMode(t, g, "other", limiter.ModeQueue) }, path: "/_matrix/client/versions"},
		"no room in other": {cfg: func(c *Config) { c.Classes[matrix.Other] = matrix.Limits{MaxInflight: 0, Queue: 0}; c.MaxInflight = 0 }, path: "/x"},
		"rate limited other": {cfg: func(c *Config) { c.Classes[matrix.Other].Rate, c.Classes[matrix.Other].Burst = 0.001, 1 },
			setup: func(g *Gate) { serveReq(g.Middleware(okHandler()), "GET", "/_matrix/client/versions", "") }, path: "/_matrix/client/versions"},
	} {
		t.Run(name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			g := newTestGate(t, cfg, Options{})
			if tc.setup != nil {
				tc.setup(g)
			}
			before := totalOutcomes(g)
			hs := &homeserverPreflight{}
			rec := httptest.NewRecorder()
			g.Middleware(hs).ServeHTTP(rec, preflight(tc.path, "PUT"))
			if rec.Code != http.StatusOK || hs.got.Load() != 1 {
				t.Fatalf("preflight: status %d, homeserver saw %d", rec.Code, hs.got.Load())
			}
			if got := rec.Header().Values("Access-Control-Allow-Origin"); len(got) != 1 {
				t.Errorf("homeserver's CORS header: %q, want it once", got)
			}
			if after := totalOutcomes(g); after != before {
				t.Errorf("preflight counted: outcomes %d -> %d", before, after)
			}
		})
	}
}

// toggleMode sets class to mode for a minute.
func toggleMode(t *testing.T, g *Gate, class string, mode limiter.Mode) {
	t.Helper()
	now := time.Now()
	if err := g.SetToggle(limiter.Toggle{Target: class, Mode: mode, Reason: "test", Since: now, Until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
}

// totalOutcomes is the sum of every class's outcome counters.
func totalOutcomes(g *Gate) uint64 {
	var n uint64
	for c := range g.counters {
		for i := range g.counters[c] {
			n += g.counters[c][i].Load()
		}
	}
	return n
}

// While the homeserver is down — held by ride-through, or refusing
// connections with ride-through off — mxgate answers a preflight itself
// with 204 and its CORS headers; with CORS off it does not.
func TestPreflightAnsweredByGateWhileHomeserverDown(t *testing.T) {
	t.Run("held", func(t *testing.T) {
		g := newTestGate(t, rideThroughConfig(), Options{})
		up := &restartingUpstream{}
		up.down.Store(true)
		serveNext(g, up, "POST", "/_matrix/client/v3/createRoom", "{}")
		if !g.adm.Down() {
			t.Fatal("upstream not marked down")
		}
		calls := up.answered.Load()
		rec := httptest.NewRecorder()
		if err := g.ServeNext(rec, preflight("/_matrix/client/v3/sync", "GET"), up.next); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusNoContent || up.answered.Load() != calls {
			t.Fatalf("held preflight: %d (upstream answered %d more)", rec.Code, up.answered.Load()-calls)
		}
		wantCORS(t, "held preflight", rec.Header())
	})
	t.Run("refused without ride-through", func(t *testing.T) {
		cfg := DefaultConfig()
		g := newTestGate(t, cfg, Options{})
		rec := httptest.NewRecorder()
		refuse := func(http.ResponseWriter, *http.Request) error { return errRefused }
		if err := g.ServeNext(rec, preflight("/_matrix/client/v3/login", "POST"), refuse); err != nil {
			t.Fatal(err)
		}
		if rec.Code != http.StatusNoContent {
			t.Fatalf("refused preflight: %d", rec.Code)
		}
		wantCORS(t, "refused preflight", rec.Header())

		cfg.CORS.Enabled = false
		g = newTestGate(t, cfg, Options{})
		if err := g.ServeNext(httptest.NewRecorder(), preflight("/_matrix/client/v3/login", "POST"), refuse); err == nil {
			t.Fatal("with CORS off the upstream's failure must stand")
		}
	})
	t.Run("bare OPTIONS is an ordinary request", func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.Shed = []matrix.Class{matrix.Other}
		rec := serveReq(newTestGate(t, cfg, Options{}).Middleware(okHandler()), http.MethodOptions, "/_matrix/client/versions", "")
		limitExceeded(t, rec)
	})
}
