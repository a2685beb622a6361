package gate

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
)

// brokenOffUpstream is a Next whose first answer breaks off as Caddy's
// reverse proxy does when the upstream's connection closes mid-answer (it
// panics with http.ErrAbortHandler): after the headers and a flush, after
// bodyBytes of the body. Later attempts answer in full.
type brokenOffUpstream struct {
	bodyBytes int
	calls     atomic.Int64
	bodies    []string
}

func (u *brokenOffUpstream) next(w http.ResponseWriter, r *http.Request) error {
	n := u.calls.Add(1)
	b, _ := io.ReadAll(r.Body)
	u.bodies = append(u.bodies, string(b))
	answer := `{"event_id":"$e` + fmt.Sprint(n) + `"}`
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Attempt", fmt.Sprint(n))
	w.WriteHeader(http.StatusOK)
	http.NewResponseController(w).Flush()
	if n == 1 {
		io.WriteString(w, answer[:u.bodyBytes])
		panic(http.ErrAbortHandler)
	}
	io.WriteString(w, answer)
	return nil
}

// serveRecovered is serveNext for a brokenOffUpstream, recovering the
// panic that ends a request the gate cannot retry.
func serveRecovered(g *Gate, up *brokenOffUpstream, method, path, body string) (rec *httptest.ResponseRecorder, panicked any) {
	rec = httptest.NewRecorder()
	defer func() { panicked = recover() }()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if err := g.ServeNext(rec, req, up.next); err != nil {
		rec.WriteHeader(599)
	}
	return rec, nil
}

// An answer the upstream breaks off before its body began (a restart
// cutting the connection after the headers) has sent the client nothing: a
// request that may be sent twice is sent again and answered in full, with
// none of the broken answer's headers. Once part of the body went out, or
// for a request that may not be repeated, the break goes on to the server
// (which drops the connection) and the upstream is asked once.
func TestRideThroughRetriesAnAnswerBrokenOffBeforeItsBody(t *testing.T) {
	cfg := rideThroughConfig()
	g := newTestGate(t, cfg, Options{})

	up := &brokenOffUpstream{}
	rec, p := serveRecovered(g, up, "PUT", sendPath, `{"body":"hi"}`)
	if p != nil || rec.Code != http.StatusOK || rec.Body.String() != `{"event_id":"$e2"}` {
		t.Fatalf("retried send: panic %v, %d %q", p, rec.Code, rec.Body)
	}
	if got := rec.Header().Values("X-Attempt"); len(got) != 1 || got[0] != "2" {
		t.Fatalf("X-Attempt %q: the broken answer's headers reached the client", got)
	}
	if !rec.Flushed {
		t.Fatal("the retried answer's flush was lost")
	}
	if len(up.bodies) != 2 || up.bodies[1] != `{"body":"hi"}` {
		t.Fatalf("bodies sent upstream %q, want the send twice", up.bodies)
	}

	for _, tc := range []struct {
		name, method, path string
		bodyBytes          int
	}{
		{"part of the body sent", "PUT", "/_matrix/client/v3/rooms/%21r%3Ax/send/m.room.message/t9", 3},
		{"not repeatable", "POST", "/_matrix/client/v3/createRoom", 0},
	} {
		up := &brokenOffUpstream{bodyBytes: tc.bodyBytes}
		_, p := serveRecovered(g, up, tc.method, tc.path, `{}`)
		if p != http.ErrAbortHandler || up.calls.Load() != 1 {
			t.Errorf("%s: panic %v after %d attempts, want http.ErrAbortHandler after 1", tc.name, p, up.calls.Load())
		}
	}
	if st := g.Status(time.Now()).Global; st.Inflight != 0 {
		t.Fatalf("%d slots still held after the broken answers", st.Inflight)
	}
}

// serveAborting runs one request through g to next and returns the panic
// that ended it, if any.
func serveAborting(g *Gate, rec http.ResponseWriter, req *http.Request, next Next) (err error, panicked any) {
	defer func() { panicked = recover() }()
	return g.ServeNext(rec, req, next), nil
}

// An abort before any status (Caddy's abort handler after mxgate) is no
// answer the upstream broke off: it goes on to the server at once, and the
// upstream is not judged by it.
func TestAbortWithNothingWrittenIsNotRetried(t *testing.T) {
	g := newTestGate(t, rideThroughConfig(), Options{})
	var calls atomic.Int64
	next := func(w http.ResponseWriter, r *http.Request) error {
		calls.Add(1)
		panic(http.ErrAbortHandler)
	}
	req := httptest.NewRequest("GET", historyPath, nil)
	req.Header.Set("Authorization", "Bearer tok")
	_, p := serveAborting(g, httptest.NewRecorder(), req, next)
	if p != http.ErrAbortHandler || calls.Load() != 1 {
		t.Errorf("abort with nothing written: panic %v after %d calls, want http.ErrAbortHandler after 1", p, calls.Load())
	}
	if g.adm.Down() {
		t.Error("an abort that never reached the upstream marked it down")
	}
}

// A body written after an informational status alone (net/http sends the
// 200 itself) has reached the client: a break after it is not retried.
func TestBreakAfterInformationalStatusAndBodyIsNotRetried(t *testing.T) {
	g := newTestGate(t, rideThroughConfig(), Options{})
	var calls atomic.Int64
	next := func(w http.ResponseWriter, r *http.Request) error {
		calls.Add(1)
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, `{"part`)
		panic(http.ErrAbortHandler)
	}
	rec := httptest.NewRecorder()
	_, p := serveAborting(g, rec, httptest.NewRequest("PUT", sendPath, strings.NewReader(`{}`)), next)
	if p != http.ErrAbortHandler || calls.Load() != 1 || rec.Body.String() != `{"part` {
		t.Errorf("panic %v after %d calls, client got %q: want the break after one call, the part sent", p, calls.Load(), rec.Body)
	}
}

