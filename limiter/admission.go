package limiter

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"time"
)

// Lane orders waiters within one class queue.
type Lane uint8

const (
	// LaneNormal is served first.
	LaneNormal Lane = iota
	// LaneHerd is for requests of a detected thundering herd: they are admitted
	// only when no normal request of the same class waits, never into the
	// class's last slots (herdReserve), and a normal request that finds the
	// queue full takes the place of the longest-waiting one (which fails with
	// ErrQueueFull).
	LaneHerd

	numLanes = 2
)

// ClassLimits are the admission settings of one class.
type ClassLimits struct {
	// MaxInflight caps the class's admitted requests; 0 means no class cap.
	MaxInflight int
	// Queue is how many requests may wait; 0 means none (shed at the cap).
	Queue int
	// QueueTimeout bounds a wait; 0 means the caller's context alone bounds it.
	QueueTimeout time.Duration
	// LIFOAfter is how long the queue may stand without draining before it
	// serves newest first; 0 disables adaptive LIFO.
	LIFOAfter time.Duration
	// OwnBudget keeps the class out of the global cap.
	OwnBudget bool
	// Adaptive lowers the cap in force to a Gradient limit learnt from the
	// class's round trips (fed by Ticket.Done); MaxInflight is its ceiling,
	// DefaultAdaptiveMax if 0.
	Adaptive bool
	// HerdMax is, in a fleet, this gateway's part of the class's herd
	// allowance (HerdAllowance of the fleet's cap, shared out): when
	// positive, herd requests may hold that many slots (at most the cap in
	// force), in place of all but herdReserve of this gateway's own, so that
	// the fleet together keeps the reserve one gateway would; NoHerd admits
	// none here: they are refused at once, to come back, perhaps through a
	// gateway that has a part. 0: herdReserve.
	HerdMax int
}

// NoHerd is ClassLimits.HerdMax for a gateway with no part of a class's
// herd allowance.
const NoHerd = -1

// DefaultAdaptiveMax is the adaptive limit's ceiling for a class without a
// cap (MaxInflight 0).
const DefaultAdaptiveMax = 1000

// Config configures an Admission.
type Config struct {
	// MaxInflight caps admitted requests of all classes without OwnBudget
	// together; 0 means no global cap.
	MaxInflight int
	// Classes holds the limits per class index; its length fixes the number
	// of classes.
	Classes []ClassLimits
	// Liveness configures the upstream liveness machine that holds
	// admission while the upstream is down and ramps caps after.
	Liveness LivenessConfig
}

var (
	// ErrQueueFull means the class was at its cap and its queue was full, or
	// that a herd request's place in it went to a normal one.
	ErrQueueFull = errors.New("queue full")
	// ErrQueueTimeout means the request waited QueueTimeout without a slot.
	ErrQueueTimeout = errors.New("timed out waiting for a slot")
	// ErrNoHerdPart refuses a herd request on a gateway that has no part
	// of its class's herd allowance (ClassLimits.HerdMax NoHerd).
	ErrNoHerdPart = errors.New("no part of the herd allowance here")
)

// Admission caps how many requests of each class, and of all classes
// together, are in flight, and queues the rest with a deadline. It is safe for
// concurrent use. The zero value is not usable; call NewAdmission.
type Admission struct {
	mu      sync.Mutex
	now     func() time.Time
	global  int // admitted requests counted against globalCap
	gcap    int
	classes []classState
	waiting int // waiters over all classes
	rr      int // class where the next dispatch scan starts
	// live holds all admission while the upstream is down; it is separate
	// from the operator's per-class pause so neither clobbers the other.
	live Liveness
	salt uint64 // seeds the classes' gradients differently per Admission
}

type classState struct {
	limits       ClassLimits
	grad         *Gradient // nil unless limits.Adaptive
	paused       bool
	inflight     int
	herdInflight int // of inflight, those admitted in LaneHerd
	queue        classQueue
}

// herdReserve is how many of a class's cap slots a herd may not take: an
// eighth, at least one, for a cap of two or more. Herd requests are the
// expensive ones and, under the incident, the slow ones; without a reserve
// they hold every slot, and the rest of the class (another room's state, a
// page of history) waits as long as a herd request takes, though it is
// served first, until its queue deadline.
func herdReserve(limit int) int {
	if limit < 2 {
		return 0
	}
	return max(1, limit/8)
}

