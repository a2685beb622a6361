package herd

// group is one in-flight upstream fetch that identical requests wait on.
//
// The leader publishes exactly one result by calling Coalescer.release, which
// sets res and err and then closes done; waiters read them only after done
// is closed. The three results:
//
//   - res != nil: a complete shareable answer, replayed to every waiter;
//   - err != nil: fetch failed, every waiter returns the same error;
//   - both nil: the answer is not shareable (too big, Set-Cookie, no-store,
//     ...) or the leader aborted; each waiter fetches for itself.
//
// A non-shareable answer is published as soon as that is known (at its
// headers, or when its body outgrows the cap), not when it completes, so
// waiters are not held while a 50 MiB body streams to the leader.
type group struct {
	done     chan struct{}
	released bool // guarded by Coalescer.mu
	res      *response
	err      error
}

func newGroup() *group { return &group{done: make(chan struct{})} }
