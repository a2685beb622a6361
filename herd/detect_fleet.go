package herd

import (
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// ObserveFleet is Observe for a gateway in a fleet: fleetUsers is how many
// distinct users requested (class, room) on any gateway of the fleet in the
// window ending at now (0 when unknown, e.g. the shared store is down).
// The herd is judged on the larger of that and this gateway's own count,
// so users spread over several gateways make one herd. The fleet count is
// remembered for one window: Active and Lookup keep a herd the fleet sees
// even when this gateway's own share of it is small.
func (d *Detector) ObserveFleet(class matrix.Class, room string, user matrix.TokenID, fleetUsers int, now time.Time) (active, started bool) {
	return d.observe(class, room, user, fleetUsers, now)
}

// withFleet records fleetUsers (if positive) taken at t and returns the
// larger of local and the fleet count still within the window.
func (w *userWindow) withFleet(fleetUsers int, t int64, local int, window time.Duration) int {
	if fleetUsers > 0 {
		w.fleet, w.fleetAt = fleetUsers, t
	}
	if w.fleet > local && t-w.fleetAt < int64(window) {
		return w.fleet
	}
	return local
}
