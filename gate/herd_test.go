package gate

import (
	"github.com/mxgate/mxgate/internal/hsmodel"
	"github.com/mxgate/mxgate/internal/testkit"
	"github.com/mxgate/mxgate/limiter"

	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/matrix"
)

func TestHerdDetectedInStatusAndMetrics(t *testing.T) {
	clock := testkit.NewClock(time.Unix(5000, 0))
	cfg := DefaultConfig()
	cfg.Herd.MinUsers, cfg.Herd.Window = 50, 10*time.Second
	m := NewMetrics()
	g, err := New(cfg, Options{Metrics: m, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := g.Middleware(okHandler())
	signIn(h, "spread-", 60)
	signIn(h, "user-", 60)
	// 60 users spread over 60 rooms: no herd.
	for i := 0; i < 60; i++ {
		serveReq(h, "GET", fmt.Sprintf("/_matrix/client/v3/rooms/%%21room%d%%3Ax/members", i), fmt.Sprint("spread-", i))
	}
	if hs := g.Status(clock.Now()).Herds; len(hs) != 0 {
		t.Fatalf("herd declared for users spread over rooms: %+v", hs)
	}
	// 60 users on one room within the window: a herd.
	for i := 0; i < 60; i++ {
		serveReq(h, "GET", "/_matrix/client/v3/rooms/%21big%3Ax/members", fmt.Sprint("user-", i))
		clock.Advance(50 * time.Millisecond)
	}
	hs := g.Status(clock.Now()).Herds
	if len(hs) != 1 || hs[0].Class != "room_state" || hs[0].Room != "%21big%3Ax" || hs[0].Users < 50 {
		t.Fatalf("herds: %+v", hs)
	}
	g.updateHerdGauges(clock.Now())
	if v := testutil.ToFloat64(m.HerdsActive.WithLabelValues("room_state")); v != 1 {
		t.Fatalf("mxgate_herds_active{class=room_state} = %v", v)
	}
	if v := testutil.ToFloat64(m.HerdsStarted.WithLabelValues("room_state")); v != 1 {
		t.Fatalf("mxgate_herds_total{class=room_state} = %v", v)
	}
	// The window passes without requests: the herd ends.
	clock.Advance(11 * time.Second)
	if hs := g.Status(clock.Now()).Herds; len(hs) != 0 {
		t.Fatalf("herd outlived its window: %+v", hs)
	}
}

// blockingUpstream counts calls and holds each until released.
type blockingUpstream struct {
	calls   atomic.Int64
	release chan struct{}
}

func (b *blockingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.calls.Add(1)
	<-b.release
	// What Synapse sends with every JSON answer.
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"token":%q}`, hsmodel.Dendrite(r.Header, r.URL.RawQuery).Token)
}

// signIn makes n tokens prefix0…prefixN-1 known to the gate as accepted by
// the homeserver, as a client's first successful request does.
// nextArrival is the next path the test upstream reports on arrived,
// waiting at most 5 s.
func nextArrival(t *testing.T, arrived <-chan string) string {
	t.Helper()
	select {
	case p := <-arrived:
		return p
	case <-time.After(5 * time.Second):
		t.Fatal("no request reached the upstream")
		return ""
	}
}

func signIn(h http.Handler, prefix string, n int) {
	for i := range n {
		serveReq(h, "GET", "/_matrix/client/v3/account/whoami", fmt.Sprint(prefix, i))
	}
}

// Made-up tokens the homeserver refuses never count as users: 60 of them on
// one room are no herd, nor are 50 tokens accepted by the homeserver of
// another Host, while 50 tokens this one accepted are.
func TestHerdCountsOnlyAcceptedTokens(t *testing.T) {
	now := time.Unix(5000, 0)
	cfg := DefaultConfig()
	cfg.Herd.MinUsers, cfg.Herd.Window = 50, 10*time.Second
	g, err := New(cfg, Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if tok := hsmodel.Dendrite(r.Header, r.URL.RawQuery).Token; !strings.HasPrefix(tok, "real-") {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"errcode":"M_UNKNOWN_TOKEN"}`)
			return
		}
		fmt.Fprint(w, `{}`)
	}))
	const members = "/_matrix/client/v3/rooms/%21big%3Ax/members"
	signIn(h, "junk-", 60) // refused: still unknown
	for i := range 60 {
		serveReq(h, "GET", members, fmt.Sprint("junk-", i))
		serveReq(h, "GET", members+"?access_token="+fmt.Sprint("junk2-", i), "")
	}
	if hs := g.Status(now).Herds; len(hs) != 0 {
		t.Fatalf("made-up tokens declared a herd: %+v", hs)
	}
	for i := range 50 {
		serveReq(h, "GET", "http://other.example/_matrix/client/v3/account/whoami", fmt.Sprint("real-elsewhere-", i))
		serveReq(h, "GET", members, fmt.Sprint("real-elsewhere-", i))
	}
	if hs := g.Status(now).Herds; len(hs) != 0 {
		t.Fatalf("tokens another Host accepted declared a herd: %+v", hs)
	}
	signIn(h, "real-", 50)
	for i := range 50 {
		serveReq(h, "GET", members, fmt.Sprint("real-", i))
	}
	if hs := g.Status(now).Herds; len(hs) != 1 || hs[0].Users != 50 {
		t.Fatalf("50 accepted users: herds %+v", hs)
	}
}

