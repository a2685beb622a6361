package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// gatewayRoutes returns the handler chains of the routes of a gateway
// config's server, in order.
func gatewayRoutes(t *testing.T, raw []byte) [][]map[string]any {
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
	var routes [][]map[string]any
	for _, r := range cfg.Apps.HTTP.Servers["mxgate"].Routes {
		routes = append(routes, r.Handle)
	}
	return routes
}

// gatewayHandlers returns the mxgate handler configs of a gateway config.
func gatewayHandlers(t *testing.T, raw []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, handle := range gatewayRoutes(t, raw) {
		for _, h := range handle {
			if h["handler"] == "mxgate" {
				out = append(out, h)
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

// Every upstream answer but a long-poll /sync must begin within its class's
// upstream_timeout, which the gate enforces: the gateway's pools set no
// response header timeout of their own (one for the /sync route would cut
// a large account's initial sync; one for the other would override every
// class's), and its handler keeps the class defaults.
func TestGatewayUpstreamTimeouts(t *testing.T) {
	raw, err := gatewayConfig("http://127.0.0.1:8008", ":8080", "localhost:2019")
	if err != nil {
		t.Fatal(err)
	}
	routes := gatewayRoutes(t, raw)
	if len(routes) != 2 {
		t.Fatalf("%d routes", len(routes))
	}
	for i, handle := range routes {
		for _, h := range handle {
			switch h["handler"] {
			case "reverse_proxy":
				if timeout, ok := h["transport"].(map[string]any)["response_header_timeout"]; ok {
					t.Errorf("route %d: the pool has a response header timeout %v", i, timeout)
				}
			case "mxgate":
				classes, _ := h["classes"].(map[string]any)
				for name, c := range classes {
					if _, ok := c.(map[string]any)["upstream_timeout"]; ok {
						t.Errorf("route %d: class %s overrides upstream_timeout", i, name)
					}
				}
			}
		}
	}
	for _, c := range matrix.Classes() {
		if d := matrix.DefaultLimits[c].UpstreamTimeout; (d == 0) != (c == matrix.Sync) {
			t.Errorf("class %s: default upstream_timeout %v", c, d)
		}
	}
}

// CORS is on by default (the handler's absent `cors`); --cors=off turns
// it off in every route's handler.
func TestGatewayCORSSwitch(t *testing.T) {
	raw, err := gatewayConfig("http://127.0.0.1:8008", ":8080", "localhost:2019")
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range gatewayHandlers(t, raw) {
		if _, ok := h["cors"]; ok {
			t.Fatalf("default gateway handler sets cors: %v", h)
		}
	}
	raw, err = gatewayConfigWith("http://127.0.0.1:8008", ":8080", "localhost:2019", gatewayResilience{CORSOff: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range gatewayHandlers(t, raw) {
		if c, _ := h["cors"].(map[string]any); c["disabled"] != true {
			t.Fatalf("--cors=off handler %v", h)
		}
	}
}

// --client-share reaches the connection cap's listener wrapper, and a share
// outside (0, 1] is refused.
func TestGatewayClientShare(t *testing.T) {
	raw, err := gatewayConfigWith("http://127.0.0.1:8008", ":8080", "localhost:2019", gatewayResilience{ClientShare: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(raw), `{"client_share":1,"wrapper":"mxgate_conns"}`) {
		t.Fatalf("client_share not in the listener wrapper: %s", raw)
	}
	for _, bad := range []float64{-0.5, 1.5} {
		if _, err := gatewayConfigWith("http://127.0.0.1:8008", ":8080", "localhost:2019", gatewayResilience{ClientShare: bad}); err == nil {
			t.Errorf("client share %v accepted", bad)
		}
	}
}
