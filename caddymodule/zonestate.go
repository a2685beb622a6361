package caddymodule

import (
	"log/slog"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/limiter"
)

// StateFileOff as state_file keeps toggles in memory only.
const StateFileOff = "off"

// toggleStore returns the toggle store for a new gate of the handler's
// zone: a state file (by default in Caddy's data directory) unless
// state_file is "off", then nil (the gate's in-memory store). The store is
// only built for a zone that has no gate yet: on a config reload the zone
// keeps its gate and that gate's store, so a changed state_file takes effect
// at the next start.
func (h *Handler) toggleStore(logger *slog.Logger) limiter.ToggleStore {
	if _, exists := gates.References(h.zone); exists || h.StateFile == StateFileOff {
		return nil
	}
	path := h.StateFile
	if path == "" {
		path = defaultStateFile(h.zone, h.fleetInstance()) // one file per fleet member (fleet.go)
	}
	store, err := limiter.NewFileToggles(path, time.Now(), h.maxToggleDuration())
	if err != nil {
		// Starting without the saved toggles beats not starting at all
		// during an outage; the next toggle change rewrites the file.
		logger.Error("mxgate: ignoring unreadable toggle state file", "path", path, "error", err)
	} else {
		logger.Info("mxgate: toggle state file", "path", path, "active", len(store.Active(time.Now())))
	}
	for _, why := range store.Dropped() {
		logger.Warn("mxgate: dropped an invalid toggle from the state file", "path", path, "why", why)
	}
	return store
}

// defaultStateFile is <Caddy data dir>/mxgate/toggles-<zone>.json, or
// toggles-<zone>@<instance>.json for a fleet member, with the names made
// safe for a file name.
func defaultStateFile(zone, instance string) string {
	return filepath.Join(caddy.AppDataDir(), "mxgate", limiter.StateFileName(zone, instance))
}
