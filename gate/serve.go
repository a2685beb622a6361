package gate

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// Next is the rest of the chain: the reverse proxy to the homeserver.
type Next func(http.ResponseWriter, *http.Request) error

// Middleware wraps next as plain net/http middleware. Rejections are
// answered with the Matrix 429; errors from next are answered with 502.
func (g *Gate) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := g.ServeNext(w, r, func(w http.ResponseWriter, r *http.Request) error {
			next.ServeHTTP(w, r)
			return nil
		})
		var rej *Rejection
		if errors.As(err, &rej) {
			rej.Write(w)
		} else if err != nil {
			http.Error(w, "upstream failed", http.StatusBadGateway)
		}
	})
}

// ServeNext runs one request through the pipeline. It either passes the
// request to next and returns next's error, or returns a *Rejection without
// writing anything, so that the caller decides how the 429 is rendered.
//
// The stages, in order:
//  1. classify the request into its endpoint class (and room);
//  2. operator toggles: a shed class is answered at once;
//  3. per-user token bucket, keyed by a hash of the access token (or IP),
//     and herd detection per (class, room);
//  4. during a herd, opt-in sharing of a room's state among verified
//     members (sharestate.go);
//  5. coalescing of identical GET/HEAD requests (herd.go);
//  6. admission: global and class caps, else the class queue with its
//     deadline (herd requests queue behind the others);
//  7. next, timed, with its status counted.
func (g *Gate) ServeNext(w http.ResponseWriter, r *http.Request, next Next) error {
	cfg := g.cfg.Load()
	route := matrix.Classify(r.Method, matrix.RawPath(r.URL), r.URL.RawQuery)
	class := route.Class
	limits := &cfg.Classes[class]
	name := class.String()
	now := g.now()

	// 2. Operator toggles.
	mode := g.refreshModes(now).modes[class]
	if mode.mode == limiter.ModeShed {
		return g.reject(cfg, class, OutcomeShed, mode.shedReason(), false, 0)
	}

	// 3. Per-user rate, and herd detection: both key on who is asking.
	var user matrix.TokenID
	if limits.Rate > 0 || (cfg.Herd.MinUsers > 0 && route.Room != "") {
		user = g.identity(r)
	}
	if limits.Rate > 0 {
		key := limiter.RateKey{Class: uint8(class), ID: uint64(user)}
		if ok, wait := g.rates.Allow(key, limits.Rate, limits.Burst, now); !ok {
			return g.reject(cfg, class, OutcomeRateLimited, "too many "+name+" requests from this user", false, wait)
		}
	}
	lane := g.observeHerd(cfg, route, user, now)

	// 4. During a herd, verified members may share one fetch of room state.
	if cfg.ShareRoomState && lane == limiter.LaneHerd && class == matrix.RoomState && isSharedStatePath(matrix.RawPath(r.URL)) {
		if ok, err := g.serveSharedState(w, r, cfg, route, now, next); ok {
			return err
		}
	}

	// 5. Coalescing: identical requests share one upstream fetch.
	if limits.Coalesce > 0 {
		if ok, err := g.coalesce(w, r, cfg, class, lane, now, next); ok {
			return err
		}
	}

	// 6. Admission.
	return g.admitAndServe(r.Context(), w, r, cfg, class, lane, now, next)
}

