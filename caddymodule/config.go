package caddymodule

import (
	"fmt"
	"sort"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/matrix"
)

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
	// Handler-wide class settings first: a class's own block wins.
	for c := range cfg.Classes {
		l := &cfg.Classes[c]
		if h.QueueTimeout != nil {
			l.QueueTimeout = time.Duration(*h.QueueTimeout)
		}
		// The handler's `adaptive` covers every class except those on their
		// own budget: long-poll sync (its latency is the client's timeout,
		// not the upstream's), discovery (reconnecting clients must never be
		// starved of it) and admin (the operator's lever).
		if h.Adaptive != nil {
			l.Adaptive = *h.Adaptive && !l.OwnBudget
		}
		if h.Shadow != nil {
			l.Shadow = *h.Shadow
		}
	}
	if h.RetryAfter != nil {
		cfg.RetryAfterMin, cfg.RetryAfterMax = time.Duration(h.RetryAfter.Min), time.Duration(h.RetryAfter.Max)
		// Unless set in herd { retry_after }, a herd's range is the normal
		// one stretched: same minimum, three times the maximum.
		cfg.Herd.RetryAfterMin, cfg.Herd.RetryAfterMax = cfg.RetryAfterMin, 3*cfg.RetryAfterMax
	}
	cfg.MaxToggleDuration = h.maxToggleDuration() // zonestate.go
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
		if err := cfg.Classes[class].Configure(h.Classes[name]); err != nil {
			return cfg, fmt.Errorf("class %s: %w", name, err)
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
	if err := h.Fleet.validate(); err != nil { // fleet.go
		return cfg, fmt.Errorf("fleet: %w", err)
	}
	h.applyCORS(&cfg) // cors.go
	for _, name := range h.Shed {
		class, err := matrix.ParseClass(name)
		if err != nil {
			return cfg, fmt.Errorf("shed: %w", err)
		}
		cfg.Shed = append(cfg.Shed, class)
	}
	return cfg, cfg.Validate()
}
