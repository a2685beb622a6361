package limiter

import "time"

// Evidence is what one passed-on request says about the upstream's
// liveness. The caller decides it from the request's result; only the
// upstream's own failures may be evidence against it (see the gate's
// failure model): a client's broken body, a client that left or the
// gateway's own refusal is EvidenceNone.
type Evidence uint8

const (
	// EvidenceNone says nothing about the upstream.
	EvidenceNone Evidence = iota
	// EvidenceAnswered: the upstream answered (any status but a 502/503).
	EvidenceAnswered
	// EvidenceFailed: the upstream failed (a 502/503 it sent, or a reset
	// connection). Failures in a row mark it down.
	EvidenceFailed
	// EvidenceRefused: nothing reached the upstream (connection refused,
	// dial failed). It marks the upstream down at once.
	EvidenceRefused
)

// LivenessConfig configures a Liveness.
type LivenessConfig struct {
	// Enabled turns the machine on; off, the upstream is always up.
	Enabled bool
	// Failures is how many EvidenceFailed in a row mark the upstream down.
	Failures int
	// ProbeInterval is how often a down upstream is probed.
	ProbeInterval time.Duration
	// SlowStart is how long caps take to ramp from SlowStartFloor of
	// themselves back to all of them after the upstream returns; 0 means
	// no ramp.
	SlowStart time.Duration
	// Dial says a probe address is configured: a down upstream is probed
	// by dialling it, unless answers (not refused connections) marked it
	// down. Without one, a probe lets one queued request through (a canary).
	Dial bool
}

// SlowStartFloor is the share of a cap admitted when slow start begins.
const SlowStartFloor = 0.1

// DialFallback is how many failed probe dials in a row make every further
// probe also let a canary through: the dial address may be wrong (nothing
// ever listens there), and a hold must never be permanent.
const DialFallback = 3

// Probe is what the supervisor of a down upstream should do now.
type Probe uint8

const (
	// ProbeNone: nothing yet.
	ProbeNone Probe = iota
	// ProbeDial: dial the probe address and report with DialResult.
	ProbeDial
	// ProbeCanary: let one queued request through; its answer is the probe.
	ProbeCanary
	// ProbeDialAndCanary: both (the dial has failed DialFallback times).
	ProbeDialAndCanary
)

// Transition is a change of the upstream's state.
type Transition uint8

const (
	// NoTransition: the state did not change.
	NoTransition Transition = iota
	// WentDown: the upstream was marked down; admission holds.
	WentDown
	// CameBack: the upstream answers again; slow start begins.
	CameBack
)

// Liveness is the upstream liveness state machine: it turns evidence from
// requests and probe results into down/up, decides when and how to probe a
// down upstream, and ramps caps up after it returns (slow start). It keeps
// no clock and no goroutine: every method takes the time, so it is tested
// in virtual time. It is not safe for concurrent use; Admission guards the
// one it holds.
type Liveness struct {
	cfg LivenessConfig

	down      bool
	byAnswer  bool // marked down on 502/503 answers: only a canary can tell
	downSince time.Time
	failures  int // EvidenceFailed in a row
	nextProbe time.Time

	dialFailures int  // probe dials failed in a row
	dialWrong    bool // a canary got an answer while the dial kept failing

	ramp *SlowStart // nil: slow start off
}

// Configure applies cfg; turning the machine off ends a hold.
func (l *Liveness) Configure(cfg LivenessConfig) {
	if l.ramp == nil || cfg.SlowStart != l.cfg.SlowStart {
		l.ramp = nil
		if cfg.SlowStart > 0 {
			l.ramp = NewSlowStart(cfg.SlowStart, SlowStartFloor)
		}
	}
	l.cfg = cfg
	if !cfg.Enabled {
		l.down, l.failures = false, 0
	}
	if !cfg.Dial {
		l.dialFailures, l.dialWrong = 0, false
	}
}

// Down reports whether the upstream is down (admission holds).
func (l *Liveness) Down() bool { return l.down }

// DownSince is when the upstream went down; zero while up.
func (l *Liveness) DownSince() time.Time {
	if !l.down {
		return time.Time{}
	}
	return l.downSince
}

// Observe feeds one request's evidence at now.
func (l *Liveness) Observe(e Evidence, now time.Time) Transition {
	if !l.cfg.Enabled {
		return NoTransition
	}
	switch e {
	case EvidenceRefused:
		return l.markDown(now, false)
	case EvidenceFailed:
		l.failures++
		if l.failures >= max(l.cfg.Failures, 1) {
			return l.markDown(now, true)
		}
	case EvidenceAnswered:
		l.failures = 0
		if l.down && l.dialFailures >= DialFallback {
			l.dialWrong = true // answered, yet the probe address never was
		}
		return l.markUp(now)
	}
	return NoTransition
}

func (l *Liveness) markDown(now time.Time, byAnswer bool) Transition {
	if l.down {
		return NoTransition
	}
	l.down, l.byAnswer, l.downSince = true, byAnswer, now
	// Probe only after a full interval: right after being marked down the
	// upstream is certainly still down.
	l.nextProbe = now.Add(l.cfg.ProbeInterval)
	return WentDown
}

func (l *Liveness) markUp(now time.Time) Transition {
	if !l.down {
		return NoTransition
	}
	l.down, l.failures = false, 0
	if l.ramp != nil {
		l.ramp.Begin(now)
	}
	return CameBack
}

// Probe says how to probe at now: ProbeNone unless the upstream is down and
// a probe interval has passed since the last probe (or the hold began).
func (l *Liveness) Probe(now time.Time) Probe {
	if !l.down || now.Before(l.nextProbe) {
		return ProbeNone
	}
	l.nextProbe = now.Add(l.cfg.ProbeInterval)
	switch {
	case !l.cfg.Dial || l.byAnswer:
		return ProbeCanary
	case l.dialFailures >= DialFallback:
		return ProbeDialAndCanary
	default:
		return ProbeDial
	}
}

// DialResult reports a probe dial's result at now: a successful one ends
// the hold.
func (l *Liveness) DialResult(ok bool, now time.Time) Transition {
	if !ok {
		l.dialFailures++
		return NoTransition
	}
	l.dialFailures, l.dialWrong = 0, false
	return l.markUp(now)
}

// ProbeAddressSuspect reports that the probe address looks wrong: its dials
// kept failing while the upstream answered a canary.
func (l *Liveness) ProbeAddressSuspect() bool { return l.dialWrong }

// Wait is how long the supervisor may sleep at now before something is
// due: the next probe while down, rampTick while ramping, 0 for "until
// woken".
func (l *Liveness) Wait(now time.Time) time.Duration {
	switch {
	case l.down:
		return max(l.nextProbe.Sub(now), time.Millisecond)
	case l.Ramping(now):
		return rampTick
	}
	return 0
}

// rampTick is how often a ramping cap is re-applied to waiters when no
// request completes to do so: fine enough for a smooth ramp over seconds.
const rampTick = 100 * time.Millisecond

// Ramping reports whether slow start is on at now.
func (l *Liveness) Ramping(now time.Time) bool {
	return l.ramp != nil && l.ramp.Ramping(now)
}

// Scale is the share of limit admitted at now: limit itself unless slow
// start is on; during it, rising linearly from SlowStartFloor of limit to
// all of it, at least 1. A limit below 1 (no cap) is returned unchanged.
func (l *Liveness) Scale(limit int, now time.Time) int {
	if l.ramp == nil {
		return limit
	}
	return l.ramp.Scale(limit, now)
}
