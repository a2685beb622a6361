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
