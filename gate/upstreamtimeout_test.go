package gate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// The timeouts are real timers: their bounds are wide apart (what must be
// cut takes forever, what must not be cut ends well inside its budget).
const testUpstreamTimeout = 500 * time.Millisecond

// timeoutGate is a gate whose classes answer within testUpstreamTimeout.
func timeoutGate(t *testing.T) *Gate {
	t.Helper()
	cfg := DefaultConfig()
	for c := range cfg.Classes {
		if cfg.Classes[c].UpstreamTimeout > 0 {
			cfg.Classes[c].UpstreamTimeout = testUpstreamTimeout
		}
	}
	return newTestGate(t, cfg, Options{})
}

// serveNext sends one request through g to next, as Caddy's handler does,
// bounded in time.
func serveTimed(t *testing.T, g *Gate, req *http.Request, next Next) (*httptest.ResponseRecorder, error, time.Duration) {
	t.Helper()
	rec := httptest.NewRecorder()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- g.ServeNext(rec, req, next) }()
	select {
	case err := <-done:
		return rec, err, time.Since(start)
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not end within 10s")
		return nil, nil, 0
	}
}

// A stuck upstream: next waits on the request's context, as the transport
// does, and returns its cause without writing, as Caddy's reverse proxy does.
func stuckUpstream(w http.ResponseWriter, r *http.Request) error {
	<-r.Context().Done()
	return context.Cause(r.Context())
}

// A stuck upstream frees the request and its slot after the class's
// upstream_timeout with a 504 that the failure model counts as overload:
// a failed answer, but no evidence that the upstream is down.
func TestUpstreamTimeoutCutsAStuckUpstream(t *testing.T) {
	g := timeoutGate(t)
	req := httptest.NewRequest(http.MethodGet, historyPath, nil)
	req.Header.Set("Authorization", "Bearer tok")
	_, err, took := serveTimed(t, g, req, stuckUpstream)
	var sc interface{ StatusCode() int }
	if !errors.As(err, &sc) || sc.StatusCode() != http.StatusGatewayTimeout {
		t.Fatalf("got %v, want an error with status 504", err)
	}
	if !strings.Contains(err.Error(), "upstream_timeout") {
		t.Errorf("the error %q does not say which setting cut it", err)
	}
	if took < testUpstreamTimeout {
		t.Errorf("cut after %v, before the timeout %v", took, testUpstreamTimeout)
	}
	st := classStatus(t, g.Status(time.Now()), matrix.History)
	if st.Inflight != 0 {
		t.Errorf("%d history requests still in flight", st.Inflight)
	}
	if g.adm.Down() {
		t.Error("a slow upstream was marked down: ride-through would hold every class")
	}
	// It is the upstream's failure to answer, for the 5xx windows.
	if h := g.UpstreamHealth(time.Now()); h.Responses != 1 || h.ErrorRatio != 1 {
		t.Errorf("upstream health after a timeout: %+v", h)
	}
}

// An answer whose header came in time is not cut however long its body
// takes, and the long-poll class has no timeout at all.
func TestUpstreamTimeoutSparesStartedAnswersAndLongPolls(t *testing.T) {
	g := timeoutGate(t)
	slowBody := func(w http.ResponseWriter, r *http.Request) error {
		w.WriteHeader(http.StatusOK)
		select {
		case <-time.After(3 * testUpstreamTimeout):
		case <-r.Context().Done():
			return context.Cause(r.Context())
		}
		_, err := io.WriteString(w, `{"chunk":[]}`)
		return err
	}
	req := httptest.NewRequest(http.MethodGet, historyPath, nil)
	req.Header.Set("Authorization", "Bearer tok")
	rec, err, _ := serveTimed(t, g, req, slowBody)
	if err != nil || rec.Body.String() != `{"chunk":[]}` {
		t.Errorf("a slow body after a prompt header: %v, %q", err, rec.Body.String())
	}

	if matrix.DefaultLimits[matrix.Sync].UpstreamTimeout != 0 {
		t.Fatal("long-poll sync has an upstream timeout by default")
	}
	longPoll := func(w http.ResponseWriter, r *http.Request) error {
		select {
		case <-time.After(3 * testUpstreamTimeout):
		case <-r.Context().Done():
			return context.Cause(r.Context())
		}
		_, err := io.WriteString(w, `{"next_batch":"s2"}`)
		return err
	}
	req = httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/sync?since=s1&timeout=30000", nil)
	req.Header.Set("Authorization", "Bearer tok")
	rec, err, _ = serveTimed(t, g, req, longPoll)
	if err != nil || rec.Body.String() != `{"next_batch":"s2"}` {
		t.Errorf("a long-poll: %v, %q", err, rec.Body.String())
	}
}

