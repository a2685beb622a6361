package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// FuzzUnmarshalCaddyfile feeds arbitrary mxgate blocks to the parser and
// then to the config resolution: either may refuse, neither may panic, and a
// config the parser accepts either validates or says why.
func FuzzUnmarshalCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"mxgate",
		"mxgate {\n\tmax_inflight 10\n}",
		"mxgate {\n\tclass sync_initial {\n\t\trate 0.5 4\n\t\tcoalesce 30s\n\t}\n\therd {\n\t\twindow 10s\n\t\tmin_users 50\n\t}\n\tshed search\n}",
		"mxgate {\n\tretry_after 2s 30s\n\tride_through {\n\t\tslow_start 5s\n\t}\n\terror_shed {\n\t\tthreshold 0.5\n\t}\n}",
		"mxgate {\n\tclass room_state {\n\t\tshare_state\n\t\tadaptive off\n\t}\n}",
		"mxgate {\n\tclass {\n\t}\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		h := new(Handler)
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input)); err != nil {
			return
		}
		_, _ = h.gateConfig()
	})
}
