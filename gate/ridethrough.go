package gate

import (
	"fmt"
	"time"

	"github.com/mxgate/mxgate/limiter"
)

// RideThroughConfig configures riding through upstream restarts: while the
// upstream is down, admission is held so that requests wait in their class
// queues; requests that can safely be sent twice and failed because the
// upstream was down are retried until their class deadline (retry.go);
// when the upstream is back, admitted concurrency ramps up over SlowStart.
// The liveness machine itself is limiter.Liveness; supervise.go probes.
type RideThroughConfig struct {
	Enabled bool
	// Failures is how many upstream failures in a row (a 502/503 the
	// upstream sent, or a 502/503 error with no answer) mark it down. A
	// refused connection marks it down at once. A client's broken body or
	// departure is never a failure (failure.go).
	Failures int
	// ProbeInterval is how often a down upstream is probed: a TCP dial to
	// Config.UpstreamAddr or, without one (or when answers rather than
	// refused connections marked it down, or when the dial keeps failing),
	// a single queued request let through as a canary. It also spaces the
	// retries of a request that failed while the upstream was not (yet)
	// marked down.
	ProbeInterval time.Duration
	// SlowStart is how long admitted concurrency takes to ramp from 10% of
	// each class's cap back to all of it after the upstream returns; 0
	// means no ramp.
	SlowStart time.Duration
	// MaxBody is the largest PUT body buffered so that the PUT can be
	// retried; bigger ones are sent once.
	MaxBody int64
}

// Ride-through defaults.
const (
	DefaultRideThroughFailures = 3
	DefaultProbeInterval       = 500 * time.Millisecond
	DefaultSlowStart           = 10 * time.Second
	// DefaultRideThroughMaxBody is the Matrix limit on an event's size.
	DefaultRideThroughMaxBody = 64 << 10
)

// DefaultRideThrough is ride-through with its defaults, off.
func DefaultRideThrough() RideThroughConfig {
	return RideThroughConfig{Failures: DefaultRideThroughFailures, ProbeInterval: DefaultProbeInterval,
		SlowStart: DefaultSlowStart, MaxBody: DefaultRideThroughMaxBody}
}

func (c *RideThroughConfig) validate() error {
	if c.Failures < 1 || c.ProbeInterval <= 0 || c.SlowStart < 0 || c.MaxBody < 0 {
		return fmt.Errorf("ride_through needs failures >= 1, probe_interval > 0, slow_start >= 0 and max_body >= 0, got %d %v %v %d",
			c.Failures, c.ProbeInterval, c.SlowStart, c.MaxBody)
	}
	return nil
}

// liveness is the limiter's liveness configuration for cfg.
func (c *RideThroughConfig) liveness(dialAddr string) limiter.LivenessConfig {
	return limiter.LivenessConfig{Enabled: c.Enabled, Failures: c.Failures, ProbeInterval: c.ProbeInterval,
		SlowStart: c.SlowStart, Dial: dialAddr != ""}
}

// RideThroughStatus is the upstream liveness state ride-through acts on.
type RideThroughStatus struct {
	Enabled bool `json:"enabled"`
	// Down: admission is held until the upstream answers again.
	Down      bool       `json:"down"`
	DownSince *time.Time `json:"down_since,omitempty"`
	// SlowStart: caps are ramping up after the upstream came back.
	SlowStart bool `json:"slow_start"`
	// ProbeAddressSuspect: dials to the probe address kept failing while
	// the upstream answered canary requests; the address is likely wrong.
	ProbeAddressSuspect bool `json:"probe_address_suspect,omitempty"`
}

func (g *Gate) rideThroughStatus(now time.Time) RideThroughStatus {
	l := g.adm.Liveness(now)
	st := RideThroughStatus{Enabled: g.cfg.Load().RideThrough.Enabled, Down: l.Down, SlowStart: l.SlowStart,
		ProbeAddressSuspect: l.ProbeAddressSuspect}
	if l.Down {
		st.DownSince = &l.DownSince
	}
	return st
}
