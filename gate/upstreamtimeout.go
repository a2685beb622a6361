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
// its class's answerDeadlines; the fields below the list are the list's to
// guard.
type answerTimer struct {
	list   *answerDeadlines
	after  time.Duration
	cancel context.CancelCauseFunc

	queue      *deadlineQueue // while waiting in the list
	deadline   time.Time
	prev, next *answerTimer
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
	if body != nil && readsFrom(r.Body, body) {
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
// fired (the request was cancelled for it). It may be called again.
func (t *answerTimer) stop() (fired bool) {
	fired = t.list.answer(t)
	t.cancel(nil)
	return fired
}

// answerDeadlines is one class's armed upstream timeouts, behind a single
// timer set for the first of them to expire. Timers wait in a queue per
// timeout: every request of a class has the class's timeout, so a timer
// armed later expires later and joins the end of its queue, and arming and
// disarming cost a lock and a few pointers, where a timer of its own per
// request costs two allocations and the runtime's timer heap. A second
// queue is in use only for a while after a reload changed the timeout.
type answerDeadlines struct {
	mu     sync.Mutex
	queues []*deadlineQueue // few: one per timeout that timers wait under
	timer  *time.Timer      // nil until first needed
	due    time.Time        // when timer fires; zero: not set
}

// deadlineQueue is the timers of one timeout, in the order they expire.
type deadlineQueue struct {
	after      time.Duration
	head, tail *answerTimer
}

// add arms t, once and only if its answer has not begun, to expire at
// now + t.after.
func (l *answerDeadlines) add(t *answerTimer, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.queue != nil || t.fired || t.answered {
		return // it arms once, and not once answered
	}
	t.deadline = now.Add(t.after)
	q := l.queueLocked(t.after)
	t.queue, t.prev = q, q.tail
	if q.tail == nil {
		q.head = t
	} else {
		q.tail.next = t
	}
	q.tail = t
	if !l.due.IsZero() && !l.due.After(t.deadline) {
		return // the timer fires by then
	}
	l.due = t.deadline
	if l.timer == nil {
		l.timer = time.AfterFunc(t.after, l.expire)
		return
	}
	l.timer.Reset(t.after)
}

// queueLocked is the queue of timeout after: the one in use, else an empty
// one, else a new one.
func (l *answerDeadlines) queueLocked(after time.Duration) *deadlineQueue {
	var empty *deadlineQueue
	for _, q := range l.queues {
		if q.after == after {
			return q
		}
		if q.head == nil && empty == nil {
			empty = q
		}
	}
	if empty == nil {
		empty = &deadlineQueue{}
		l.queues = append(l.queues, empty)
	}
	empty.after = after
	return empty
}

// answer disarms t and reports whether it had fired. Once no timer waits,
// the class's timer is stopped: pending, it would hold the gate until then.
func (l *answerDeadlines) answer(t *answerTimer) (fired bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.queue != nil {
		t.queue.unlink(t)
		if l.idleLocked() {
			l.timer.Stop()
			l.due = time.Time{}
		}
	}
	t.answered = true
	return t.fired
}

func (l *answerDeadlines) idleLocked() bool {
	for _, q := range l.queues {
		if q.head != nil {
			return false
		}
	}
	return true
}

// expire fires every timer whose deadline has passed, then sets the timer
// for the next one. The cancellations run outside the lock: a context's
// cancellation runs whatever waits on it.
func (l *answerDeadlines) expire() {
	now := time.Now()
	var due []*answerTimer
	var next time.Time
	l.mu.Lock()
	for _, q := range l.queues {
		for t := q.head; t != nil && !t.deadline.After(now); t = q.head {
			q.unlink(t)
			t.fired = true
			due = append(due, t)
		}
		if q.head != nil && (next.IsZero() || q.head.deadline.Before(next)) {
			next = q.head.deadline
		}
	}
	l.due = next
	if !next.IsZero() {
		l.timer.Reset(next.Sub(now))
	}
	l.mu.Unlock()
	for _, t := range due {
		t.cancel(upstreamTimeoutError{after: t.after})
	}
}

func (q *deadlineQueue) unlink(t *answerTimer) {
	if t.prev == nil {
		q.head = t.next
	} else {
		t.prev.next = t.next
	}
	if t.next == nil {
		q.tail = t.prev
	} else {
		t.next.prev = t.prev
	}
	t.queue, t.prev, t.next = nil, nil, nil
}
