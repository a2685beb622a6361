package caddymodule

import (
	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/gate"
)

// gates holds one gate per zone across config reloads: the new config's
// handler loads the zone's gate (and reconfigures it) before the old
// config's handler releases it, so counts, queues, rate buckets and toggles
// carry over. The admin API reads gates from here, never from handlers.
var gates = caddy.NewUsagePool()

// sharedMetrics are built once per process and registered on every config's
// metrics registry, so counters continue across reloads.
var sharedMetrics = gate.NewMetrics()

type pooledGate struct{ *gate.Gate }

// Destruct stops the gate when its last handler is cleaned up.
func (p pooledGate) Destruct() error {
	p.Close()
	return nil
}

func loadGate(zone string, cfg gate.Config, opts gate.Options) (*gate.Gate, error) {
	val, loaded, err := gates.LoadOrNew(zone, func() (caddy.Destructor, error) {
		g, err := gate.New(cfg, opts)
		if err != nil {
			return nil, err
		}
		return pooledGate{g}, nil
	})
	if err != nil {
		return nil, err
	}
	g := val.(pooledGate).Gate
	if loaded {
		if err := g.Configure(cfg); err != nil {
			_, _ = gates.Delete(zone)
			return nil, err
		}
	}
	return g, nil
}

// zoneGates calls f for each live gate, by zone name.
func zoneGates(f func(zone string, g *gate.Gate)) {
	gates.Range(func(k, v any) bool {
		f(k.(string), v.(pooledGate).Gate)
		return true
	})
}