// admitAndServe waits for an admission slot, then serves the request
// through next and frees the slot. The wait ends when waitCtx does: the
// client's context, even when r itself carries a context detached from the
// client (a coalescing leader's upstream fetch must outlive its client, but
// its place in the queue must not). start is when the request arrived; the
// clock is read as few times as possible, since on some virtual machines it
// costs more than the rest of the gate.
func (g *Gate) admitAndServe(waitCtx context.Context, w http.ResponseWriter, r *http.Request, cfg *Config, class matrix.Class, lane limiter.Lane, start time.Time, next Next) error {
	m := g.metrics.of(class)
	name := class.String()
	// Ride-through (ridethrough.go): ride is nil unless r may be retried
	// while the upstream restarts; while it is down, one that may not be is
	// refused here.
	ride, err := g.prepareRideThrough(waitCtx, cfg, class, r, start)
	if err != nil {
		return err
	}
	defer ride.close()
	for {
		m.queueLength.Inc() // counted before Acquire, so a scrape never misses a waiter
		waited, err := g.adm.Acquire(ride.waitCtx(waitCtx), int(class), lane)
		m.queueLength.Dec()
		began := start
		if waited {
			began = g.now()
			g.count(class, OutcomeQueued)
			m.queueWait.Observe(began.Sub(start).Seconds())
		}
		switch {
		case err == nil:
		case errors.Is(err, limiter.ErrQueueFull):
			return g.reject(cfg, class, OutcomeShed, name+" is at capacity", lane == limiter.LaneHerd, 0)
		case errors.Is(err, limiter.ErrQueueTimeout):
			return g.reject(cfg, class, OutcomeTimeout, "timed out waiting for a "+name+" slot", lane == limiter.LaneHerd, 0)
		case ride.expired(waitCtx, err): // retried until its deadline
			return g.reject(cfg, class, OutcomeTimeout, "upstream unavailable", lane == limiter.LaneHerd, 0)
		default: // the client went away while queued
			return g.reject(cfg, class, OutcomeCanceled, "client went away while queued", false, 0)
		}

		g.count(class, OutcomeAdmitted)
		grad := g.gradientOf(class) // adaptive limit (adaptive.go), nil if off
		inflight := 0
		if grad != nil {
			inflight = g.adm.Inflight(int(class))
		}
		sw := &statusWriter{ResponseWriter: w}
		if grad != nil {
			sw.clock = g.now // the sample is time to first byte (statuswriter.go)
		}
		err = g.serveAdmitted(m, class, sw, r, next)
		end := g.now()
		m.upstreamDuration.Observe(end.Sub(began).Seconds())
		status := sw.status
		if err != nil && status == 0 {
			status = statusOf(err)
		}
		m.responses[codeClass(status)].Inc()
		g.upstream.record(sw.status != 0, status, end)
		// A restart's refused connections and 502/503s are ride-through's
		// to handle: counted as failures, they would shed the very
		// requests ride-through holds for the upstream's return.
		if down, _ := downEvidence(sw.status, err); !down || !g.ride.enabled.Load() {
			g.recordErrorShed(sw.status != 0, status, end) // errorshed.go
		}
		if grad != nil && err == nil && sw.status < 500 && waitCtx.Err() == nil {
			rtt := end.Sub(began)
			if !sw.headerAt.IsZero() {
				rtt = sw.headerAt.Sub(began)
			}
			g.sampleAdaptive(grad, cfg, class, rtt, inflight, end)
		}
		retry, rerr := g.afterAttempt(ride, cfg, class, r, sw.status, err, end)
		if retry {
			start = g.now()
			continue
		}
		if rerr != nil {
			return rerr
		}
		return err
	}
}

// serveAdmitted calls next for an admitted request and frees its slot
// afterwards, even if next panics (http.ErrAbortHandler is how a proxy
// aborts a response): a leaked slot would shrink the class cap for good.
func (g *Gate) serveAdmitted(m *classMetrics, class matrix.Class, sw *statusWriter, r *http.Request, next Next) error {
	m.inflight.Inc()
	defer func() {
		g.adm.Release(int(class))
		m.inflight.Dec()
	}()
	return next(sw, r)
}

// reject counts a rejection and builds its error. retryAfter, if positive,
// is the earliest useful retry (a token bucket's refill); the answer adds
// jitter on top so rejected clients spread out.
func (g *Gate) reject(cfg *Config, class matrix.Class, outcome Outcome, reason string, herd bool, retryAfter time.Duration) error {
	g.count(class, outcome)
	lo, hi := cfg.RetryAfterMin, cfg.RetryAfterMax
	if herd {
		lo, hi = cfg.Herd.RetryAfterMin, cfg.Herd.RetryAfterMax
	}
	if retryAfter > 0 {
		lo, hi = retryAfter, retryAfter+cfg.RetryAfterMin
	}
	return &Rejection{Class: class, Outcome: outcome, Reason: reason, RetryAfter: jitter(lo, hi)}
}

// count records one request's outcome in the metrics and the gate's totals.
func (g *Gate) count(class matrix.Class, o Outcome) {
	if i := outcomeIndex(o); i >= 0 {
		g.metrics.of(class).outcomes[i].Inc()
		g.counters[class][i].Add(1)
	}
}

// identity is the one-way ID of whoever sent r: its access token, else its
// client IP.
func (g *Gate) identity(r *http.Request) matrix.TokenID {
	if tok := matrix.AccessToken(r); tok != "" {
		return matrix.IDOf(tok)
	}
	return matrix.IDOf("ip:" + g.clientIP(r))
}

// statusOf recovers an HTTP status from an error returned by next (Caddy's
// handler errors carry one); 0 means none.
func statusOf(err error) int {
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) {
		return sc.StatusCode()
	}
	var hc interface{ HTTPStatus() int }
	if errors.As(err, &hc) {
		return hc.HTTPStatus()
	}
	if errors.Is(err, context.Canceled) {
		return StatusClientClosed
	}
	return 0
}
