package gate

import (
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/matrix"
)

// A coalescing leader's fetch is detached from its client (herd.LeadDetached)
// only where clients may give up on it and ask again: while a herd is on,
// and in a class whose answers are slow. A client that gives up on a slow
// answer and retries then joins the fetch still running for it (within the
// coalescer's orphan grace) instead of the homeserver starting over, as
// Synapse does not stop computing an answer whose client has gone.
// Elsewhere a leader fetches on its own client's request, as it would
// without mxgate (if its client leaves, a waiter fetches again): detaching
// costs a context, a timer, a watch on the client and a request copy per
// request, most of what coalescing cost a Synapse no-store class whose
// answers are fast and never shared (bench/results/overhead.md).

// slowAnswer is the average answer time from which a class's leaders
// detach: far below any client's patience, far above what detaching costs.
const slowAnswer = 100 * time.Millisecond

// answerTimes keeps, per class, a moving average (weight 1/8) of how long
// the upstream took to answer an admitted request, from its admission to
// the end of its answer. Concurrent updates may lose one another; the
// average is a hint, not an account.
type answerTimes [matrix.NumClasses]atomic.Int64

func (a *answerTimes) observe(class matrix.Class, took time.Duration) {
	took = max(took, 1) // 0 means no answer yet
	avg := &a[class]
	if old := avg.Load(); old != 0 {
		took = time.Duration(old + (int64(took)-old)/8)
	}
	avg.Store(int64(took))
}

func (a *answerTimes) slow(class matrix.Class) bool {
	return time.Duration(a[class].Load()) >= slowAnswer
}

// coalescingLead is how a coalescing leader of class fetches now.
func (g *Gate) coalescingLead(class matrix.Class) herd.Lead {
	if g.herdOn.Load() || g.answers.slow(class) {
		return herd.LeadDetached
	}
	return herd.LeadAttached
}
