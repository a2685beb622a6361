package gate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/fleet"
	"github.com/mxgate/mxgate/fleet/redistest"
	"github.com/mxgate/mxgate/limiter"
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

// Token verdicts are the fleet's: 30 users, each accepted by one of three
// gates, who then ask for one room's state each through another gate make
// a herd on every gate (unshared, each gate would count none of them), and
// a 401 on one gate makes all of them forget the token.
func TestFleetSharesTokenVerdicts(t *testing.T) {
	srv := redistest.Start(t)
	cfg := DefaultConfig()
	cfg.Herd.MinUsers, cfg.Herd.Window = 10, time.Minute
	cfg.Classes[matrix.RoomState].MaxInflight = 64 // a herd part on every gate
	gs := []*Gate{fleetGate(t, srv.URL(), "a", cfg), fleetGate(t, srv.URL(), "b", cfg), fleetGate(t, srv.URL(), "c", cfg)}
	var revoked atomic.Bool
	next := func(w http.ResponseWriter, r *http.Request) error {
		if revoked.Load() {
			w.WriteHeader(http.StatusUnauthorized)
			return nil
		}
		w.Write([]byte(`{}`))
		return nil
	}
	serve := func(g *Gate, path, token string) {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		if err := g.ServeNext(httptest.NewRecorder(), req, next); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
	}
	const users = 30
	for i := range users {
		serve(gs[i%3], "/_matrix/client/v3/account/whoami", fmt.Sprint("user-", i))
	}
	accepted := func(g *Gate, token string) bool {
		return g.accepted.has(matrix.TokenIDOf(token), "example.com")
	}
	waitUntil(t, "every gate to know every user", func() bool {
		for _, g := range gs {
			for i := range users {
				if !accepted(g, fmt.Sprint("user-", i)) {
					return false
				}
			}
		}
		return true
	})
	for i := range users {
		serve(gs[(i+1)%3], "/_matrix/client/v3/rooms/%21big%3Ax/state", fmt.Sprint("user-", i))
	}
	for name, g := range map[string]*Gate{"a": gs[0], "b": gs[1], "c": gs[2]} {
		if hs := g.Status(time.Now()).Herds; len(hs) != 1 || hs[0].Users < cfg.Herd.MinUsers {
			t.Errorf("gate %s: herds %+v, want the room's herd of %d users", name, hs, users)
		}
	}

	revoked.Store(true)
	serve(gs[2], "/_matrix/client/v3/account/whoami", "user-0")
	waitUntil(t, "every gate to forget the revoked token", func() bool {
		return !accepted(gs[0], "user-0") && !accepted(gs[1], "user-0") && !accepted(gs[2], "user-0")
	})
	if !accepted(gs[0], "user-1") {
		t.Error("forgetting one token forgot another")
	}
}

// Two gates in a fleet share room state's cap of 2 as 1 each, and its herd
// allowance of 1 as 1 and 0: between them a herd holds one slot, as
// through one gateway, and the one without a part refuses herd requests at
// once while serving the class's others.
func TestFleetSharesTheHerdAllowance(t *testing.T) {
	srv := redistest.Start(t)
	cfg := DefaultConfig()
	cfg.Classes[matrix.RoomState].MaxInflight = 2
	a := fleetGate(t, srv.URL(), "a", cfg)
	b := fleetGate(t, srv.URL(), "b", cfg)
	stateCap := func(g *Gate) int { return g.Status(time.Now()).Classes[matrix.RoomState].Cap }
	waitUntil(t, "both gates see two instances", func() bool { return stateCap(a) == 1 && stateCap(b) == 1 })
	class := int(matrix.RoomState)
	var withPart, without *Gate
	for _, g := range []*Gate{a, b} {
		tk, err := g.adm.Acquire(context.Background(), class, limiter.LaneHerd)
		if err == nil {
			tk.Done(limiter.Result{})
			withPart = g
			continue
		}
		if !errors.Is(err, limiter.ErrNoHerdPart) {
			t.Fatalf("herd request: %v", err)
		}
		without = g
	}
	if withPart == nil || without == nil {
		t.Fatalf("herd parts: one gate must have the only one (with %v, without %v)", withPart != nil, without != nil)
	}
	tk, err := without.adm.Acquire(context.Background(), class, limiter.LaneNormal)
	if err != nil {
		t.Fatalf("a normal request on the gate without a herd part: %v", err)
	}
	tk.Done(limiter.Result{})
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
