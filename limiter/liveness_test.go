package limiter

import (
	"testing"
	"time"
)

func liveness(cfg LivenessConfig) *Liveness {
	l := &Liveness{}
	cfg.Enabled = true
	l.Configure(cfg)
	return l
}

func TestLivenessEvidence(t *testing.T) {
	l := liveness(LivenessConfig{Failures: 3, ProbeInterval: time.Second})
	now := simEpoch
	for i := range 2 {
		if tr := l.Observe(EvidenceFailed, now); tr != NoTransition || l.Down() {
			t.Fatalf("failure %d marked the upstream down", i+1)
		}
	}
	l.Observe(EvidenceAnswered, now) // an answer in between resets the count
	l.Observe(EvidenceFailed, now)
	l.Observe(EvidenceNone, now) // says nothing: neither resets nor counts
	l.Observe(EvidenceFailed, now)
	if l.Down() {
		t.Fatal("failures not in a row marked the upstream down")
	}
	if tr := l.Observe(EvidenceFailed, now); tr != WentDown || !l.Down() || !l.DownSince().Equal(now) {
		t.Fatalf("three failures in a row: %v down=%v", tr, l.Down())
	}
	if tr := l.Observe(EvidenceFailed, now); tr != NoTransition {
		t.Fatalf("down again: %v", tr)
	}
	if tr := l.Observe(EvidenceAnswered, now.Add(time.Second)); tr != CameBack || l.Down() {
		t.Fatalf("an answer: %v down=%v", tr, l.Down())
	}
	if tr := l.Observe(EvidenceRefused, now.Add(2*time.Second)); tr != WentDown {
		t.Fatalf("a refused connection marks it down at once: %v", tr)
	}
}

func TestLivenessDisabledIsAlwaysUp(t *testing.T) {
	l := &Liveness{}
	l.Configure(LivenessConfig{Failures: 1, ProbeInterval: time.Second})
	if l.Observe(EvidenceRefused, simEpoch) != NoTransition || l.Down() {
		t.Fatal("a disabled machine went down")
	}
	l = liveness(LivenessConfig{Failures: 1, ProbeInterval: time.Second})
	l.Observe(EvidenceRefused, simEpoch)
	l.Configure(LivenessConfig{Failures: 1, ProbeInterval: time.Second})
	if l.Down() {
		t.Fatal("turning the machine off kept the hold")
	}
}

func TestLivenessProbeSchedule(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dial     bool
		evidence Evidence
		want     Probe
	}{
		{"refused, with a dial address", true, EvidenceRefused, ProbeDial},
		{"refused, no dial address", false, EvidenceRefused, ProbeCanary},
		// 502/503 answers: something answers for the upstream, so only a
		// real request can tell that it is back.
		{"answered 502s, with a dial address", true, EvidenceFailed, ProbeCanary},
	} {
		l := liveness(LivenessConfig{Failures: 1, ProbeInterval: time.Second, Dial: tc.dial})
		now := simEpoch
		l.Observe(tc.evidence, now)
		if got := l.Wait(now); got != time.Second {
			t.Errorf("%s: Wait = %v, want the probe interval", tc.name, got)
		}
		if got := l.Probe(now.Add(999 * time.Millisecond)); got != ProbeNone {
			t.Errorf("%s: probe before a full interval: %v", tc.name, got)
		}
		if got := l.Probe(now.Add(time.Second)); got != tc.want {
			t.Errorf("%s: probe = %v, want %v", tc.name, got, tc.want)
		}
		if got := l.Probe(now.Add(1500 * time.Millisecond)); got != ProbeNone {
			t.Errorf("%s: probes closer than the interval: %v", tc.name, got)
		}
	}
}

// A probe address where nothing listens must not hold traffic for good:
// after DialFallback failed dials every probe also sends a canary, whose
// answer ends the hold and flags the address.
func TestLivenessWrongDialAddressFallsBackToCanary(t *testing.T) {
	l := liveness(LivenessConfig{Failures: 1, ProbeInterval: time.Second, Dial: true})
	now := simEpoch
	l.Observe(EvidenceRefused, now)
	for i := range DialFallback {
		now = now.Add(time.Second)
		if got := l.Probe(now); got != ProbeDial {
			t.Fatalf("probe %d: %v, want a dial", i+1, got)
		}
		l.DialResult(false, now)
	}
	now = now.Add(time.Second)
	if got := l.Probe(now); got != ProbeDialAndCanary {
		t.Fatalf("after %d failed dials: %v, want dial and canary", DialFallback, got)
	}
	l.DialResult(false, now)
	if tr := l.Observe(EvidenceAnswered, now); tr != CameBack || l.Down() {
		t.Fatalf("the canary's answer: %v", tr)
	}
	if !l.ProbeAddressSuspect() {
		t.Fatal("an address that never answered while the upstream did is not reported")
	}
	// A dial that works clears the report.
	l.Observe(EvidenceRefused, now)
	now = now.Add(time.Second)
	l.Probe(now)
	if tr := l.DialResult(true, now); tr != CameBack || l.ProbeAddressSuspect() {
		t.Fatalf("a successful dial: %v suspect=%v", tr, l.ProbeAddressSuspect())
	}
}

func TestLivenessSlowStart(t *testing.T) {
	l := liveness(LivenessConfig{Failures: 1, ProbeInterval: time.Second, SlowStart: 10 * time.Second})
	now := simEpoch
	if got := l.Scale(100, now); got != 100 {
		t.Fatalf("before any outage: %d", got)
	}
	l.Observe(EvidenceRefused, now)
	l.Observe(EvidenceAnswered, now)
	if got := l.Scale(100, now); got != 10 {
		t.Fatalf("right after the return: %d, want SlowStartFloor of 100", got)
	}
	if got := l.Wait(now); got != rampTick {
		t.Fatalf("Wait while ramping = %v", got)
	}
	if got := l.Scale(100, now.Add(5*time.Second)); got != 55 {
		t.Fatalf("halfway: %d, want 55", got)
	}
	if got := l.Scale(100, now.Add(10*time.Second)); got != 100 || l.Ramping(now.Add(10*time.Second)) {
		t.Fatalf("after the window: %d", got)
	}
	if got := l.Wait(now.Add(10 * time.Second)); got != 0 {
		t.Fatalf("Wait when up and done = %v, want 0 (until woken)", got)
	}

	// slow_start 0 means none.
	l = liveness(LivenessConfig{Failures: 1, ProbeInterval: time.Second})
	l.Observe(EvidenceRefused, now)
	l.Observe(EvidenceAnswered, now)
	if got := l.Scale(100, now); got != 100 || l.Ramping(now) {
		t.Fatalf("slow start 0 ramped: %d", got)
	}
}
