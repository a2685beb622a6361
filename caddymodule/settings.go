package caddymodule

// Handler-wide settings, resolved over their defaults, that several files
// read (the fleet, the toggle store, the gate's config).

import (
	"os"
	"time"

	"github.com/mxgate/mxgate/gate"
)

// fleetInstance is this gateway's name in its fleet; "" outside a fleet.
func (h *Handler) fleetInstance() string {
	if h.Fleet == nil {
		return ""
	}
	if h.Fleet.Name != "" {
		return h.Fleet.Name
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "mxgate"
	}
	return host
}

// maxToggleDuration is the handler's max_toggle_duration, or the default.
func (h *Handler) maxToggleDuration() time.Duration {
	if h.MaxToggleDuration > 0 {
		return time.Duration(h.MaxToggleDuration)
	}
	return gate.DefaultMaxToggleDuration
}