// HerdAllowance is how many of a cap's slots a herd may hold: all but
// herdReserve. A fleet shares it out as ClassLimits.HerdMax: every
// gateway's own share of a small cap (1 of 2) would leave it no reserve,
// and the herd as many slots as there are gateways.
func HerdAllowance(limit int) int { return limit - herdReserve(limit) }

// NewAdmission returns an Admission for cfg. now may be nil for time.Now.
func NewAdmission(cfg Config, now func() time.Time) *Admission {
	if now == nil {
		now = time.Now
	}
	a := &Admission{now: now, classes: make([]classState, len(cfg.Classes)), salt: rand.Uint64() | 1}
	a.Configure(cfg)
	return a
}

// Configure applies new limits without dropping in-flight requests or
// waiters: a config reload must not reset the gate. The number of classes is
// fixed at NewAdmission; extra entries are ignored.
func (a *Admission) Configure(cfg Config) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gcap = cfg.MaxInflight
	for i := range a.classes {
		c := &a.classes[i]
		if i < len(cfg.Classes) {
			c.limits = cfg.Classes[i]
		}
		c.configureGradient(a.salt * uint64(i+1))
		if c.limits.HerdMax == NoHerd {
			// No part any more (a gateway joined): herd waiters would
			// never be granted.
			for w := c.queue.lanes[LaneHerd].head; w != nil; w = c.queue.lanes[LaneHerd].head {
				c.queue.remove(w)
				a.refuseLocked(w, ErrNoHerdPart)
			}
		}
	}
	a.live.Configure(cfg.Liveness)
	a.dispatchLocked()
}

// configureGradient builds, keeps or drops the class's gradient: one whose
// ceiling is unchanged keeps what it has learnt, a new ceiling starts anew.
func (c *classState) configureGradient(seed uint64) {
	if !c.limits.Adaptive {
		c.grad = nil
		return
	}
	ceiling := c.limits.MaxInflight
	if ceiling <= 0 {
		ceiling = DefaultAdaptiveMax
	}
	if c.grad != nil && c.grad.cfg.MaxLimit == ceiling {
		return
	}
	c.grad = NewGradient(GradientConfig{MinLimit: 1, MaxLimit: ceiling}, seed)
}

// capLocked is the cap in force for c at now (0 = none): the configured
// cap, lowered to the adaptive limit, scaled down while slow start ramps.
func (a *Admission) capLocked(c *classState, now time.Time) int {
	n := c.limits.MaxInflight
	if c.grad != nil {
		if l := c.grad.Limit(); n == 0 || l < n {
			n = l
		}
	}
	return a.live.Scale(n, now)
}

// EndProbes ends every adaptive class's baseline probe in progress
// (Gradient.EndProbe): its limit returns from the probe's share to the
// limit learnt, and waiters the higher cap allows are admitted.
func (a *Admission) EndProbes(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range a.classes {
		if g := a.classes[i].grad; g != nil {
			g.EndProbe(now)
		}
	}
	a.dispatchLocked()
}

// SetPaused holds (or releases) a class: while paused nothing new of it is
// admitted; waiters keep waiting within their deadlines and are admitted in
// order once it is released.
func (a *Admission) SetPaused(class int, paused bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.classes[class].paused = paused
	a.dispatchLocked()
}

// passOneLocked admits the first waiter (scanning classes round-robin)
// that would have room but for the hold: a canary request sent to learn
// whether a down upstream is back. It reports whether one was admitted.
func (a *Admission) passOneLocked(now time.Time) bool {
	if a.waiting == 0 {
		return false
	}
	n := len(a.classes)
	for k := 0; k < n; k++ {
		i := (a.rr + k) % n
		c := &a.classes[i]
		if !a.grantableLocked(c, now) || !a.roomLocked(c, now) {
			continue
		}
		a.grantLocked(i, now)
		a.rr = (i + 1) % n
		return true
	}
	return false
}

// Acquire admits a request of class, waiting in lane if the class or the
// global cap is reached. Once admitted (err nil) the caller must call the
// ticket's Done exactly once. It fails with ErrQueueFull, ErrQueueTimeout,
// or ctx's error; a request whose context ends while waiting leaves the
// queue at once and holds no slot. The ticket's Waited is valid either way.
func (a *Admission) Acquire(ctx context.Context, class int, lane Lane) (t Ticket, err error) {
	return a.AcquireFor(ctx, class, lane, 0)
}

