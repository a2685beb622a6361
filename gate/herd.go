package gate

import (
	"hash/maphash"
	"time"

	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// coalesceWaitExtra is how long a waiter may wait for its group's leader
// beyond the class queue timeout: the leader may queue that long and then
// needs time for the upstream to answer.
const coalesceWaitExtra = time.Minute

// newCoalescer builds the gate's coalescer. Synapse marks every JSON answer
// Cache-Control: no-store, so a per-token in-flight group may share such an
// answer among its own waiters — the same client asking the same thing
// again while the first answer is computed, as retrying mobile clients do.
// No-store answers are still never cached after the group completes and
// never shared across tokens.
//
// A leader's fetch is detached from its client only where that may save
// the homeserver work (coalescelead.go); once every one of its clients has
// gone it is cancelled after coalesceOrphanGrace, so that a stuck upstream
// does not hold the class's slot for nobody.
func newCoalescer() *herd.Coalescer {
	return herd.NewCoalescer(herd.CoalescerConfig{ShareNoStoreInFlight: true, OrphanGrace: coalesceOrphanGrace})
}

// coalesceOrphanGrace is how long an orphaned coalesced fetch may still be
// joined by a new identical request before it is cancelled.
const coalesceOrphanGrace = time.Second

func newDetector(h HerdConfig) *herd.Detector {
	return herd.NewDetector(herd.DetectorConfig{Window: h.Window, MinUsers: h.MinUsers})
}

// observeHerd records the request in the herd detector and returns the lane
// it queues in: herd requests wait behind the rest of their class. Only a
// token the homeserver at host has accepted counts as a user (made-up
// tokens cannot declare a herd); every request still learns whether its
// room has one.
func (g *Gate) observeHerd(cfg *Config, req *matrix.Request, host string, now time.Time) limiter.Lane {
	route := req.Route
	if cfg.Herd.MinUsers <= 0 || route.Room == "" {
		return limiter.LaneNormal
	}
	var user matrix.TokenID
	if g.accepted.has(req.Credential.ID, host) {
		user = req.Credential.ID
	}
	d := g.detector.Load()
	active, started := g.observeDetector(d, cfg, route, user, now) // with the fleet's count (fleet.go)
	if started {
		g.herdOn.Store(true)
		// No round trip is sampled while a herd is on (sampleable), so a
		// baseline probe in progress would hold its class at the probe's
		// share of its cap for the whole herd.
		g.adm.EndProbes(now)
		if !cfg.Classes[route.Class].Shadow {
			// The herd's requests that came before it was declared wait
			// ahead of the rest of the class until moved behind it.
			g.adm.Relane(int(route.Class), roomGroup(route.Room))
		}
		g.metrics.HerdsStarted.WithLabelValues(route.Class.String()).Inc()
		h, _ := d.Lookup(route.Class, route.Room, now)
		g.log.Warn("thundering herd detected",
			"class", route.Class.String(), "room", route.Room, "users", h.Users,
			"requests_per_second", h.Rate, "window", cfg.Herd.Window.String())
	}
	if active {
		return limiter.LaneHerd
	}
	return limiter.LaneNormal
}

// roomGroupSeed keys roomGroup for the life of the process.
var roomGroupSeed = maphash.MakeSeed()

// roomGroup is the admission group of a request for room (as in its path;
// "": 0, none), by which a herd declared in the room moves the room's
// queued requests to the herd lane (limiter.Admission.Relane).
func roomGroup(room string) uint64 {
	if room == "" {
		return 0
	}
	return maphash.String(roomGroupSeed, room) | 1
}

// sampleable reports whether round trips may feed the adaptive limits now:
// not while a herd is on. The herd's initial syncs and room state then hold
// the homeserver's CPU and database, so every class's latency measures the
// herd, which its own caps and lane bound, not that class's capacity; in
// the herd bench a gradient learning from it lowered history's cap until
// background reads timed out in the queue (bench/results/README.md).
func (g *Gate) sampleable() bool { return !g.herdOn.Load() }

// herdStatuses lists the active herds for Status.
func (g *Gate) herdStatuses(now time.Time) []HerdStatus {
	active := g.detector.Load().Active(now)
	out := make([]HerdStatus, 0, len(active))
	for _, h := range active {
		out = append(out, HerdStatus{Class: h.Class.String(), Room: h.Room, Users: h.Users, Since: h.Since})
	}
	return out
}

// updateHerdGauges sets mxgate_herds_active per class, and whether any herd
// is on.
func (g *Gate) updateHerdGauges(now time.Time) {
	var perClass [matrix.NumClasses]int
	active := g.detector.Load().Active(now)
	for _, h := range active {
		perClass[h.Class]++
	}
	g.herdOn.Store(len(active) > 0)
	for c, n := range perClass {
		g.metrics.HerdsActive.WithLabelValues(matrix.Class(c).String()).Set(float64(n))
	}
}
