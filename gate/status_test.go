package gate

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

const secretToken = "syt_c2VjcmV0_thisMustNeverShow_0a1b2c"

func newStatusGate(t *testing.T, upstreamStatus int) (*Gate, *testkit.Clock, http.Handler) {
	t.Helper()
	clock := testkit.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	g, err := New(DefaultConfig(), Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(upstreamStatus)
	}))
	return g, clock, h
}

func do(h http.Handler, method, path string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader("{}"))
	r.Header.Set("Authorization", "Bearer "+secretToken)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

const (
	searchPath   = "/_matrix/client/v3/search"
	messagesPath = "/_matrix/client/v3/rooms/!r:example.org/messages"
)

func classStatus(t *testing.T, st Status, c matrix.Class) ClassStatus {
	t.Helper()
	for _, cs := range st.Classes {
		if cs.Class == c.String() {
			return cs
		}
	}
	t.Fatalf("class %s missing from status", c)
	return ClassStatus{}
}

func TestStatusReportsTogglesCountersAndLimits(t *testing.T) {
	g, clock, h := newStatusGate(t, http.StatusOK)
	now := clock.Now()

	if w := do(h, "POST", searchPath); w.Code != http.StatusOK {
		t.Fatalf("search before shedding: %d", w.Code)
	}
	err := g.SetToggle(limiter.Toggle{Target: "search", Mode: limiter.ModeShed, Reason: "db on fire",
		Since: now, Until: now.Add(15 * time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	w := do(h, "POST", searchPath)
	if w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), "db on fire") {
		t.Fatalf("search while shed: %d %s", w.Code, w.Body)
	}
	if w := do(h, "GET", messagesPath); w.Code != http.StatusOK {
		t.Fatalf("history while search is shed: %d", w.Code)
	}

	if up := g.Status(clock.Now()).Upstream; up.Responses != 2 || up.Reachable == nil || !*up.Reachable {
		t.Errorf("upstream %+v, want 2 responses and reachable", up)
	}

	clock.Advance(5 * time.Minute)
	st := g.Status(clock.Now())
	search := classStatus(t, st, matrix.Search)
	if search.Mode != limiter.ModeShed || search.Reason != "db on fire" {
		t.Errorf("search mode %v reason %q, want shed / db on fire", search.Mode, search.Reason)
	}
	if search.Counters.Admitted != 1 || search.Counters.Shed != 1 {
		t.Errorf("search counters %+v, want 1 admitted 1 shed", search.Counters)
	}
	def := matrix.DefaultLimits[matrix.Search]
	if search.Priority != "sheddable" || search.Limits.MaxInflight != def.MaxInflight ||
		search.Limits != def || search.Cap != def.MaxInflight {
		t.Errorf("search limits %+v cap %d, want the defaults %+v", search.Limits, search.Cap, def)
	}
	if hist := classStatus(t, st, matrix.History); hist.Mode != limiter.ModeNormal || hist.Counters.Admitted != 1 {
		t.Errorf("history %+v, want normal with 1 admitted", hist)
	}
	if len(st.Toggles) != 1 || st.Toggles[0].Class != "search" || st.Toggles[0].Remaining != "10m0s" {
		t.Errorf("toggles %+v, want search with 10m0s remaining", st.Toggles)
	}
	if st.Global.MaxInflight != matrix.DefaultMaxInflight || st.Global.Inflight != 0 {
		t.Errorf("global %+v", st.Global)
	}
	// The two answers were five minutes ago: outside the health window.
	if st.Upstream.Responses != 0 || st.Upstream.Reachable != nil || st.Upstream.LastAnswer == nil {
		t.Errorf("upstream %+v, want no recent responses but a last answer", st.Upstream)
	}

	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), secretToken) || strings.Contains(string(b), "thisMustNeverShow") {
		t.Fatal("status JSON contains the access token")
	}
	if !strings.Contains(string(b), `"mode":"shed"`) {
		t.Errorf("modes are not names in JSON: %s", b)
	}

	// The toggle expires by itself.
	clock.Advance(11 * time.Minute)
	st = g.Status(clock.Now())
	if m := classStatus(t, st, matrix.Search).Mode; m != limiter.ModeNormal || len(st.Toggles) != 0 {
		t.Errorf("after expiry mode %v toggles %+v", m, st.Toggles)
	}
	if w := do(h, "POST", searchPath); w.Code != http.StatusOK {
		t.Errorf("search after expiry: %d", w.Code)
	}
}

