package gate

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/fleet"
	"github.com/mxgate/mxgate/fleet/redistest"
	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/internal/testkit"
	"github.com/mxgate/mxgate/matrix"
	"github.com/redis/go-redis/v9"
)

// lateAnswer answers whoami for one token from the homeserver at once, but
// hands the answer to the gate only when released: a 2xx the homeserver
// gave before a logout, seen by this gateway after it.
type lateAnswer struct {
	up       http.Handler
	token    string
	answered chan struct{}
	release  chan struct{}
}

func (l *lateAnswer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+l.token || r.URL.Path != "/_matrix/client/v3/account/whoami" {
		l.up.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	l.up.ServeHTTP(rec, r) // the homeserver's verdict, before the logout
	close(l.answered)
	<-l.release
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

// syncFleet makes sure every verdict gate from published before is applied
// on to: a fresh token accepted on from, awaited on to (one publisher's
// messages arrive in order).
func syncFleet(t *testing.T, from http.Handler, to *Gate, tok string) {
	t.Helper()
	serveReq(from, "GET", "/_matrix/client/v3/account/whoami", tok)
	waitUntil(t, "the sentinel verdict", func() bool { return to.accepted.has(matrix.TokenIDOf(tok), "example.com") })
}

// A logout seen by gateway b, while gateway a is handed a 2xx the
// homeserver gave that token just before (a long-poll's), leaves the token
// accepted on no gateway: an ended session is never accepted again. The
// token's proof cached on b gets it no shared state there: b asks the
// homeserver, which answers 401.
func TestFleetLateAnswerDoesNotReviveALoggedOutToken(t *testing.T) {
	srv := redistest.Start(t)
	cfg := shareTestConfig()
	ga, gb := fleetGate(t, srv.URL(), "a", cfg), fleetGate(t, srv.URL(), "b", cfg)
	up := &fakeStateServer{hold: make(chan struct{})}
	close(up.hold)
	late := &lateAnswer{up: up, token: "member-1", answered: make(chan struct{}), release: make(chan struct{})}
	ha, hb := ga.Middleware(late), gb.Middleware(up)
	id := matrix.TokenIDOf("member-1")

	signIn(hb, "member-", 5)
	for i := range 10 { // the herd, and every member's proof, on b
		if rec := serveReq(hb, "GET", statePath, fmt.Sprint("member-", i%5)); rec.Code != 200 {
			t.Fatalf("member-%d: %d %s", i%5, rec.Code, rec.Body)
		}
	}
	if len(gb.Status(gb.now()).Herds) != 1 {
		t.Fatal("no herd on b")
	}
	waitUntil(t, "a to know member-1", func() bool { return ga.accepted.has(id, "example.com") })

	var wg sync.WaitGroup
	wg.Go(func() { serveReq(ha, "GET", "/_matrix/client/v3/account/whoami", "member-1") })
	<-late.answered
	if rec := serveReq(hb, "POST", "/_matrix/client/v3/logout", "member-1"); rec.Code != 200 {
		t.Fatalf("logout: %d", rec.Code)
	}
	waitUntil(t, "a to forget member-1", func() bool { return !ga.accepted.has(id, "example.com") })
	close(late.release)
	wg.Wait()
	syncFleet(t, ha, gb, "member-9")
	if gb.accepted.has(id, "example.com") {
		t.Errorf("b, which saw member-1 log out, holds it accepted again")
	}
	if ga.accepted.has(id, "example.com") {
		t.Errorf("a holds logged-out member-1 accepted after its late 2xx")
	}

	// member-0 leads a held shared fetch on b; the logged-out token asks.
	up.hold = make(chan struct{})
	wg.Go(func() { serveReq(hb, "GET", statePath, "member-0") })
	testkit.Eventually(t, "member-0 leading a shared fetch", func() bool {
		gb.sharer.mu.Lock()
		defer gb.sharer.mu.Unlock()
		return len(gb.sharer.flights) == 1
	})
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- serveReq(hb, "GET", statePath, "member-1") }()
	testkit.Eventually(t, "member-1 answered or waiting", func() bool {
		return len(done) == 1 || gb.sharer.waiting.Load() == 1
	})
	close(up.hold)
	rec := <-done
	wg.Wait()
	if rec.Code != http.StatusUnauthorized || rec.Result().Header.Get(herd.CoalescedHeader) != "" {
		t.Errorf("logged-out member-1 on b: %d (coalesced %q) %.60s, want the homeserver's 401", rec.Code,
			rec.Result().Header.Get(herd.CoalescedHeader), rec.Body)
	}
}

// a accepts a token; b sees it log out before a's verdict reaches b. b
// announces the end though it held nothing, and a's verdict, arriving
// after, does not make b accept the logged-out token.
func TestFleetLogoutBeforeTheAcceptArrives(t *testing.T) {
	srv := redistest.Start(t)
	cfg := DefaultConfig()
	ga, gb := fleetGate(t, srv.URL(), "a", cfg), fleetGate(t, srv.URL(), "b", cfg)
	up := &fakeStateServer{hold: make(chan struct{})}
	close(up.hold)
	ha, hb := ga.Middleware(up), gb.Middleware(up)
	serveReq(ha, "GET", "/_matrix/client/v3/account/whoami", "tok")
	if rec := serveReq(hb, "POST", "/_matrix/client/v3/logout", "tok"); rec.Code != 200 {
		t.Fatalf("logout: %d", rec.Code)
	}
	syncFleet(t, ha, gb, "sentinel")
	syncFleet(t, hb, ga, "sentinel-2")
	if gb.accepted.has(matrix.TokenIDOf("tok"), "example.com") || ga.accepted.has(matrix.TokenIDOf("tok"), "example.com") {
		t.Errorf("a gateway holds tok accepted after its logout")
	}
}

// A gateway that sees a 401 for a token it accepted a moment before, and
// whose forget is then dropped (a full backlog while a PUBLISH waits on a
// stalled Redis, within the call deadline), is not made to accept the
// token again by the echo of its own earlier verdict. (The verdicts are
// noted as the request path notes them, without its own Redis calls.)
func TestFleetOwnEchoDoesNotUndoAForget(t *testing.T) {
	srv := redistest.Start(t)
	ga := fleetGate(t, srv.URL(), "a", DefaultConfig()) // CallTimeout 500ms
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	r := httptest.NewRequest("GET", "/_matrix/client/v3/account/whoami", nil)
	r.Header.Set("Authorization", "Bearer tok")
	req := matrix.ParseRequest(r)
	id := req.Credential.ID
	if err := rdb.Do(t.Context(), "CLIENT", "PAUSE", "200", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	ga.fleet.member.PublishVerdict(fleet.TokenVerdict{Token: 1, Host: 1}) // the loop's PUBLISH waits out the pause
	time.Sleep(20 * time.Millisecond)
	ga.noteTokenVerdict(r, &req, http.StatusOK) // accepted: queued
	for i := range 4096 {                       // others' verdicts fill the backlog
		ga.fleet.member.PublishVerdict(fleet.TokenVerdict{Token: matrix.TokenID(i + 2), Host: 1})
	}
	ga.noteTokenVerdict(r, &req, http.StatusUnauthorized) // refused: forgotten here, its verdict dropped
	if ga.accepted.has(id, "example.com") {
		t.Fatal("not forgotten locally")
	}
	time.Sleep(time.Second) // the pause ends; the backlog drains and echoes
	if ga.accepted.has(id, "example.com") {
		t.Errorf("a, which saw tok refused (401) last, holds it accepted again: its own echo")
	}
}

// One valid token whose requests spell the Host differently (one site to
// Caddy, whose host matcher ignores case and port) is announced to the
// fleet once.
func TestFleetHostSpellingsPublishOnce(t *testing.T) {
	srv := redistest.Start(t)
	ga := fleetGate(t, srv.URL(), "a", DefaultConfig())
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rdb.Close()
	sub := rdb.Subscribe(t.Context(), "mxgate:{"+t.Name()+"}:tokens")
	defer sub.Close()
	if _, err := sub.Receive(t.Context()); err != nil {
		t.Fatal(err)
	}
	up := &fakeStateServer{hold: make(chan struct{})}
	close(up.hold)
	h := ga.Middleware(up)
	const n = 100
	for i := range n {
		r := httptest.NewRequest("GET", "/_matrix/client/v3/account/whoami", nil)
		r.Host = []string{"example.com", "EXAMPLE.COM", "example.com.", "Example.com:443"}[i%4]
		r.Header.Set("Authorization", "Bearer tok")
		h.ServeHTTP(httptest.NewRecorder(), r)
		time.Sleep(2 * time.Millisecond)
	}
	var verdicts int
	deadline := time.After(time.Second) // after the last request: the backlog has long drained
	for {
		select {
		case m := <-sub.Channel():
			verdicts += strings.Count(m.Payload, "\na ")
		case <-deadline:
			if verdicts != 1 {
				t.Errorf("%d verdicts published for %d requests of one token, want 1", verdicts, n)
			}
			return
		}
	}
}
