package caddymodule

import (
	"log/slog"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"

	"github.com/mxgate/mxgate/fleet"
)

// FleetConfig makes the zone's gate a member of a fleet of gateways that
// share toggles, per-user rates, herd counts and in-flight caps through
// Redis (package fleet). Read when the zone's gate starts: a reload keeps
// the membership, as it keeps the state file.
type FleetConfig struct {
	// Redis is the redis:// or rediss:// URL of the shared Redis or Valkey.
	Redis string `json:"redis"`
	// Name identifies this gateway in the fleet and must differ between
	// gateways. Default: the host name (mxgate gateway adds its listen
	// address); set it when several gateways run on one host.
	Name string `json:"name,omitempty"`
}

// unmarshalFleet parses
//
//	fleet {
//		redis <url>
//		name  <instance-name>
//	}
func (h *Handler) unmarshalFleet(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	fc := &FleetConfig{}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		if seen[dir] {
			return d.Errf("fleet: %s given twice", dir)
		}
		seen[dir] = true
		var err error
		switch dir {
		case "redis":
			fc.Redis, err = oneString(d)
		case "name":
			fc.Name, err = oneString(d)
		default:
			return d.Errf("unknown fleet subdirective %q", dir)
		}
		if err != nil {
			return err
		}
	}
	if fc.Redis == "" {
		return d.Err("fleet needs redis <url>")
	}
	h.Fleet = fc
	return nil
}

// validate checks the Redis URL without connecting.
func (fc *FleetConfig) validate() error {
	if fc == nil {
		return nil
	}
	if _, err := redis.ParseURL(fc.Redis); err != nil {
		return err
	}
	return nil
}

// fleetMember builds the fleet membership for a new gate of the handler's
// zone; nil outside a fleet, or when the zone already has a gate (a config
// reload keeps the gate and its membership, as it keeps its state file).
func (h *Handler) fleetMember(logger *slog.Logger) (*fleet.Fleet, error) {
	if _, exists := gates.References(h.zone); exists || h.Fleet == nil {
		return nil, nil
	}
	f, err := fleet.New(fleet.Config{
		Redis: h.Fleet.Redis, Name: h.fleetInstance(), Zone: h.zone,
		MaxToggleLife: h.maxToggleDuration(), Metrics: sharedMetrics.Fleet, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	logger.Info("mxgate: fleet member", "zone", h.zone, "fleet", f.String())
	return f, nil
}