func TestCoalescingOneTokenOneUpstreamFetch(t *testing.T) {
	up := &blockingUpstream{release: make(chan struct{})}
	g := newTestGate(t, DefaultConfig(), Options{})
	h := g.Middleware(up)
	var wg sync.WaitGroup
	var coalesced atomic.Int64
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := serveReq(h, "GET", statePath, "same-token")
			if rec.Code != 200 || rec.Body.String() != `{"token":"same-token"}` {
				t.Errorf("got %d %q", rec.Code, rec.Body.String())
			}
			if rec.Result().Header.Get("X-Mxgate-Coalesced") == "1" {
				coalesced.Add(1)
			}
		}()
	}
	testkit.Eventually(t, "the waiters", func() bool { return g.coalescer.Waiting() == 49 })
	close(up.release)
	wg.Wait()
	if n := up.calls.Load(); n != 1 {
		t.Fatalf("upstream fetched %d times for one token's identical requests", n)
	}
	if coalesced.Load() != 49 || g.counters.snapshot(matrix.RoomState).Coalesced != 49 {
		t.Fatalf("coalesced answers %d, counter %d", coalesced.Load(), g.counters.snapshot(matrix.RoomState).Coalesced)
	}
	// no-store: the completed answer is not kept for later requests.
	up.release = make(chan struct{})
	close(up.release)
	serveReq(h, "GET", statePath, "same-token")
	if n := up.calls.Load(); n != 2 {
		t.Fatalf("a no-store answer was served from the completion cache")
	}
}

func TestCoalescingNeverCrossesTokens(t *testing.T) {
	up := &blockingUpstream{release: make(chan struct{})}
	close(up.release)
	h := newTestGate(t, DefaultConfig(), Options{}).Middleware(up)
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := fmt.Sprint("token-", i)
			if rec := serveReq(h, "GET", statePath, tok); rec.Body.String() != fmt.Sprintf(`{"token":%q}`, tok) {
				t.Errorf("token %s got %q", tok, rec.Body.String())
			}
		}()
	}
	wg.Wait()
	if n := up.calls.Load(); n != 40 {
		t.Fatalf("upstream saw %d requests for 40 tokens", n)
	}
}

