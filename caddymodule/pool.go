package caddymodule

import (
	"errors"
	"sync"

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

type pooledGate struct {
	*gate.Gate
	configs *zoneConfigs
}

// Destruct stops the gate when its last handler is cleaned up.
func (p pooledGate) Destruct() error {
	p.Close()
	return nil
}

// zoneConfigs remembers the configuration of every live handler of a zone,
// so that the zone always runs the newest one still alive. A reload applies
// its config as its handlers are provisioned; if Caddy then rejects the
// reload, it cleans those handlers up and the zone goes back to the config
// of the handlers still serving.
type zoneConfigs struct {
	mu   sync.Mutex
	seq  uint64
	live map[*Handler]zoneConfig
}

type zoneConfig struct {
	seq  uint64
	gate gate.Config
}

// loadGate returns h's zone's gate, building it or applying h's config to
// it.
func loadGate(h *Handler, cfg gate.Config, opts gate.Options) (*gate.Gate, error) {
	val, loaded, err := gates.LoadOrNew(h.zone, func() (caddy.Destructor, error) {
		g, err := gate.New(cfg, opts)
		if err != nil {
			return nil, err
		}
		return pooledGate{Gate: g, configs: &zoneConfigs{live: make(map[*Handler]zoneConfig)}}, nil
	})
	if err != nil {
		return nil, err
	}
	p := val.(pooledGate)
	if loaded {
		if err := p.Configure(cfg); err != nil {
			_, _ = gates.Delete(h.zone)
			return nil, err
		}
	}
	p.configs.mu.Lock()
	p.configs.seq++
	p.configs.live[h] = zoneConfig{seq: p.configs.seq, gate: cfg}
	p.configs.mu.Unlock()
	h.configs = p.configs
	return p.Gate, nil
}

// releaseGate drops h's reference to its zone's gate. If h's config was the
// one in force and other handlers of the zone live on, the newest of theirs
// is applied again.
func releaseGate(h *Handler, g *gate.Gate) error {
	zc := h.configs
	zc.mu.Lock()
	gone := zc.live[h]
	delete(zc.live, h)
	var newest zoneConfig
	for _, c := range zc.live {
		if c.seq > newest.seq {
			newest = c
		}
	}
	zc.mu.Unlock()
	var cfgErr error
	if newest.seq != 0 && gone.seq > newest.seq {
		// Even if the older config no longer applies, the reference is
		// released below so that the gate is stopped with its last user.
		cfgErr = g.Configure(newest.gate)
	}
	_, err := gates.Delete(h.zone)
	return errors.Join(cfgErr, err)
}

// zoneGates calls f for each live gate, by zone name.
func zoneGates(f func(zone string, g *gate.Gate)) {
	gates.Range(func(k, v any) bool {
		f(k.(string), v.(pooledGate).Gate)
		return true
	})
}
