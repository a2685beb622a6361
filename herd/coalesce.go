package herd

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// CoalescerConfig bounds a Coalescer. Zero fields take the defaults.
type CoalescerConfig struct {
	// MaxBodyBytes is the largest response body shared or stored; a larger
	// answer streams to its own client only. Default 16 MiB.
	MaxBodyBytes int64
	// CacheBytes is the byte budget of everything the Coalescer holds:
	// bodies being recorded in flight plus the completion cache. Default
	// 256 MiB.
	CacheBytes int64
	// MaxEntries caps in-flight groups plus cached entries. Default 10000.
	MaxEntries int
	// FetchTimeout bounds a detached leader's upstream fetch (LeadDetached)
	// and a waiter asked to wait without a deadline. Default 5m.
	FetchTimeout time.Duration
	// OrphanGrace is how long a detached leader's fetch goes on once its own
	// client and every waiter have gone: a request that arrives meanwhile
	// joins it, else it is cancelled, so that nobody's fetch holds the
	// upstream (and an admission slot) for FetchTimeout. Default 2s.
	OrphanGrace time.Duration
	// ShareNoStoreInFlight lets a per-token (non-shared) key hand a
	// Cache-Control: no-store response to the waiters of the same in-flight
	// group; it is still never put in the completion cache nor shared across
	// tokens. Off by default, as docs/DESIGN.md's safety rules say. Synapse marks
	// every JSON response no-store, so without this option coalescing never
	// shares a Synapse JSON answer.
	ShareNoStoreInFlight bool
}

// Defaults of CoalescerConfig.
const (
	DefaultMaxBodyBytes = 16 << 20
	DefaultCacheBytes   = 256 << 20
	DefaultMaxEntries   = 10000
	DefaultFetchTimeout = 5 * time.Minute
	DefaultOrphanGrace  = 2 * time.Second
)

func (cfg CoalescerConfig) withDefaults() CoalescerConfig {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.CacheBytes <= 0 {
		cfg.CacheBytes = DefaultCacheBytes
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.FetchTimeout <= 0 {
		cfg.FetchTimeout = DefaultFetchTimeout
	}
	if cfg.OrphanGrace <= 0 {
		cfg.OrphanGrace = DefaultOrphanGrace
	}
	return cfg
}

// Outcome says how Do served a request.
type Outcome uint8

const (
	// Leader: this request fetched from the upstream for its group.
	Leader Outcome = iota
	// Coalesced: it waited on an identical in-flight request and got its
	// answer (or its error).
	Coalesced
	// Cached: it was answered from the completion cache.
	Cached
	// Passthrough: the answer could not be shared (or the Coalescer was
	// full), so it called fetch with its own request and writer.
	Passthrough
	// Abandoned: its context or wait deadline ended while waiting. Nothing
	// was written; the caller answers (429).
	Abandoned
)

// Lead says how a group's leader fetches.
type Lead uint8

const (
	// LeadAttached: the leader fetches on its own client's request, as it
	// would alone. If that client leaves before the answer is complete, the
	// fetch ends with it and the group's waiters elect a new leader among
	// themselves. It costs nothing beyond the group.
	LeadAttached Lead = iota
	// LeadDetached: the leader fetches on a context detached from its client,
	// so that the fetch goes on for the waiters when the client leaves, and
	// for OrphanGrace after everyone has gone, for a client that gives up and
	// asks again. It costs a context, a timer, a watch on the client's
	// context and a copy of the request per leader.
	LeadDetached
)

// maxElections bounds how many groups one waiter may wait on whose leader
// left or broke off; then it fetches for itself.
const maxElections = 3

// ErrWaitTimeout is returned by Do to a waiter whose wait deadline passed
// before its group's answer arrived.
var ErrWaitTimeout = errors.New("herd: timed out waiting for a coalesced request")

// Coalescer shares one upstream fetch among identical concurrent requests
// and replays recent answers from a bounded completion cache. See the package
// doc for the safety rules. Safe for concurrent use; the zero value is not
// usable, use NewCoalescer. It starts no goroutines.
type Coalescer struct {
	cfg CoalescerConfig
	now func() time.Time // replaced in tests

	mu sync.Mutex
	st *store // guarded by mu
}

// NewCoalescer returns a Coalescer bounded by cfg (zero fields: defaults).
func NewCoalescer(cfg CoalescerConfig) *Coalescer {
	cfg = cfg.withDefaults()
	return &Coalescer{cfg: cfg, now: time.Now, st: newStore(cfg.MaxEntries, cfg.CacheBytes)}
}

// Len reports the in-flight groups, the cached entries and the bytes held
// (recordings in flight plus cached responses).
func (c *Coalescer) Len() (groups, entries int, bytes int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.st.groups), c.st.cache.Len(), c.st.used
}

