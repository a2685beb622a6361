package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/matrix"
)

// `shadow` in the mxgate block covers every class; a class's own `shadow
// off` (or `shadow`) wins.
func TestCaddyfileShadow(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want map[matrix.Class]bool // classes in shadow mode; others not
	}{
		{"mxgate", nil},
		{"mxgate {\n shadow\n class search {\n  shadow off\n }\n}", func() map[matrix.Class]bool {
			m := map[matrix.Class]bool{}
			for _, c := range matrix.Classes() {
				m[c] = c != matrix.Search
			}
			return m
		}()},
		{"mxgate {\n class room_state {\n  shadow\n }\n}", map[matrix.Class]bool{matrix.RoomState: true}},
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.src)); err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		cfg, err := h.gateConfig()
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		for _, c := range matrix.Classes() {
			if cfg.Classes[c].Shadow != tc.want[c] {
				t.Errorf("%q: class %s shadow %v", tc.src, c, cfg.Classes[c].Shadow)
			}
		}
	}
	var h Handler
	if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mxgate {\n shadow on\n}")); err == nil {
		t.Error("shadow on: want an error (shadow takes only off)")
	}
}
