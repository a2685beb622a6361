package gate

import (
	"context"
	"errors"
	"net/http"
	"strings"
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
func newCoalescer() *herd.Coalescer {
	return herd.NewCoalescer(herd.CoalescerConfig{ShareNoStoreInFlight: true})
}

func newDetector(h HerdConfig) *herd.Detector {
	return herd.NewDetector(herd.DetectorConfig{Window: h.Window, MinUsers: h.MinUsers})
}

// observeHerd records the request in the herd detector and returns the lane
// it queues in: herd requests wait behind the rest of their class.
func (g *Gate) observeHerd(cfg *Config, route matrix.Route, user matrix.TokenID, now time.Time) limiter.Lane {
	if cfg.Herd.MinUsers <= 0 || route.Room == "" {
		return limiter.LaneNormal
	}
	d := g.detector.Load()
	active, started := d.Observe(route.Class, route.Room, user, now)
	if started {
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

// coalesce serves r through its coalescing group: identical requests share
// one upstream fetch (which holds one admission slot), and a repeat within
// the class's coalesce TTL is answered from the completion cache. It
// reports ok=false when r cannot be coalesced.
func (g *Gate) coalesce(w http.ResponseWriter, r *http.Request, cfg *Config, class matrix.Class, lane limiter.Lane, now time.Time, next Next) (bool, error) {
	limits := &cfg.Classes[class]
	// Only the legacy unauthenticated media endpoints serve the same bytes
	// to anyone; authenticated media must still check each token.
	shared := limits.Shared && strings.HasPrefix(r.URL.Path, "/_matrix/media/")
	key, ok := herd.KeyOf(r, shared)
	if !ok {
		return false, nil
	}
	client := r.Context()
	outcome, err := g.coalescer.Do(w, r, key, limits.Coalesce, limits.QueueTimeout+coalesceWaitExtra,
		func(w http.ResponseWriter, detached *http.Request) error {
			return g.admitAndServe(client, w, detached, cfg, class, lane, now, next)
		})
	switch outcome {
	case herd.Coalesced, herd.Cached:
		var rej *Rejection
		if errors.As(err, &rej) && rej.Outcome == OutcomeCanceled {
			// The leader's client left while queued, so the leader never
			// went upstream; this waiter goes through admission itself.
			return true, g.admitAndServe(client, w, r, cfg, class, lane, now, next)
		}
		if rej != nil {
			// The leader was refused: refuse this waiter too, with its own
			// jittered Retry-After so the group does not return together.
			return true, g.reject(cfg, class, rej.Outcome, rej.Reason, lane == limiter.LaneHerd, 0)
		}
		g.count(class, OutcomeCoalesced)
	case herd.Abandoned:
		if errors.Is(err, context.Canceled) || r.Context().Err() != nil {
			return true, g.reject(cfg, class, OutcomeCanceled, "client went away while waiting", false, 0)
		}
		return true, g.reject(cfg, class, OutcomeTimeout, "timed out waiting for an identical "+class.String()+" request", lane == limiter.LaneHerd, 0)
	}
	return true, err
}

// herdStatuses lists the active herds for Status.
func (g *Gate) herdStatuses(now time.Time) []HerdStatus {
	active := g.detector.Load().Active(now)
	out := make([]HerdStatus, 0, len(active))
	for _, h := range active {
		out = append(out, HerdStatus{Class: h.Class.String(), Room: h.Room, Users: h.Users, Since: h.Since})
	}
	return out
}

// updateHerdGauges sets mxgate_herds_active per class.
func (g *Gate) updateHerdGauges(now time.Time) {
	var perClass [matrix.NumClasses]int
	for _, h := range g.detector.Load().Active(now) {
		perClass[h.Class]++
	}
	for c, n := range perClass {
		g.metrics.HerdsActive.WithLabelValues(matrix.Class(c).String()).Set(float64(n))
	}
}