// Waiting reports how many requests are blocked waiting on in-flight groups.
func (c *Coalescer) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.waiting
}

// Do serves r through the coalescing group for key (from KeyOf).
//
//   - A cached answer younger than its ttl is replayed: Cached.
//   - If an identical request is in flight, Do waits for it, bounded by
//     r.Context() and wait (wait <= 0: FetchTimeout), and replays its status,
//     headers and body with X-Mxgate-Coalesced: 1 (Coalesced), returns its
//     fetch error (Coalesced, err), or — if the answer is not shareable —
//     calls fetch(w, r) itself (Passthrough). If the group ends without an
//     answer because the leader's may be incomplete (see lead), the waiters
//     elect a new leader: Do starts over, and after maxElections such groups
//     fetches for itself (Passthrough).
//     If the wait ends first, Do writes nothing and returns Abandoned with
//     r.Context().Err() or ErrWaitTimeout.
//   - Otherwise this request leads: Do calls fetch as lead says (LeadAttached:
//     with r; LeadDetached: with a copy of r whose context is detached from
//     the client, bounded by FetchTimeout and cancelled OrphanGrace after
//     the client and every waiter have gone) and a writer that streams to w
//     and records the answer for the waiters. A shareable answer below 500
//     and other than 429 is then cached for ttl (ttl <= 0: not cached). An
//     answer that will not be cached is recorded only if a waiter has joined
//     by the time its headers arrive; if none has, the group closes then and
//     a later identical request leads its own fetch. Returns Leader and
//     fetch's error.
//   - If MaxEntries groups and entries are all in flight, fetch(w, r) is
//     called alone: Passthrough.
//
// Only the leader and passthrough requests call fetch, so a group costs the
// upstream one request (and, in the gate, one admission slot).
func (c *Coalescer) Do(w http.ResponseWriter, r *http.Request, key Key, lead Lead, ttl, wait time.Duration,
	fetch func(http.ResponseWriter, *http.Request) error) (Outcome, error) {
	var deadline *time.Timer // a waiter's, over every group it waits on
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	for elections := 1; ; elections++ {
		c.mu.Lock()
		if res := c.st.lookup(key, c.now()); res != nil {
			c.mu.Unlock()
			replay(w, r, res)
			return Cached, nil
		}
		if g := c.st.groups[key]; g != nil {
			c.st.waiting++
			g.join()
			c.mu.Unlock()
			if deadline == nil {
				if wait <= 0 {
					wait = c.cfg.FetchTimeout
				}
				deadline = time.NewTimer(wait)
			}
			outcome, err := c.await(w, r, g, deadline.C, fetch)
			if err != errElect {
				return outcome, err
			}
			if elections == maxElections {
				return Passthrough, fetch(w, r)
			}
			continue
		}
		if !c.st.roomForGroup() {
			c.mu.Unlock()
			return Passthrough, fetch(w, r)
		}
		g := newGroup()
		c.st.groups[key] = g
		c.mu.Unlock()
		return Leader, c.lead(w, r, key, g, lead, ttl, fetch)
	}
}

// errElect is await's result for a group that ended without an answer for
// its waiters to elect a new leader: Do starts over. Nothing is written.
var errElect = errors.New("herd: the leader left without an answer")

// await waits for g's answer on behalf of one waiter (counted in
// store.waiting by Do) until deadline fires.
func (c *Coalescer) await(w http.ResponseWriter, r *http.Request, g *group, deadline <-chan time.Time,
	fetch func(http.ResponseWriter, *http.Request) error) (Outcome, error) {
	var abandoned error
	select {
	case <-g.done:
	case <-r.Context().Done():
		abandoned = r.Context().Err()
	case <-deadline:
		abandoned = ErrWaitTimeout
	}
	c.mu.Lock()
	c.st.waiting--
	c.leaveLocked(g)
	c.mu.Unlock()

	switch {
	case abandoned != nil:
		return Abandoned, abandoned
	case g.reelect:
		return 0, errElect
	case g.err != nil:
		return Coalesced, g.err
	case g.res == nil:
		return Passthrough, fetch(w, r)
	default:
		replay(w, r, g.res)
		return Coalesced, nil
	}
}

