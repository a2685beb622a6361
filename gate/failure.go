package gate

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/limiter"
)

// The failure model: only the upstream's own failures count against it —
// a refused or reset upstream connection, a 502/503 the upstream itself
// sent. A client's broken body, a client that left, or mxgate's own
// refusal never marks the upstream down, trips error shedding, or counts as
// an upstream 5xx. Every window that judges the upstream (liveness, health,
// 5xx shedding, the upstream responses metric) reads one attempt through
// this file.

// ErrUpstreamUnreachable may be wrapped by an error that Next returns to say
// the upstream could not be reached at all (the dial failed): nothing was
// sent, and with ride-through the upstream counts as down at once, as on a
// refused connection.
var ErrUpstreamUnreachable = errors.New("upstream unreachable")

// attempt is one admitted request's pass through next, as the upstream
// judges see it.
type attempt struct {
	written int   // the status written to the client, 0 if none
	err     error // next's error
	// clientFault: the request failed because of its client — its body
	// could not be read, or it went away — not because of the upstream.
	clientFault bool
	// brokenOff: the upstream broke off its answer after the status, before
	// the body (errAnswerBrokenOff). It answered, so its liveness is not in
	// question; the request may be sent again a few times (retry.go).
	brokenOff bool
	end       time.Time // when next returned
}

// newAttempt classifies next's result for a request whose body (nil if it
// had none) recorded the client's read errors.
func newAttempt(written int, err error, body *clientBody, client context.Context) attempt {
	a := attempt{written: written, err: err}
	if err != nil && written == 0 {
		a.clientFault = body.failed() || client.Err() != nil || statusOf(err) == StatusClientClosed
		a.brokenOff = !a.clientFault && err == errAnswerBrokenOff
	}
	return a
}

// status is the attempt's status for the metrics: the one written, else
// the one next's error carries; a client's fault is StatusClientClosed.
func (a attempt) status() int {
	switch {
	case a.written != 0:
		return a.written
	case a.clientFault:
		return StatusClientClosed
	case a.err != nil:
		return statusOf(a.err)
	}
	return 0
}

// answered says the upstream wrote a response.
func (a attempt) answered() bool { return a.written != 0 }

// evidence is what the attempt says about the upstream's liveness: a
// refused connection or failed dial (nothing was sent), no answer and a
// 502/503 error, or an answered 502/503 (a proxy in front of it saying
// so). A 504 is not: a slow upstream is overloaded, not away, and retrying
// its most expensive requests would feed the overload.
func (a attempt) evidence() limiter.Evidence {
	switch {
	case a.written != 0:
		if a.written == http.StatusBadGateway || a.written == http.StatusServiceUnavailable {
			return limiter.EvidenceFailed
		}
		if a.written == StatusClientClosed {
			return limiter.EvidenceNone
		}
		return limiter.EvidenceAnswered
	case a.err == nil, a.clientFault, a.brokenOff:
		return limiter.EvidenceNone
	case errors.Is(a.err, syscall.ECONNREFUSED) || errors.Is(a.err, ErrUpstreamUnreachable):
		return limiter.EvidenceRefused
	}
	switch statusOf(a.err) {
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return limiter.EvidenceFailed
	}
	return limiter.EvidenceNone
}

// refused says nothing reached the upstream: the client may safely retry.
func (a attempt) refused() bool { return a.evidence() == limiter.EvidenceRefused }

// judged says whether the upstream error windows (health, 5xx shedding)
// count the attempt, and failed whether as a failure: a client's fault is
// nobody's failure and not counted; a 5xx, or no answer at all, is one.
func (a attempt) judged() (counted, failed bool) {
	if a.clientFault || a.status() == StatusClientClosed { // Caddy writes 499 itself

		return false, false
	}
	return true, !a.answered() || a.written >= 500
}

// clientBody wraps a request body to remember that reading it failed: the
// client sent a broken chunk or abandoned its upload. Caddy's reverse proxy
// answers such a request 502 as if the upstream had failed; this is how the
// gate tells the two apart. It also tells the upstream timeout when the
// body has been read to its end (upstreamtimeout.go).
type clientBody struct {
	io.ReadCloser
	err atomic.Bool

	mu    sync.Mutex
	done  bool         // read to its end (io.EOF)
	timer *answerTimer // armed once at the end, if set (upstreamtimeout.go)
}

// watchBody wraps r's body, if it has one, and returns the watcher (nil if
// none).
func watchBody(r *http.Request) *clientBody {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	b := &clientBody{ReadCloser: r.Body}
	r.Body = b
	return b
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		b.end()
	case err != nil:
		b.err.Store(true)
	}
	return n, err
}

func (b *clientBody) end() {
	b.mu.Lock()
	t := b.timer
	b.done, b.timer = true, nil
	b.mu.Unlock()
	if t != nil {
		t.arm()
	}
}

// armAtEnd arms t once the body has been read to its end (at once if it
// has).
func (b *clientBody) armAtEnd(t *answerTimer) {
	b.mu.Lock()
	if !b.done {
		b.timer = t
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	t.arm()
}

// readsFrom reports whether reading body reads b: body is b, or b put back
// behind what bufferBody read of it.
func readsFrom(body io.ReadCloser, b *clientBody) bool {
	if p, ok := body.(partlyReadBody); ok {
		return p.Closer == io.Closer(b)
	}
	return body == io.ReadCloser(b)
}

// failed reports that reading the body failed; false for a nil watcher.
func (b *clientBody) failed() bool { return b != nil && b.err.Load() }

// statusOf recovers an HTTP status from an error returned by next (Caddy's
// handler errors carry one); 0 means none.
func statusOf(err error) int {
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) {
		return sc.StatusCode()
	}
	var hc interface{ HTTPStatus() int }
	if errors.As(err, &hc) {
		return hc.HTTPStatus()
	}
	if errors.Is(err, context.Canceled) {
		return StatusClientClosed
	}
	return 0
}
