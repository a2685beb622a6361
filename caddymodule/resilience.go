package caddymodule

import (
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/gate"
)

// RideThroughConfig turns on riding through upstream restarts: while the
// upstream is down (refused connections, 502/503) requests wait in their
// class queues and idempotent ones are retried until their deadline; when
// it is back, admitted concurrency ramps up over slow_start. Present
// (even empty) means on, unless Disabled.
type RideThroughConfig struct {
	Disabled bool `json:"disabled,omitempty"`
	// Consecutive upstream-down failures that hold admission. Default 3; a
	// refused connection holds it at once.
	Failures int `json:"failures,omitempty"`
	// How often a down upstream is probed (a TCP dial to health_dial, or a
	// canary request without it). Default 500ms.
	ProbeInterval caddy.Duration `json:"probe_interval,omitempty"`
	// Ramp from 10% to 100% of each class's cap after the upstream returns.
	// Default 10s; 0 disables the ramp.
	SlowStart *caddy.Duration `json:"slow_start,omitempty"`
	// Largest idempotent PUT body buffered so it can be retried. Default
	// 65536 (the Matrix event size limit).
	MaxBody int64 `json:"max_body,omitempty"`
}

// ErrorShedConfig turns on shedding of sheddable classes while the
// upstream's 5xx ratio is high. Present (even empty) means on, unless
// Disabled.
type ErrorShedConfig struct {
	Disabled bool `json:"disabled,omitempty"`
	// Share of 5xx (or unanswered) responses that trips it. Default 0.5.
	Threshold float64 `json:"threshold,omitempty"`
	// Fewest responses in the window to judge by. Default 20.
	MinSamples int `json:"min_samples,omitempty"`
	// Sliding window of the ratio. Default 10s.
	Window caddy.Duration `json:"window,omitempty"`
}

// applyResilience resolves ride_through and error_shed over the gate
// defaults.
func (h *Handler) applyResilience(cfg *gate.Config) error {
	if rt := h.RideThrough; rt != nil {
		c := &cfg.RideThrough
		c.Enabled = !rt.Disabled
		if rt.Failures > 0 {
			c.Failures = rt.Failures
		}
		if rt.ProbeInterval > 0 {
			c.ProbeInterval = time.Duration(rt.ProbeInterval)
		}
		if rt.SlowStart != nil {
			c.SlowStart = time.Duration(*rt.SlowStart)
		}
		if rt.MaxBody > 0 {
			c.MaxBody = rt.MaxBody
		}
	}
	if es := h.ErrorShed; es != nil {
		c := &cfg.ErrorShed
		c.Enabled = !es.Disabled
		if es.Threshold != 0 {
			c.Threshold = es.Threshold
		}
		if es.MinSamples > 0 {
			c.MinSamples = es.MinSamples
		}
		if es.Window > 0 {
			c.Window = time.Duration(es.Window)
		}
	}
	return nil
}

// unmarshalRideThrough reads
//
//	ride_through [off] {
//		failures       <n>
//		probe_interval <duration>
//		slow_start     <duration>
//		max_body       <bytes>
//	}
func (h *Handler) unmarshalRideThrough(d *caddyfile.Dispenser) error {
	rt := new(RideThroughConfig)
	off, err := offOrBlock(d, "ride_through")
	if err != nil {
		return err
	}
	rt.Disabled = off
	seen := map[string]bool{}
	for nesting := d.Nesting(); !off && d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return d.Errf("ride_through: %s given twice", dir)
		}
		seen[dir] = true
		switch dir {
		case "failures":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			if *n < 1 {
				return d.Errf("ride_through: failures must be at least 1")
			}
			rt.Failures = *n
		case "probe_interval":
			dur, err := durationArg(d)
			if err != nil {
				return err
			}
			if *dur <= 0 {
				return d.Errf("ride_through: probe_interval must be positive")
			}
			rt.ProbeInterval = *dur
		case "slow_start":
			if rt.SlowStart, err = durationArg(d); err != nil {
				return err
			}
		case "max_body":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			rt.MaxBody = int64(*n)
		default:
			return d.Errf("ride_through: unknown subdirective %q", dir)
		}
	}
	h.RideThrough = rt
	return nil
}

// unmarshalErrorShed reads
//
//	error_shed [off] {
//		threshold   <ratio in (0, 1]>
//		min_samples <n>
//		window      <duration>
//	}
func (h *Handler) unmarshalErrorShed(d *caddyfile.Dispenser) error {
	es := new(ErrorShedConfig)
	off, err := offOrBlock(d, "error_shed")
	if err != nil {
		return err
	}
	es.Disabled = off
	seen := map[string]bool{}
	for nesting := d.Nesting(); !off && d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return d.Errf("error_shed: %s given twice", dir)
		}
		seen[dir] = true
		switch dir {
		case "threshold":
			s, err := oneString(d)
			if err != nil {
				return err
			}
			t, perr := strconv.ParseFloat(s, 64)
			if perr != nil || !(t > 0 && t <= 1) {
				return d.Errf("error_shed: threshold wants a ratio in (0, 1], got %q", s)
			}
			es.Threshold = t
		case "min_samples":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			if *n < 1 {
				return d.Errf("error_shed: min_samples must be at least 1")
			}
			es.MinSamples = *n
		case "window":
			dur, err := durationArg(d)
			if err != nil {
				return err
			}
			if *dur <= 0 {
				return d.Errf("error_shed: window must be positive")
			}
			es.Window = *dur
		default:
			return d.Errf("error_shed: unknown subdirective %q", dir)
		}
	}
	h.ErrorShed = es
	return nil
}
