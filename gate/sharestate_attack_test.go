package gate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/internal/hsmodel"
	"github.com/mxgate/mxgate/internal/testkit"
	"github.com/mxgate/mxgate/matrix"
)

// leavingServer is a room whose members are member-0 to member-4 until one
// POSTs /leave. The topic then changes from "old" to "new". Like Synapse
// and Dendrite, it answers a member who left the state at its leave (the
// old topic, itself "leave") and the others the current state.
type leavingServer struct {
	left   sync.Map // token → struct{}
	hold   atomic.Pointer[chan struct{}]
	whoami atomic.Int64
}

func (s *leavingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := hsmodel.Synapse(r.Header, r.URL.RawQuery).Token
	path := r.URL.EscapedPath()
	w.Header().Set("Content-Type", "application/json")
	_, gone := s.left.Load(tok)
	switch {
	case tok == "":
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"errcode":"M_MISSING_TOKEN"}`)
	case r.Method == http.MethodPost && strings.HasSuffix(path, "/leave"):
		s.left.Store(tok, struct{}{})
		fmt.Fprint(w, `{}`)
	case strings.HasSuffix(path, "/account/whoami"):
		s.whoami.Add(1)
		fmt.Fprintf(w, `{"user_id":"@%s:x"}`, tok)
	case strings.Contains(path, "/state/m.room.member/"):
		if gone {
			fmt.Fprint(w, `{"membership":"leave"}`)
		} else {
			fmt.Fprint(w, `{"membership":"join"}`)
		}
	case strings.HasSuffix(path, "/state"):
		if hold := s.hold.Load(); hold != nil {
			<-*hold
		}
		topic, anyLeft := "old", false
		var members strings.Builder
		for i := range 5 {
			m := fmt.Sprint("member-", i)
			membership := "join"
			if _, ok := s.left.Load(m); ok {
				membership, anyLeft = "leave", true
			}
			fmt.Fprintf(&members, `,{"type":"m.room.member","state_key":"@%s:x","content":{"membership":%q}}`, m, membership)
		}
		if anyLeft && !gone {
			topic = "new"
		}
		fmt.Fprintf(w, `[{"type":"m.room.topic","state_key":"","content":{"topic":%q}}%s]`, topic, members.String())
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// shareTestConfig is share_state with a herd at 3 users, without room
// state's own coalescing (every shared answer is share_state's), and with
// room for a held leader and the requests beside it.
func shareTestConfig() Config {
	cfg := DefaultConfig()
	cfg.Classes[matrix.RoomState].ShareState = true
	cfg.Classes[matrix.RoomState].Coalesce = 0
	cfg.Classes[matrix.RoomState].MaxInflight = 8
	cfg.Herd.MinUsers, cfg.Herd.Window = 3, time.Minute
	return cfg
}

func newShareTestGate(t *testing.T) *Gate { return newTestGate(t, shareTestConfig(), Options{}) }

// heldFlight runs lead while the upstream holds the state answer, then
// other, and releases the answer once other waits on the flight (or, when
// it does not wait, has returned).
func heldFlight(t *testing.T, g *Gate, hold *atomic.Pointer[chan struct{}], lead, other func() *httptest.ResponseRecorder) (leader, second *httptest.ResponseRecorder) {
	t.Helper()
	ch := make(chan struct{})
	hold.Store(&ch)
	defer hold.Store(nil)
	var wg sync.WaitGroup
	wg.Go(func() { leader = lead() })
	testkit.Eventually(t, "the leader's shared fetch", func() bool {
		g.sharer.mu.Lock()
		defer g.sharer.mu.Unlock()
		return len(g.sharer.flights) == 1
	})
	returned := make(chan struct{})
	wg.Go(func() { defer close(returned); second = other() })
	testkit.Eventually(t, "the second request waiting or answered", func() bool {
		select {
		case <-returned:
			return true
		default:
			return g.sharer.waiting.Load() == 1
		}
	})
	close(ch)
	wg.Wait()
	return leader, second
}

// A member who left (through the gate or not) is verified as joined for the
// herd window, but the snapshot decides: the state at its leave does not
// show it joined, so it is not shared with the members; the current state
// does not show it joined either, so it is not shared with it.
func TestShareStateTiesMembershipToTheSnapshot(t *testing.T) {
	g := newShareTestGate(t)
	up := &leavingServer{}
	h := g.Middleware(up)
	signIn(h, "member-", 5)
	for i := range 10 { // the herd, then every member verified
		serveReq(h, "GET", statePath, fmt.Sprint("member-", i%5))
	}
	if len(g.Status(g.now()).Herds) != 1 {
		t.Fatal("no herd")
	}
	if rec := serveReq(h, "POST", "/_matrix/client/v3/rooms/%21r%3Ax/leave", "member-0"); rec.Code != 200 {
		t.Fatalf("leave: %d", rec.Code)
	}
	topic := func(rec *httptest.ResponseRecorder) string {
		var evs []struct{ Content struct{ Topic string } }
		if json.Unmarshal(rec.Body.Bytes(), &evs) != nil || len(evs) == 0 {
			return "? " + rec.Body.String()
		}
		return evs[0].Content.Topic
	}
	for _, c := range []struct{ leader, other, leaderWants, otherWants string }{
		{"member-0", "member-1", "old", "new"}, // the ex-member leads
		{"member-1", "member-0", "new", "old"}, // a member leads, the ex-member asks
	} {
		l, o := heldFlight(t, g, &up.hold,
			func() *httptest.ResponseRecorder { return serveReq(h, "GET", statePath, c.leader) },
			func() *httptest.ResponseRecorder { return serveReq(h, "GET", statePath, c.other) })
		if got := topic(l); got != c.leaderWants {
			t.Errorf("%s leading got topic %q, want %q", c.leader, got, c.leaderWants)
		}
		if got := topic(o); got != c.otherWants || o.Result().Header.Get(herd.CoalescedHeader) != "" {
			t.Errorf("%s while %s led got topic %q (coalesced %q), want its own answer %q",
				c.other, c.leader, got, o.Result().Header.Get(herd.CoalescedHeader), c.otherWants)
		}
	}
}

// One gate in front of two sites: a token proven on one is a stranger on
// the other, and is answered by that site's homeserver.
func TestShareStateKeepsSitesApart(t *testing.T) {
	g := newShareTestGate(t)
	var hold atomic.Pointer[chan struct{}]
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := hsmodel.Synapse(r.Header, r.URL.RawQuery).Token
		site, _, _ := strings.Cut(r.Host, ".")
		if !strings.HasPrefix(tok, site+"-") { // each site knows its own tokens
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errcode":"M_UNKNOWN_TOKEN"}`)
			return
		}
		switch p := r.URL.EscapedPath(); {
		case strings.HasSuffix(p, "/account/whoami"):
			fmt.Fprintf(w, `{"user_id":"@user:x"}`) // the same user ID on both sites
		case strings.Contains(p, "/state/m.room.member/"):
			fmt.Fprint(w, `{"membership":"join"}`)
		case strings.HasSuffix(p, "/state"):
			if ch := hold.Load(); ch != nil && site == "b" {
				<-*ch
			}
			fmt.Fprintf(w, `[{"type":"m.room.topic","state_key":"","content":{"topic":"site %s"}},`+
				`{"type":"m.room.member","state_key":"@user:x","content":{"membership":"join"}}]`, site)
		}
	}))
	get := func(host, tok string) *httptest.ResponseRecorder {
		req := httptest.NewRequest("GET", "http://"+host+statePath, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, site := range []string{"a", "b"} {
		for range 3 { // accepted, the herd, then every token verified
			for i := range 3 {
				get(site+".example", fmt.Sprintf("%s-%d", site, i))
			}
		}
	}
	_, stranger := heldFlight(t, g, &hold,
		func() *httptest.ResponseRecorder { return get("b.example", "b-0") },
		func() *httptest.ResponseRecorder { return get("b.example", "a-0") })
	if stranger.Code != http.StatusUnauthorized || stranger.Result().Header.Get(herd.CoalescedHeader) != "" {
		t.Errorf("site a's token on site b: %d %s, want site b's 401", stranger.Code, stranger.Body)
	}
}

// A token in the query is proven with that query: one whoami for a herd's
// worth of its requests, and they are shared.
func TestShareStateProvesAQueryTokenOnce(t *testing.T) {
	g := newShareTestGate(t)
	up := &leavingServer{}
	h := g.Middleware(up)
	signIn(h, "member-", 3)
	for i := range 3 {
		serveReq(h, "GET", statePath, fmt.Sprint("member-", i))
	}
	before := up.whoami.Load()
	for range 5 {
		if rec := serveReq(h, "GET", statePath+"?access_token=member-4", ""); rec.Code != 200 {
			t.Fatalf("query token: %d %s", rec.Code, rec.Body)
		}
	}
	if n := up.whoami.Load() - before; n != 1 {
		t.Errorf("5 herd requests with a query token cost %d whoamis, want 1", n)
	}
}

// foldServer: member-0..4 joined; "outsider" left (or rejected an invite)
// with PUT /state/m.room.member/@outsider:x and content
// {"membership":"leave","memberſhip":"join"} (U+017F folds to 's' in Go's
// case-insensitive struct matching). The homeserver (exact keys) sees leave:
// it answers the outsider the state at its leave and the members the
// current state, which holds the outsider's leave event.
type foldServer struct{ hold atomic.Pointer[chan struct{}] }

const craftedLeave = `{"membership":"leave","memberſhip":"join"}`

func (s *foldServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := hsmodel.Synapse(r.Header, r.URL.RawQuery).Token
	path := r.URL.EscapedPath()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case tok == "":
		w.WriteHeader(http.StatusUnauthorized)
	case strings.HasSuffix(path, "/account/whoami"):
		fmt.Fprintf(w, `{"user_id":"@%s:x"}`, tok)
	case strings.Contains(path, "/state/m.room.member/"):
		if tok == "outsider" {
			fmt.Fprint(w, craftedLeave)
		} else {
			fmt.Fprint(w, `{"membership":"join"}`)
		}
	case strings.HasSuffix(path, "/state"):
		if h := s.hold.Load(); h != nil && tok != "outsider" {
			<-*h
		}
		var b strings.Builder
		for i := range 5 {
			fmt.Fprintf(&b, `,{"type":"m.room.member","state_key":"@member-%d:x","content":{"membership":"join"}}`, i)
		}
		topic := "secret-after-outsider-left"
		if tok == "outsider" {
			topic = "old" // the state at its leave
		}
		fmt.Fprintf(w, `[{"type":"m.room.topic","state_key":"","content":{"topic":%q}},`+
			`{"type":"m.room.member","state_key":"@outsider:x","content":%s}%s]`, topic, craftedLeave, b.String())
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// A user who left with a member event whose content also holds a folded
// "memberſhip":"join" is not joined to the gate either: neither its proof
// nor the snapshot counts it, and it gets its own answer.
func TestShareStateReadsMembershipByItsExactKey(t *testing.T) {
	g := newShareTestGate(t)
	up := &foldServer{}
	h := g.Middleware(up)
	signIn(h, "member-", 5)
	serveReq(h, "GET", "/_matrix/client/v3/account/whoami", "outsider")
	for i := range 10 {
		serveReq(h, "GET", statePath, fmt.Sprint("member-", i%5))
	}
	if len(g.Status(g.now()).Herds) != 1 {
		t.Fatal("no herd")
	}
	_, o := heldFlight(t, g, &up.hold,
		func() *httptest.ResponseRecorder { return serveReq(h, "GET", statePath, "member-1") },
		func() *httptest.ResponseRecorder { return serveReq(h, "GET", statePath, "outsider") })
	var evs []struct{ Content struct{ Topic string } }
	_ = json.Unmarshal(o.Body.Bytes(), &evs)
	if len(evs) == 0 || evs[0].Content.Topic != "old" {
		t.Errorf("ex-member served %q (coalesced %q): the current state after its leave",
			evs[0].Content.Topic, o.Result().Header.Get(herd.CoalescedHeader))
	}
}
