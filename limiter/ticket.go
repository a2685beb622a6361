package limiter

import "time"

// Ticket is one admitted request's slot. Acquire hands it out; Done gives it
// back with what the request learnt about the upstream. A Ticket is a small
// value meant to live in the caller's frame.
type Ticket struct {
	a     *Admission // nil: not admitted
	class int
	lane  Lane
	// Waited says the request queued before it was admitted (or refused).
	Waited bool
	// Granted is when the request got its slot: for one that waited, when
	// it resumed.
	Granted time.Time
	// inflight is the class's admitted requests at the grant, this one
	// included: the load the request's round trip was measured under.
	inflight int
	done     bool
}

// Result is what one admitted request's round trip says about the upstream.
type Result struct {
	// End is when the request finished.
	End time.Time
	// FirstByte is when the upstream's answer began; zero uses End. The
	// adaptive limit samples the time to it.
	FirstByte time.Time
	// Sample says the round trip measures the upstream's capacity: it was
	// answered below 500 and the client stayed. Only such round trips feed
	// the class's adaptive limit.
	Sample bool
	// Evidence is what the result says about the upstream's liveness.
	Evidence Evidence
}

func (a *Admission) ticketLocked(class int, lane Lane, now time.Time, waited bool) Ticket {
	return Ticket{a: a, class: class, lane: lane, Waited: waited, Granted: now, inflight: a.classes[class].inflight}
}

// Done frees the slot and feeds the request's result to its class's
// adaptive limit and to the upstream's liveness; the cap in force follows
// from them at once. It reports a change of the upstream's state (for the
// caller to log and to wake its probe supervisor). Calling Done twice, or
// on a ticket Acquire refused, does nothing.
func (t *Ticket) Done(res Result) Transition {
	a := t.a
	if a == nil || t.done {
		return NoTransition
	}
	t.done = true
	a.mu.Lock()
	defer a.mu.Unlock()
	c := &a.classes[t.class]
	if c.grad != nil && res.Sample {
		at := res.FirstByte
		if at.IsZero() {
			at = res.End
		}
		c.grad.Sample(at.Sub(t.Granted), t.inflight, res.End)
	}
	tr := a.live.Observe(res.Evidence, res.End)
	a.releaseLocked(t.class, t.lane)
	if tr == CameBack {
		a.dispatchLocked() // releaseLocked dispatches only for a waiter's sake
	}
	return tr
}

// Probe runs the liveness machine's probe decision at now: a canary is let
// through here; a dial is the caller's to make and report with DialResult.
// It returns whether to dial.
func (a *Admission) Probe(now time.Time) (dial bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch a.live.Probe(now) {
	case ProbeDial:
		return true
	case ProbeCanary:
		a.passOneLocked(now)
	case ProbeDialAndCanary:
		a.passOneLocked(now)
		return true
	}
	return false
}

// DialResult reports a probe dial's result; a successful one ends the hold.
func (a *Admission) DialResult(ok bool, now time.Time) Transition {
	a.mu.Lock()
	defer a.mu.Unlock()
	tr := a.live.DialResult(ok, now)
	a.dispatchLocked()
	return tr
}

// Tick lets time pass for the caps: during slow start a cap rises with time
// alone, and the waiters it now admits are admitted here. It returns how
// long the caller may wait before the next Tick or Probe is due (0: until
// the state changes).
func (a *Admission) Tick(now time.Time) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dispatchLocked()
	return a.live.Wait(now)
}

// LivenessSnapshot is the upstream liveness state at a moment.
type LivenessSnapshot struct {
	Down      bool
	DownSince time.Time // zero while up
	SlowStart bool
	// ProbeAddressSuspect: probe dials kept failing while the upstream
	// answered a canary, so the probe address is likely wrong.
	ProbeAddressSuspect bool
}

// Liveness returns the upstream liveness state at now.
func (a *Admission) Liveness(now time.Time) LivenessSnapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	return LivenessSnapshot{Down: a.live.Down(), DownSince: a.live.DownSince(), SlowStart: a.live.Ramping(now),
		ProbeAddressSuspect: a.live.ProbeAddressSuspect()}
}

// Down reports whether the upstream is down (admission holds).
func (a *Admission) Down() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.live.Down()
}
