package main

import (
	"encoding/json"
	"fmt"
	"net/url"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "gateway",
		Usage: "--upstream <url> [--listen <addr>] [--admin <addr>]",
		Short: "Runs mxgate in front of a homeserver with built-in defaults",
		Long: `
Runs an mxgate gateway without a Caddyfile: every request to --listen goes
through mxgate's admission control (built-in per-class defaults) and on to the
homeserver at --upstream. Operator controls and Prometheus metrics are on the
admin endpoint (--admin, default localhost:2019): /mxgate/status,
/mxgate/shed and /metrics.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("upstream", "", "homeserver base URL, e.g. http://127.0.0.1:8008 (required)")
			cmd.Flags().String("listen", ":8080", "address to serve clients on")
			cmd.Flags().String("admin", "localhost:2019", "admin endpoint address (keep it on loopback)")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdGateway)
		},
	})
}

func cmdGateway(fl caddycmd.Flags) (int, error) {
	cfg, err := gatewayConfig(fl.String("upstream"), fl.String("listen"), fl.String("admin"))
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	caddy.TrapSignals()
	if err := caddy.Load(cfg, true); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("starting gateway: %w", err)
	}
	select {}
}

// gatewayConfig is the Caddy JSON config of `mxgate gateway`: one server,
// the mxgate handler with built-in defaults, then reverse_proxy.
func gatewayConfig(upstream, listen, admin string) ([]byte, error) {
	if upstream == "" {
		return nil, fmt.Errorf("--upstream is required, e.g. --upstream http://127.0.0.1:8008")
	}
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--upstream must be an http:// or https:// URL with a host, got %q", upstream)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("--upstream must not have a path (mxgate forwards /_matrix/... as is), got %q", upstream)
	}
	dial := u.Host
	if u.Port() == "" {
		dial += map[string]string{"http": ":80", "https": ":443"}[u.Scheme]
	}
	transport := map[string]any{"protocol": "http"}
	if u.Scheme == "https" {
		transport["tls"] = map[string]any{}
	}
	cfg := map[string]any{
		"admin": map[string]any{"listen": admin},
		"apps": map[string]any{
			"http": map[string]any{
				"servers": map[string]any{
					"mxgate": map[string]any{
						"listen":          []string{listen},
						"automatic_https": map[string]any{"disable": true},
						"routes": []any{map[string]any{
							"handle": []any{
								map[string]any{"handler": "mxgate"},
								map[string]any{
									"handler":   "reverse_proxy",
									"upstreams": []any{map[string]any{"dial": dial}},
									"transport": transport,
									// Long-poll /sync and large state answers must stream.
									"flush_interval": -1,
								},
							},
						}},
					},
				},
			},
		},
	}
	return json.Marshal(cfg)
}
