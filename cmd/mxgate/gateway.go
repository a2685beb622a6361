package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
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
/mxgate/shed, /_mxgate/health and /metrics.

File handles: client connections are capped (mxgate_conns, from
RLIMIT_NOFILE; at the cap new clients wait in the kernel backlog), and so
are upstream connections, in two pools: long-poll /sync and everything
else, so neither can take the other's connections.

Resilience (on by default, --adaptive=false / --ride-through=false to turn
off): every class but long-poll sync gets an adaptive in-flight limit that
follows the homeserver's latency (the built-in caps become ceilings); while
the homeserver restarts, requests wait in their queues (idempotent ones are
retried until their deadline, others get a 429 with a short Retry-After)
and when it is back, admitted concurrency ramps up over --slow-start.
--error-shed (off by default) sheds sheddable classes while at least half
of the homeserver's answers over 10s are 5xx.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("upstream", "", "homeserver base URL, e.g. http://127.0.0.1:8008 (required)")
			cmd.Flags().String("listen", ":8080", "address to serve clients on")
			cmd.Flags().String("admin", "localhost:2019", "admin endpoint address (keep it on loopback)")
			cmd.Flags().Bool("adaptive", true, "adaptive in-flight limits for every class but sync")
			cmd.Flags().Bool("ride-through", true, "hold and retry requests while the homeserver restarts")
			cmd.Flags().Duration("slow-start", 10*time.Second, "ramp-up time after the homeserver returns (0: none)")
			cmd.Flags().Bool("error-shed", false, "shed sheddable classes while the homeserver answers mostly 5xx")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdGateway)
		},
	})
}

func cmdGateway(fl caddycmd.Flags) (int, error) {
	res := gatewayResilience{Adaptive: fl.Bool("adaptive"), RideThrough: fl.Bool("ride-through"),
		SlowStart: fl.Duration("slow-start"), ErrorShed: fl.Bool("error-shed")}
	cfg, err := gatewayConfigWith(fl.String("upstream"), fl.String("listen"), fl.String("admin"), res)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	caddy.TrapSignals()
	if err := caddy.Load(cfg, true); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("starting gateway: %w", err)
	}
	select {}
}

// gatewayResilience are the gateway's issue-7 switches.
type gatewayResilience struct {
	Adaptive, RideThrough, ErrorShed bool
	SlowStart                        time.Duration
}

// defaultGatewayResilience is what `mxgate gateway` runs with unless its
// flags say otherwise.
var defaultGatewayResilience = gatewayResilience{Adaptive: true, RideThrough: true, SlowStart: 10 * time.Second}

// gatewayConfig is the Caddy JSON config of `mxgate gateway` with its
// default switches.
func gatewayConfig(upstream, listen, admin string) ([]byte, error) {
	return gatewayConfigWith(upstream, listen, admin, defaultGatewayResilience)
}

// gatewayConfigWith is the Caddy JSON config of `mxgate gateway`: one
// server, the mxgate handler with built-in defaults and the resilience
// switches res, then reverse_proxy.
func gatewayConfigWith(upstream, listen, admin string, res gatewayResilience) ([]byte, error) {
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
	budget := gatewayFDBudget()
	syncConns, activeConns := splitUpstreamConns(budget.Upstream)
	// Long-poll /sync sits idle at the upstream for up to 30s per request.
	// It gets its own reverse proxy, hence its own connection pool and cap,
	// so parked long-polls cannot take the connections active requests
	// need, nor the other way round (the gate's OwnBudget does the same for
	// admission).
	proxy := func(maxConns int) map[string]any {
		transport := map[string]any{"protocol": "http", "max_conns_per_host": maxConns}
		if u.Scheme == "https" {
			transport["tls"] = map[string]any{}
		}
		return map[string]any{
			"handler":   "reverse_proxy",
			"upstreams": []any{map[string]any{"dial": dial}},
			"transport": transport,
			// Long-poll /sync and large state answers must stream.
			"flush_interval": -1,
		}
	}
	// Both routes use the same mxgate zone, hence the same gate. Admission
	// caps never exceed the connection pools: a request admitted beyond them
	// would wait inside the transport, invisible to the gate's queues,
	// deadlines and metrics.
	gateHandler := map[string]any{
		"handler":      "mxgate",
		"health_dial":  dial,
		"max_inflight": min(matrix.DefaultMaxInflight, activeConns),
		"classes": map[string]any{
			"sync": map[string]any{"max_inflight": min(matrix.DefaultLimits[matrix.Sync].MaxInflight, syncConns)},
		},
	}
	if res.Adaptive {
		gateHandler["adaptive"] = true
	}
	if res.RideThrough {
		// Ride-through probes health_dial to learn the homeserver is back.
		gateHandler["ride_through"] = map[string]any{"slow_start": res.SlowStart}
	}
	if res.ErrorShed {
		gateHandler["error_shed"] = map[string]any{}
	}
	cfg := map[string]any{
		"admin": map[string]any{"listen": admin},
		"apps": map[string]any{
			"http": map[string]any{
				"servers": map[string]any{
					"mxgate": map[string]any{
						"listen":          []string{listen},
						"automatic_https": map[string]any{"disable": true},
						// Cap client connections (default from RLIMIT_NOFILE)
						// before TLS, so handshakes count too.
						"listener_wrappers": []any{
							map[string]any{"wrapper": "mxgate_conns"},
							map[string]any{"wrapper": "tls"},
						},
						"routes": []any{
							map[string]any{
								"match":    []any{map[string]any{"path": []string{"*/sync"}}},
								"handle":   []any{gateHandler, proxy(syncConns)},
								"terminal": true,
							},
							map[string]any{"handle": []any{gateHandler, proxy(activeConns)}},
						},
					},
				},
			},
		},
	}
	return json.Marshal(cfg)
}

// gatewayFDBudget splits the process's file descriptor limit (Go raises the
// soft limit to the hard one at start) between client and upstream
// connections; mxgate_conns derives the client cap the same way.
func gatewayFDBudget() limiter.FDBudget {
	soft, ok := limiter.FDLimit()
	if !ok {
		soft = 1024
	}
	return limiter.BudgetFromFDLimit(soft)
}

// splitUpstreamConns divides the upstream connection budget between
// long-poll sync and everything else: active requests get half, but no
// more than twice the default global max_inflight, which is all they can
// use; sync gets the rest.
func splitUpstreamConns(upstream int) (syncConns, activeConns int) {
	activeConns = max(min(upstream/2, 2*matrix.DefaultMaxInflight), 1)
	return max(upstream-activeConns, 1), activeConns
}
