package gate

import (
	"time"

	"github.com/mxgate/mxgate/fleet"
	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// Status is a gate's state at a moment, ready for JSON. It holds class
// names, counts, toggles and rooms of herds, never a token or a user.
type Status struct {
	Global   GlobalStatus   `json:"global"`
	Classes  []ClassStatus  `json:"classes"`
	Toggles  []ToggleStatus `json:"toggles"`
	Herds    []HerdStatus   `json:"herds"`
	Upstream UpstreamHealth `json:"upstream"`
	// RideThrough and ErrorShed: upstream liveness (ridethrough.go) and
	// 5xx shedding (errorshed.go).
	RideThrough RideThroughStatus `json:"ride_through"`
	ErrorShed   ErrorShedStatus   `json:"error_shed"`
	// Shadow: every class is in shadow mode (shadow.go).
	Shadow bool `json:"shadow,omitempty"`
	// Fleet is the fleet this gateway belongs to, if any (fleet.go).
	Fleet *fleet.Status `json:"fleet,omitempty"`
}

// GlobalStatus is the cap over all classes without their own budget.
type GlobalStatus struct {
	MaxInflight int `json:"max_inflight"` // 0 = no global cap
	Inflight    int `json:"inflight"`
	Queued      int `json:"queued"` // over all classes
}

// ClassStatus is one endpoint class.
type ClassStatus struct {
	Class    string        `json:"class"`
	Priority string        `json:"priority"`
	Limits   matrix.Limits `json:"limits"` // as configured
	Inflight int           `json:"inflight"`
	Queued   int           `json:"queued"`
	// Cap is the in-flight cap in force: the configured one or lower (an
	// adaptive limit or slow start); 0 = none.
	Cap int `json:"cap"`
	// Mode is the operator mode in force (normal, queue or shed) and
	// Reason the reason of the toggle that set it.
	Mode     limiter.Mode `json:"mode"`
	Reason   string       `json:"reason,omitempty"`
	Counters Counters     `json:"counters"`
	// Adaptive: Cap follows the upstream's latency; AdaptiveLimit is the
	// controller's limit (Cap may be lower during slow start) and
	// BaselineRTT its no-load latency estimate (limiter.Gradient).
	Adaptive      bool   `json:"adaptive,omitempty"`
	AdaptiveLimit int    `json:"adaptive_limit,omitempty"`
	BaselineRTT   string `json:"baseline_rtt,omitempty"`
	// Shadow: the class's automatic limits only observe; ShadowQueued is
	// its would-be queue (shadow.go).
	Shadow       bool `json:"shadow,omitempty"`
	ShadowQueued int  `json:"shadow_queued,omitempty"`
}

// ToggleStatus is one active operator toggle.
type ToggleStatus struct {
	Class     string       `json:"class"` // a class name, or "*" for a brownout
	Priority  string       `json:"priority,omitempty"`
	Mode      limiter.Mode `json:"mode"`
	Reason    string       `json:"reason"`
	Since     time.Time    `json:"since"`
	Until     time.Time    `json:"until"`
	Remaining string       `json:"remaining"` // Until − now, rounded to seconds
}

// HerdStatus is one active thundering herd.
type HerdStatus struct {
	Class string    `json:"class"`
	Room  string    `json:"room"`
	Users int       `json:"users"` // distinct users in the detection window
	Since time.Time `json:"since"`
}

// Status returns the gate's state at now. It also applies toggles that
// expired since the last request, so the modes it reports are in force.
func (g *Gate) Status(now time.Time) Status {
	cfg := g.cfg.Load()
	modes := g.refreshModes(now)
	global, snaps := g.adm.Snapshot()
	st := Status{
		Global:   GlobalStatus{MaxInflight: cfg.MaxInflight, Inflight: global},
		Classes:  make([]ClassStatus, 0, matrix.NumClasses),
		Toggles:  toggleStatuses(g.toggles.Active(now), now),
		Upstream: g.UpstreamHealth(now),
		Herds:    g.herdStatuses(now),

		RideThrough: g.rideThroughStatus(now),
		ErrorShed:   g.errorShedStatus(now),
		Fleet:       g.fleetStatus(),
	}
	for _, c := range matrix.Classes() {
		l := &cfg.Classes[c]
		s := snaps[c]
		st.Global.Queued += s.Queued
		st.Classes = append(st.Classes, ClassStatus{
			Class:    c.String(),
			Priority: l.Priority.String(),
			Limits:   *l,
			Inflight: s.Inflight,
			Queued:   s.Queued,
			Cap:      s.Cap,
			Mode:     modes.modes[c].mode,
			Reason:   modes.modes[c].reason,
			Counters: g.counters.snapshot(c),

			Adaptive:      s.Adaptive,
			AdaptiveLimit: s.AdaptiveLimit,
		})
		if s.BaselineRTT > 0 {
			st.Classes[c].BaselineRTT = s.BaselineRTT.Round(10 * time.Microsecond).String()
		}
	}
	g.fillShadowStatus(&st, cfg, now)
	return st
}

func toggleStatuses(active []limiter.Toggle, now time.Time) []ToggleStatus {
	out := make([]ToggleStatus, 0, len(active))
	for _, t := range active {
		out = append(out, ToggleStatus{
			Class: t.Target, Priority: t.Priority, Mode: t.Mode, Reason: t.Reason,
			Since: t.Since, Until: t.Until, Remaining: t.Until.Sub(now).Round(time.Second).String(),
		})
	}
	return out
}
