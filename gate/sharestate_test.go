package gate

import (
	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/internal/testkit"

	"github.com/mxgate/mxgate/internal/hsmodel"

	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// fakeStateServer answers whoami, single member events and a room's full
// state the way a homeserver would for tokens "member-N" (joined) and
// "outsider-N" (not joined); POST /logout revokes the token, and revoked
// tokens (loggedOut) get 401 for everything.
type fakeStateServer struct {
	stateCalls, memberChecks atomic.Int64
	hold                     chan struct{} // closed: state answers at once
	loggedOut                sync.Map      // token → struct{}
}

func (f *fakeStateServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := hsmodel.Dendrite(r.Header, r.URL.RawQuery).Token
	user := "@" + tok + ":x"
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	w.Header().Set("Content-Type", "application/json")
	path := r.URL.EscapedPath()
	if _, revoked := f.loggedOut.Load(tok); revoked {
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errcode":"M_UNKNOWN_TOKEN"}`)
		return
	}
	switch {
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/logout"):
		f.loggedOut.Store(tok, struct{}{})
		fmt.Fprint(w, `{}`)
	case strings.HasSuffix(path, "/account/whoami"):
		fmt.Fprintf(w, `{"user_id":%q}`, user)
	case strings.Contains(path, "/state/m.room.member/"):
		f.memberChecks.Add(1)
		if strings.HasPrefix(tok, "member-") && strings.HasSuffix(r.URL.Path, "/m.room.member/"+user) {
			fmt.Fprint(w, `{"membership":"join"}`)
			return
		}
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"errcode":"M_FORBIDDEN"}`)
	case strings.HasSuffix(path, "/state"):
		f.stateCalls.Add(1)
		if !strings.HasPrefix(tok, "member-") {
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprint(w, `{"errcode":"M_FORBIDDEN","error":"not in room"}`)
			return
		}
		<-f.hold
		fmt.Fprintf(w, `[{"type":"m.room.create","state_key":"","content":{}},`+
			`{"type":"m.room.topic","state_key":"","content":{"topic":"t"},"unsigned":{"age":5,"transaction_id":"txn-of-%s"}}%s]`, tok, fakeMemberEvents)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// fakeMemberEvents are the joined members' events in fakeStateServer's
// room state: member-0 to member-(fakeMembers-1).
var fakeMemberEvents = func() string {
	var b strings.Builder
	for i := range fakeMembers {
		fmt.Fprintf(&b, `,{"type":"m.room.member","state_key":"@member-%d:x","content":{"membership":"join"}}`, i)
	}
	return b.String()
}()

const fakeMembers = 60

func TestShareStateServesVerifiedMembersOneFetch(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Classes[matrix.RoomState].ShareState = true
	cfg.Herd.MinUsers = 50
	cfg.Classes[matrix.RoomState].Coalesce = 0 // isolate share_state from per-token coalescing
	g := newTestGate(t, cfg, Options{})
	up := &fakeStateServer{hold: make(chan struct{})}
	close(up.hold)
	h := g.Middleware(up)

	// 55 signed-in members ask in turn: the herd starts at the 50th.
	signIn(h, "member-", 55)
	signIn(h, "outsider-", 60)
	for i := 0; i < 55; i++ {
		if rec := serveReq(h, "GET", statePath, fmt.Sprint("member-", i)); rec.Code != 200 {
			t.Fatalf("warm-up %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if len(g.Status(g.now()).Herds) != 1 {
		t.Fatal("no herd after 55 users")
	}

	// Now the herd asks at once, with 5 outsiders among them.
	up.hold = make(chan struct{})
	before := up.stateCalls.Load()
	var wg sync.WaitGroup
	results := make([]*struct {
		code      int
		body      string
		coalesced bool
	}, 60)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := fmt.Sprint("member-", i)
			if i >= 55 {
				tok = fmt.Sprint("outsider-", i)
			}
			rec := serveReq(h, "GET", statePath, tok)
			results[i] = &struct {
				code      int
				body      string
				coalesced bool
			}{rec.Code, rec.Body.String(), rec.Result().Header.Get("X-Mxgate-Coalesced") == "1"}
		}()
	}
	testkit.Eventually(t, "the members waiting", func() bool { return g.sharer.waiting.Load() == 54 })
	close(up.hold)
	wg.Wait()

	// One fetch for the 55 members, one each for the outsiders (refused).
	if n := up.stateCalls.Load() - before; n != 1+5 {
		t.Fatalf("upstream state fetches %d, want 6", n)
	}
	shared := 0
	for i, res := range results {
		if i >= 55 {
			if res.code != http.StatusForbidden {
				t.Errorf("outsider %d got %d %s", i, res.code, res.body)
			}
			continue
		}
		if res.code != 200 {
			t.Fatalf("member %d got %d", i, res.code)
		}
		var events []map[string]any
		if err := json.Unmarshal([]byte(res.body), &events); err != nil || len(events) != 2+fakeMembers {
			t.Fatalf("member %d body %s", i, res.body)
		}
		if strings.Contains(res.body, "transaction_id") {
			t.Fatalf("member %d saw another device's transaction_id: %s", i, res.body)
		}
		if res.coalesced {
			shared++
		}
	}
	if shared != 54 {
		t.Fatalf("%d members served from the shared fetch, want 54", shared)
	}
}

// A compressed answer cannot be vetted, so it is never shared: each member
// then fetches their own.
func TestShareStateRefusesEncodedAnswers(t *testing.T) {
	if shareableHeader(http.Header{"Content-Encoding": {"gzip"}}) {
		t.Fatal("gzip answer deemed shareable")
	}
	if !shareableHeader(http.Header{"Content-Type": {"application/json"}}) {
		t.Fatal("plain answer refused")
	}
	if shareableHeader(http.Header{"Set-Cookie": {"a=b"}}) {
		t.Fatal("answer with a cookie deemed shareable")
	}
}

// A leader whose fetch panics (Caddy's reverse_proxy panics with
// http.ErrAbortHandler when a body copy fails) releases its waiters and
// leaves no flight behind.
func TestShareStateLeaderPanicReleasesWaiters(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Classes[matrix.RoomState].ShareState = true
	g := newTestGate(t, cfg, Options{})
	f := &stateFlight{done: make(chan struct{})}
	var key herd.Key
	g.sharer.flights[key] = f
	func() {
		defer func() {
			if recover() != http.ErrAbortHandler {
				t.Fatal("panic not propagated")
			}
		}()
		r := httptest.NewRequest("GET", statePath, nil)
		fl := &flow{g: g, cfg: &cfg, req: matrix.ParseRequest(r), start: g.now(), client: r.Context(),
			next: func(http.ResponseWriter, *http.Request) error { panic(http.ErrAbortHandler) }}
		fl.limits = &cfg.Classes[fl.req.Class]
		g.leadSharedState(httptest.NewRecorder(), r, fl.share(), key, f, "@u:x")
	}()
	select {
	case <-f.done:
	default:
		t.Fatal("waiters not released")
	}
	if f.ok || len(g.sharer.flights) != 0 {
		t.Fatalf("flight left: ok=%v flights=%d", f.ok, len(g.sharer.flights))
	}
	if _, cs := g.adm.Snapshot(); cs[matrix.RoomState].Inflight != 0 {
		t.Fatalf("panicking leader kept its admission slot: %+v", cs[matrix.RoomState])
	}
}

// A member's proof is asked for a herd's request: its subrequests queue in
// the herd lane of their own class, behind that class's other requests.
func TestShareStateProofWaitsBehindTheRestOfItsClass(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Classes[matrix.RoomState].ShareState = true
	cfg.Classes[matrix.RoomState].Coalesce = 0
	cfg.Herd.MinUsers, cfg.Herd.Window = 3, time.Minute
	hist := &cfg.Classes[matrix.History] // the class of a member event's path
	hist.MaxInflight, hist.Queue, hist.Coalesce = 1, 10, 0
	g := newTestGate(t, cfg, Options{})
	arrived := make(chan string, 16)
	release := make(chan struct{})
	var holding atomic.Bool // the upstream holds history's requests
	state := &fakeStateServer{hold: make(chan struct{})}
	close(state.hold)
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.EscapedPath()
		if holding.Load() && (strings.HasSuffix(path, "/messages") || strings.Contains(path, "/state/m.room.member/")) {
			arrived <- path
			<-release
		}
		state.ServeHTTP(w, r)
	}))
	next := func() string { t.Helper(); return nextArrival(t, arrived) }
	historyQueued := func(n int) {
		t.Helper()
		testkit.Eventually(t, "history queue", func() bool {
			_, cs := g.adm.Snapshot()
			return cs[matrix.History].Queued == n
		})
	}
	signIn(h, "member-", 5)
	for i := range 3 {
		serveReq(h, "GET", statePath, fmt.Sprint("member-", i))
	}
	if len(g.Status(g.now()).Herds) != 1 {
		t.Fatal("no herd after 3 users")
	}
	holding.Store(true)
	const messages = "/_matrix/client/v3/rooms/%21chat%3Ax/messages"
	var wg sync.WaitGroup
	wg.Go(func() { serveReq(h, "GET", messages, "member-4") })
	if p := next(); p != messages {
		t.Fatalf("first at the upstream: %s", p)
	}
	wg.Go(func() { serveReq(h, "GET", statePath, "member-3") }) // its proof queues for history's slot
	historyQueued(1)
	wg.Go(func() { serveReq(h, "GET", messages+"?dir=b", "member-4") })
	historyQueued(2)
	release <- struct{}{}
	if p := next(); p != messages {
		t.Errorf("after the slot freed: %s, want the background's page of history before the herd member's proof", p)
	}
	close(release)
	if p := next(); !strings.Contains(p, "/state/m.room.member/") {
		t.Errorf("then %s, want the proof", p)
	}
	wg.Wait()
}

// A token logged out through the gate, or refused with a 401, is no longer
// served a shared answer on the strength of its earlier proof: its request
// goes to the homeserver, which refuses it.
func TestShareStateForgetsLoggedOutTokens(t *testing.T) {
	g := newShareTestGate(t)
	up := &fakeStateServer{hold: make(chan struct{})}
	close(up.hold)
	h := g.Middleware(up)
	signIn(h, "member-", 5)
	// The first round declares the herd (at its third user), the second
	// verifies every member.
	for i := range 10 {
		if rec := serveReq(h, "GET", statePath, fmt.Sprint("member-", i%5)); rec.Code != 200 {
			t.Fatalf("member-%d: %d %s", i%5, rec.Code, rec.Body)
		}
	}
	if len(g.Status(g.now()).Herds) != 1 || up.memberChecks.Load() != 5 {
		t.Fatalf("%d herds, %d members verified; want 1 and 5", len(g.Status(g.now()).Herds), up.memberChecks.Load())
	}
	if rec := serveReq(h, "POST", "/_matrix/client/v3/logout", "member-1"); rec.Code != 200 {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body)
	}
	up.loggedOut.Store("member-2", struct{}{}) // revoked elsewhere (another gateway, the admin API)
	if rec := serveReq(h, "GET", "/_matrix/client/v3/sync", "member-2"); rec.Code != http.StatusUnauthorized {
		t.Fatalf("revoked token's sync: %d", rec.Code)
	}

	// member-0 leads a shared fetch the upstream holds; the two former
	// tokens ask meanwhile.
	up.hold = make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { serveReq(h, "GET", statePath, "member-0") })
	testkit.Eventually(t, "member-0 leading a shared fetch", func() bool {
		g.sharer.mu.Lock()
		defer g.sharer.mu.Unlock()
		return len(g.sharer.flights) == 1
	})
	for _, tok := range []string{"member-1", "member-2"} {
		rec := serveReq(h, "GET", statePath, tok)
		if rec.Code != http.StatusUnauthorized || rec.Result().Header.Get(herd.CoalescedHeader) != "" {
			t.Errorf("%s after its token ended: %d %s (coalesced %q), want the homeserver's 401", tok, rec.Code, rec.Body,
				rec.Result().Header.Get(herd.CoalescedHeader))
		}
	}
	close(up.hold)
	wg.Wait()
}

// An outsider's verdict is remembered for the herd window like a member's:
// its repeated requests cost the homeserver one membership proof, and each
// still goes upstream with its own token (and is refused there).
func TestShareStateAsksAboutAnOutsiderOncePerWindow(t *testing.T) {
	clock := testkit.NewClock(time.Unix(1000, 0))
	cfg := shareTestConfig()
	g := newTestGate(t, cfg, Options{Now: clock.Now})
	up := &fakeStateServer{hold: make(chan struct{})}
	close(up.hold)
	h := g.Middleware(up)
	signIn(h, "member-", 3)
	signIn(h, "outsider-", 1)
	for i := range 3 {
		serveReq(h, "GET", statePath, fmt.Sprint("member-", i))
	}
	if len(g.Status(g.now()).Herds) != 1 {
		t.Fatal("no herd after 3 users")
	}
	checks := func() int64 { return up.memberChecks.Load() }
	before, fetches := checks(), up.stateCalls.Load()
	for range 5 {
		if rec := serveReq(h, "GET", statePath, "outsider-0"); rec.Code != http.StatusForbidden {
			t.Fatalf("outsider: %d %s", rec.Code, rec.Body)
		}
	}
	if n := checks() - before; n != 1 {
		t.Errorf("5 requests of one outsider cost %d membership proofs, want 1", n)
	}
	if n := up.stateCalls.Load() - fetches; n != 5 {
		t.Errorf("outsider's requests reached the homeserver %d times, want all 5", n)
	}
	clock.Advance(cfg.Herd.Window + time.Second)
	for i := range 3 { // keep the herd on
		serveReq(h, "GET", statePath, fmt.Sprint("member-", i))
	}
	before = checks()
	serveReq(h, "GET", statePath, "outsider-0")
	if n := checks() - before; n != 1 {
		t.Errorf("after the window the outsider cost %d proofs, want 1 (asked again)", n)
	}
}
