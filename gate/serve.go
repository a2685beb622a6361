package gate

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"time"

	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// Next is the rest of the chain: the reverse proxy to the homeserver.
type Next func(http.ResponseWriter, *http.Request) error

// Middleware wraps next as plain net/http middleware. Rejections are
// answered with the Matrix 429 (or 400); next answers everything else.
func (g *Gate) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := g.ServeNext(w, r, func(w http.ResponseWriter, r *http.Request) error {
			next.ServeHTTP(w, r)
			return nil
		})
		var rej *Rejection
		if errors.As(err, &rej) {
			rej.Write(w)
		}
	})
}

// flow is one request's way through the gate: what every stage needs,
// built once by ServeNext. Coalescing and share_state hand it back to pass
// rather than choosing their own wait, lane or start.
type flow struct {
	g      *Gate
	cfg    *Config
	req    matrix.Request // route, raw path and credential, parsed once
	limits *matrix.Limits
	lane   limiter.Lane    // herd requests queue behind the others
	start  time.Time       // arrival
	client context.Context // the client's: every wait ends with it
	body   *clientBody     // records the client's body read errors; nil: no body
	next   Next
}

// ServeNext runs one request through the pipeline. It either passes the
// request to next and returns next's error, or returns a *Rejection without
// writing anything, so that the caller decides how the 429 is rendered.
// A CORS preflight skips every stage (preflight.go); for any other request
// the stages, in order, are the numbered steps below.
//
// A class in shadow mode (shadow.go) passes 5xx shedding (3), its rate
// bucket (4), herd handling (5, 6) and admission's waits (8), counting what
// they would have refused; operator toggles and ride-through act as usual.
func (g *Gate) ServeNext(w http.ResponseWriter, r *http.Request, next Next) error {
	cfg := g.cfg.Load()
	if isPreflight(r) {
		return g.servePreflight(w, r, cfg, next)
	}
	// 1. Parse the request once: class, room, raw path, credential.
	f := &flow{g: g, cfg: cfg, req: matrix.ParseRequest(r), start: g.now(), client: r.Context(), next: next}
	class := f.req.Class
	f.limits = &cfg.Classes[class]

	// 2. A path with dot segments names nothing a client meant; servers
	// disagree on resolving it, so it is refused, not guessed at.
	if f.req.DotSegments {
		return g.refuseInvalid(cfg, class, "path has dot segments")
	}

	// 3. Operator toggles (and 5xx shedding, derived like a brownout).
	if mode := g.refreshModes(f.start).modes[class]; mode.mode == limiter.ModeShed {
		by := byOperator
		if mode.derived {
			by = byLimit
		}
		if err := f.refuse(by, OutcomeShed, mode.shedReason(), retryNormal); err != nil {
			return err
		}
	}

	// 4. Per-user rate, keyed by a hash of the access token (or the IP).
	if f.limits.Rate > 0 {
		key := limiter.RateKey{Class: uint8(class), ID: uint64(g.identity(r, &f.req.Credential))}
		if ok, wait := g.rates.Allow(key, f.limits.Rate, f.limits.Burst, f.start); !ok {
			if err := g.refuse(cfg, class, byLimit, OutcomeRateLimited, "too many "+class.String()+" requests from this user", retryNormal, wait); err != nil {
				return err
			}
		}
	}

	// 5. Herd detection per (class, room), counting only tokens the
	// homeserver has accepted; a herd's requests queue in the herd lane.
	f.lane = g.observeHerd(cfg, &f.req, r.Host, f.start)
	if cfg.Classes[class].Shadow {
		f.lane = limiter.LaneNormal // shadow mode: herds are detected, not acted on
	}
	f.body = watchBody(r)

	// 6. During a herd, verified members may share one fetch of room state
	// (sharestate.go).
	if f.limits.ShareState && f.lane == limiter.LaneHerd && class == matrix.RoomState &&
		r.Method == http.MethodGet && matrix.IsSharedStatePath(f.req.RawPath) {
		if ok, err := g.serveSharedState(w, r, f.share()); ok {
			return err
		}
	}

	// 7. Coalescing: identical GET/HEAD requests share one upstream fetch.
	if f.limits.Coalesce > 0 {
		// Across credentials only where matrix says the answer is anyone's:
		// anonymous legacy media reads and anonymous /versions.
		shared := f.limits.Shared && f.req.SharedAcrossCredentials(r.Method)
		if key, ok := herd.KeyOf(r, f.req.Credential, shared); ok {
			return f.coalesce(w, r, key)
		}
	}

	// 8. Admission, then next.
	return f.pass(w, r)
}

