package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/freeport"

	"github.com/mxgate/mxgate/internal/testkit"
	"github.com/mxgate/mxgate/limiter"

	"github.com/mxgate/mxgate/matrix"
)

// statusError is how Caddy's reverse proxy reports a failed upstream: an
// error carrying a status, wrapping the cause.
type statusError struct {
	code int
	err  error
}

func (e statusError) Error() string   { return fmt.Sprintf("%d: %v", e.code, e.err) }
func (e statusError) StatusCode() int { return e.code }
func (e statusError) Unwrap() error   { return e.err }

var errRefused = statusError{http.StatusBadGateway,
	&net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}

// restartingUpstream is a Next that fails like a reverse proxy to a stopped
// homeserver while down, and otherwise answers 200 after latency, recording
// the bodies it got.
type restartingUpstream struct {
	down     atomic.Bool
	latency  time.Duration
	answered atomic.Int64
	cur      atomic.Int64
	peak     atomic.Int64
	mu       sync.Mutex
	bodies   []string
}

func (u *restartingUpstream) next(w http.ResponseWriter, r *http.Request) error {
	if u.down.Load() {
		if r.Body != nil {
			io.Copy(io.Discard, r.Body) // a proxy consumes what it sends
		}
		return errRefused
	}
	n := u.cur.Add(1)
	defer u.cur.Add(-1)
	for p := u.peak.Load(); n > p && !u.peak.CompareAndSwap(p, n); p = u.peak.Load() {
	}
	if r.Body != nil {
		b, _ := io.ReadAll(r.Body)
		if len(b) > 0 {
			u.mu.Lock()
			u.bodies = append(u.bodies, string(b))
			u.mu.Unlock()
		}
	}
	time.Sleep(u.latency)
	u.answered.Add(1)
	w.WriteHeader(http.StatusOK)
	return nil
}

func rideThroughConfig() Config {
	cfg := DefaultConfig()
	cfg.Herd.MinUsers = 0
	cfg.RideThrough.Enabled = true
	cfg.RideThrough.ProbeInterval = 50 * time.Millisecond
	cfg.RideThrough.SlowStart = 500 * time.Millisecond
	cfg.Classes[matrix.History].Coalesce = 0
	cfg.Classes[matrix.History].QueueTimeout = 10 * time.Second
	return cfg
}

// serveNext runs one request through the gate to up and renders the
// result as Caddy's glue does: a Rejection as the Matrix 429, another error
// as its status.
func serveNext(g *Gate, up *restartingUpstream, method, path, body string) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	rec := httptest.NewRecorder()
	err := g.ServeNext(rec, req, up.next)
	var rej *Rejection
	var sc interface{ StatusCode() int }
	switch {
	case errors.As(err, &rej):
		rej.Write(rec)
	case errors.As(err, &sc):
		rec.WriteHeader(sc.StatusCode())
	case err != nil:
		rec.WriteHeader(http.StatusInternalServerError)
	}
	return rec
}

// Without a probe address, a restart is ridden through with canary
// requests: GETs and transaction-ID PUTs wait and succeed (the PUT with its
// body intact), a POST is refused with a short Retry-After, an oversized PUT
// is not retried, and the gate's goroutines end with it.
func TestRideThroughCanaryRetriesIdempotentRequests(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := rideThroughConfig()
	cfg.RideThrough.MaxBody = 64
	g, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	up := &restartingUpstream{latency: time.Millisecond}
	up.down.Store(true)

	codes := make(chan int, 20)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() { codes <- serveNext(g, up, "GET", historyPath, "").Code })
	}
	testkit.Eventually(t, "the upstream marked down", func() bool { return g.Status(time.Now()).RideThrough.Down })
	wg.Go(func() { codes <- serveNext(g, up, "PUT", sendPath, `{"body":"hello"}`).Code })

	post := serveNext(g, up, "POST", "/_matrix/client/v3/createRoom", `{}`)
	body := limitExceeded(t, post)
	if ms := time.Duration(body.RetryAfterMs) * time.Millisecond; ms < cfg.RetryAfterMin || ms > cfg.RetryAfterMin*3/2 {
		t.Fatalf("POST during the outage: Retry-After %v, want about %v", ms, cfg.RetryAfterMin)
	}
	big := serveNext(g, up, "PUT", "/_matrix/client/v3/rooms/%21r%3Ax/send/m.room.message/t2", strings.Repeat("x", 100))
	limitExceeded(t, big)

	// The outage lasts until canaries have found the upstream still down a
	// few times: each failed canary queues its request again.
	testkit.Eventually(t, "canaries to fail", func() bool {
		return g.Status(time.Now()).Classes[matrix.History].Counters.Queued >= 20
	})
	up.down.Store(false)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("an idempotent request got %d through the restart", c)
		}
	}
	if got := up.answered.Load(); got != 11 {
		t.Fatalf("upstream answered %d requests, want 11", got)
	}
	if len(up.bodies) != 1 || up.bodies[0] != `{"body":"hello"}` {
		t.Fatalf("retried PUT bodies %q", up.bodies)
	}
	if st := g.Status(time.Now()).RideThrough; st.Down || !st.Enabled {
		t.Fatalf("after recovery: %+v", st)
	}
	g.Close()
	testkit.CheckGoroutines(t, before)
}

