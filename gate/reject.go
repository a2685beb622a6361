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
}

func (r *Rejection) Error() string {
	return fmt.Sprintf("mxgate: %s request %s: %s", r.Class, r.Outcome, r.Reason)
}

// StatusCode is 429, or 499 when the client went away.
func (r *Rejection) StatusCode() int {
	if r.Outcome == OutcomeCanceled {
		return StatusClientClosed
	}
	return http.StatusTooManyRequests
}

// Write answers the client: the Matrix M_LIMIT_EXCEEDED 429, or nothing for a
// client that is gone.
func (r *Rejection) Write(w http.ResponseWriter) {
	if r.Outcome == OutcomeCanceled {
		return
	}
	matrix.WriteLimitExceeded(w, r.Reason, r.RetryAfter)
}

// SetHeaders sets the 429's headers (Retry-After, Content-Type) without
// writing a body, for callers that render the body themselves.
func (r *Rejection) SetHeaders(h http.Header) {
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
