package caddymodule

import (
	"fmt"
	"sort"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/matrix"
)

// ClassConfig overrides the built-in limits of one endpoint class. Unset
// fields keep the built-in default of that class.
type ClassConfig struct {
	// Requests of this class at the upstream at once; 0 removes the class cap.
	MaxInflight *int `json:"max_inflight,omitempty"`
	// Requests that may wait for a slot; beyond it they get a 429.
	Queue *int `json:"queue,omitempty"`
	// How long a request waits for a slot before a 429.
	QueueTimeout *caddy.Duration `json:"queue_timeout,omitempty"`
	// Per-user token bucket: tokens per second; 0 disables it.
	Rate *float64 `json:"rate,omitempty"`
	// Per-user token bucket size.
	Burst *int `json:"burst,omitempty"`
	// Share identical in-flight GET/HEAD requests and keep the answer this
	// long; 0 disables coalescing.
	Coalesce *caddy.Duration `json:"coalesce,omitempty"`
	// critical, normal or sheddable: what a brownout sheds.
	Priority string `json:"priority,omitempty"`
	// Only for room_state: during a herd, serve one fetch of a room's
	// /state and /joined_members to every requester the gate has verified
	// as joined. Off by default; see the README before enabling.
	ShareState bool `json:"share_state,omitempty"`
	// Adaptive in-flight limit for this class: max_inflight becomes its
	// ceiling (resilience.go). Unset: the handler's `adaptive`.
	Adaptive *bool `json:"adaptive,omitempty"`
}

// RetryAfter is the jitter range of Retry-After on a 429.
type RetryAfter struct {
	Min caddy.Duration `json:"min"`
	Max caddy.Duration `json:"max"`
}

// HerdConfig configures thundering-herd detection.
type HerdConfig struct {
	// Sliding window over which distinct users are counted. Default 10s.
	Window caddy.Duration `json:"window,omitempty"`
	// Distinct users on one (class, room) within the window that make a
	// herd. Default 50; 0 keeps the default, use herd { off } to disable.
	MinUsers int `json:"min_users,omitempty"`
	// Disabled turns herd detection off.
	Disabled bool `json:"disabled,omitempty"`
	// Retry-After jitter range for shed herd requests, wider than usual.
	RetryAfter *RetryAfter `json:"retry_after,omitempty"`
}

// gateConfig resolves the handler's JSON config over the built-in defaults.
// A global queue_timeout applies to every class that does not set its own.
func (h *Handler) gateConfig() (gate.Config, error) {
	cfg := gate.DefaultConfig()
	cfg.UpstreamAddr = h.HealthDial
	if h.MaxInflight != nil {
		cfg.MaxInflight = *h.MaxInflight
	}
	if h.QueueTimeout != nil {
		for i := range cfg.Classes {
			cfg.Classes[i].QueueTimeout = time.Duration(*h.QueueTimeout)
		}
	}
	if h.RetryAfter != nil {
		cfg.RetryAfterMin, cfg.RetryAfterMax = time.Duration(h.RetryAfter.Min), time.Duration(h.RetryAfter.Max)
		// Unless set in herd { retry_after }, a herd's range is the normal
		// one stretched: same minimum, three times the maximum.
		cfg.Herd.RetryAfterMin, cfg.Herd.RetryAfterMax = cfg.RetryAfterMin, 3*cfg.RetryAfterMax
	}
	if h.LIFOAfter != nil {
		cfg.LIFOAfter = time.Duration(*h.LIFOAfter)
	}
	names := make([]string, 0, len(h.Classes))
	for name := range h.Classes {
		names = append(names, name)
	}
	sort.Strings(names) // deterministic error messages
	for _, name := range names {
		class, err := matrix.ParseClass(name)
		if err != nil {
			return cfg, err
		}
		cc := h.Classes[name]
		if err := cc.apply(&cfg.Classes[class]); err != nil {
			return cfg, fmt.Errorf("class %s: %w", name, err)
		}
		if cc != nil && cc.ShareState {
			if class != matrix.RoomState {
				return cfg, fmt.Errorf("class %s: share_state is only for room_state", name)
			}
			cfg.ShareRoomState = true
		}
	}
	if h.Herd != nil {
		if h.Herd.Window > 0 {
			cfg.Herd.Window = time.Duration(h.Herd.Window)
		}
		if h.Herd.MinUsers > 0 {
			cfg.Herd.MinUsers = h.Herd.MinUsers
		}
		if h.Herd.Disabled {
			cfg.Herd.MinUsers = 0
		}
		if ra := h.Herd.RetryAfter; ra != nil {
			cfg.Herd.RetryAfterMin, cfg.Herd.RetryAfterMax = time.Duration(ra.Min), time.Duration(ra.Max)
		}
	}
	if err := h.applyResilience(&cfg); err != nil { // resilience.go
		return cfg, err
	}
	for _, name := range h.Shed {
		class, err := matrix.ParseClass(name)
		if err != nil {
			return cfg, fmt.Errorf("shed: %w", err)
		}
		cfg.Shed = append(cfg.Shed, class)
	}
	return cfg, cfg.Validate()
}

func (c *ClassConfig) apply(l *matrix.Limits) error {
	if c == nil {
		return nil
	}
	if c.MaxInflight != nil {
		l.MaxInflight = *c.MaxInflight
	}
	if c.Queue != nil {
		l.Queue = *c.Queue
	}
	if c.QueueTimeout != nil {
		l.QueueTimeout = time.Duration(*c.QueueTimeout)
	}
	if c.Rate != nil {
		l.Rate = *c.Rate
	}
	if c.Burst != nil {
		l.Burst = *c.Burst
	}
	if c.Coalesce != nil {
		l.Coalesce = time.Duration(*c.Coalesce)
	}
	if c.Priority != "" {
		p, err := matrix.ParsePriority(c.Priority)
		if err != nil {
			return err
		}
		l.Priority = p
	}
	return nil
}
