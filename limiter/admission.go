package limiter

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Lane orders waiters within one class queue.
type Lane uint8

const (
	// LaneNormal is served first.
	LaneNormal Lane = iota
	// LaneHerd is for requests of a detected thundering herd: they are admitted
	// only when no normal request of the same class waits.
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
}

// Config configures an Admission.
type Config struct {
	// MaxInflight caps admitted requests of all classes without OwnBudget
	// together; 0 means no global cap.
	MaxInflight int
	// Classes holds the limits per class index; its length fixes the number
	// of classes.
	Classes []ClassLimits
}

var (
	// ErrQueueFull means the class was at its cap and its queue was full.
	ErrQueueFull = errors.New("queue full")
	// ErrQueueTimeout means the request waited QueueTimeout without a slot.
	ErrQueueTimeout = errors.New("timed out waiting for a slot")
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
	// held stops all admission while the upstream is down (ride-through); it
	// is separate from the operator's per-class pause so neither clobbers
	// the other.
	held bool
}

type classState struct {
	limits   ClassLimits
	cap      int // the cap in force: limits.MaxInflight unless overridden
	override int // >0: a dynamic cap (adaptive limit, slow start)
	paused   bool
	inflight int
	queue    classQueue
}

// NewAdmission returns an Admission for cfg. now may be nil for time.Now.
func NewAdmission(cfg Config, now func() time.Time) *Admission {
	if now == nil {
		now = time.Now
	}
	a := &Admission{now: now, classes: make([]classState, len(cfg.Classes))}
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
		if i < len(cfg.Classes) {
			a.classes[i].limits = cfg.Classes[i]
		}
		a.classes[i].updateCap()
	}
	a.dispatchLocked()
}

func (c *classState) updateCap() {
	c.cap = c.limits.MaxInflight
	if c.override > 0 && (c.cap == 0 || c.override < c.cap) {
		c.cap = c.override
	}
}

// SetDynamicCap lowers class's cap to n (an adaptive limit or a slow-start
// ramp); n <= 0 removes the override. The configured MaxInflight stays the
// ceiling.
func (a *Admission) SetDynamicCap(class, n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c := &a.classes[class]
	c.override = n
	c.updateCap()
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

// Held reports whether admission is held (SetHeld).
func (a *Admission) Held() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held
}

// SetHeld holds (or releases) every class at once: while held nothing is
// admitted and waiters keep waiting within their deadlines, as with
// SetPaused. It is the gate's ride-through hold while the upstream is down,
// kept apart from operator pauses so that neither undoes the other.
func (a *Admission) SetHeld(held bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.held = held
	a.dispatchLocked()
}

// PassOne admits the first waiter (scanning classes round-robin) that would
// have room but for the hold: a canary request sent to learn whether a down
// upstream is back. It reports whether one was admitted.
func (a *Admission) PassOne() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiting == 0 {
		return false
	}
	held := a.held
	a.held = false
	defer func() { a.held = held }()
	n := len(a.classes)
	for k := 0; k < n; k++ {
		i := (a.rr + k) % n
		c := &a.classes[i]
		if c.queue.len() == 0 || !a.hasRoomLocked(c) {
			continue
		}
		a.grantLocked(c, a.now())
		a.rr = (i + 1) % n
		return true
	}
	return false
}

// Inflight returns class's admitted requests now, for the adaptive limit's
// samples (the in-flight count a request started with).
func (a *Admission) Inflight(class int) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.classes[class].inflight
}

// Acquire admits a request of class, waiting in lane if the class or the
// global cap is reached. It returns whether the request had to wait, and nil
// once admitted; the caller must then call Release(class) exactly once.
// It fails with ErrQueueFull, ErrQueueTimeout, or ctx's error; a request
// whose context ends while waiting leaves the queue at once and holds no slot.
func (a *Admission) Acquire(ctx context.Context, class int, lane Lane) (waited bool, err error) {
	a.mu.Lock()
	c := &a.classes[class]
	if c.queue.len() == 0 && a.hasRoomLocked(c) {
		a.admitLocked(c)
		a.mu.Unlock()
		return false, nil
	}
	if c.queue.len() >= c.limits.Queue {
		a.mu.Unlock()
		return false, ErrQueueFull
	}
	if err := ctx.Err(); err != nil {
		a.mu.Unlock()
		return false, err
	}
	now := a.now()
	w := &waiter{ready: make(chan struct{}), lane: lane, enqueued: now}
	c.queue.push(w, now)
	a.waiting++
	d := c.limits.QueueTimeout
	a.mu.Unlock()

	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-w.ready:
		return true, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timeout:
		err = ErrQueueTimeout
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if !w.granted {
		c.queue.remove(w)
		a.waiting--
		return true, err
	}
	// Granted while we were giving up. A timed-out request may as well use
	// the slot; a cancelled one's client is gone, so the slot goes back.
	if ctx.Err() == nil {
		return true, nil
	}
	a.releaseLocked(class)
	return true, err
}

// Release frees a slot taken by a successful Acquire and hands it to the next
// waiter, if any.
func (a *Admission) Release(class int) {
	a.mu.Lock()
	a.releaseLocked(class)
	a.mu.Unlock()
}

func (a *Admission) releaseLocked(class int) {
	c := &a.classes[class]
	c.inflight--
	if !c.limits.OwnBudget {
		a.global--
	}
	if a.waiting > 0 {
		a.dispatchLocked()
	}
}

func (a *Admission) hasRoomLocked(c *classState) bool {
	if a.held || c.paused || (c.cap > 0 && c.inflight >= c.cap) {
		return false
	}
	return c.limits.OwnBudget || a.gcap <= 0 || a.global < a.gcap
}

func (a *Admission) admitLocked(c *classState) {
	c.inflight++
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
			if c.queue.len() == 0 || !a.hasRoomLocked(c) {
				continue
			}
			a.grantLocked(c, now)
			progress = true
		}
		a.rr = (a.rr + 1) % n
	}
}

// grantLocked admits the waiter c's queue serves next; c must have one.
func (a *Admission) grantLocked(c *classState, now time.Time) {
	w := c.queue.pop(now, c.limits.LIFOAfter)
	w.granted = true
	a.waiting--
	a.admitLocked(c)
	close(w.ready)
}

// ClassSnapshot is one class's admission state at a moment.
type ClassSnapshot struct {
	Inflight int  `json:"inflight"`
	Queued   int  `json:"queued"`
	Cap      int  `json:"cap"` // the cap in force; 0 = none
	Paused   bool `json:"paused,omitempty"`
}

// Snapshot returns the global in-flight count and each class's state.
func (a *Admission) Snapshot() (global int, classes []ClassSnapshot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	classes = make([]ClassSnapshot, len(a.classes))
	for i := range a.classes {
		c := &a.classes[i]
		classes[i] = ClassSnapshot{Inflight: c.inflight, Queued: c.queue.len(), Cap: c.cap, Paused: c.paused}
	}
	return a.global, classes
}
