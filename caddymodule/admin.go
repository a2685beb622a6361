package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/limiter"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is mxgate's part of Caddy's admin endpoint. Caddy mounts every
// admin.api.* module wherever its admin endpoint listens (localhost:2019 by
// default), so these routes are never on the public listeners.
//
//	GET    /mxgate/status              every zone's classes, toggles, herds, upstream
//	POST   /mxgate/shed                set a toggle (JSON body, see ShedRequest)
//	DELETE /mxgate/shed/{class}        end a class toggle
//	DELETE /mxgate/shed/*?priority=P   end a brownout
//	DELETE /mxgate/shed/all            end every toggle
//	GET    /_mxgate/health             upstream reachability and 5xx ratio
//	GET    /mxgate/ui                  the operator console (console.go)
//
// Every route takes an optional ?zone= (the shed body a "zone" field);
// without one it applies to every zone. Errors are JSON {"error": "..."}.
// Routes read the zones' gates from the pool, never from handlers, so they
// see whatever config is loaded now.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mxgate",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// Routes implements caddy.AdminRouter.
func (a *AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/mxgate/status", Handler: caddy.AdminHandlerFunc(a.handleStatus)},
		{Pattern: "/mxgate/shed", Handler: caddy.AdminHandlerFunc(a.handleShed)},
		{Pattern: "/mxgate/shed/", Handler: caddy.AdminHandlerFunc(a.handleRestore)},
		{Pattern: "/_mxgate/health", Handler: caddy.AdminHandlerFunc(a.handleHealth)},
		{Pattern: consolePrefix, Handler: caddy.AdminHandlerFunc(a.handleConsole)},
		{Pattern: consolePrefix + "/", Handler: caddy.AdminHandlerFunc(a.handleConsole)},
	}
}

// StatusResponse is GET /mxgate/status: one entry per zone, sorted by
// name — a list even when there is only the "default" zone.
type StatusResponse struct {
	Zones []ZoneStatus `json:"zones"`
	// Connections is the client connection cap (mxgate_conns), if any
	// listener uses it.
	Connections *ConnectionStatus `json:"connections,omitempty"`
}

// ZoneStatus is one zone's gate status.
type ZoneStatus struct {
	Zone string `json:"zone"`
	gate.Status
}

// ConnectionStatus is the process's client connection cap.
type ConnectionStatus struct {
	limiter.ConnStats
	Budget limiter.FDBudget `json:"fd_budget"`
}

func (a *AdminAPI) handleStatus(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return apiError(http.StatusMethodNotAllowed, "use GET")
	}
	zones, err := selectZones(r.URL.Query().Get("zone"))
	if err != nil {
		return err
	}
	now := time.Now()
	resp := StatusResponse{Zones: make([]ZoneStatus, 0, len(zones))}
	for _, z := range zones {
		resp.Zones = append(resp.Zones, ZoneStatus{Zone: z.name, Status: z.gate.Status(now)})
	}
	resp.Connections = connectionStatus()
	return writeJSON(w, http.StatusOK, resp)
}

