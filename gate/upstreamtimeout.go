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
// has been sent, disarmed by the answer's header. An armed timer waits in
// its class's answerDeadlines; its fields below the list are the list's
// to guard.
type answerTimer struct {
	list   *answerDeadlines
	after  time.Duration
	cancel context.CancelCauseFunc

	deadline   time.Time
	prev, next *answerTimer // in list, while waiting there
	armed      bool         // arm has run: it arms once
	answered   bool
	fired      bool
}

// start readies t to cut r after `after`, waiting in list once armed, and
// returns r with the context t cancels. body is the flow's body watcher
// (nil if none): if r still reads from it, t arms when it has been read to
// its end, else at once.
func (t *answerTimer) start(r *http.Request, after time.Duration, list *answerDeadlines, body *clientBody) *http.Request {
	ctx, cancel := context.WithCancelCause(r.Context())
	t.list, t.after, t.cancel = list, after, cancel
	if body != nil && r.Body == body {
		body.armAtEnd(t)
	} else {
		t.arm()
	}
	return r.WithContext(ctx)
}

func (t *answerTimer) arm() { t.list.add(t, time.Now()) }

// answer disarms the timer: the upstream began its answer.
func (t *answerTimer) answer() { t.list.answer(t) }

// stop ends the timer once the request is done, and reports whether it
// fired (the request was cancelled for it).
func (t *answerTimer) stop() (fired bool) {
	fired = t.list.answer(t)
	t.cancel(nil)
	return fired
}

// answerDeadlines is one class's armed upstream timeouts in the order they
// expire, behind a single timer set for the first of them. Every request of
// a class has the class's timeout, so a timer armed later expires later and
// goes to the end of the list: arming and disarming cost a lock and a few
// pointers, where a timer of its own per request costs two allocations and
// the runtime's timer heap. Only after a reload changes the class's timeout
// does a timer go further up the list.
type answerDeadlines struct {
	mu         sync.Mutex
	head, tail *answerTimer
	timer      *time.Timer // set for head's deadline; nil until first needed
	due        time.Time   // when timer fires; zero: not set
}

// add arms t, once and only if its answer has not begun, to expire at
// now + t.after.
func (l *answerDeadlines) add(t *answerTimer, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.armed || t.answered {
		return
	}
	t.armed = true
	t.deadline = now.Add(t.after)
	at := l.tail
	for at != nil && at.deadline.After(t.deadline) {
		at = at.prev
	}
	l.insertAfter(at, t)
	if l.head == t {
		l.setTimerLocked(now)
	}
}

// answer disarms t and reports whether it had fired.
func (l *answerDeadlines) answer(t *answerTimer) (fired bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.armed && !t.fired && !t.answered {
		l.unlink(t)
	}
	t.answered = true
	return t.fired
}

// expire fires every timer whose deadline has passed, then sets the timer
// for the next one. The cancellations run outside the lock: a context's
// cancellation runs whatever waits on it.
func (l *answerDeadlines) expire() {
	now := time.Now()
	var due []*answerTimer
	l.mu.Lock()
	l.due = time.Time{}
	for t := l.head; t != nil && !t.deadline.After(now); t = l.head {
		l.unlink(t)
		t.fired = true
		due = append(due, t)
	}
	if l.head != nil {
		l.setTimerLocked(now)
	}
	l.mu.Unlock()
	for _, t := range due {
		t.cancel(upstreamTimeoutError{after: t.after})
	}
}

// setTimerLocked makes the timer fire at head's deadline, unless it already
// fires by then: a timer that fires early finds nothing due and is set again.
func (l *answerDeadlines) setTimerLocked(now time.Time) {
	at := l.head.deadline
	if !l.due.IsZero() && !l.due.After(at) {
		return
	}
	l.due = at
	if l.timer == nil {
		l.timer = time.AfterFunc(at.Sub(now), l.expire)
		return
	}
	l.timer.Reset(at.Sub(now))
}

func (l *answerDeadlines) insertAfter(at, t *answerTimer) {
	t.prev = at
	if at == nil {
		t.next, l.head = l.head, t
	} else {
		t.next, at.next = at.next, t
	}
	if t.next == nil {
		l.tail = t
	} else {
		t.next.prev = t
	}
}

func (l *answerDeadlines) unlink(t *answerTimer) {
	if t.prev == nil {
		l.head = t.next
	} else {
		t.prev.next = t.next
	}
	if t.next == nil {
		l.tail = t.prev
	} else {
		t.next.prev = t.prev
	}
	t.prev, t.next = nil, nil
}