// AcquireFor is Acquire for a request of group (in the gate, its room; 0:
// none), which Relane can move from the normal lane to the herd lane while
// it waits.
func (a *Admission) AcquireFor(ctx context.Context, class int, lane Lane, group uint64) (t Ticket, err error) {
	a.mu.Lock()
	c := &a.classes[class]
	now := a.now()
	// A normal request passes waiting herd requests, which it is served
	// before anyway; a herd request passes nobody.
	ahead := c.queue.lanes[LaneNormal].len
	if lane == LaneHerd {
		ahead = c.queue.len()
	}
	if ahead == 0 && a.hasRoomLocked(c, now) && (lane == LaneNormal || a.herdRoomLocked(c, now)) {
		a.admitLocked(c, lane)
		t = a.ticketLocked(class, lane, now, false)
		a.mu.Unlock()
		return t, nil
	}
	if lane == LaneHerd && c.limits.HerdMax == NoHerd {
		a.mu.Unlock()
		return t, ErrNoHerdPart
	}
	if c.queue.len() >= c.limits.Queue && (lane == LaneHerd || !a.displaceHerdLocked(c)) {
		a.mu.Unlock()
		return t, ErrQueueFull
	}
	if err := ctx.Err(); err != nil {
		a.mu.Unlock()
		return t, err
	}
	w := &waiter{ready: make(chan struct{}), lane: lane, group: group, enqueued: now}
	c.queue.push(w, now)
	a.waiting++
	d := c.limits.QueueTimeout
	a.mu.Unlock()
	t.Waited = true

	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-w.ready:
		if w.displaced != nil {
			return t, w.displaced
		}
		// The round trip starts when the waiter resumes: a loaded
		// scheduler's wake-up delay is not the upstream's latency.
		t = w.ticket
		t.Granted = a.now()
		return t, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		err = ErrQueueTimeout
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.displaced != nil {
		return t, w.displaced
	}
	if !w.granted {
		c.queue.remove(w)
		a.waiting--
		return t, err
	}
	// Granted while we were giving up. A timed-out request may as well use
	// the slot; a cancelled one's client is gone, so the slot goes back.
	if ctx.Err() == nil {
		return w.ticket, nil
	}
	a.releaseLocked(class, lane)
	return t, err
}

// Admit admits a request of class at once, over the caps, past any waiters
// and through the liveness hold if need be: shadow mode lets what the
// automatic limits would refuse through and only observes what Acquire
// would have done. The caller must call the ticket's Done exactly once.
func (a *Admission) Admit(class int) Ticket {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.admitLocked(&a.classes[class], LaneNormal)
	return a.ticketLocked(class, LaneNormal, a.now(), false)
}

func (a *Admission) releaseLocked(class int, lane Lane) {
	c := &a.classes[class]
	c.inflight--
	if lane == LaneHerd {
		c.herdInflight--
	}
	if !c.limits.OwnBudget {
		a.global--
	}
	if a.waiting > 0 {
		a.dispatchLocked()
	}
}

// hasRoomLocked reports whether c may admit one more request at now.
func (a *Admission) hasRoomLocked(c *classState, now time.Time) bool {
	return !a.live.Down() && a.roomLocked(c, now)
}

// roomLocked is hasRoomLocked but for the liveness hold.
func (a *Admission) roomLocked(c *classState, now time.Time) bool {
	if c.paused {
		return false
	}
	if n := a.capLocked(c, now); n > 0 && c.inflight >= n {
		return false
	}
	return c.limits.OwnBudget || a.gcap <= 0 || a.global < a.gcap
}

// herdRoomLocked reports whether c's herd requests may take one more slot:
// they leave herdReserve slots of the cap in force to the rest of the class.
func (a *Admission) herdRoomLocked(c *classState, now time.Time) bool {
	n := a.capLocked(c, now)
	switch h := c.limits.HerdMax; {
	case h == NoHerd:
		return false
	case h > 0 && n > 0 && n < c.limits.MaxInflight:
		// The cap in force is lowered (an adaptive limit, slow start):
		// this gateway keeps its own reserve of it too.
		return c.herdInflight < min(h, n-herdReserve(n))
	case h > 0: // the cap itself is hasRoomLocked's to check
		return c.herdInflight < h
	}
	return n <= 0 || c.herdInflight < n-herdReserve(n)
}

// grantableLocked reports whether c's queue holds a waiter that may take a
// free slot: a normal one, or a herd one within the herd's share.
func (a *Admission) grantableLocked(c *classState, now time.Time) bool {
	return c.queue.lanes[LaneNormal].len > 0 || (c.queue.lanes[LaneHerd].len > 0 && a.herdRoomLocked(c, now))
}

