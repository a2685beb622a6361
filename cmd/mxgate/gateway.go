package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mxgate/mxgate/caddymodule"
	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "gateway",
		Usage: "--upstream <url> [--listen <addr>] [--admin <addr>] [--fleet-redis <url> [--fleet-name <name>]]",
		Short: "Runs mxgate in front of a homeserver with built-in defaults",
		Long: `
Runs an mxgate gateway without a Caddyfile: every request to --listen goes
through mxgate's admission control (built-in per-class defaults) and on to the
homeserver at --upstream. Operator controls and Prometheus metrics are on the
admin endpoint (--admin, default localhost:2019): /mxgate/status,
/mxgate/shed, /_mxgate/health and /metrics.

File handles: client connections are capped (mxgate_conns, from
RLIMIT_NOFILE; at the cap idle keep-alives are closed first, then new
clients wait in the kernel backlog; one client address or IPv6 /64 holds
at most half the cap), and so are upstream connections, in two pools:
long-poll /sync and everything else, so neither can take the other's
connections. A client has 10s to send a request's headers.

Resilience (on by default, --adaptive=false / --ride-through=false to turn
off): every class but long-poll sync gets an adaptive in-flight limit that
follows the homeserver's latency (the built-in caps become ceilings); while
the homeserver restarts, requests wait in their queues (idempotent ones are
retried until their deadline, others get a 429 with a short Retry-After)
and when it is back, admitted concurrency ramps up over --slow-start.
--error-shed (off by default) sheds sheddable classes while at least half
of the homeserver's answers over 10s are 5xx.

Shadow mode (--shadow): the automatic limits above only observe. Nothing they
would refuse is refused; each would-be refusal is counted as
mxgate_requests_total{outcome="would_shed"|"would_rate_limited"|"would_timeout"}
and logged, sampled. Operator toggles (mxgate shed) still act. Use it to put
mxgate in front of production and see what it would do before it does it.

Fleet (--fleet-redis): several gateways in front of one homeserver share
operator toggles, per-user rates, herd counts and in-flight caps (each takes
cap ÷ live gateways) through Redis or Valkey; without Redis each keeps its
last share and local limits.

Browsers: every answer mxgate writes itself (429s, 502s) carries the CORS
headers a homeserver sends, and CORS preflights are never shed, queued or
counted; while the homeserver is down mxgate answers them itself.
--cors=off turns that off.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("upstream", "", "homeserver base URL, e.g. http://127.0.0.1:8008 (required)")
			cmd.Flags().String("listen", ":8080", "address to serve clients on")
			cmd.Flags().String("admin", "localhost:2019", "admin endpoint address (keep it on loopback)")
			cmd.Flags().Bool("adaptive", true, "adaptive in-flight limits for every class but sync")
			cmd.Flags().Bool("ride-through", true, "hold and retry requests while the homeserver restarts")
			cmd.Flags().Duration("slow-start", gate.DefaultSlowStart, "ramp-up time after the homeserver returns (0: none)")
			cmd.Flags().Bool("error-shed", false, "shed sheddable classes while the homeserver answers mostly 5xx")
			cmd.Flags().Bool("shadow", false, "automatic limits only observe and count would-be refusals; operator toggles still act")
			cmd.Flags().Float64("client-share", limiter.DefaultClientShare, "largest share of the connection cap one client address (IPv6: /64) may hold; 1 behind a local reverse proxy, whose connections all come from one address")
			cmd.Flags().String("fleet-redis", "", "share limits with other gateways through this Redis/Valkey URL (redis://host:6379/0)")
			cmd.Flags().String("fleet-name", "", "this gateway's name in the fleet (default host name and --listen)")
			cmd.Flags().String("cors", "on", "CORS headers on mxgate's own answers: on or off")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdGateway)
		},
	})
}

func cmdGateway(fl caddycmd.Flags) (int, error) {
	res := gatewayResilience{Adaptive: fl.Bool("adaptive"), RideThrough: fl.Bool("ride-through"),
		SlowStart: fl.Duration("slow-start"), ErrorShed: fl.Bool("error-shed"), Shadow: fl.Bool("shadow"),
		FleetRedis: fl.String("fleet-redis"), FleetName: fl.String("fleet-name"), ClientShare: fl.Float64("client-share")}
	switch fl.String("cors") {
	case "on":
	case "off":
		res.CORSOff = true
	default:
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--cors must be on or off, got %q", fl.String("cors"))
	}
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

// gatewayResilience are the gateway's switches: resilience (adaptive
// limits, ride-through with its slow start, 5xx shedding), shadow mode,
// fleet mode and CORS.
type gatewayResilience struct {
	Adaptive, RideThrough, ErrorShed bool
	SlowStart                        time.Duration
	Shadow                           bool
	// FleetRedis and FleetName: fleet mode (gateway_fleet.go).
	FleetRedis, FleetName string
	CORSOff               bool // no CORS headers on mxgate's own answers
	// ClientShare is mxgate_conns' client_share; 0 leaves its default.
	ClientShare float64
}

// defaultGatewayResilience is what `mxgate gateway` runs with unless its
// flags say otherwise.
var defaultGatewayResilience = gatewayResilience{Adaptive: true, RideThrough: true, SlowStart: gate.DefaultSlowStart}

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
	// How long the homeserver may take to begin an answer is the gate's
	// per-class upstream_timeout (none for long-poll sync), not the pool's.
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
		"max_inflight": globalCapWithin(activeConns),
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
	if res.CORSOff {
		gateHandler["cors"] = map[string]any{"disabled": true}
	}
	if res.Shadow {
		gateHandler["shadow"] = true
	}
	if res.FleetRedis != "" {
		gateHandler["fleet"] = gatewayFleet(res, listen) // gateway_fleet.go
	}
	// The console (/mxgate/ui) must open in a browser: see
	// caddymodule.ConsoleAdminOrigins.
	origins, err := caddymodule.ConsoleAdminOrigins(admin)
	if err != nil {
		return nil, fmt.Errorf("--admin %q: %w", admin, err)
	}
	// Cap client connections (default from RLIMIT_NOFILE), fairly per
	// client address.
	conns := map[string]any{"wrapper": "mxgate_conns"}
	if res.ClientShare != 0 {
		if res.ClientShare < 0 || res.ClientShare > 1 {
			return nil, fmt.Errorf("--client-share must be in (0, 1], got %v", res.ClientShare)
		}
		conns["client_share"] = res.ClientShare
	}
	cfg := map[string]any{
		"admin":   map[string]any{"listen": admin, "origins": origins},
		"logging": map[string]any{"logs": map[string]any{"default": map[string]any{"encoder": tokenRedactingEncoder()}}},
		"apps": map[string]any{
			"http": map[string]any{
				"servers": map[string]any{
					"mxgate": map[string]any{
						"listen":          []string{listen},
						"automatic_https": map[string]any{"disable": true},
						// A client has this long from connecting (or, on a
						// keep-alive, from its next request's first byte) to
						// finish the request's headers. Matrix requests have
						// small headers; 10s is ample on a slow mobile link
						// and frees a stalled connection's slot six times
						// sooner than Caddy's default of a minute.
						"read_header_timeout": gatewayReadHeaderTimeout.String(),
						// Cap client connections (default from RLIMIT_NOFILE)
						// before TLS, so handshakes count too.
						"listener_wrappers": []any{
							conns,
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

// tokenRedactingEncoder is a Caddy log encoder that drops credentials from
// every log line carrying a request (error logs for failed proxying, access
// logs if enabled): the access_token query parameter (Caddy's query filter
// decodes names, so %61ccess_token goes too; a pair it cannot parse is
// dropped whole) and the Authorization and Cookie headers (which Caddy
// already writes as REDACTED unless log_credentials is set). Without a
// wrapped format it writes JSON, or console text on a terminal, as Caddy's
// default does.
func tokenRedactingEncoder() map[string]any {
	drop := map[string]any{"filter": "delete"}
	return map[string]any{
		"format": "filter",
		"fields": map[string]any{
			"request>uri": map[string]any{"filter": "query", "actions": []any{
				map[string]any{"type": "delete", "parameter": "access_token"},
			}},
			"request>headers>Authorization": drop,
			"request>headers>Cookie":        drop,
		},
	}
}

// globalCapWithin is the global max_inflight that keeps every request the
// gate admits to the active pool within its conns connections: the classes
// on their own budget (discovery, admin; sync has its own pool) are admitted
// outside the global cap, so their caps come off first.
func globalCapWithin(conns int) int {
	outside := 0
	for c, l := range matrix.DefaultLimits {
		if l.OwnBudget && matrix.Class(c) != matrix.Sync {
			outside += l.MaxInflight
		}
	}
	return max(min(matrix.DefaultMaxInflight, conns-outside), 1)
}

// gatewayReadHeaderTimeout bounds how long a client may take to send a
// request's headers (see gatewayConfigWith).
const gatewayReadHeaderTimeout = 10 * time.Second

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