// A coalescing leader whose client leaves while queued gives up its place;
// the waiters of its group then go through admission themselves.
func TestCoalescingLeaderLeavesWhileQueued(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Classes[matrix.RoomState].MaxInflight = 1
	g := newTestGate(t, cfg, Options{})
	up := &blockingUpstream{release: make(chan struct{})}
	h := g.Middleware(up)
	// Occupy the only slot with another room's request.
	go serveReq(h, "GET", "/_matrix/client/v3/rooms/%21other%3Ax/state", "blocker")
	testkit.Eventually(t, "the waiters", func() bool { return up.calls.Load() == 1 })

	leaderCtx, leave := context.WithCancel(context.Background())
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		req := httptest.NewRequest("GET", statePath, nil).WithContext(leaderCtx)
		req.Header.Set("Authorization", "Bearer tok")
		h.ServeHTTP(httptest.NewRecorder(), req)
	}()
	testkit.Eventually(t, "the waiters", func() bool { _, cs := g.adm.Snapshot(); return cs[matrix.RoomState].Queued == 1 })
	waiter := make(chan *httptest.ResponseRecorder, 1)
	go func() { waiter <- serveReq(h, "GET", statePath, "tok") }()
	testkit.Eventually(t, "the waiters", func() bool { return g.coalescer.Waiting() == 1 })
	leave()
	<-leaderDone
	close(up.release)
	rec := <-waiter
	if rec.Code != 200 || rec.Body.String() != `{"token":"tok"}` {
		t.Fatalf("waiter got %d %q", rec.Code, rec.Body.String())
	}
	if n := up.calls.Load(); n != 2 {
		t.Fatalf("upstream calls %d, want the blocker and the waiter", n)
	}
}

// In a herd's room, only classes that may be shed get the herd's wider
// Retry-After: a send or a long-poll refused there is told to come back as
// soon as any other.
func TestHerdRetryRangeSparesCriticalClasses(t *testing.T) {
	cfg := DefaultConfig()
	for _, c := range []struct {
		class matrix.Class
		want  retryRange
	}{
		{matrix.Send, retryNormal},
		{matrix.Sync, retryNormal},
		{matrix.RoomState, retryHerd},
		{matrix.SyncInitial, retryHerd},
	} {
		f := &flow{limits: &cfg.Classes[c.class], lane: limiter.LaneHerd}
		if got := f.spread(); got != c.want {
			t.Errorf("%s in a herd: range %d, want %d", c.class, got, c.want)
		}
		f.lane = limiter.LaneNormal
		if got := f.spread(); got != retryNormal {
			t.Errorf("%s outside a herd: range %d", c.class, got)
		}
	}
}

// A homeserver endpoint that answers anyone (GET /login) proves nothing
// about a token: made-up tokens answered there still cannot declare a herd.
func TestHerdIgnoresTokensOnlySeenOnOpenEndpoints(t *testing.T) {
	cfg := DefaultConfig()
	for c := range cfg.Classes {
		cfg.Classes[c].Rate = 0
	}
	cfg.Herd.MinUsers = 5
	g := newTestGate(t, cfg, Options{})
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_matrix/client/v3/login" {
			fmt.Fprint(w, `{"flows":[]}`) // no authentication, as Synapse
			return
		}
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer real-") {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		fmt.Fprint(w, `{}`)
	}))
	for i := range 5 {
		tok := fmt.Sprint("fake-", i)
		serveReq(h, "GET", "/_matrix/client/v3/login", tok)
		if rec := serveReq(h, "GET", "/_matrix/client/v3/rooms/%21victim%3Ax/messages?dir=b", tok); rec.Code != http.StatusUnauthorized {
			t.Fatalf("made-up token answered %d", rec.Code)
		}
	}
	if hs := g.Status(g.now()).Herds; len(hs) != 0 {
		t.Errorf("made-up tokens declared a herd: %+v", hs)
	}
}

