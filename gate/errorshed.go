package gate

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// ErrorShedConfig configures shedding on the upstream's 5xx ratio: when the
// share of upstream answers that are 5xx (or no answer at all) over Window
// reaches Threshold, with at least MinSamples answers, every sheddable class
// is shed — as if by a brownout at "sheddable" — until the ratio falls
// below half the threshold. It is derived state, never an operator toggle:
// it is not stored and does not survive a restart.
type ErrorShedConfig struct {
	Enabled    bool
	Threshold  float64
	MinSamples int
	Window     time.Duration
}

// Error-shed defaults.
const (
	DefaultErrorShedThreshold  = 0.5
	DefaultErrorShedMinSamples = 20
	DefaultErrorShedWindow     = 10 * time.Second
)

// DefaultErrorShed is error shedding with its defaults, off.
func DefaultErrorShed() ErrorShedConfig {
	return ErrorShedConfig{Threshold: DefaultErrorShedThreshold, MinSamples: DefaultErrorShedMinSamples, Window: DefaultErrorShedWindow}
}

func (c *ErrorShedConfig) validate() error {
	if !(c.Threshold > 0 && c.Threshold <= 1) || c.MinSamples < 1 || c.Window <= 0 {
		return fmt.Errorf("error_shed needs 0 < threshold <= 1, min_samples >= 1 and window > 0, got %v %d %v",
			c.Threshold, c.MinSamples, c.Window)
	}
	return nil
}

// errorShed follows the upstream's recent 5xx ratio.
type errorShed struct {
	state   atomic.Pointer[errorShedState] // nil while disabled
	tripped atomic.Bool
	percent atomic.Int32 // the ratio when it tripped, for the reason
}

type errorShedState struct {
	cfg  ErrorShedConfig
	rate *limiter.ErrorRate
	trip *limiter.Tripwire
}

// configureErrorShed applies cfg; a changed setting starts a fresh window.
func (g *Gate) configureErrorShed(cfg *Config) {
	es := &g.errShed
	c := cfg.ErrorShed
	if !c.Enabled {
		es.state.Store(nil)
		es.tripped.Store(false)
		return
	}
	if cur := es.state.Load(); cur != nil && cur.cfg == c {
		return
	}
	es.state.Store(&errorShedState{cfg: c, rate: limiter.NewErrorRate(c.Window, 10),
		trip: limiter.NewTripwire(c.Threshold, c.MinSamples)})
	es.tripped.Store(false)
}

// recordErrorShed counts one attempt; a client's fault is nobody's failure
// (failure.go).
func (g *Gate) recordErrorShed(a attempt, now time.Time) {
	st := g.errShed.state.Load()
	counted, failed := a.judged()
	if st == nil || !counted {
		return
	}
	st.rate.Record(failed, now)
	if failed && !g.errShed.tripped.Load() {
		g.evaluateErrorShed(now) // trip at once; resetting waits for housekeeping
	}
}

// evaluateErrorShed updates the tripwire from the window ending at now. The
// next refreshModes applies a change.
func (g *Gate) evaluateErrorShed(now time.Time) {
	st := g.errShed.state.Load()
	if st == nil {
		return
	}
	ratio, total := st.rate.Ratio(now)
	tripped := st.trip.Update(ratio, total)
	if tripped {
		g.errShed.percent.Store(int32(math.Round(ratio * 100)))
	}
	if g.errShed.tripped.Swap(tripped) != tripped {
		if tripped {
			g.log.Warn("upstream failing: shedding sheddable classes", "error_ratio", ratio, "responses", total)
		} else {
			g.log.Info("upstream recovered: error shedding ends", "error_ratio", ratio, "responses", total)
		}
	}
}

// applyErrorShed sheds every sheddable class in t while the tripwire is
// tripped, like a brownout at "sheddable": a class the operator toggled
// explicitly keeps the operator's mode, and a stronger mode stays.
func (g *Gate) applyErrorShed(t *modeTable, active []limiter.Toggle, classes *[matrix.NumClasses]matrix.Limits) {
	t.errorShed = g.errShed.tripped.Load()
	if !t.errorShed {
		return
	}
	reason := fmt.Sprintf("upstream failing: %d%% 5xx", g.errShed.percent.Load())
	for c := range t.modes {
		if classes[c].Priority != matrix.Sheddable || t.modes[c].mode >= limiter.ModeShed || toggledExplicitly(active, matrix.Class(c)) {
			continue
		}
		t.modes[c] = classMode{mode: limiter.ModeShed, reason: reason, derived: true}
	}
}

func toggledExplicitly(active []limiter.Toggle, c matrix.Class) bool {
	for _, tg := range active {
		if tg.Target == c.String() {
			return true
		}
	}
	return false
}

// shedReason is the 429 reason of a request of a shed class.
func (m classMode) shedReason() string {
	if m.derived {
		return m.reason
	}
	return "shed by operator: " + m.reason
}

// ErrorShedStatus is the 5xx shedding signal at a moment.
type ErrorShedStatus struct {
	Enabled bool `json:"enabled"`
	// Shedding: sheddable classes are shed because the upstream fails.
	Shedding   bool    `json:"shedding"`
	ErrorRatio float64 `json:"error_ratio"`
	Responses  int     `json:"responses"`
	Window     string  `json:"window,omitempty"`
}

func (g *Gate) errorShedStatus(now time.Time) ErrorShedStatus {
	st := g.errShed.state.Load()
	if st == nil {
		return ErrorShedStatus{}
	}
	ratio, total := st.rate.Ratio(now)
	return ErrorShedStatus{Enabled: true, Shedding: g.errShed.tripped.Load(), ErrorRatio: ratio, Responses: total, Window: st.cfg.Window.String()}
}