// slowReader sends its parts one per interval, as a slow upload does.
type slowReader struct {
	parts    []string
	interval time.Duration
}

func (s *slowReader) Read(p []byte) (int, error) {
	if len(s.parts) == 0 {
		return 0, io.EOF
	}
	time.Sleep(s.interval)
	n := copy(p, s.parts[0])
	s.parts = s.parts[1:]
	return n, nil
}

// The timeout starts once the request's body has been sent: an upload that
// takes longer than it is not cut, while an upstream that then stalls is.
func TestUpstreamTimeoutStartsAfterTheBody(t *testing.T) {
	g := timeoutGate(t)
	upload := func() *http.Request {
		body := &slowReader{parts: []string{"a", "b", "c"}, interval: testUpstreamTimeout}
		req := httptest.NewRequest(http.MethodPost, "/_matrix/media/v3/upload", io.NopCloser(body))
		req.Header.Set("Authorization", "Bearer tok")
		return req
	}
	readThenAnswer := func(w http.ResponseWriter, r *http.Request) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		_, err = io.WriteString(w, `{"got":"`+string(b)+`"}`)
		return err
	}
	rec, err, took := serveTimed(t, g, upload(), readThenAnswer)
	if err != nil || rec.Body.String() != `{"got":"abc"}` {
		t.Errorf("a slow upload (%v, timeout %v): %v, %q", took, testUpstreamTimeout, err, rec.Body.String())
	}

	readThenStall := func(w http.ResponseWriter, r *http.Request) error {
		if _, err := io.ReadAll(r.Body); err != nil {
			return err
		}
		return stuckUpstream(w, r)
	}
	_, err, took = serveTimed(t, g, upload(), readThenStall)
	var sc interface{ StatusCode() int }
	if !errors.As(err, &sc) || sc.StatusCode() != http.StatusGatewayTimeout {
		t.Errorf("a stall after the upload: %v, want 504", err)
	}
	if took < 3*testUpstreamTimeout+testUpstreamTimeout {
		t.Errorf("cut after %v: the timeout ran during the upload", took)
	}
	if ev := newAttempt(0, err, nil, context.Background()).evidence(); ev != limiter.EvidenceNone {
		t.Errorf("a timeout is evidence %v against the upstream", ev)
	}
}

// armTimer starts a timer of after in l for a bodiless request and returns
// it with the context it cancels.
func armTimer(l *answerDeadlines, after time.Duration) (*answerTimer, context.Context) {
	t := &answerTimer{}
	r := t.start(httptest.NewRequest(http.MethodGet, "/", nil), after, l, nil)
	return t, r.Context()
}

