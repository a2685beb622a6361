package herd

import (
	"context"
	"time"
)

// group is one in-flight upstream fetch that identical requests wait on.
//
// The leader publishes exactly one result by calling Coalescer.release, which
// sets res and err and then closes done; waiters read them only after done
// is closed. The three results:
//
//   - res != nil: a complete shareable answer, replayed to every waiter;
//   - err != nil: fetch failed, every waiter returns the same error;
//   - both nil: the answer is not shareable (too big, Set-Cookie, no-store,
//     ...); each waiter fetches for itself. With reelect set, the leader's
//     answer may be incomplete (Coalescer.lead); the waiters elect a new
//     leader among themselves.
//
// A non-shareable answer is published as soon as that is known (at its
// headers, or when its body outgrows the cap), not when it completes, so
// waiters are not held while a 50 MiB body streams to the leader.
type group struct {
	done     chan struct{}
	released bool // guarded by Coalescer.mu
	res      *response
	err      error
	reelect  bool

	// Fields for cancelling an orphaned fetch, guarded by Coalescer.mu.
	waiters    int                // waiters blocked on done
	leaderGone bool               // the leader's own client has gone
	cancel     context.CancelFunc // ends the leader's fetch; nil until it starts
	orphan     *time.Timer        // pending cancellation, nil if none
}

func newGroup() *group { return &group{done: make(chan struct{})} }

// join counts a waiter; one arriving within the grace keeps the fetch.
// c.mu must be held.
func (g *group) join() {
	g.waiters++
	g.stopOrphanTimer()
}

// leaveLocked uncounts a waiter of g and cancels the fetch after the grace
// if nobody is left to want it. c.mu must be held.
func (c *Coalescer) leaveLocked(g *group) {
	g.waiters--
	c.orphanCheckLocked(g)
}

// orphanCheckLocked schedules the cancellation of g's fetch after
// OrphanGrace once the leader's client and every waiter have gone. The
// timer takes c.mu, so it sees a waiter that joined meanwhile (and a timer
// stopped too late finds itself replaced). c.mu must be held.
func (c *Coalescer) orphanCheckLocked(g *group) {
	if g.released || !g.leaderGone || g.waiters > 0 || g.orphan != nil || g.cancel == nil {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(c.cfg.OrphanGrace, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if g.orphan == t && !g.released && g.waiters == 0 {
			g.cancel()
		}
	})
	g.orphan = t
}

func (g *group) stopOrphanTimer() {
	if g.orphan != nil {
		g.orphan.Stop()
		g.orphan = nil
	}
}