// A request rides through only until its class deadline, counted from its
// arrival: a permanent outage ends in the Matrix 429, not a wait forever.
func TestRideThroughGivesUpAtClassDeadline(t *testing.T) {
	cfg := rideThroughConfig()
	cfg.Classes[matrix.History].QueueTimeout = 300 * time.Millisecond
	g := newTestGate(t, cfg, Options{})
	up := &restartingUpstream{}
	up.down.Store(true)
	start := time.Now()
	rec := serveNext(g, up, "GET", historyPath, "")
	took := time.Since(start)
	body := limitExceeded(t, rec)
	if !strings.Contains(body.Error, "upstream unavailable") {
		t.Fatalf("reason %q", body.Error)
	}
	if took < 300*time.Millisecond || took > 5*time.Second {
		t.Fatalf("gave up after %v, want the 300ms class deadline", took)
	}
	if c := g.Status(time.Now()).Classes[matrix.History].Counters; c.Timeout != 1 {
		t.Fatalf("counters %+v", c)
	}
}

// With a probe address, the gate learns of the return by dialing it; the
// caps then ramp from a fraction to the configured cap over slow start.
func TestRideThroughDialProbeThenSlowStart(t *testing.T) {
	addr, err := freeport.Loopback() // the homeserver is stopped; it comes back here
	if err != nil {
		t.Fatal(err)
	}
	cfg := rideThroughConfig()
	cfg.RideThrough.SlowStart = time.Second
	cfg.Classes[matrix.History].MaxInflight = 20
	cfg.UpstreamAddr = addr
	g, err := New(cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	up := &restartingUpstream{latency: 20 * time.Millisecond}
	up.down.Store(true)

	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 60 {
		wg.Go(func() {
			if serveNext(g, up, "GET", historyPath, "").Code != http.StatusOK {
				failed.Add(1)
			}
		})
	}
	testkit.Eventually(t, "every request held", func() bool {
		st := g.Status(time.Now())
		return st.RideThrough.Down && st.Classes[matrix.History].Queued == 60
	})
	if got := up.answered.Load(); got != 0 {
		t.Fatalf("%d answered while down", got)
	}
	// The homeserver returns: HTTP first, then its port.
	up.down.Store(false)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer l.Close()
	testkit.Eventually(t, "the upstream marked up", func() bool { return !g.Status(time.Now()).RideThrough.Down })
	st := g.Status(time.Now())
	if c := st.Classes[matrix.History].Cap; c >= 20 || !st.RideThrough.SlowStart {
		t.Fatalf("right after the return: cap %d (want below 20), slow start %v", c, st.RideThrough.SlowStart)
	}
	testkit.Eventually(t, "the ramp to end", func() bool {
		st := g.Status(time.Now())
		return !st.RideThrough.SlowStart && st.Classes[matrix.History].Cap == 20
	})
	wg.Wait()
	if f := failed.Load(); f != 0 {
		t.Fatalf("%d GETs failed through the restart", f)
	}
}

func TestDownEvidence(t *testing.T) {
	brokenBody := &clientBody{}
	brokenBody.err.Store(true)
	for _, tc := range []struct {
		name              string
		written           int
		err               error
		body              *clientBody
		evidence, refused bool
	}{
		{"refused", 0, errRefused, nil, true, true},
		{"bare refused", 0, syscall.ECONNREFUSED, nil, true, true},
		{"502 error", 0, statusError{502, errors.New("EOF")}, nil, true, false},
		{"504 error: overloaded, not away", 0, statusError{504, errors.New("timeout")}, nil, false, false},
		{"answered 503", 503, nil, nil, true, false},
		{"answered 500", 500, nil, nil, false, false},
		{"answered 200", 200, nil, nil, false, false},
		{"client left", 0, statusError{499, errors.New("canceled")}, nil, false, false},
		{"other error", 0, errors.New("boom"), nil, false, false},
		{"error after answering", 200, errRefused, nil, false, false},
		// Caddy answers 502 when it cannot read the client's body.
		{"client's broken body", 0, statusError{502, errors.New("invalid byte in chunk length")}, brokenBody, false, false},
	} {
		a := newAttempt(tc.written, tc.err, tc.body, context.Background())
		ev := a.evidence()
		evidence := ev == limiter.EvidenceFailed || ev == limiter.EvidenceRefused
		if evidence != tc.evidence || a.refused() != tc.refused {
			t.Errorf("%s: evidence %v refused %v, want %v %v", tc.name, evidence, a.refused(), tc.evidence, tc.refused)
		}
	}
}

// A request that cannot be retried is turned into a "retry shortly" 429
// only when nothing reached the upstream; a 502 that may have been sent (or
// a 504) stands, so that clients do not repeat a non-idempotent request.
func TestNonRetryableFailureBecomes429OnlyIfNothingWasSent(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RideThrough = DefaultRideThrough()
	cfg.RideThrough.Enabled = true
	g := newTestGate(t, cfg, Options{})
	post := httptest.NewRequest("POST", "/_matrix/client/v3/createRoom", nil)
	for _, tc := range []struct {
		name string
		err  error
		want bool // a 429 replaces the error
	}{
		{"refused", errRefused, true},
		{"502 after sending", statusError{502, errors.New("EOF")}, false},
		{"504", statusError{504, errors.New("timeout")}, false},
	} {
		retry, err := g.afterAttempt(nil, &cfg, matrix.Send, post, attempt{err: tc.err}, time.Now())
		var rej *Rejection
		if retry || errors.As(err, &rej) != tc.want {
			t.Errorf("%s: retry %v, error %v", tc.name, retry, err)
		}
	}
}

// A body over the cap is put back intact (and the request sent once); one
// within it is replayable.
func TestBufferBody(t *testing.T) {
	big := strings.Repeat("y", 100)
	r := httptest.NewRequest("PUT", sendPath, strings.NewReader(big))
	r.ContentLength = -1 // unknown length: the cap is found by reading
	if _, ok := bufferBody(r, 10); ok {
		t.Fatal("100-byte body buffered under a 10-byte cap")
	}
	if b, _ := io.ReadAll(r.Body); string(b) != big {
		t.Fatalf("body not restored: %d bytes", len(b))
	}
	r = httptest.NewRequest("PUT", sendPath, strings.NewReader("small"))
	b, ok := bufferBody(r, 10)
	if !ok || !bytes.Equal(b, []byte("small")) {
		t.Fatalf("small body: %q %v", b, ok)
	}
	if got, _ := io.ReadAll(r.Body); string(got) != "small" {
		t.Fatalf("body after buffering %q", got)
	}
}

// admitted admits n requests of class, for tests that give their slots
// back with chosen evidence.
func admitted(t *testing.T, g *Gate, class matrix.Class, n int) []limiter.Ticket {
	t.Helper()
	tks := make([]limiter.Ticket, n)
	for i := range tks {
		tk, err := g.adm.Acquire(context.Background(), int(class), limiter.LaneNormal)
		if err != nil {
			t.Fatal(err)
		}
		tks[i] = tk
	}
	return tks
}

// Down/up transitions racing with each other never strand the hold: once
// the upstream answers, a queued request is admitted (nothing else could
// release it).
func TestDownUpRaceNeverStrandsTheHold(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RideThrough = DefaultRideThrough()
	cfg.RideThrough.Enabled = true
	g := newTestGate(t, cfg, Options{})
	for i := 0; i < 500; i++ {
		tks := admitted(t, g, matrix.History, 3)
		var wg sync.WaitGroup
		wg.Go(func() { tks[0].Done(limiter.Result{End: time.Now(), Evidence: limiter.EvidenceRefused}) })
		wg.Go(func() { tks[1].Done(limiter.Result{End: time.Now(), Evidence: limiter.EvidenceAnswered}) })
		wg.Wait()
		tks[2].Done(limiter.Result{End: time.Now(), Evidence: limiter.EvidenceAnswered})
		if g.adm.Down() {
			t.Fatalf("round %d: an answer left the upstream down", i)
		}
		admitted(t, g, matrix.History, 1)[0].Done(limiter.Result{})
	}
}

// When 502/503 answers marked the upstream down, something in front of it
// accepts connections: a TCP dial would declare it back at once and the
// gate would flap. Only a canary request can end that hold.
func TestAnsweredDownIsNotEndedByADial(t *testing.T) {
	cfg := DefaultConfig()
	cfg.RideThrough = DefaultRideThrough()
	cfg.RideThrough.Enabled = true
	cfg.RideThrough.Failures = 1
	cfg.UpstreamAddr = "127.0.0.1:1" // never dialled by the supervisor: its clock stands still
	clock := testkit.NewClock(time.Unix(1000, 0))
	g := newTestGate(t, cfg, Options{Now: clock.Now})

	tks := admitted(t, g, matrix.History, 3)
	tks[0].Done(limiter.Result{End: clock.Now(), Evidence: limiter.EvidenceFailed}) // an answered 502
	clock.Advance(cfg.RideThrough.ProbeInterval)
	if g.adm.Probe(clock.Now()) {
		t.Fatal("a hold caused by 502/503 answers is probed with a dial")
	}
	tks[1].Done(limiter.Result{End: clock.Now(), Evidence: limiter.EvidenceAnswered}) // the canary's answer
	tks[2].Done(limiter.Result{End: clock.Now(), Evidence: limiter.EvidenceRefused})
	clock.Advance(cfg.RideThrough.ProbeInterval)
	if !g.adm.Probe(clock.Now()) {
		t.Fatal("a hold caused by refused connections is not probed with a dial")
	}
	if g.adm.DialResult(true, clock.Now()); g.adm.Down() {
		t.Fatal("a dial did not end a hold caused by refused connections")
	}
}
