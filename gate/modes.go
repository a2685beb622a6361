package gate

import (
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// modeTable is what the operator toggles mean for each class at a moment,
// derived from the toggle store and cached until the store changes or a
// toggle expires.
type modeTable struct {
	version uint64
	expires time.Time // the earliest Until among the toggles; zero if none
	modes   [matrix.NumClasses]classMode
	// errorShed: the 5xx tripwire was tripped when this was derived
	// (errorshed.go).
	errorShed bool
}

type classMode struct {
	mode   limiter.Mode
	reason string
	// derived: set by the gate itself (5xx shedding), not by a toggle.
	derived bool
}

// resolveModes applies toggles to classes. A class toggle (shed or queue; the
// admin API ends a toggle for "normal") overrides a brownout for its class;
// among brownouts the strongest mode wins. Brownouts
// never touch critical classes.
func resolveModes(toggles []limiter.Toggle, classes *[matrix.NumClasses]matrix.Limits, version uint64) *modeTable {
	t := &modeTable{version: version}
	var explicit [matrix.NumClasses]bool
	for _, tg := range toggles {
		if t.expires.IsZero() || tg.Until.Before(t.expires) {
			t.expires = tg.Until
		}
		if tg.Target == "*" {
			continue
		}
		if c, err := matrix.ParseClass(tg.Target); err == nil {
			t.modes[c] = classMode{mode: tg.Mode, reason: tg.Reason}
			explicit[c] = true
		}
	}
	for _, tg := range toggles {
		if tg.Target != "*" {
			continue
		}
		level, err := matrix.ParsePriority(tg.Priority)
		if err != nil || level == matrix.Critical {
			continue
		}
		for c := range t.modes {
			p := classes[c].Priority
			if explicit[c] || p == matrix.Critical || p < level || tg.Mode <= t.modes[c].mode {
				continue
			}
			t.modes[c] = classMode{mode: tg.Mode, reason: tg.Reason}
		}
	}
	return t
}

// refreshModes re-derives the per-class modes when the toggle store changed
// or a toggle expired, and applies queue-mode pauses to admission.
func (g *Gate) refreshModes(now time.Time) *modeTable {
	// The version is read before the toggles: a change racing with this
	// refresh then leaves a table marked older than the store, which the
	// next call rebuilds. (Read after, a table built from the old toggles
	// could be marked current and stick.)
	v := g.toggles.Version()
	if cur := g.modes.Load(); g.modesCurrent(cur, v, now) {
		return cur
	}
	g.modesMu.Lock() // one rebuild at a time, so pauses are applied in order
	defer g.modesMu.Unlock()
	if cur := g.modes.Load(); g.modesCurrent(cur, v, now) {
		return cur
	}
	active := g.toggles.Active(now)
	next := resolveModes(active, &g.cfg.Load().Classes, v)
	g.applyErrorShed(next, active, &g.cfg.Load().Classes) // derived 5xx shedding (errorshed.go)
	g.modes.Store(next)
	for c := range next.modes {
		m := next.modes[c].mode
		g.adm.SetPaused(c, m == limiter.ModeQueue)
		g.metrics.ShedMode.WithLabelValues(matrix.Class(c).String()).Set(float64(m))
	}
	return next
}

// modesCurrent reports whether t still describes the toggles of version v
// at now.
func (g *Gate) modesCurrent(t *modeTable, v uint64, now time.Time) bool {
	return t != nil && t.version == v && t.errorShed == g.errShed.tripped.Load() &&
		(t.expires.IsZero() || now.Before(t.expires))
}