func (a *Admission) admitLocked(c *classState, lane Lane) {
	c.inflight++
	if lane == LaneHerd {
		c.herdInflight++
	}
	if !c.limits.OwnBudget {
		a.global++
	}
}

// dispatchLocked grants free slots to waiters, scanning classes round-robin
// so that no class monopolises global slots as they free up.
func (a *Admission) dispatchLocked() {
	if a.waiting == 0 {
		return
	}
	now := a.now()
	n := len(a.classes)
	for progress := true; progress && a.waiting > 0; {
		progress = false
		for k := 0; k < n; k++ {
			i := (a.rr + k) % n
			c := &a.classes[i]
			if !a.grantableLocked(c, now) || !a.hasRoomLocked(c, now) {
				continue
			}
			a.grantLocked(i, now)
			progress = true
		}
		a.rr = (a.rr + 1) % n
	}
}

// refuseLocked ends w's wait, already out of its queue, with err.
func (a *Admission) refuseLocked(w *waiter, err error) {
	a.waiting--
	w.displaced = err
	close(w.ready)
}

// displaceHerdLocked removes the longest-waiting herd request from c's
// queue, to make room for a normal one, and reports whether there was one.
// The herd request's wait ends with ErrQueueFull: a queue filled by one
// room's herd must not refuse the rest of the class, which it serves before
// the herd anyway.
func (a *Admission) displaceHerdLocked(c *classState) bool {
	w := c.queue.lanes[LaneHerd].head
	if w == nil {
		return false
	}
	c.queue.remove(w)
	a.refuseLocked(w, ErrQueueFull) // its place went to a normal request
	return true
}

// Relane moves class's normal-lane waiters of group (not 0) to the front of
// its herd lane, in the order they came, and reports how many it moved. A
// herd is declared only once enough of its users have asked, so its first
// requests wait in the normal lane, ahead of the rest of the class; moved,
// they wait behind it like the herd they are, and the herd's share of the
// cap (herdReserve) counts them once admitted. Where the class admits no
// herd (NoHerd), they are refused instead, as a new herd request is.
func (a *Admission) Relane(class int, group uint64) int {
	if group == 0 {
		return 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c := &a.classes[class]
	q := &c.queue
	moved := 0
	for w := q.lanes[LaneNormal].tail; w != nil; {
		prev := w.prev
		if w.group == group {
			q.lanes[LaneNormal].remove(w)
			if c.limits.HerdMax == NoHerd {
				a.refuseLocked(w, ErrNoHerdPart)
			} else {
				w.lane = LaneHerd
				q.lanes[LaneHerd].pushFront(w)
			}
			moved++
		}
		w = prev
	}
	return moved
}

// grantLocked admits the waiter class's queue serves next; it must have
// one that grantableLocked allows.
func (a *Admission) grantLocked(class int, now time.Time) {
	c := &a.classes[class]
	w := c.queue.pop(now, c.limits.LIFOAfter)
	w.granted = true
	a.waiting--
	a.admitLocked(c, w.lane)
	w.ticket = a.ticketLocked(class, w.lane, now, true)
	close(w.ready)
}

// ClassSnapshot is one class's admission state at a moment.
type ClassSnapshot struct {
	Inflight int  `json:"inflight"`
	Queued   int  `json:"queued"`
	Cap      int  `json:"cap"` // the cap in force; 0 = none
	Paused   bool `json:"paused,omitempty"`
	// Adaptive classes: the gradient's limit and its no-load RTT (0 until
	// measured).
	Adaptive      bool          `json:"adaptive,omitempty"`
	AdaptiveLimit int           `json:"adaptive_limit,omitempty"`
	BaselineRTT   time.Duration `json:"baseline_rtt,omitempty"`
}

// Snapshot returns the global in-flight count and each class's state at
// the Admission's clock.
func (a *Admission) Snapshot() (global int, classes []ClassSnapshot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	classes = make([]ClassSnapshot, len(a.classes))
	for i := range a.classes {
		c := &a.classes[i]
		classes[i] = ClassSnapshot{Inflight: c.inflight, Queued: c.queue.len(), Cap: a.capLocked(c, now), Paused: c.paused}
		if c.grad != nil {
			classes[i].Adaptive, classes[i].AdaptiveLimit, classes[i].BaselineRTT = true, c.grad.Limit(), c.grad.Baseline()
		}
	}
	return a.global, classes
}
