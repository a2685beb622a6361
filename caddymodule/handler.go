// Package caddymodule is mxgate's Caddy glue: the HTTP handler module
// http.handlers.mxgate, its Caddyfile directive `mxgate`, its metrics on
// Caddy's registry, and the gate state that survives config reloads. The
// pipeline itself lives in package gate, which imports nothing from Caddy.
package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mxgate/mxgate/gate"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the mxgate admission-control handler. Place it before
// reverse_proxy: it classifies each Matrix request, applies operator
// toggles, per-user rates and in-flight caps with deadline queues, and
// answers what it refuses with the Matrix 429 M_LIMIT_EXCEEDED.
type Handler struct {
	// Zone names the gate state this handler uses. Handlers with the same
	// zone share caps, queues, buckets and toggles, and must be configured
	// alike (the last one provisioned wins). Default "default".
	Zone string `json:"zone,omitempty"`
	// Requests at the upstream at once over all classes except long-poll
	// sync, which has its own budget. Default 256; 0 removes the global cap.
	MaxInflight *int `json:"max_inflight,omitempty"`
	// Wait for a slot before a 429, for every class that sets none itself.
	// Unset: each class's built-in default.
	QueueTimeout *caddy.Duration `json:"queue_timeout,omitempty"`
	// Jitter range of Retry-After / retry_after_ms. Default 2s to 20s.
	RetryAfter *RetryAfter `json:"retry_after,omitempty"`
	// How long a class queue may stand without draining before it serves
	// newest first (adaptive LIFO). Default 1s; 0 disables it.
	LIFOAfter *caddy.Duration `json:"lifo_after,omitempty"`
	// Per-class overrides of the built-in limits, keyed by class name: an
	// object of matrix.Limits settings by name (priority, max_inflight,
	// queue, queue_timeout, rate, burst, coalesce, adaptive, shadow,
	// share_state), configured over the class's defaults and the
	// handler-wide queue_timeout, adaptive and shadow. Durations are
	// nanoseconds or strings such as "10s".
	Classes map[string]json.RawMessage `json:"classes,omitempty"`
	// Thundering-herd detection.
	Herd *HerdConfig `json:"herd,omitempty"`
	// Classes shed from start (renewed on every config load).
	Shed []string `json:"shed,omitempty"`
	// Return rejections as Caddy errors so handle_errors can shape them,
	// instead of writing the Matrix 429 body. The Retry-After and
	// Content-Type headers are set either way; placeholders
	// {http.vars.mxgate_retry_after_ms} and {http.vars.mxgate_reason}
	// and {http.error.status_code} carry the rest.
	HandleErrors bool `json:"handle_errors,omitempty"`
	// Where operator toggles are saved so that a restart keeps them until
	// they expire. Default <Caddy data dir>/mxgate/toggles-<zone>.json;
	// "off" keeps them in memory only. Read when the zone's gate starts.
	StateFile string `json:"state_file,omitempty"`
	// The longest toggle the admin API accepts. Default 24h.
	MaxToggleDuration caddy.Duration `json:"max_toggle_duration,omitempty"`
	// A TCP address that /_mxgate/health dials to check that the upstream
	// is reachable (mxgate gateway sets its upstream). Unset: health is
	// judged from the upstream's answers to real traffic.
	HealthDial string `json:"health_dial,omitempty"`
	// Adaptive in-flight limits for every class except long-poll sync
	// (resilience.go); a class's own `adaptive` wins.
	Adaptive *bool `json:"adaptive,omitempty"`
	// Ride through upstream restarts, with slow start after (resilience.go).
	// ride_through probes health_dial when set.
	RideThrough *RideThroughConfig `json:"ride_through,omitempty"`
	// Shed sheddable classes while the upstream's 5xx ratio is high.
	ErrorShed *ErrorShedConfig `json:"error_shed,omitempty"`
	// CORS headers on the answers mxgate writes itself (cors.go).
	CORS *CORSConfig `json:"cors,omitempty"`
	// Shadow mode for every class: automatic limits only observe
	// (gate/shadow.go); a class's own `shadow` wins.
	Shadow *bool `json:"shadow,omitempty"`
	// Share toggles, rates, herds and caps with other gateways (fleet.go).
	Fleet *FleetConfig `json:"fleet,omitempty"`

	gate     *gate.Gate
	configs  *zoneConfigs // the zone's live configs (pool.go)
	released bool         // Cleanup ran (Caddy calls it from one goroutine)
	zone     string
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mxgate",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Provision builds the gate, or reconfigures the zone's existing gate so
// that in-flight counts, queues, buckets and toggles survive a reload.
func (h *Handler) Provision(ctx caddy.Context) error {
	cfg, err := h.gateConfig()
	if err != nil {
		return err
	}
	if err := sharedMetrics.Register(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("registering metrics: %w", err)
	}
	h.zone = h.Zone
	if h.zone == "" {
		h.zone = "default"
	}
	opts := gate.Options{Logger: ctx.Slogger(), Metrics: sharedMetrics, ClientIP: caddyClientIP,
		Toggles: h.toggleStore(ctx.Slogger())}
	if opts.Fleet, err = h.fleetMember(ctx.Slogger()); err != nil { // fleet.go
		return err
	}
	g, err := loadGate(h, cfg, opts)
	if err != nil {
		return err
	}
	h.gate = g
	return nil
}

// Validate checks the configuration without side effects.
func (h *Handler) Validate() error {
	_, err := h.gateConfig()
	return err
}

// Cleanup releases this handler's reference to its zone's gate; the gate
// stops when the last handler using it is cleaned up. It is idempotent.
func (h *Handler) Cleanup() error {
	// h.gate stays set: requests of the old config may still be finishing
	// in ServeHTTP, and a released gate keeps serving them.
	if h.gate == nil || h.released {
		return nil
	}
	h.released = true
	return releaseGate(h, h.gate)
}

// ServeHTTP runs the request through the gate and on to next.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// gateNext/callerError (upstreamerror.go) let the gate read Caddy's
	// upstream errors (ride-through needs their status).
	err := h.gate.ServeNext(w, r, gateNext(next))
	if err == nil {
		return nil // before errors.As, whose target would escape on every request
	}
	var rej *gate.Rejection
	if !errors.As(err, &rej) {
		if err != nil {
			// Caddy answers a failed upstream itself (502/504, or
			// handle_errors): a browser must be able to read that too. An
			// answer already under way has sent its headers; these are
			// then ignored.
			h.gate.SetCORSHeaders(w.Header())
		}
		return callerError(err)
	}
	if rej.Outcome == gate.OutcomeCanceled {
		return caddyhttp.Error(rej.StatusCode(), rej) // logged; the client is gone
	}
	if !h.HandleErrors {
		rej.Write(w)
		return nil
	}
	rej.SetHeaders(w.Header())
	caddyhttp.SetVar(r.Context(), "mxgate_retry_after_ms", strconv.FormatInt(rej.RetryAfter.Milliseconds(), 10))
	caddyhttp.SetVar(r.Context(), "mxgate_reason", rej.Reason)
	return caddyhttp.Error(rej.StatusCode(), rej)
}

// caddyClientIP is Caddy's trusted-proxy aware client address.
func caddyClientIP(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	return r.RemoteAddr
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