func TestBrownoutAndClear(t *testing.T) {
	g, clock, h := newStatusGate(t, http.StatusOK)
	now := clock.Now()
	err := g.SetToggle(limiter.Toggle{Target: "*", Priority: "normal", Mode: limiter.ModeShed, Reason: "brownout",
		Since: now, Until: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	st := g.Status(now)
	for _, cs := range st.Classes {
		c, _ := matrix.ParseClass(cs.Class)
		want := limiter.ModeShed
		if matrix.DefaultLimits[c].Priority == matrix.Critical {
			want = limiter.ModeNormal
		}
		if cs.Mode != want {
			t.Errorf("%s (%s): mode %v, want %v", cs.Class, cs.Priority, cs.Mode, want)
		}
	}
	if w := do(h, "GET", messagesPath); w.Code != http.StatusTooManyRequests {
		t.Errorf("history under normal brownout: %d", w.Code)
	}
	removed, err := g.ClearToggle(ToggleKey("*", "normal"))
	if err != nil || !removed {
		t.Fatalf("ClearToggle = %v, %v", removed, err)
	}
	if w := do(h, "GET", messagesPath); w.Code != http.StatusOK {
		t.Errorf("history after clearing the brownout: %d", w.Code)
	}
	if removed, err := g.ClearToggle("search"); err != nil || removed {
		t.Errorf("clearing an absent toggle = %v, %v; want false, nil", removed, err)
	}
}

func TestSetToggleValidates(t *testing.T) {
	g, clock, _ := newStatusGate(t, http.StatusOK)
	now := clock.Now()
	ok := limiter.Toggle{Target: "search", Mode: limiter.ModeShed, Since: now, Until: now.Add(time.Minute)}
	for name, mutate := range map[string]func(*limiter.Toggle){
		"unknown class":      func(t *limiter.Toggle) { t.Target = "nope" },
		"critical brownout":  func(t *limiter.Toggle) { t.Target, t.Priority = "*", "critical" },
		"brownout no prio":   func(t *limiter.Toggle) { t.Target = "*" },
		"class with prio":    func(t *limiter.Toggle) { t.Priority = "normal" },
		"bad mode":           func(t *limiter.Toggle) { t.Mode = 7 },
		"ends before starts": func(t *limiter.Toggle) { t.Until = t.Since },
		"control chars":      func(t *limiter.Toggle) { t.Reason = "a\nb" },
		"long reason":        func(t *limiter.Toggle) { t.Reason = strings.Repeat("x", MaxReasonLen+1) },
		"longer than max_toggle_duration": func(t *limiter.Toggle) {
			t.Until = t.Since.Add(DefaultMaxToggleDuration + time.Second)
		},
	} {
		tg := ok
		mutate(&tg)
		if err := g.SetToggle(tg); !errors.Is(err, ErrBadToggle) {
			t.Errorf("%s: err = %v, want ErrBadToggle", name, err)
		}
	}
	if len(g.Toggles().Active(now)) != 0 {
		t.Error("an invalid toggle was stored")
	}
	for _, key := range []string{"nope", "*:critical", "*", "*:"} {
		if _, err := g.ClearToggle(key); !errors.Is(err, ErrBadToggle) {
			t.Errorf("ClearToggle(%q) = %v, want ErrBadToggle", key, err)
		}
	}
	if err := g.SetToggle(ok); err != nil {
		t.Errorf("valid toggle: %v", err)
	}
}

func TestUpstreamHealthCountsFailures(t *testing.T) {
	g, clock, h := newStatusGate(t, http.StatusServiceUnavailable)
	if st := g.UpstreamHealth(clock.Now()); st.Reachable != nil || st.Responses != 0 {
		t.Errorf("before traffic: %+v, want unknown", st)
	}
	for range 3 {
		do(h, "GET", messagesPath)
	}
	st := g.UpstreamHealth(clock.Now())
	if st.Responses != 3 || st.ErrorRatio != 1 || st.Reachable == nil || !*st.Reachable {
		t.Errorf("after 3×503: %+v, want 3 responses, ratio 1, reachable (it answered)", st)
	}
	// A request that got no answer at all makes the upstream unreachable.
	g.upstream.record(attempt{err: statusError{http.StatusBadGateway, errors.New("connection reset")}}, clock.Now().Add(time.Second))
	st = g.UpstreamHealth(clock.Now().Add(time.Second))
	if st.Reachable == nil || *st.Reachable {
		t.Errorf("after a failed connect: %+v, want unreachable", st)
	}
	// A client leaving is not the upstream's failure.
	g.upstream.record(attempt{err: statusError{StatusClientClosed, context.Canceled}, clientFault: true}, clock.Now().Add(time.Second))
	if st2 := g.UpstreamHealth(clock.Now().Add(time.Second)); st2.Responses != st.Responses {
		t.Errorf("a canceled request was counted: %d != %d", st2.Responses, st.Responses)
	}
	// Two minutes later there is no evidence either way.
	if st := g.UpstreamHealth(clock.Now().Add(2 * time.Minute)); st.Reachable != nil || st.Responses != 0 {
		t.Errorf("stale observations still count: %+v", st)
	}
}

func TestConfigShedEndsWhenRemovedFromConfig(t *testing.T) {
	clock := testkit.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	cfg := DefaultConfig()
	cfg.Shed = []matrix.Class{matrix.Search, matrix.Receipts}
	g, err := New(cfg, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	now := clock.Now()
	// The operator's own toggle on receipts replaces the config one.
	if err := g.SetToggle(limiter.Toggle{Target: "receipts", Mode: limiter.ModeQueue, Reason: "ops",
		Since: now, Until: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	cfg.Shed = nil
	if err := g.Configure(cfg); err != nil {
		t.Fatal(err)
	}
	st := g.Status(now)
	if m := classStatus(t, st, matrix.Search).Mode; m != limiter.ModeNormal {
		t.Errorf("search still %v after `shed search` left the config", m)
	}
	if m := classStatus(t, st, matrix.Receipts).Mode; m != limiter.ModeQueue {
		t.Errorf("operator toggle on receipts became %v on reload", m)
	}
}
