package gate

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// ErrBadToggle marks a toggle (or toggle key) that names no class or
// brownout level, or has an invalid mode or lifetime: the caller's mistake.
var ErrBadToggle = errors.New("invalid toggle")

// MaxReasonLen bounds a toggle's reason: it is echoed in every 429 of the
// class and kept in the state file.
const MaxReasonLen = 256

// DefaultToggleDuration is how long an operator toggle lasts unless its
// maker says otherwise: the admin API's and the command line's default.
const DefaultToggleDuration = 15 * time.Minute

// DefaultMaxToggleDuration caps how long an operator toggle may last unless
// max_toggle_duration says otherwise: a forgotten shed must end.
const DefaultMaxToggleDuration = 24 * time.Hour

// SetToggle puts an operator toggle in force at once, replacing any toggle
// with the same key. t.Target is a class name, or "*" with Priority
// "sheddable" or "normal" for a brownout (critical classes are never shed by
// a brownout); t.Until must be after t.Since, by at most the config's
// MaxToggleDuration. Validation errors wrap ErrBadToggle. A
// *limiter.NotPersistedError means the toggle is in force but was not
// saved.
func (g *Gate) SetToggle(t limiter.Toggle) error {
	if err := validateToggle(t); err != nil {
		return err
	}
	if d, maxD := t.Until.Sub(t.Since), g.cfg.Load().MaxToggleDuration; d > maxD {
		return fmt.Errorf("%w: it lasts %v, longer than max_toggle_duration %v", ErrBadToggle, d, maxD)
	}
	err := g.toggles.Put(t)
	var npe *limiter.NotPersistedError
	if err != nil && !errors.As(err, &npe) {
		return err
	}
	g.refreshModes(g.now())
	return err
}

// ClearToggle ends the toggle with the given key (a class name, or
// "*:sheddable" / "*:normal") and reports whether one was in force.
func (g *Gate) ClearToggle(key string) (bool, error) {
	if err := validateKey(key); err != nil {
		return false, err
	}
	now := g.now()
	removed, err := g.toggles.Remove(key, now)
	var npe *limiter.NotPersistedError
	if err != nil && !errors.As(err, &npe) {
		return removed, err
	}
	g.refreshModes(now)
	return removed, err
}

// ToggleKey is the store key of a toggle on class ("*" with priority for a
// brownout), as ClearToggle takes it.
func ToggleKey(class, priority string) string {
	return limiter.Toggle{Target: class, Priority: priority}.Key()
}

func validateToggle(t limiter.Toggle) error {
	if err := validateTarget(t.Target, t.Priority); err != nil {
		return err
	}
	if t.Mode > limiter.ModeShed {
		return fmt.Errorf("%w: unknown mode %v", ErrBadToggle, t.Mode)
	}
	if t.Since.IsZero() || !t.Until.After(t.Since) {
		return fmt.Errorf("%w: it must end after it starts", ErrBadToggle)
	}
	if len(t.Reason) > MaxReasonLen {
		return fmt.Errorf("%w: reason longer than %d bytes", ErrBadToggle, MaxReasonLen)
	}
	if strings.ContainsFunc(t.Reason, unicode.IsControl) {
		return fmt.Errorf("%w: reason contains control characters", ErrBadToggle)
	}
	return nil
}

func validateTarget(target, priority string) error {
	if target == "*" {
		p, err := matrix.ParsePriority(priority)
		if err != nil || p == matrix.Critical {
			return fmt.Errorf("%w: a brownout (class \"*\") needs priority \"sheddable\" or \"normal\", got %q", ErrBadToggle, priority)
		}
		return nil
	}
	if _, err := matrix.ParseClass(target); err != nil {
		return fmt.Errorf("%w: %v", ErrBadToggle, err)
	}
	if priority != "" {
		return fmt.Errorf("%w: priority is only for a brownout (class \"*\")", ErrBadToggle)
	}
	return nil
}

func validateKey(key string) error {
	if p, ok := strings.CutPrefix(key, "*:"); ok {
		return validateTarget("*", p)
	}
	return validateTarget(key, "")
}

// dropStaleConfigSheds ends the config toggles (`shed CLASS`) of classes
// that cfg no longer sheds, so that removing the line and reloading
// restores the class. Operator toggles are left alone.
func (g *Gate) dropStaleConfigSheds(cfg *Config) {
	now := g.now()
	for _, t := range g.toggles.Active(now) {
		if !t.FromConfig {
			continue
		}
		if c, err := matrix.ParseClass(t.Target); err == nil && slices.Contains(cfg.Shed, c) {
			continue
		}
		if _, err := g.toggles.Remove(t.Key(), now); err != nil {
			g.log.Warn("ending a config shed", "class", t.Target, "error", err)
		}
	}
}