// A herd is declared only once enough of its users have asked, so its
// first requests queue in the normal lane. Declaring it moves them behind
// the rest of the class: another room's request that queues after them is
// served first.
func TestHerdDeclaredMovesItsQueuedRequestsBehindTheClass(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Herd.MinUsers, cfg.Herd.Window = 3, 10*time.Second
	cfg.Classes[matrix.RoomState].MaxInflight = 2
	cfg.Classes[matrix.RoomState].Queue = 10
	cfg.Classes[matrix.RoomState].Coalesce = 0
	g := newTestGate(t, cfg, Options{})
	arrived := make(chan string, 16)
	release := make(chan struct{})
	h := g.Middleware(heldStateUpstream(arrived, release))
	signIn(h, "user-", 6)
	var wg sync.WaitGroup
	state := func(room string, user int) {
		wg.Go(func() { serveReq(h, "GET", "/_matrix/client/v3/rooms/"+room+"/state", fmt.Sprint("user-", user)) })
	}
	queued := func(n int) { t.Helper(); roomStateQueued(t, g, n) }
	next := func() string { t.Helper(); return nextArrival(t, arrived) }
	const big, other = "%21big%3Ax", "%21other%3Ax"
	// Two requests for rooms of their own hold both slots.
	state("%21a%3Ax", 4)
	state("%21b%3Ax", 5)
	next()
	next()
	// The herd's first two users queue before the third declares it.
	state(big, 0)
	queued(1)
	state(big, 1)
	queued(2)
	state(big, 2)
	queued(3)
	if hs := g.Status(time.Now()).Herds; len(hs) != 1 {
		t.Fatalf("herds %+v, want the big room's", hs)
	}
	state(other, 3)
	queued(4)
	release <- struct{}{} // one slot frees
	if p := next(); p != "/_matrix/client/v3/rooms/"+other+"/state" {
		t.Fatalf("first admitted after the herd was declared: %s, want the other room's request", p)
	}
	close(release)
	for range 3 {
		if p := next(); p != "/_matrix/client/v3/rooms/"+big+"/state" {
			t.Fatalf("admitted %s, want the herd's", p)
		}
	}
	wg.Wait()
}

// No round trip is sampled during a herd, so a class still in its baseline
// probe would stay at the probe's half of its cap for the whole herd: its
// declaration ends the probes.
func TestHerdDeclaredEndsTheAdaptiveProbes(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Herd.MinUsers, cfg.Herd.Window = 3, 10*time.Second
	cfg.Classes[matrix.RoomState].MaxInflight = 4
	cfg.Classes[matrix.RoomState].Adaptive = true
	cfg.Classes[matrix.SyncInitial].MaxInflight = 6
	cfg.Classes[matrix.SyncInitial].Adaptive = true
	g := newTestGate(t, cfg, Options{})
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{}`) }))
	caps := func() (roomState, syncInitial int) {
		_, cs := g.adm.Snapshot()
		return cs[matrix.RoomState].Cap, cs[matrix.SyncInitial].Cap
	}
	if rs, si := caps(); rs != 2 || si != 3 {
		t.Fatalf("caps in the initial probes: room_state %d, sync_initial %d; want 2 and 3", rs, si)
	}
	signIn(h, "user-", 3)
	for user := range 2 {
		serveReq(h, "GET", "/_matrix/client/v3/rooms/%21big%3Ax/state", fmt.Sprint("user-", user))
	}
	if rs, si := caps(); rs != 2 || si != 3 {
		t.Fatalf("before the herd: room_state %d, sync_initial %d; want the probes' 2 and 3", rs, si)
	}
	serveReq(h, "GET", "/_matrix/client/v3/rooms/%21big%3Ax/state", "user-2")
	if hs := g.Status(time.Now()).Herds; len(hs) != 1 {
		t.Fatalf("herds %+v, want the big room's", hs)
	}
	if rs, si := caps(); rs != 4 || si != 6 {
		t.Errorf("during the herd: room_state %d, sync_initial %d; want the full caps 4 and 6", rs, si)
	}
}

// heldStateUpstream answers whoami at once and holds every other request, its
// path sent on arrived, until release is closed.
func heldStateUpstream(arrived chan<- string, release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/whoami") {
			fmt.Fprint(w, `{}`)
			return
		}
		arrived <- r.URL.EscapedPath()
		<-release
		fmt.Fprint(w, `{}`)
	})
}

// roomStateQueued waits, at most 5 s, until g's room_state queue holds n
// requests.
func roomStateQueued(t *testing.T, g *Gate, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, cs := g.adm.Snapshot(); cs[matrix.RoomState].Queued == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("room_state queue did not reach %d", n)
		}
		time.Sleep(time.Millisecond) // polling the admission state, bounded above
	}
}