// waitCut waits, bounded, for ctx to be cut by its upstream timeout.
func waitCut(t *testing.T, name string, ctx context.Context) {
	t.Helper()
	select {
	case <-ctx.Done():
		var ut upstreamTimeoutError
		if !errors.As(context.Cause(ctx), &ut) {
			t.Errorf("%s: cancelled with %v, not the upstream timeout", name, context.Cause(ctx))
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s was not cut within 10s", name)
	}
}

// A class's timers wait in one list behind one timer: each fires at its
// own deadline, in deadline order, also when a reload shortened the class's
// timeout after a longer one was armed; an answered timer leaves the list
// and never fires.
func TestAnswerDeadlinesFireInDeadlineOrder(t *testing.T) {
	var l answerDeadlines
	const long, short = 2 * time.Second, 50 * time.Millisecond
	armed := time.Now()
	slow, slowCtx := armTimer(&l, long)    // armed before a reload
	fast, fastCtx := armTimer(&l, short)   // after it: expires first
	quiet, quietCtx := armTimer(&l, short) // answered at once
	quiet.answer()
	later, laterCtx := armTimer(&l, short)

	waitCut(t, "the short timer", fastCtx)
	waitCut(t, "the second short timer", laterCtx)
	if took := time.Since(armed); took >= long {
		t.Fatalf("the short timers fired after %v, not before the long one's %v", took, long)
	}
	if slowCtx.Err() != nil {
		t.Fatal("the long timer fired with the short ones")
	}
	waitCut(t, "the long timer", slowCtx)
	if took := time.Since(armed); took < long {
		t.Errorf("the long timer fired after %v, before its %v", took, long)
	}
	if quietCtx.Err() != nil {
		t.Error("an answered timer fired")
	}
	if !slow.stop() || !fast.stop() || !later.stop() || quiet.stop() {
		t.Error("stop does not report which timers fired")
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.idleLocked() || len(l.queues) != 2 {
		t.Errorf("after every timer fired or was answered: idle %v, %d queues (want 2, one per timeout)", l.idleLocked(), len(l.queues))
	}
}

// Timers armed and answered from many goroutines, answered twice (by the
// header, then by stop) or never: the list stays whole, every unanswered
// timer fires and no answered one does (run with -race).
func TestAnswerDeadlinesConcurrentArmAndAnswer(t *testing.T) {
	var l answerDeadlines
	const n = 400
	type armedTimer struct {
		t        *answerTimer
		ctx      context.Context
		answered bool
	}
	timers := make([]armedTimer, n)
	var wg sync.WaitGroup
	for i := range timers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tm, ctx := armTimer(&l, time.Duration(50+i%7)*time.Millisecond)
			timers[i] = armedTimer{t: tm, ctx: ctx, answered: i%3 != 0}
			if timers[i].answered {
				tm.answer()
				tm.answer()
			}
		}()
	}
	wg.Wait()
	for i, at := range timers {
		if at.answered {
			continue
		}
		waitCut(t, fmt.Sprintf("timer %d", i), at.ctx)
	}
	for i, at := range timers {
		if at.answered && at.ctx.Err() != nil {
			t.Errorf("answered timer %d fired", i)
		}
		if fired := at.t.stop(); fired == at.answered {
			t.Errorf("timer %d: stop reports fired=%v, answered=%v", i, fired, at.answered)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.idleLocked() {
		t.Error("timers are left in the list")
	}
}

// Once its last request was answered a class's timer is stopped, so that a
// gate that was closed and dropped (a zone removed on reload) is collected
// then, not at the answered request's deadline.
func TestClosedGateIsCollectedWithTimersAnswered(t *testing.T) {
	collected := make(chan struct{})
	func() {
		g, err := New(DefaultConfig(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/profile/@u:x", nil)
		answer := func(w http.ResponseWriter, _ *http.Request) error {
			_, err := io.WriteString(w, `{}`)
			return err
		}
		if err := g.ServeNext(httptest.NewRecorder(), req, answer); err != nil {
			t.Fatal(err)
		}
		g.Close()
		runtime.AddCleanup(g, func(ch chan struct{}) { close(ch) }, collected)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		runtime.GC()
		select {
		case <-collected:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("a closed, dropped gate is still reachable 5s later")
}

// An informational answer (100 Continue, 103 Early Hints) is not the
// answer: an upstream that sends one and then stalls is still cut.
func TestUpstreamTimeoutRunsOnAfterAnInformationalAnswer(t *testing.T) {
	g := timeoutGate(t)
	for _, code := range []int{http.StatusContinue, http.StatusEarlyHints} {
		req := httptest.NewRequest(http.MethodGet, historyPath, nil)
		req.Header.Set("Authorization", "Bearer tok")
		_, err, took := serveTimed(t, g, req, func(w http.ResponseWriter, r *http.Request) error {
			w.WriteHeader(code)
			return stuckUpstream(w, r)
		})
		var sc interface{ StatusCode() int }
		if !errors.As(err, &sc) || sc.StatusCode() != http.StatusGatewayTimeout {
			t.Errorf("%d then a stall: %v after %v, want 504", code, err, took)
		}
	}
}

// With ride-through on, a retryable upload bigger than max_body is sent
// once, partly read ahead: its timeout still starts after the body.
func TestUpstreamTimeoutStartsAfterAPartlyBufferedBody(t *testing.T) {
	cfg := DefaultConfig()
	for c := range cfg.Classes {
		if cfg.Classes[c].UpstreamTimeout > 0 {
			cfg.Classes[c].UpstreamTimeout = testUpstreamTimeout
		}
	}
	cfg.RideThrough.Enabled = true
	cfg.RideThrough.MaxBody = 1
	g := newTestGate(t, cfg, Options{})
	// Two parts are read ahead, then found over max_body; the last three
	// take longer than the timeout.
	body := &slowReader{parts: []string{"a", "b", "c", "d", "e"}, interval: testUpstreamTimeout / 2}
	req := httptest.NewRequest(http.MethodPut, "/_matrix/client/v3/rooms/%21abc%3Aexample.org/send/m.room.message/txn1", io.NopCloser(body))
	req.Header.Set("Authorization", "Bearer tok")
	rec, err, took := serveTimed(t, g, req, func(w http.ResponseWriter, r *http.Request) error {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		if r.Context().Err() != nil {
			return context.Cause(r.Context()) // cut while reading
		}
		_, err = io.WriteString(w, `{"got":"`+string(b)+`"}`)
		return err
	})
	if err != nil || rec.Body.String() != `{"got":"abcde"}` {
		t.Errorf("a slow upload over max_body (%v, timeout %v): %v, %q", took, testUpstreamTimeout, err, rec.Body.String())
	}
}
