package gate

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"
)

// The upstream timeout (matrix.Limits.UpstreamTimeout, per class) bounds how
// long the upstream may take to begin its answer once the request, body
// included, has been sent. A stuck homeserver would otherwise hold every
// request, its admission slot and its upstream connection until its own
// timeout, long after the clients gave up. Past it the request's context is
// cancelled with upstreamTimeoutError as its cause — the transport returns
// that cause, which Caddy's reverse proxy answers 504 — and the failure
// model counts a 504: the upstream is overloaded, not down (failure.go).

// upstreamTimeoutError is the cause of a request cancelled by its class's
// upstream timeout. It is a net.Error that timed out, which is what makes
// Caddy's reverse proxy answer 504, and carries that status for the gate.
type upstreamTimeoutError struct{ after time.Duration }

func (e upstreamTimeoutError) Error() string {
	return fmt.Sprintf("mxgate: the upstream did not begin its answer within %v (the class's upstream_timeout)", e.after)
}
func (upstreamTimeoutError) Timeout() bool   { return true }
func (upstreamTimeoutError) Temporary() bool { return true }
func (upstreamTimeoutError) StatusCode() int { return http.StatusGatewayTimeout }

// answerTimer runs one request's upstream timeout: armed once the request
// has been sent, disarmed by the answer's header.
type answerTimer struct {
	after  time.Duration
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	timer    *time.Timer // nil until armed
	answered bool
	fired    bool
}

// start readies t to cut r after `after` and returns r with the context t
// cancels. body is the flow's body watcher (nil if none): if r still reads
// from it, t arms when it has been read to its end, else at once.
func (t *answerTimer) start(r *http.Request, after time.Duration, body *clientBody) *http.Request {
	ctx, cancel := context.WithCancelCause(r.Context())
	t.after, t.cancel = after, cancel
	if body != nil && r.Body == body {
		body.armAtEnd(t)
	} else {
		t.arm()
	}
	return r.WithContext(ctx)
}

func (t *answerTimer) arm() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timer == nil && !t.answered {
		t.timer = time.AfterFunc(t.after, t.fire)
	}
}

func (t *answerTimer) fire() {
	t.mu.Lock()
	if t.answered {
		t.mu.Unlock()
		return
	}
	t.fired = true
	t.mu.Unlock()
	t.cancel(upstreamTimeoutError{after: t.after})
}

// answer disarms the timer: the upstream began its answer.
func (t *answerTimer) answer() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.answered = true
	if t.timer != nil {
		t.timer.Stop()
	}
}

// stop ends the timer once the request is done, and reports whether it
// fired (the request was cancelled for it).
func (t *answerTimer) stop() (fired bool) {
	t.answer()
	t.cancel(nil)
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fired
}
