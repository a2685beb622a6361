package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// heldUpstream answers each request once release lets one go, and reports
// every arrival.
type heldUpstream struct {
	arrived chan struct{}
	release chan struct{}
}

func newHeldUpstream() *heldUpstream {
	return &heldUpstream{arrived: make(chan struct{}, 100), release: make(chan struct{})}
}

func (u *heldUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.arrived <- struct{}{}
	<-u.release
	w.Write([]byte(`{}`))
}

// waitArrivals waits (bounded) for n requests to reach the upstream.
func (u *heldUpstream) waitArrivals(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for i := 0; i < n; i++ {
		select {
		case <-u.arrived:
		case <-timeout:
			t.Fatalf("only %d of %d requests reached the upstream", i, n)
		}
	}
}

func shadowGate(t *testing.T, clock *testkit.Clock, class matrix.Class, l func(*matrix.Limits), opts Options) *Gate {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Classes[class].Shadow = true
	l(&cfg.Classes[class])
	opts.Now = clock.Now
	g, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func newTestClock() *testkit.Clock {
	return testkit.NewClock(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
}

// A burst far over the cap all reaches the upstream at once; what the
// queue could not have held is counted would_shed, nothing is refused.
func TestShadowAdmitsOverCapAndCountsWouldShed(t *testing.T) {
	clock := newTestClock()
	g := shadowGate(t, clock, matrix.RoomState, func(l *matrix.Limits) {
		l.MaxInflight, l.Queue, l.QueueTimeout, l.Coalesce = 2, 3, time.Minute, 0
	}, Options{})
	up := newHeldUpstream()
	h := g.Middleware(up)
	const burst = 10
	codes := make(chan int, burst)
	for i := 0; i < burst; i++ {
		go func() { codes <- serveReq(h, "GET", statePath, fmt.Sprintf("tok%d", i)).Code }()
	}
	up.waitArrivals(t, burst) // all at once: the cap of 2 did not hold them
	st := classStatus(t, g.Status(clock.Now()), matrix.RoomState)
	if !st.Shadow || st.Inflight != burst || st.ShadowQueued != 3 || st.Queued != 0 {
		t.Fatalf("status during the burst: %+v", st)
	}
	if c := st.Counters; c.WouldShed != burst-2-3 || c.Shed != 0 || c.Admitted != burst {
		t.Fatalf("counters during the burst: %+v", c)
	}
	close(up.release)
	for i := 0; i < burst; i++ {
		if code := <-codes; code != http.StatusOK {
			t.Fatalf("shadow answer %d", code)
		}
	}
	if st := classStatus(t, g.Status(clock.Now()), matrix.RoomState); st.ShadowQueued != 0 || st.Inflight != 0 {
		t.Fatalf("after the burst: %+v", st)
	}
	// The same burst without shadow mode is refused as counted.
	cfg := DefaultConfig()
	cfg.Classes[matrix.RoomState] = g.cfg.Load().Classes[matrix.RoomState]
	cfg.Classes[matrix.RoomState].Shadow = false
	enforcing := newTestGate(t, cfg, Options{})
	up2 := newHeldUpstream()
	h2 := enforcing.Middleware(up2)
	for i := 0; i < burst; i++ {
		go func() { codes <- serveReq(h2, "GET", statePath, fmt.Sprintf("tok%d", i)).Code }()
	}
	up2.waitArrivals(t, 2)
	refused := 0
	for refused < burst-2-3 {
		select {
		case code := <-codes:
			if code != http.StatusTooManyRequests {
				t.Fatalf("enforcing gate answered %d during the burst", code)
			}
			refused++
		case <-time.After(5 * time.Second):
			t.Fatalf("enforcing gate refused %d, want %d", refused, burst-2-3)
		}
	}
	close(up2.release)
	for i := 0; i < burst-refused; i++ {
		<-codes
	}
}

// A request that found no room, still without the slot it would have had
// when its queue timeout passes, counts would_timeout.
func TestShadowWouldTimeout(t *testing.T) {
	clock := newTestClock()
	g := shadowGate(t, clock, matrix.RoomState, func(l *matrix.Limits) {
		l.MaxInflight, l.Queue, l.QueueTimeout, l.Coalesce = 1, 5, time.Second, 0
	}, Options{})
	up := newHeldUpstream()
	h := g.Middleware(up)
	codes := make(chan int, 3)
	for i := 0; i < 3; i++ {
		go func() { codes <- serveReq(h, "GET", statePath, "tok").Code }()
	}
	up.waitArrivals(t, 3)
	clock.Advance(2 * time.Second) // past both waiters' deadlines
	up.release <- struct{}{}       // the first answer frees the slot: too late for both
	if code := <-codes; code != http.StatusOK {
		t.Fatalf("answer %d", code)
	}
	c := classStatus(t, g.Status(clock.Now()), matrix.RoomState).Counters
	if c.WouldTimeout != 2 || c.WouldShed != 0 || c.Timeout != 0 {
		t.Fatalf("counters %+v", c)
	}
	close(up.release)
	for i := 0; i < 2; i++ {
		if code := <-codes; code != http.StatusOK {
			t.Fatalf("answer %d", code)
		}
	}
	// Within the deadline the freed slot goes to the waiter: no timeout.
	up2 := newHeldUpstream()
	h2 := g.Middleware(up2)
	for i := 0; i < 2; i++ {
		go func() { codes <- serveReq(h2, "GET", statePath, "tok").Code }()
	}
	up2.waitArrivals(t, 2)
	if st := classStatus(t, g.Status(clock.Now()), matrix.RoomState); st.ShadowQueued != 1 {
		t.Fatalf("second request not in the would-be queue: %+v", st)
	}
	up2.release <- struct{}{}
	<-codes
	clock.Advance(2 * time.Second) // the waiter had its slot before its deadline
	close(up2.release)
	<-codes
	if c := classStatus(t, g.Status(clock.Now()), matrix.RoomState).Counters; c.WouldTimeout != 2 {
		t.Fatalf("a waiter served in time counted as a timeout: %+v", c)
	}
}

// Rate buckets only observe, and say so in a sampled log that never holds
// the token; an operator's shed still sheds and a queue toggle still holds.
func TestShadowRateLimitsObserveOperatorTogglesAct(t *testing.T) {
	clock := newTestClock()
	var logs bytes.Buffer
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(lockedWriter{&logs, &logMu}, nil))
	g := shadowGate(t, clock, matrix.Search, func(l *matrix.Limits) { l.Rate, l.Burst = 1, 1 }, Options{Logger: logger})
	reached := 0
	h := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		w.Write([]byte(`{}`))
	}))
	for i := 0; i < 20; i++ {
		if rec := serveReq(h, "POST", searchURL, secretToken); rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d", i, rec.Code)
		}
	}
	c := classStatus(t, g.Status(clock.Now()), matrix.Search).Counters
	if reached != 20 || c.WouldRateLimited != 19 || c.RateLimited != 0 {
		t.Fatalf("reached %d, counters %+v", reached, c)
	}
	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if n := strings.Count(out, "shadow mode: would have refused"); n != 1 || !strings.Contains(out, "outcome=would_rate_limited") {
		t.Fatalf("want one sampled line, got:\n%s", out)
	}
	if strings.Contains(out, secretToken) || strings.Contains(out, "c2VjcmV0") {
		t.Fatalf("token in the log:\n%s", out)
	}

	now := clock.Now()
	if err := g.SetToggle(limiter.Toggle{Target: "search", Mode: limiter.ModeShed, Reason: "operator", Since: now, Until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	limitExceeded(t, serveReq(h, "POST", searchURL, "other"))
	if err := g.SetToggle(limiter.Toggle{Target: "search", Mode: limiter.ModeQueue, Reason: "hold", Since: now, Until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req := httptest.NewRequest("POST", searchURL, nil).WithContext(ctx)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req) // held until the client gives up
	c = classStatus(t, g.Status(clock.Now()), matrix.Search).Counters
	if reached != 20 || c.Canceled != 1 || c.Shed != 1 {
		t.Fatalf("a toggle let a shadow request through: reached %d, counters %+v", reached, c)
	}
}

// Error shedding's 429 is a would_shed in shadow mode.
func TestShadowErrorShedObserves(t *testing.T) {
	clock := newTestClock()
	cfg := DefaultConfig()
	cfg.ErrorShed = DefaultErrorShed()
	cfg.ErrorShed.Enabled = true
	cfg.Classes[matrix.Search].Shadow = true
	g, err := New(cfg, Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	failing := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	for i := 0; i < 2*DefaultErrorShedMinSamples; i++ {
		serveReq(failing, "GET", statePath, "tok")
	}
	if !g.Status(clock.Now()).ErrorShed.Shedding {
		t.Fatal("error shedding did not trip")
	}
	h := g.Middleware(okHandler())
	if rec := serveReq(h, "POST", searchURL, "tok"); rec.Code != http.StatusOK {
		t.Fatalf("shadow search during error shedding: %d", rec.Code)
	}
	if c := classStatus(t, g.Status(clock.Now()), matrix.Search).Counters; c.WouldShed != 1 || c.Shed != 0 {
		t.Fatalf("search counters %+v", c)
	}
	// A sheddable class not in shadow mode is shed as usual.
	limitExceeded(t, serveReq(h, "PUT", typingPath, "tok"))
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// In shadow mode refuse lets only an automatic limit's refusal through,
// counted as its would-be outcome; a hold's and an operator's still refuse.
func TestShadowRefuseSeam(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Classes[matrix.Search].Shadow = true
	g := newTestGate(t, cfg, Options{})
	c := g.cfg.Load()
	for o, want := range map[Outcome]Outcome{OutcomeShed: OutcomeWouldShed, OutcomeRateLimited: OutcomeWouldRateLimited, OutcomeTimeout: OutcomeWouldTimeout} {
		if err := g.refuse(c, matrix.Search, byLimit, o, "limit", retryNormal, 0); err != nil {
			t.Fatalf("shadow %s refused: %v", o, err)
		}
		if g.counters[matrix.Search][outcomeIndex(want)].Load() != 1 || g.counters[matrix.Search][outcomeIndex(o)].Load() != 0 {
			t.Fatalf("%s not counted as %s: %+v", o, want, g.counters.snapshot(matrix.Search))
		}
	}
	for _, by := range []refusal{byHold, byOperator} {
		var rej *Rejection
		if err := g.refuse(c, matrix.Search, by, OutcomeShed, "hold", retryNormal, 0); !errors.As(err, &rej) || rej.by != by {
			t.Fatalf("refusal %d let through in shadow mode: %v", by, err)
		}
	}
	if err := g.refuse(c, matrix.RoomState, byLimit, OutcomeShed, "limit", retryNormal, 0); err == nil {
		t.Fatal("a class not in shadow mode was let through")
	}
}
