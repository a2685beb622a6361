package fleet

import "time"

// Status is this gateway's view of the fleet, ready for JSON. It never holds
// Redis credentials.
type Status struct {
	Name  string `json:"name"`
	Redis string `json:"redis"` // the URL without credentials
	// RedisUp is false while Redis does not answer: limits are then local
	// and the shares are the last ones seen (FailStatic).
	RedisUp    bool       `json:"redis_up"`
	FailStatic bool       `json:"fail_static"`
	LastSeen   time.Time  `json:"last_seen,omitzero"` // last successful heartbeat
	Instances  []Instance `json:"instances"`
	// PendingToggles are toggle changes made here that Redis has not taken
	// yet; they are pushed when it is back.
	PendingToggles int `json:"pending_toggles,omitempty"`
}

// Instance is one live gateway and its share of the caps.
type Instance struct {
	Name string `json:"name"`
	Self bool   `json:"self,omitempty"`
	// GlobalShare and ClassShares are the gateway's parts of the global and
	// per-class in-flight caps (0 = no cap); filled in by the gate, which
	// knows the caps.
	GlobalShare int            `json:"global_share"`
	ClassShares map[string]int `json:"class_shares,omitempty"`
}

// Status returns the fleet as this gateway last saw it, instances sorted by
// name (their ranks for ShareOf); the caller, which knows the caps, fills in
// the shares.
func (f *Fleet) Status() Status {
	names, _, _, seen := f.members.view()
	up := f.c.up.Load()
	st := Status{Name: f.cfg.Name, Redis: RedactURL(f.cfg.Redis), RedisUp: up, FailStatic: !up,
		LastSeen: seen, Instances: make([]Instance, len(names))}
	for i, n := range names {
		st.Instances[i] = Instance{Name: n, Self: n == f.cfg.Name}
	}
	if f.toggles != nil {
		st.PendingToggles = f.toggles.Pending()
	}
	return st
}