// coalesce serves r through its coalescing group: identical requests share
// one upstream fetch (the leader's pass, which holds one admission slot),
// and a repeat within the class's coalesce TTL is answered from the
// completion cache.
func (f *flow) coalesce(w http.ResponseWriter, r *http.Request, key herd.Key) error {
	class := f.req.Class
	outcome, err := f.g.coalescer.Do(w, r, key, f.g.coalescingLead(class), f.limits.Coalesce, f.limits.QueueTimeout+coalesceWaitExtra, f.pass)
	switch outcome {
	case herd.Coalesced, herd.Cached:
		var rej *Rejection
		if errors.As(err, &rej) {
			// The leader was refused: refuse this waiter too, for the same
			// reason, with its own jittered Retry-After so the group does not
			// return together.
			return f.refuse(rej.by, rej.Outcome, rej.Reason, f.spread())
		}
		f.g.count(class, OutcomeCoalesced)
	case herd.Abandoned:
		if errors.Is(err, context.Canceled) || f.client.Err() != nil {
			return f.refuse(byClient, OutcomeCanceled, "client went away while waiting", retryNormal)
		}
		if err := f.refuse(byLimit, OutcomeTimeout, "timed out waiting for an identical "+class.String()+" request", f.spread()); err != nil {
			return err
		}
		return f.pass(w, r) // shadow mode: observed, not refused; this waiter goes upstream itself
	}
	return err
}

// share is what share_state needs of the flow: its request's credential and
// room, its wait, and the way upstream.
func (f *flow) share() shareFlow {
	return shareFlow{cfg: f.cfg, req: &f.req, now: f.start, pass: f.passAs}
}

// passAs passes r through admission in lane: the flow's own request (a
// share_state leader's uncompressed copy), or a subrequest of its own class.
func (f *flow) passAs(w http.ResponseWriter, r *http.Request, lane limiter.Lane, own bool) error {
	if own {
		lf := *f
		lf.lane = lane
		return lf.pass(w, r)
	}
	sub := &flow{g: f.g, cfg: f.cfg, req: matrix.ParseRequest(r), start: f.g.now(), client: f.client, next: f.next, lane: lane}
	sub.limits = &f.cfg.Classes[sub.req.Class]
	return sub.pass(w, r)
}

// pass admits the request and serves it through next; while the upstream
// restarts, a request that may safely be sent twice is retried until its
// class deadline (retry.go). r is the request to send: the client's, or a
// coalescing leader's copy detached from its client. Waiting in the queue
// always ends with the client.
func (f *flow) pass(w http.ResponseWriter, r *http.Request) error {
	g := f.g
	rs, err := g.prepareRetry(f.cfg, &f.req, r, f.client, f.start)
	if err != nil {
		return err
	}
	defer rs.close()
	start := f.start
	for {
		t, err := f.admit(rs.waitCtx(f.client), start)
		if err != nil {
			return f.refuseAdmission(err, rs)
		}
		a := f.serve(&t, w, r, rs != nil)
		retry, err := g.afterAttempt(rs, f.cfg, f.req.Class, r, a, a.end)
		if !retry {
			if err == errAnswerBrokenOff {
				// Not sent again: the break goes on as Caddy's reverse
				// proxy raised it (the connection is dropped, a
				// coalescing leader's waiters fetch for themselves).
				panic(http.ErrAbortHandler)
			}
			return err
		}
		start = g.now()
	}
}