// lead runs fetch for g as lead says and publishes the result. If the
// answer may be incomplete — the fetch's context ended before fetch
// returned (its client left during an attached fetch, or a detached one
// was cancelled as orphaned), the leader's client has gone and fetch
// failed (it left while its request queued), the body is short of its
// Content-Length, or fetch panicked (httputil.ReverseProxy panics with
// http.ErrAbortHandler when the upstream or the client breaks off
// mid-body) — g ends without an answer for its waiters to elect a new
// leader, and a panic continues to the server.
func (c *Coalescer) lead(w http.ResponseWriter, r *http.Request, key Key, g *group, lead Lead, ttl time.Duration,
	fetch func(http.ResponseWriter, *http.Request) error) error {
	fr := r
	if lead == LeadDetached {
		var stop func()
		fr, stop = c.detach(r, g)
		defer stop()
	}
	tw := newTeeWriter(c, key, g, ttl, w)
	completed := false
	defer func() {
		if !completed {
			tw.stopRecording()
			c.reelect(key, g)
		}
	}()

	err := fetch(tw, fr)
	if !tw.wroteHeader {
		if err != nil {
			tw.abandonHeader()
		} else {
			tw.WriteHeader(http.StatusOK) // what net/http sends for a handler that wrote nothing
		}
	}
	if fr.Context().Err() != nil || r.Context().Err() != nil && err != nil || tw.cutShort(r.Method) {
		// The answer may be incomplete: the fetch's context ended (its
		// client left during an attached fetch, or a detached one was
		// cancelled as orphaned; Caddy then answers 499 without an error),
		// its client left while it queued, or its body came short.
		tw.stopRecording()
		c.reelect(key, g)
	} else {
		c.complete(key, g, tw, r.Method, err, ttl)
	}
	completed = true
	return err
}

// detach returns a copy of r for a detached leader's fetch: its context
// keeps r's values, not its cancellation, ends at FetchTimeout, and is
// cancelled OrphanGrace after r's client and every waiter of g have gone.
// stop releases what detach set up once the fetch is over.
func (c *Coalescer) detach(r *http.Request, g *group) (fr *http.Request, stop func()) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), c.cfg.FetchTimeout)
	c.mu.Lock()
	g.cancel = cancel
	c.mu.Unlock()
	unwatch := context.AfterFunc(r.Context(), func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		g.leaderGone = true
		c.orphanCheckLocked(g)
	})
	return r.WithContext(ctx), func() {
		cancel()
		unwatch()
	}
}

// complete publishes the leader's final result and caches it if allowed.
func (c *Coalescer) complete(key Key, g *group, tw *teeWriter, method string, err error, ttl time.Duration) {
	var res *response
	if err == nil && tw.recording {
		res = &response{status: tw.status, header: tw.recorded, body: tw.recordedBody()}
		if method == http.MethodHead {
			res.headLength = tw.headLength
		}
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releaseLocked(key, g, res, err)
	if res != nil && cacheable(res, ttl) {
		c.st.put(key, res, now.Add(ttl), tw.reserved, now)
	} else {
		c.st.unreserve(tw.reserved)
	}
	tw.reserved = 0
}

// cacheable reports whether a shareable answer may outlive its group.
func cacheable(res *response, ttl time.Duration) bool {
	return cacheableAnswer(res.status, res.header, ttl)
}

// cacheableAnswer reports whether an answer with status and header may be
// kept for ttl: errors and rate limits must reach the waiters that saw
// them, but a later request has to ask again.
func cacheableAnswer(status int, header http.Header, ttl time.Duration) bool {
	return ttl > 0 && status < 500 && status != http.StatusTooManyRequests &&
		!cacheControlHas(header, "no-store")
}

// releaseIfAlone releases g as not shared if no waiter has joined it,
// reporting whether it did; a later identical request leads its own fetch.
func (c *Coalescer) releaseIfAlone(key Key, g *group) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if g.waiters > 0 {
		return false
	}
	c.releaseLocked(key, g, nil, nil)
	return true
}

// giveUp tells g's waiters to fetch for themselves and lets the next
// identical request start a new group.
func (c *Coalescer) giveUp(key Key, g *group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.releaseLocked(key, g, nil, nil)
}

// reelect ends g without an answer for its waiters to elect a new leader
// (no-op if g was already released: its waiters have their result).
func (c *Coalescer) reelect(key Key, g *group) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !g.released {
		g.reelect = true
	}
	c.releaseLocked(key, g, nil, nil)
}

// releaseLocked publishes g's result once and removes g from the in-flight
// map. c.mu must be held.
func (c *Coalescer) releaseLocked(key Key, g *group, res *response, err error) {
	if g.released {
		return
	}
	g.released = true
	g.res, g.err = res, err
	g.stopOrphanTimer()
	close(g.done)
	if c.st.groups[key] == g {
		delete(c.st.groups, key)
	}
}

// reserve charges n recorded bytes to the budget (see store.reserve).
func (c *Coalescer) reserve(n int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.reserve(n)
}

// unreserve returns n recorded bytes to the budget.
func (c *Coalescer) unreserve(n int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.st.unreserve(n)
}
