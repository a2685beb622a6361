package gate

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// newTestGate builds a gate for cfg and opts that closes when the test ends.
func newTestGate(t *testing.T, cfg Config, opts Options) *Gate {
	t.Helper()
	g, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{}`)) })
}

func serveReq(h http.Handler, method, target, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func limitExceeded(t *testing.T, rec *httptest.ResponseRecorder) matrix.LimitExceeded {
	t.Helper()
	if rec.Code != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", rec.Code)
	}
	var body matrix.LimitExceeded
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.ErrCode != "M_LIMIT_EXCEEDED" {
		t.Fatalf("body %q", rec.Body.String())
	}
	return body
}

const (
	searchURL  = "/_matrix/client/v3/search"
	sendPath   = "/_matrix/client/v3/rooms/%21r%3Ax/send/m.room.message/t1"
	statePath  = "/_matrix/client/v3/rooms/%21r%3Ax/state"
	typingPath = "/_matrix/client/v3/rooms/%21r%3Ax/typing/%40u%3Ax"
)

func TestStartupShedAndExpiry(t *testing.T) {
	clock := testkit.NewClock(time.Unix(1000, 0))
	cfg := DefaultConfig()
	cfg.Shed = []matrix.Class{matrix.Search}
	g, err := New(cfg, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := g.Middleware(okHandler())
	body := limitExceeded(t, serveReq(h, "POST", searchURL, "tok"))
	if !strings.Contains(body.Error, "shed in config") {
		t.Fatalf("reason missing: %q", body.Error)
	}
	if rec := serveReq(h, "PUT", sendPath, "tok"); rec.Code != 200 {
		t.Fatalf("send shed along with search: %d", rec.Code)
	}
	clock.Advance(StartupShedDuration + time.Second)
	if rec := serveReq(h, "POST", searchURL, "tok"); rec.Code != 200 {
		t.Fatalf("expired toggle still sheds: %d", rec.Code)
	}
}

func TestBrownoutShedsOnlyAtOrBelowPriority(t *testing.T) {
	toggles := limiter.NewMemoryToggles()
	g, err := New(DefaultConfig(), Options{Toggles: toggles})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	h := g.Middleware(okHandler())
	now := time.Now()
	if err := toggles.Put(limiter.Toggle{Target: "*", Priority: "normal", Mode: limiter.ModeShed, Reason: "brownout", Since: now, Until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path string
		shed         bool
	}{
		{"POST", searchURL, true},                         // sheddable
		{"PUT", typingPath, true},                         // ephemeral: sheddable
		{"GET", statePath, true},                          // normal
		{"PUT", sendPath, false},                          // critical
		{"GET", "/_matrix/client/v3/sync?since=x", false}, // critical
	} {
		rec := serveReq(h, tc.method, tc.path, "tok")
		if got := rec.Code == http.StatusTooManyRequests; got != tc.shed {
			t.Errorf("%s %s: shed=%v, want %v", tc.method, tc.path, got, tc.shed)
		}
	}
	// A class toggle overrides the brownout for its class.
	if err := toggles.Put(limiter.Toggle{Target: "room_state", Mode: limiter.ModeNormal, Since: now, Until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if rec := serveReq(h, "GET", statePath, "tok"); rec.Code != 200 {
		t.Fatalf("explicit normal toggle did not override brownout: %d", rec.Code)
	}
}

func TestRateLimitPerUser(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Classes[matrix.Search].Rate = 1
	cfg.Classes[matrix.Search].Burst = 2
	h := newTestGate(t, cfg, Options{}).Middleware(okHandler())
	for i := 0; i < 2; i++ {
		if rec := serveReq(h, "POST", searchURL, "alice"); rec.Code != 200 {
			t.Fatalf("burst request %d: %d", i, rec.Code)
		}
	}
	body := limitExceeded(t, serveReq(h, "POST", searchURL, "alice"))
	// At least until the bucket refills (~1s), at most that plus jitter.
	if body.RetryAfterMs < 900 || body.RetryAfterMs > 1000+cfg.RetryAfterMin.Milliseconds() {
		t.Fatalf("retry_after_ms %d", body.RetryAfterMs)
	}
	if rec := serveReq(h, "POST", searchURL, "bob"); rec.Code != 200 {
		t.Fatalf("another user was limited: %d", rec.Code)
	}
}

func TestQueueModePausesUntilRestored(t *testing.T) {
	before := runtime.NumGoroutine()
	toggles := limiter.NewMemoryToggles()
	g, err := New(DefaultConfig(), Options{Toggles: toggles})
	if err != nil {
		t.Fatal(err)
	}
	h := g.Middleware(okHandler())
	now := time.Now()
	if err := toggles.Put(limiter.Toggle{Target: "room_state", Mode: limiter.ModeQueue, Since: now, Until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 1)
	go func() { done <- serveReq(h, "GET", statePath, "tok").Code }()
	testkit.Eventually(t, "the request held in the queue", func() bool {
		_, cs := g.adm.Snapshot()
		return cs[matrix.RoomState].Queued == 1
	})
	if _, err := toggles.Remove("room_state", time.Now()); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		if code != 200 {
			t.Fatalf("released request got %d", code)
		}
	case <-time.After(5 * time.Second): // housekeeping notices within 500ms
		t.Fatal("request still held after restore")
	}
	g.Close()
	g.Close() // idempotent
	testkit.CheckGoroutines(t, before)
}

func TestCancelledWhileQueuedNeverReachesNext(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Classes[matrix.RoomState].MaxInflight = 1
	g := newTestGate(t, cfg, Options{})
	release := make(chan struct{})
	calls := make(chan struct{}, 10)
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls <- struct{}{}
		<-release
	}))
	go serveReq(h, "GET", statePath, "first")
	<-calls
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", statePath, nil).WithContext(ctx)
	errc := make(chan error, 1)
	go func() {
		errc <- g.ServeNext(httptest.NewRecorder(), req, func(http.ResponseWriter, *http.Request) error {
			t.Error("cancelled request reached next")
			return nil
		})
	}()
	testkit.Eventually(t, "the request to queue", func() bool {
		_, cs := g.adm.Snapshot()
		return cs[matrix.RoomState].Queued == 1
	})
	cancel()
	err := <-errc
	rej, ok := err.(*Rejection)
	if !ok || rej.Outcome != OutcomeCanceled || rej.StatusCode() != StatusClientClosed {
		t.Fatalf("want canceled rejection, got %v", err)
	}
	close(release)
}

func TestValidateRejectsNonsense(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RetryAfterMin = 0
	cfg.Classes[matrix.Search].Rate = 1
	cfg.Classes[matrix.Search].Burst = 0
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "retry_after") || !strings.Contains(err.Error(), "class search") {
		t.Fatalf("Validate: %v", err)
	}
	if _, err := New(cfg, Options{}); err == nil {
		t.Fatal("New accepted an invalid config")
	}
}

// racingToggles puts a toggle right after the gate has read the active set,
// as an operator's POST racing with a request would.
type racingToggles struct {
	*limiter.MemoryToggles
	race func()
}

func (r *racingToggles) Active(now time.Time) []limiter.Toggle {
	active := r.MemoryToggles.Active(now)
	if r.race != nil {
		race := r.race
		r.race = nil
		race()
	}
	return active
}

func TestToggleRacingWithRefreshIsNotLost(t *testing.T) {
	store := &racingToggles{MemoryToggles: limiter.NewMemoryToggles()}
	g, err := New(DefaultConfig(), Options{Toggles: store})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	now := time.Now()
	store.race = func() {
		store.Put(limiter.Toggle{Target: "search", Mode: limiter.ModeShed, Since: now, Until: now.Add(time.Hour)})
	}
	// Force a rebuild that reads the store while the toggle lands.
	store.Put(limiter.Toggle{Target: "keys", Mode: limiter.ModeShed, Since: now, Until: now.Add(time.Hour)})
	g.refreshModes(now)
	if m := g.refreshModes(now).modes[matrix.Search].mode; m != limiter.ModeShed {
		t.Fatalf("search mode %v after a racing shed, want shed", m)
	}
}
