package gate

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// Shadow mode (matrix.Limits.Shadow, per class): the automatic limits only
// observe. Nothing they would refuse is refused; each would-be refusal is
// counted under its own outcome and logged, sampled:
//
//   - error shedding's 429 becomes would_shed;
//   - an empty rate bucket's 429 becomes would_rate_limited;
//   - herds are still detected, but their requests are not put behind the
//     rest of the class and share_state does not act;
//   - admission never waits: a request the caps have no room for is
//     admitted at once, over the cap, and joins a would-be queue (see
//     shadowQueue) that says whether it would have been refused as the
//     queue overflowed (would_shed) or expired (would_timeout);
//   - a coalescing waiter that would have timed out waiting for its
//     leader (would_timeout) goes upstream itself.
//
// Every automatic limit's refusal reaches shadow mode through one branch
// in refuse (reject.go); the would-be queue is this file's.
//
// What an operator asked for still acts: a shed toggle sheds, a queue
// toggle holds. Ride-through's hold while the upstream restarts acts too:
// it refuses nothing that could succeed, and letting requests through
// would only retry them against a closed port.
const (
	OutcomeWouldShed        Outcome = "would_shed"
	OutcomeWouldRateLimited Outcome = "would_rate_limited"
	OutcomeWouldTimeout     Outcome = "would_timeout"
)

// shadowLogEvery bounds the would-be refusal log: one line per class and
// outcome per interval, with the number of refusals it stands for.
const shadowLogEvery = 10 * time.Second

// doneContext is already cancelled: Acquire with it admits only if it
// would not wait.
var doneContext = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// shadowState is a gate's shadow-mode bookkeeping.
type shadowState struct {
	queues [matrix.NumClasses]shadowQueue
	log    [matrix.NumClasses][3]sampledLog // by would-be outcome
}

// admitShadow admits a request of a shadow class without waiting (see the
// shadow-mode contract above): at once if there is room, else over the cap,
// joining the would-be queue. ok is false when the class is not in shadow
// mode or a hold acts (the upstream is down, a queue toggle holds the
// class): the request then waits in Acquire as usual. Either way the
// ticket's Done frees the slot, and passShadowQueue follows it.
func (g *Gate) admitShadow(cfg *Config, class matrix.Class, lane limiter.Lane) (t limiter.Ticket, ok bool) {
	if !cfg.Classes[class].Shadow || g.adm.Down() || g.refreshModes(g.now()).modes[class].mode == limiter.ModeQueue {
		return t, false
	}
	if t, err := g.adm.Acquire(doneContext, int(class), lane); err == nil {
		return t, true // there was room
	}
	l := &cfg.Classes[class]
	if !g.shadow.queues[class].join(g.now(), l.Queue, l.QueueTimeout, g.wouldTimeout(class)) {
		g.wouldRefuse(class, OutcomeWouldShed, class.String()+" is at capacity")
	}
	return g.adm.Admit(int(class)), true
}

// passShadowQueue follows a freed slot of class: in shadow mode it goes to
// the first request of the would-be queue, as it would have.
func (g *Gate) passShadowQueue(class matrix.Class) {
	if q := &g.shadow.queues[class]; q.n.Load() > 0 {
		q.pass(g.now(), g.wouldTimeout(class))
	}
}

// wouldOutcome is the shadow-mode outcome counted for a limit's refusal.
func wouldOutcome(o Outcome) Outcome {
	switch o {
	case OutcomeRateLimited:
		return OutcomeWouldRateLimited
	case OutcomeTimeout:
		return OutcomeWouldTimeout
	}
	return OutcomeWouldShed
}

// wouldRefuse counts a refusal shadow mode did not make, and logs it
// (sampled). The log names the class and the reason, never the client.
func (g *Gate) wouldRefuse(class matrix.Class, o Outcome, reason string) {
	g.count(class, o)
	i := 0
	switch o {
	case OutcomeWouldRateLimited:
		i = 1
	case OutcomeWouldTimeout:
		i = 2
	}
	if n := g.shadow.log[class][i].allow(g.now()); n > 0 {
		g.log.Info("shadow mode: would have refused", "class", class.String(), "outcome", string(o),
			"reason", reason, "requests", n, "per", shadowLogEvery.String())
	}
}

func (g *Gate) wouldTimeout(class matrix.Class) func() {
	return func() { g.wouldRefuse(class, OutcomeWouldTimeout, "timed out waiting for a "+class.String()+" slot") }
}

// shadowQueue is the queue a shadow class would have had: the deadlines of
// the requests that found no room, oldest first. They run at once; here
// they wait as they would have. Every slot freed in the class goes to the
// first of them; one whose deadline passes first would have timed out.
// It is an estimate: the upstream answers these requests sooner or later
// than it would with them waiting, and herd and LIFO ordering are left out.
type shadowQueue struct {
	n         atomic.Int32 // len(deadlines), read without the lock
	mu        sync.Mutex
	deadlines []time.Time
}

// join adds a request arriving at now, unless size requests already wait
// (it would have been refused: false). expired is called for every
// request that timed out meanwhile.
func (q *shadowQueue) join(now time.Time, size int, timeout time.Duration, expired func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expireLocked(now, expired)
	if len(q.deadlines) >= size {
		return false
	}
	q.deadlines = append(q.deadlines, now.Add(timeout))
	q.n.Store(int32(len(q.deadlines)))
	return true
}

// pass gives a freed slot to the first request still waiting at now.
func (q *shadowQueue) pass(now time.Time, expired func()) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expireLocked(now, expired)
	if len(q.deadlines) > 0 {
		q.deadlines = q.deadlines[1:]
	}
	q.n.Store(int32(len(q.deadlines)))
}

func (q *shadowQueue) expireLocked(now time.Time, expired func()) {
	i := 0
	for i < len(q.deadlines) && !now.Before(q.deadlines[i]) {
		expired()
		i++
	}
	q.deadlines = q.deadlines[i:]
	q.n.Store(int32(len(q.deadlines)))
}

// length is the number of requests waiting at now (expired ones are
// dropped, uncounted, until the next join or pass counts them).
func (q *shadowQueue) length(now time.Time) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := 0
	for _, d := range q.deadlines {
		if now.Before(d) {
			n++
		}
	}
	return n
}

// sampledLog lets one log line through per shadowLogEvery and counts the
// events in between.
type sampledLog struct {
	next   atomic.Int64 // unix nanoseconds from which the next line may go
	events atomic.Int64 // since the last line
}

// allow records an event at now and returns how many events the line to
// write now stands for, or 0 if no line is due.
func (s *sampledLog) allow(now time.Time) int64 {
	s.events.Add(1)
	next := s.next.Load()
	if now.UnixNano() < next || !s.next.CompareAndSwap(next, now.Add(shadowLogEvery).UnixNano()) {
		return 0
	}
	return s.events.Swap(0)
}

// fillShadowStatus marks shadow classes in st and reports their would-be
// queues; the zone is in shadow mode when every class is.
func (g *Gate) fillShadowStatus(st *Status, cfg *Config, now time.Time) {
	all := true
	for i := range st.Classes {
		if !cfg.Classes[i].Shadow {
			all = false
			continue
		}
		st.Classes[i].Shadow = true
		st.Classes[i].ShadowQueued = g.shadow.queues[i].length(now)
	}
	st.Shadow = all
}
