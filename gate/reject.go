package gate

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// StatusClientClosed is logged for requests whose client left while queued
// (nginx's 499); nothing is written to the gone client.
const StatusClientClosed = 499

// Rejection is the error the gate returns instead of passing a request on.
// Its Write method produces the Matrix 429; Caddy's glue turns it into a
// caddyhttp.Error so handle_errors can reshape it.
type Rejection struct {
	Class      matrix.Class
	Outcome    Outcome
	Reason     string
	RetryAfter time.Duration

	by   refusal     // which limit refused (coalescing waiters share it)
	cors *CORSConfig // the headers a browser needs to read the 429 (cors.go)
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("mxgate: %s request %s: %s", r.Class, r.Outcome, r.Reason)
}

// StatusCode is 429; 499 when the client went away; 400 for a request no
// route can mean.
func (r *Rejection) StatusCode() int {
	switch r.Outcome {
	case OutcomeCanceled:
		return StatusClientClosed
	case OutcomeInvalid:
		return http.StatusBadRequest
	}
	return http.StatusTooManyRequests
}

// Write answers the client: the Matrix M_LIMIT_EXCEEDED 429, a 400
// M_UNRECOGNIZED, or nothing for a client that is gone. Both answers carry
// the CORS headers (cors.go).
func (r *Rejection) Write(w http.ResponseWriter) {
	if r.Outcome == OutcomeCanceled {
		return
	}
	r.cors.SetHeaders(w.Header())
	if r.Outcome == OutcomeInvalid {
		matrix.WriteError(w, http.StatusBadRequest, matrix.ErrUnrecognized, r.Reason)
		return
	}
	matrix.WriteLimitExceeded(w, r.Reason, r.RetryAfter)
}

// SetHeaders sets the answer's headers (Content-Type, CORS, and a 429's
// Retry-After) without writing a body, for callers that render the body
// themselves.
func (r *Rejection) SetHeaders(h http.Header) {
	r.cors.SetHeaders(h)
	if r.Outcome == OutcomeInvalid {
		h.Set("Content-Type", "application/json")
		return
	}
	matrix.SetLimitExceededHeaders(h, r.RetryAfter)
}

// jitter returns a uniformly spread duration in [lo, hi], so that clients
// shed together do not come back together.
func jitter(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + rand.N(hi-lo+1)
}

// refusal says which limit refused a request. Every refusal goes through
// refuse, the one place that knows them all.
type refusal uint8

const (
	// byOperator: an operator toggle (shed CLASS, a brownout). Always acts.
	byOperator refusal = iota
	// byLimit: an automatic limit — a per-user rate, a full queue, a queue
	// deadline, 5xx shedding. Shadow mode (shadow.go), which lets automatic
	// limits only observe, branches on it in refuse, and only there.
	byLimit
	// byHold: a hold that acts in shadow mode too — ride-through while the
	// upstream is down (letting requests through would only send them to a
	// closed port), or an operator's queue toggle.
	byHold
	// byClient: the client itself (it left); never a limit's doing.
	byClient
)

// retryRange picks the Retry-After spread of a refusal.
type retryRange uint8

const (
	retryNormal retryRange = iota // the configured retry_after range
	retryHerd                     // the herd's wider range
	retrySoon                     // the upstream is expected back shortly
)

// refuse counts a refusal of a class's request and builds its error. after,
// if positive, is the earliest useful retry (a token bucket's refill); the
// answer adds jitter on top so refused clients spread out.
//
// In shadow mode an automatic limit's refusal is only counted as its
// would-be outcome and logged, and refuse returns nil: the caller goes on
// with the request as if the limit had let it through.
func (g *Gate) refuse(cfg *Config, class matrix.Class, by refusal, outcome Outcome, reason string, spread retryRange, after time.Duration) error {
	if by == byLimit && cfg.Classes[class].Shadow {
		g.wouldRefuse(class, wouldOutcome(outcome), reason) // shadow.go
		return nil
	}
	g.count(class, outcome)
	if by == byClient {
		return &Rejection{Class: class, Outcome: outcome, Reason: reason, by: by, cors: &cfg.CORS} // nobody reads a Retry-After
	}
	lo, hi := cfg.RetryAfterMin, cfg.RetryAfterMax
	switch {
	case after > 0:
		lo, hi = after, after+cfg.RetryAfterMin
	case spread == retryHerd:
		lo, hi = cfg.Herd.RetryAfterMin, cfg.Herd.RetryAfterMax
	case spread == retrySoon:
		hi = lo + lo/2
	}
	return &Rejection{Class: class, Outcome: outcome, Reason: reason, RetryAfter: jitter(lo, hi), by: by, cors: &cfg.CORS}
}

// refuseInvalid counts and builds the 400 for a request no homeserver route
// can mean.
func (g *Gate) refuseInvalid(cfg *Config, class matrix.Class, reason string) error {
	g.count(class, OutcomeInvalid)
	return &Rejection{Class: class, Outcome: OutcomeInvalid, Reason: reason, cors: &cfg.CORS}
}
