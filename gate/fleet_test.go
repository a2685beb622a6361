package gate

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mxgate/mxgate/fleet"
	"github.com/mxgate/mxgate/fleet/redistest"
	"github.com/mxgate/mxgate/matrix"
)

func fleetGate(t *testing.T, redisURL, name string, cfg Config) *Gate {
	t.Helper()
	f, err := fleet.New(fleet.Config{Redis: redisURL, Name: name, Zone: t.Name(), CallTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(cfg, Options{Fleet: f})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(20 * time.Millisecond) // polling the gates' background heartbeats, bounded above
	}
}

// Two gates in a fleet take half of each cap; when one leaves, the other
// takes the whole cap at its next heartbeat.
func TestFleetSharesCapsAndRebalances(t *testing.T) {
	srv := redistest.Start(t)
	cfg := DefaultConfig()
	cfg.MaxInflight = 10
	cfg.Classes[matrix.History].MaxInflight = 6
	a := fleetGate(t, srv.URL(), "a", cfg)
	b := fleetGate(t, srv.URL(), "b", cfg)
	historyCap := func(g *Gate) int { return g.Status(time.Now()).Classes[matrix.History].Cap }
	waitUntil(t, "both gates see two instances", func() bool {
		return historyCap(a) == 3 && historyCap(b) == 3
	})
	st := a.Status(time.Now())
	if st.Fleet == nil || len(st.Fleet.Instances) != 2 || !st.Fleet.RedisUp {
		t.Fatalf("fleet status %+v, want two instances and Redis up", st.Fleet)
	}
	if sum := st.Fleet.Instances[0].GlobalShare + st.Fleet.Instances[1].GlobalShare; sum != 10 {
		t.Errorf("global shares add up to %d, want the cap 10", sum)
	}
	b.Close()
	waitUntil(t, "the remaining gate takes the whole cap", func() bool {
		return historyCap(a) == 6
	})
}

// A gate whose Redis is not there serves every request on local limits and
// says so.
func TestFleetWithoutRedisServesLocally(t *testing.T) {
	srv := redistest.Start(t)
	url := srv.URL()
	srv.Kill() // a Redis that is configured but gone
	cfg := DefaultConfig()
	cfg.Classes[matrix.Search].Rate, cfg.Classes[matrix.Search].Burst = 1, 2
	g := fleetGate(t, url, "alone", cfg)
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	codes := map[int]int{}
	for range 5 {
		req := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/publicRooms", nil)
		req.Header.Set("Authorization", "Bearer syt_one")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		codes[rec.Code]++
	}
	if codes[200] != 2 || codes[429] != 3 {
		t.Errorf("answers %v, want the local burst of 2 admitted and 3 rate limited", codes)
	}
	st := g.Status(time.Now())
	if st.Fleet == nil || st.Fleet.RedisUp || !st.Fleet.FailStatic {
		t.Errorf("fleet status %+v, want Redis down and fail-static", st.Fleet)
	}
}