// admit waits for an admission slot under ctx.
func (f *flow) admit(ctx context.Context, start time.Time) (limiter.Ticket, error) {
	g, class := f.g, f.req.Class
	if t, ok := g.admitShadow(f.cfg, class, f.lane); ok {
		return t, nil // shadow mode: admitted at once, over the cap if need be
	}
	m := g.metrics.of(class)
	m.queueLength.Inc() // counted before Acquire, so a scrape never misses a waiter
	t, err := g.adm.AcquireFor(ctx, int(class), f.lane, roomGroup(f.req.Route.Room))
	m.queueLength.Dec()
	if t.Waited {
		g.count(class, OutcomeQueued)
		granted := t.Granted
		if err != nil {
			granted = g.now()
		}
		m.queueWait.Observe(granted.Sub(start).Seconds())
	}
	return t, err
}

// refuseAdmission turns Acquire's error into the request's refusal.
func (f *flow) refuseAdmission(err error, rs *retryState) error {
	name := f.req.Class.String()
	by := byLimit
	if f.cfg.Classes[f.req.Class].Shadow {
		by = byHold // shadow mode waits only where a hold acts (admitShadow)
	}
	switch {
	case errors.Is(err, limiter.ErrQueueFull):
		return f.refuse(by, OutcomeShed, name+" is at capacity", f.spread())
	case errors.Is(err, limiter.ErrNoHerdPart):
		// A herd request, though it may have queued before the herd was
		// declared: to come back with the herd, through another gateway.
		lf := *f
		lf.lane = limiter.LaneHerd
		return f.refuse(by, OutcomeShed, name+" takes no herd requests through this gateway", lf.spread())
	case errors.Is(err, limiter.ErrQueueTimeout):
		return f.refuse(by, OutcomeTimeout, "timed out waiting for a "+name+" slot", f.spread())
	case rs.expired(f.client, err): // retried until its deadline
		return f.refuse(byHold, OutcomeTimeout, "upstream unavailable", f.spread())
	default:
		return f.refuse(byClient, OutcomeCanceled, "client went away while queued", retryNormal)
	}
}

// serve sends an admitted request to next and gives its slot back with
// what the attempt says about the upstream (its liveness and, for an
// adaptive class, its round-trip time). The slot is given back even if next
// panics (http.ErrAbortHandler is how a proxy aborts a response): a leaked
// slot would shrink the class cap for good. A request that may be retried
// has its answer held until the body begins (callNext).
func (f *flow) serve(t *limiter.Ticket, w http.ResponseWriter, r *http.Request, retryable bool) (a attempt) {
	g, class := f.g, f.req.Class
	m := g.metrics.of(class)
	g.count(class, OutcomeAdmitted)
	sw := &statusWriter{ResponseWriter: w, hold: retryable}
	if f.limits.Adaptive {
		sw.clock = g.now // the sample is time to first byte (statuswriter.go)
	}
	var res limiter.Result
	var timer *answerTimer
	m.inflight.Inc()
	defer func() {
		if timer != nil {
			timer.stop() // next panicked
		}
		m.inflight.Dec()
		g.observeLiveness(t.Done(res), res.End)
		g.passShadowQueue(class) // the freed slot goes to shadow mode's would-be queue (shadow.go)
	}()

	if d := f.limits.UpstreamTimeout; d > 0 {
		timer = &sw.answer
		r = timer.start(r, d, &g.deadlines[class], f.body) // upstreamtimeout.go
		sw.timer = timer
	}
	err := f.callNext(sw, r)
	if timer != nil {
		fired := timer.stop()
		timer = nil
		if fired && sw.status < 200 {
			// Whatever next made of the cancellation, the upstream is
			// slow, not down, and the client is answered 504.
			err = upstreamTimeoutError{after: f.limits.UpstreamTimeout}
		}
	}
	end := g.now()
	a = newAttempt(sw.status, err, f.body, f.client)
	a.end = end
	m.upstreamDuration.Observe(end.Sub(t.Granted).Seconds())
	g.answers.observe(class, end.Sub(t.Granted))
	m.responses[codeClass(a.status())].Inc()
	g.upstream.record(a, end)
	g.noteTokenVerdict(r, &f.req, sw.status) // herds count only accepted tokens (identity.go)
	// A restart's refused connections and 502/503s are ride-through's to
	// handle: counted as failures, they would shed the very requests
	// ride-through holds for the upstream's return.
	if ev := a.evidence(); !f.cfg.RideThrough.Enabled || (ev != limiter.EvidenceFailed && ev != limiter.EvidenceRefused) {
		g.recordErrorShed(a, end) // errorshed.go
	}
	res = limiter.Result{End: end, FirstByte: sw.headerAt, Evidence: a.evidence(),
		// Only a round trip the upstream answered below 500 to a client
		// that stayed measures its capacity.
		Sample: err == nil && sw.status < 500 && f.client.Err() == nil && g.sampleable()}
	return a
}