// ShedRequest is the body of POST /mxgate/shed (the CLI sends it too).
type ShedRequest struct {
	// Class is a class name, or "*" with Priority for a brownout.
	Class    string `json:"class"`
	Priority string `json:"priority,omitempty"`
	// Mode is shed (default), queue, or normal (ends the toggle).
	Mode string `json:"mode,omitempty"`
	// For is how long the toggle lasts; default 15m, at most the zone's
	// max_toggle_duration.
	For    string `json:"for,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Zone limits the toggle to one zone; default every zone.
	Zone string `json:"zone,omitempty"`
}

// defaultReason is a toggle's reason when the operator gives none; it is
// what shed clients read in the 429's error.
const defaultReason = "emergency operator toggle"

// maxAdminBody bounds request bodies of the admin routes.
const maxAdminBody = 64 << 10

// ShedResponse answers POST /mxgate/shed and DELETE /mxgate/shed/….
type ShedResponse struct {
	// Zones the change was applied to.
	Zones []string `json:"zones"`
	// Toggle is the toggle now in force (POST with mode shed or queue).
	Toggle *gate.ToggleStatus `json:"toggle,omitempty"`
	// Removed lists "zone/key" of toggles that were in force and ended.
	Removed []string `json:"removed,omitempty"`
	// Warning says the change is in force but was not saved to the state
	// file, so a restart would lose it.
	Warning string `json:"warning,omitempty"`
}

func (a *AdminAPI) handleShed(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return apiError(http.StatusMethodNotAllowed, "use POST")
	}
	var req ShedRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return apiError(http.StatusBadRequest, "bad JSON body: "+err.Error())
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, "bad JSON body: more than one object")
	}
	mode := limiter.ModeShed
	if req.Mode != "" {
		m, err := limiter.ParseMode(req.Mode)
		if err != nil {
			return apiError(http.StatusBadRequest, err.Error())
		}
		mode = m
	}
	if req.Class == "" {
		return apiError(http.StatusBadRequest, `"class" is required: a class name, or "*" with "priority" for a brownout`)
	}
	zones, err := selectZones(req.Zone)
	if err != nil {
		return err
	}
	if mode == limiter.ModeNormal {
		return restore(w, zones, gate.ToggleKey(req.Class, req.Priority))
	}
	d := gate.DefaultToggleDuration
	if req.For != "" {
		if d, err = caddy.ParseDuration(req.For); err != nil || d <= 0 {
			return apiError(http.StatusBadRequest, fmt.Sprintf(`"for" must be a positive duration such as 15m, got %q`, req.For))
		}
	}
	for _, z := range zones {
		// Checked in every zone first, so that a refusal applies nowhere
		// (SetToggle checks it too).
		if maxD := z.gate.Config().MaxToggleDuration; d > maxD {
			return apiError(http.StatusBadRequest, fmt.Sprintf(`"for" %v is longer than max_toggle_duration %v of zone %s`, d, maxD, z.name))
		}
	}
	reason := strings.TrimSpace(req.Reason)
	if reason == "" {
		reason = defaultReason
	}
	now := time.Now()
	t := limiter.Toggle{Target: req.Class, Priority: req.Priority, Mode: mode, Reason: reason, Since: now, Until: now.Add(d)}
	resp := ShedResponse{}
	for _, z := range zones {
		if err := z.gate.SetToggle(t); err != nil {
			var npe *limiter.NotPersistedError
			switch {
			case errors.As(err, &npe):
				resp.Warning = npe.Error()
			case errors.Is(err, gate.ErrBadToggle), errors.Is(err, limiter.ErrTooManyToggles):
				return apiError(http.StatusBadRequest, err.Error())
			default:
				return apiError(http.StatusInternalServerError, fmt.Sprintf("zone %s: %v", z.name, err))
			}
		}
		resp.Zones = append(resp.Zones, z.name)
	}
	ts := gate.ToggleStatus{Class: t.Target, Priority: t.Priority, Mode: t.Mode, Reason: t.Reason,
		Since: t.Since, Until: t.Until, Remaining: d.String()}
	resp.Toggle = &ts
	return writeJSON(w, http.StatusOK, resp)
}

// handleRestore serves DELETE /mxgate/shed/{class|*|all}.
func (a *AdminAPI) handleRestore(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodDelete {
		return apiError(http.StatusMethodNotAllowed, "use DELETE")
	}
	target := strings.TrimPrefix(r.URL.Path, "/mxgate/shed/")
	q := r.URL.Query()
	zones, err := selectZones(q.Get("zone"))
	if err != nil {
		return err
	}
	switch target {
	case "":
		return apiError(http.StatusBadRequest, "name a class: DELETE /mxgate/shed/{class}, /mxgate/shed/*?priority=…, or /mxgate/shed/all")
	case "all":
		return restore(w, zones, "")
	default:
		return restore(w, zones, gate.ToggleKey(target, q.Get("priority")))
	}
}

// restore ends the toggle with key in zones; key "" ends every toggle.
// Ending a toggle that is not in force is not an error.
func restore(w http.ResponseWriter, zones []zoneGate, key string) error {
	resp := ShedResponse{Removed: []string{}}
	now := time.Now()
	for _, z := range zones {
		keys := []string{key}
		if key == "" {
			keys = keys[:0]
			for _, t := range z.gate.Toggles().Active(now) {
				keys = append(keys, t.Key())
			}
		}
		for _, k := range keys {
			removed, err := z.gate.ClearToggle(k)
			var npe *limiter.NotPersistedError
			switch {
			case errors.As(err, &npe):
				resp.Warning = npe.Error()
			case errors.Is(err, gate.ErrBadToggle):
				return apiError(http.StatusBadRequest, err.Error())
			case err != nil:
				return apiError(http.StatusInternalServerError, fmt.Sprintf("zone %s: %v", z.name, err))
			}
			if removed {
				resp.Removed = append(resp.Removed, z.name+"/"+k)
			}
		}
		resp.Zones = append(resp.Zones, z.name)
	}
	return writeJSON(w, http.StatusOK, resp)
}

// HealthResponse is GET /_mxgate/health. Status is the worst zone's: "down"
// (the upstream does not answer), "degraded" (it answers, but at least
// gate.DegradedRatio of the last minute's requests failed), "unknown" (no
// traffic and nothing to dial), or "ok". The HTTP status is 503 when any
// zone is down, else 200, so a plain HTTP check can page on it.
type HealthResponse struct {
	Status string       `json:"status"`
	Zones  []ZoneHealth `json:"zones"`
}

// ZoneHealth is one zone's view of its upstream: its gate's verdict
// (gate.Health), which probes health_dial when set.
type ZoneHealth struct {
	Zone string `json:"zone"`
	gate.Health
}

var healthRank = map[string]int{"ok": 0, "unknown": 1, "degraded": 2, "down": 3}

func (a *AdminAPI) handleHealth(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return apiError(http.StatusMethodNotAllowed, "use GET")
	}
	zones, err := selectZones(r.URL.Query().Get("zone"))
	if err != nil {
		return err
	}
	resp := HealthResponse{Status: "ok", Zones: make([]ZoneHealth, 0, len(zones))}
	for _, z := range zones {
		zh := zoneHealth(r, z)
		if healthRank[zh.Status] > healthRank[resp.Status] {
			resp.Status = zh.Status
		}
		resp.Zones = append(resp.Zones, zh)
	}
	code := http.StatusOK
	if resp.Status == "down" {
		code = http.StatusServiceUnavailable
	}
	return writeJSON(w, code, resp)
}

func zoneHealth(r *http.Request, z zoneGate) ZoneHealth {
	return ZoneHealth{Zone: z.name, Health: z.gate.Health(r.Context(), time.Now())}
}

type zoneGate struct {
	name string
	gate *gate.Gate
}

// selectZones returns the named zone, or every zone (sorted) for "". No
// zone at all, or an unknown name, is a 404.
func selectZones(name string) ([]zoneGate, error) {
	var zones []zoneGate
	zoneGates(func(zone string, g *gate.Gate) {
		if name == "" || zone == name {
			zones = append(zones, zoneGate{zone, g})
		}
	})
	if len(zones) == 0 {
		if name != "" {
			return nil, apiError(http.StatusNotFound, fmt.Sprintf("no mxgate zone %q is running", name))
		}
		return nil, apiError(http.StatusNotFound, "no mxgate handler is running in the loaded config")
	}
	sort.Slice(zones, func(i, j int) bool { return zones[i].name < zones[j].name })
	return zones, nil
}

// Interface guard
var _ caddy.AdminRouter = (*AdminAPI)(nil)
