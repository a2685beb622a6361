package main

import (
	"encoding/json"
	"testing"
	"time"
)

// gatewayHandlers returns the mxgate handler configs of a gateway config.
func gatewayHandlers(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []map[string]any `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, r := range srv.Routes {
			for _, h := range r.Handle {
				if h["handler"] == "mxgate" {
					out = append(out, h)
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no mxgate handler")
	}
	return out
}

// The gateway runs with adaptive limits and ride-through (probing its
// upstream) unless the flags turn them off.
func TestGatewayResilienceSwitches(t *testing.T) {
	raw, err := gatewayConfig("http://127.0.0.1:8008", ":8080", "localhost:2019")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range gatewayHandlers(t, raw) {
		rt, _ := h["ride_through"].(map[string]any)
		if h["adaptive"] != true || rt == nil || rt["slow_start"] != float64(10*time.Second) || h["health_dial"] != "127.0.0.1:8008" {
			t.Fatalf("default gateway handler %v", h)
		}
		if _, ok := h["error_shed"]; ok {
			t.Fatalf("error_shed on by default: %v", h)
		}
	}
	raw, err = gatewayConfigWith("http://127.0.0.1:8008", ":8080", "localhost:2019",
		gatewayResilience{ErrorShed: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range gatewayHandlers(t, raw) {
		_, adaptive := h["adaptive"]
		_, ride := h["ride_through"]
		_, shed := h["error_shed"]
		if adaptive || ride || !shed {
			t.Fatalf("switched gateway handler %v", h)
		}
	}
}
