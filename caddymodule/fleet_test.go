package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// Wrong fleet blocks fail with the file and line of the mistake.
func TestCaddyfileFleetErrors(t *testing.T) {
	for _, tc := range []struct{ name, body, want string }{
		{"fleet without redis", "mxgate {\n\tfleet {\n\t\tname a\n\t}\n}", "Caddyfile:"},
		{"fleet unknown option", "mxgate {\n\tfleet {\n\t\tredis redis://127.0.0.1:6379\n\t\tport 1\n\t}\n}", "Caddyfile:6"},
		{"fleet repeated option", "mxgate {\n\tfleet {\n\t\tredis redis://a:1\n\t\tredis redis://b:1\n\t}\n}", "Caddyfile:6"},
		{"fleet argument", "mxgate {\n\tfleet redis://a:1\n}", "Caddyfile:4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := "\n:8080 {\n\t" + strings.ReplaceAll(tc.body, "\n", "\n\t") + "\n\treverse_proxy 127.0.0.1:8008\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
			if err == nil {
				t.Fatalf("accepted:\n%s", src)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s", err, tc.want)
			}
		})
	}
}

// A URL that is not Redis's is refused before anything starts.
func TestFleetBadURLFailsValidation(t *testing.T) {
	h := &Handler{Fleet: &FleetConfig{Redis: "http://127.0.0.1:6379"}}
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "fleet") {
		t.Fatalf("Validate = %v, want a fleet error", err)
	}
}

// In a fleet, the default state file is the instance's own.
func TestFleetStateFilePerInstance(t *testing.T) {
	h := &Handler{Fleet: &FleetConfig{Redis: "redis://127.0.0.1:6379", Name: "gw-b"}}
	if got := defaultStateFile("default", h.fleetInstance()); !strings.HasSuffix(got, "toggles-default@gw-b.json") {
		t.Errorf("state file %s, want one named after the instance", got)
	}
	if got := (&Handler{}).fleetInstance(); got != "" {
		t.Errorf("outside a fleet the instance is %q", got)
	}
}
