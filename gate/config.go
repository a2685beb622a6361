package gate

import (
	"errors"
	"fmt"
	"time"

	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/matrix"
)

// Config is a gate's complete, resolved configuration: every value is
// concrete (defaults already applied), so the pipeline never has to ask
// "was this set?".
type Config struct {
	// UpstreamAddr is the homeserver's TCP address (host:port), which
	// ride-through dials to learn that a down upstream is back; "" lets a
	// queued request through as a canary instead (ridethrough.go). Part of
	// the config, not of the gate's options, so that a reload can change it.
	UpstreamAddr string
	// MaxInflight caps requests at the upstream over all classes except those
	// with their own budget (long-poll sync); 0 means no global cap.
	MaxInflight int
	// RetryAfterMin and RetryAfterMax bound the jittered Retry-After of a 429.
	RetryAfterMin, RetryAfterMax time.Duration
	// LIFOAfter is how long a class queue may stand before it serves newest
	// first (adaptive LIFO); 0 disables it.
	LIFOAfter time.Duration
	// Classes are the per-class limits, indexed by matrix.Class.
	Classes [matrix.NumClasses]matrix.Limits
	// Herd configures thundering-herd detection.
	Herd HerdConfig
	// Shed lists classes shed from start (the Caddyfile's `shed CLASS`).
	Shed []matrix.Class

	// RideThrough rides through upstream restarts (ridethrough.go).
	RideThrough RideThroughConfig
	// ErrorShed sheds sheddable classes while the upstream fails
	// (errorshed.go).
	ErrorShed ErrorShedConfig
	// CORS is what mxgate's own answers tell browsers (cors.go).
	CORS CORSConfig
	// MaxToggleDuration is the longest an operator toggle may last
	// (control.go); a forgotten shed must end.
	MaxToggleDuration time.Duration
}

// HerdConfig configures herd detection and mitigation.
type HerdConfig struct {
	// Window and MinUsers: a herd is MinUsers distinct users on one
	// (class, room) within Window. MinUsers 0 disables detection.
	Window   time.Duration
	MinUsers int
	// RetryAfterMin and RetryAfterMax spread the Retry-After of shed herd
	// requests wider than usual so that the herd does not return in lock-step.
	RetryAfterMin, RetryAfterMax time.Duration
}

// DefaultLIFOAfter is the default standing-queue time before adaptive LIFO.
const DefaultLIFOAfter = time.Second

// DefaultConfig returns the built-in defaults of matrix.DefaultLimits and
// the gateway-wide defaults.
func DefaultConfig() Config {
	return Config{
		MaxInflight:   matrix.DefaultMaxInflight,
		RetryAfterMin: matrix.DefaultRetryAfterMin,
		RetryAfterMax: matrix.DefaultRetryAfterMax,
		LIFOAfter:     DefaultLIFOAfter,
		Classes:       matrix.DefaultLimits,
		Herd: HerdConfig{
			Window:        herd.DefaultHerdWindow,
			MinUsers:      herd.DefaultHerdMinUsers,
			RetryAfterMin: matrix.DefaultRetryAfterMin,
			RetryAfterMax: 3 * matrix.DefaultRetryAfterMax,
		},
		RideThrough: DefaultRideThrough(),
		ErrorShed:   DefaultErrorShed(),
		CORS:        DefaultCORS(),

		MaxToggleDuration: DefaultMaxToggleDuration,
	}
}

// Validate reports every setting that cannot work, each named as the
// Caddyfile does.
func (c *Config) Validate() error {
	var errs []error
	if c.MaxInflight < 0 {
		errs = append(errs, fmt.Errorf("max_inflight must be >= 0, got %d", c.MaxInflight))
	}
	if c.RetryAfterMin <= 0 || c.RetryAfterMax < c.RetryAfterMin {
		errs = append(errs, fmt.Errorf("retry_after needs 0 < min <= max, got %v %v", c.RetryAfterMin, c.RetryAfterMax))
	}
	if c.MaxToggleDuration <= 0 {
		errs = append(errs, fmt.Errorf("max_toggle_duration must be positive, got %v", c.MaxToggleDuration))
	}
	if c.LIFOAfter < 0 {
		errs = append(errs, fmt.Errorf("lifo_after must be >= 0, got %v", c.LIFOAfter))
	}
	for i, l := range c.Classes {
		if err := l.Validate(matrix.Class(i)); err != nil {
			errs = append(errs, fmt.Errorf("class %s: %w", matrix.Class(i), err))
		}
	}
	h := c.Herd
	if c.Classes[matrix.RoomState].ShareState && h.MinUsers <= 0 {
		errs = append(errs, errors.New("share_state needs herd detection (it acts only during a herd)"))
	}
	if h.MinUsers < 0 || (h.MinUsers > 0 && h.Window <= 0) {
		errs = append(errs, fmt.Errorf("herd needs window > 0 and min_users >= 0, got %v %d", h.Window, h.MinUsers))
	}
	if h.MinUsers > 0 && (h.RetryAfterMin <= 0 || h.RetryAfterMax < h.RetryAfterMin) {
		errs = append(errs, fmt.Errorf("herd retry_after needs 0 < min <= max, got %v %v", h.RetryAfterMin, h.RetryAfterMax))
	}
	if c.RideThrough.Enabled {
		errs = append(errs, c.RideThrough.validate())
	}
	if c.ErrorShed.Enabled {
		errs = append(errs, c.ErrorShed.validate())
	}
	return errors.Join(errs...)
}