// callNext sends r to next through sw and, for a held answer, passes the
// status on once next is done. If the upstream breaks off a held answer
// after its status but before its body began (Caddy's reverse proxy then
// panics with http.ErrAbortHandler), the client has been sent nothing: the
// panic ends here as errAnswerBrokenOff, with the header map as it was
// before, and ride-through may send the request again (pass panics again
// if it does not). Any other panic, an abort before any status (Caddy's
// abort handler), or one after the body began goes on to the server, which
// drops the connection.
func (f *flow) callNext(sw *statusWriter, r *http.Request) (err error) {
	if !sw.hold {
		return f.next(sw, r)
	}
	before := sw.Header().Clone()
	defer func() {
		if !sw.hold || sw.status < 200 {
			return
		}
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			h := sw.Header()
			clear(h)
			maps.Copy(h, before)
			sw.status, sw.hold = 0, false
			err = errAnswerBrokenOff
		}
	}()
	err = f.next(sw, r)
	sw.commit()
	return err
}

// errAnswerBrokenOff is next's result for an answer the upstream broke off
// before its body began: an upstream error (502) that sent the client
// nothing (failure.go).
var errAnswerBrokenOff error = answerBrokenOffError{}

type answerBrokenOffError struct{}

func (answerBrokenOffError) Error() string {
	return "the upstream broke off its answer before the body"
}
func (answerBrokenOffError) StatusCode() int { return http.StatusBadGateway }

// refuse refuses the flow's request (reject.go).
func (f *flow) refuse(by refusal, outcome Outcome, reason string, spread retryRange) error {
	return f.g.refuse(f.cfg, f.req.Class, by, outcome, reason, spread, 0)
}

// spread is the Retry-After range of the flow's automatic refusals: a
// herd's requests spread wider.
func (f *flow) spread() retryRange {
	// A critical class in a herd's room (a burst of sends during the herd)
	// keeps the normal range: a message or a long-poll must come back soon,
	// and js-sdk and mautrix-go wait out whatever Retry-After says.
	if f.lane == limiter.LaneHerd && f.limits.Priority != matrix.Critical {
		return retryHerd
	}
	return retryNormal
}

// identity is the one-way ID of whoever sent r, for its rate bucket: its
// access token, else (anonymous, or a credential homeservers could read
// differently) its client IP.
func (g *Gate) identity(r *http.Request, cred *matrix.Credential) matrix.TokenID {
	if cred.ID != 0 {
		return cred.ID
	}
	return matrix.ClientIPID(g.clientIP(r))
}
