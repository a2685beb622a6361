package caddymodule

import (
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/limiter"
)

// DefaultMaxToggleDuration caps how long an admin API toggle may last
// unless max_toggle_duration says otherwise: a forgotten shed must end.
const DefaultMaxToggleDuration = 24 * time.Hour

// StateFileOff as state_file keeps toggles in memory only.
const StateFileOff = "off"

// zoneSettings are the per-zone settings the admin API needs. Admin routes
// cannot reach handlers (they are built without config), so handlers leave
// these here by zone when provisioned.
type zoneSettings struct {
	maxToggle  time.Duration
	healthDial string // TCP address probed by /_mxgate/health; "" = observe traffic only
}

var (
	zoneSettingsMu sync.Mutex
	// zoneSettingsByZone has one entry per live zone: entries are removed
	// with the zone's gate (see Handler.Cleanup).
	zoneSettingsByZone = map[string]zoneSettings{}
)

func setZoneSettings(zone string, s zoneSettings) {
	zoneSettingsMu.Lock()
	defer zoneSettingsMu.Unlock()
	zoneSettingsByZone[zone] = s
}

func settingsOf(zone string) zoneSettings {
	zoneSettingsMu.Lock()
	defer zoneSettingsMu.Unlock()
	s, ok := zoneSettingsByZone[zone]
	if !ok {
		s.maxToggle = DefaultMaxToggleDuration
	}
	return s
}

func forgetZoneSettings(zone string) {
	zoneSettingsMu.Lock()
	defer zoneSettingsMu.Unlock()
	delete(zoneSettingsByZone, zone)
}

func (h *Handler) zoneSettings() zoneSettings {
	s := zoneSettings{maxToggle: DefaultMaxToggleDuration, healthDial: h.HealthDial}
	if h.MaxToggleDuration > 0 {
		s.maxToggle = time.Duration(h.MaxToggleDuration)
	}
	return s
}

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
		path = defaultStateFile(h.zone)
	}
	store, err := limiter.NewFileToggles(path, time.Now())
	if err != nil {
		// Starting without the saved toggles beats not starting at all
		// during an outage; the next toggle change rewrites the file.
		logger.Error("mxgate: ignoring unreadable toggle state file", "path", path, "error", err)
	} else {
		logger.Info("mxgate: toggle state file", "path", path, "active", len(store.Active(time.Now())))
	}
	return store
}

// defaultStateFile is <Caddy data dir>/mxgate/toggles-<zone>.json, with the
// zone name made safe for a file name.
func defaultStateFile(zone string) string {
	safe := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, zone)
	return filepath.Join(caddy.AppDataDir(), "mxgate", "toggles-"+safe+".json")
}