// A coalescing leader whose first answer broke off: neither the leader nor
// a later request answered from the cache sees a header of the broken
// attempt, and the middleware's own headers survive.
func TestBrokenOffLeaderLeavesNoHeaderBehind(t *testing.T) {
	g := newTestGate(t, rideThroughConfig(), Options{})
	var calls atomic.Int64
	next := func(w http.ResponseWriter, r *http.Request) error {
		n := calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Attempt", fmt.Sprint(n))
		if n == 1 {
			w.Header().Set("Content-Length", "99")
			w.Header().Set("X-Only-First", "1")
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		}
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, `{}`)
		return nil
	}
	for i := range 2 {
		rec := httptest.NewRecorder()
		rec.Header().Set("X-Outer", "o")
		req := httptest.NewRequest("GET", statePath, nil)
		req.Header.Set("Authorization", "Bearer tok")
		if err := g.ServeNext(rec, req, next); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		h := rec.Result().Header
		if h.Get("X-Only-First") != "" || h.Get("Content-Length") != "2" || h.Get("X-Attempt") != "2" || h.Get("X-Outer") != "o" {
			t.Errorf("request %d: headers %v", i, h)
		}
	}
	if calls.Load() != 2 {
		t.Errorf("upstream asked %d times, want 2", calls.Load())
	}
}

// The leader's client left while its fetch went on for a waiter, and the
// upstream then broke off: nobody the leader serves is there to retry for,
// so the waiter fetches for itself, as after any broken fetch.
func TestWaiterFetchesItselfWhenTheLeftLeadersAnswerBreaksOff(t *testing.T) {
	g := newTestGate(t, rideThroughConfig(), Options{})
	var calls atomic.Int64
	joined := make(chan struct{})
	leaderCtx, leaderLeaves := context.WithCancel(context.Background())
	next := func(w http.ResponseWriter, r *http.Request) error {
		if calls.Add(1) == 1 {
			<-joined
			leaderLeaves()
			w.WriteHeader(http.StatusOK)
			panic(http.ErrAbortHandler)
		}
		io.WriteString(w, `{"ok":2}`)
		return nil
	}
	request := func() *http.Request {
		req := httptest.NewRequest("GET", statePath, nil)
		req.Header.Set("Authorization", "Bearer tok")
		return req
	}
	leader := make(chan any, 1)
	go func() {
		_, p := serveAborting(g, httptest.NewRecorder(), request().WithContext(leaderCtx), next)
		leader <- p
	}()
	testkit.Eventually(t, "the leader's fetch", func() bool { return calls.Load() == 1 })
	rec := httptest.NewRecorder()
	waiter := make(chan error, 1)
	go func() { waiter <- g.ServeNext(rec, request(), next) }()
	testkit.Eventually(t, "the waiter", func() bool { return g.coalescer.Waiting() == 1 })
	close(joined)
	if err := <-waiter; err != nil || rec.Body.String() != `{"ok":2}` {
		t.Errorf("waiter got %v, %q: want its own fetch's answer", err, rec.Body)
	}
	if p := <-leader; p != http.ErrAbortHandler {
		t.Errorf("the leader's request ended with %v, want the break", p)
	}
}

// An answer the homeserver breaks off every time is asked for
// 1+maxBrokenOffRetries times, not until the class deadline, and never
// marks the upstream down: other requests go on being served.
func TestAnswerBrokenOffEveryTimeIsAskedForAFewTimes(t *testing.T) {
	g := newTestGate(t, rideThroughConfig(), Options{})
	var broken atomic.Int64
	next := func(w http.ResponseWriter, r *http.Request) error {
		if strings.HasSuffix(r.URL.Path, "/messages") {
			broken.Add(1)
			w.Header().Set("Content-Length", "10")
			w.WriteHeader(http.StatusOK)
			panic(http.ErrAbortHandler)
		}
		io.WriteString(w, `{}`)
		return nil
	}
	done := make(chan any, 1)
	go func() {
		req := httptest.NewRequest("GET", historyPath, nil)
		req.Header.Set("Authorization", "Bearer a")
		_, p := serveAborting(g, httptest.NewRecorder(), req, next)
		done <- p
	}()
	var refused int
	for served := 0; ; served++ {
		select {
		case p := <-done:
			if p != http.ErrAbortHandler {
				t.Errorf("the broken GET ended with %v, want the break", p)
			}
			if n := broken.Load(); n != 1+maxBrokenOffRetries {
				t.Errorf("the broken GET was asked for %d times, want %d", n, 1+maxBrokenOffRetries)
			}
			if refused > 0 || g.adm.Down() {
				t.Errorf("%d of %d other requests refused, upstream down %v", refused, served, g.adm.Down())
			}
			return
		default:
		}
		req := httptest.NewRequest("POST", fmt.Sprintf("/_matrix/client/v3/rooms/%%21r%%3Ax/read_markers?i=%d", served), strings.NewReader(`{}`))
		req.Header.Set("Authorization", fmt.Sprint("Bearer b", served)) // under the receipts rate
		if err := g.ServeNext(httptest.NewRecorder(), req, next); err != nil {
			t.Logf("refused: %v", err)
			refused++
		}
		time.Sleep(10 * time.Millisecond)
	}
}
