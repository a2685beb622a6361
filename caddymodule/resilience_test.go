package caddymodule

import (
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/matrix"
)

func handlerFromCaddyfile(t *testing.T, src string) *Handler {
	t.Helper()
	h := new(Handler)
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(src)); err != nil {
		t.Fatal(err)
	}
	return h
}

// The global `adaptive` covers every class but those on their own budget
// (sync, admin, discovery); a class's own setting wins; ride_through and error_shed resolve over the gate defaults.
func TestResilienceResolvesToGateConfig(t *testing.T) {
	h := handlerFromCaddyfile(t, `mxgate {
		adaptive
		ride_through {
			slow_start 0s
			failures 5
		}
		error_shed {
			threshold 0.25
		}
		class history {
			adaptive off
		}
		class admin {
			adaptive
		}
	}`)
	cfg, err := h.gateConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range matrix.Classes() {
		want := c != matrix.Sync && c != matrix.History && c != matrix.Discovery
		if cfg.Classes[c].Adaptive != want {
			t.Errorf("class %s: adaptive %v, want %v", c, cfg.Classes[c].Adaptive, want)
		}
	}
	rt := cfg.RideThrough
	if !rt.Enabled || rt.SlowStart != 0 || rt.Failures != 5 || rt.ProbeInterval != gate.DefaultProbeInterval || rt.MaxBody != gate.DefaultRideThroughMaxBody {
		t.Errorf("ride_through %+v", rt)
	}
	es := cfg.ErrorShed
	if !es.Enabled || es.Threshold != 0.25 || es.MinSamples != gate.DefaultErrorShedMinSamples || es.Window != 10*time.Second {
		t.Errorf("error_shed %+v", es)
	}

	off := handlerFromCaddyfile(t, `mxgate {
		ride_through off
		error_shed off
	}`)
	cfg, err = off.gateConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RideThrough.Enabled || cfg.ErrorShed.Enabled {
		t.Errorf("off: %+v %+v", cfg.RideThrough, cfg.ErrorShed)
	}
	for _, c := range matrix.Classes() {
		if cfg.Classes[c].Adaptive {
			t.Errorf("off: class %s adaptive", c)
		}
	}
}
