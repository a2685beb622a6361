package gate

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/limiter"
)

// HealthWindow is the span over which the upstream error ratio is measured.
const HealthWindow = time.Minute

// upstreamHealth follows the upstream's answers: when it last answered,
// when a request last got no answer at all, and the share of failures over
// the last minute. Its zero value is ready to use.
type upstreamHealth struct {
	once        sync.Once
	rate        *limiter.ErrorRate
	lastAnswer  atomic.Int64 // UnixNano; 0 = never
	lastFailure atomic.Int64 // UnixNano of the last request that got no answer
}

func (u *upstreamHealth) errorRate() *limiter.ErrorRate {
	u.once.Do(func() { u.rate = limiter.NewErrorRate(HealthWindow, 12) })
	return u.rate
}

// record counts one passed-on request: answered says whether the upstream
// wrote a response (of status); a request that got none failed to connect
// or read. A client that left is nobody's failure and is not counted.
func (u *upstreamHealth) record(answered bool, status int, now time.Time) {
	counted, failed := upstreamOutcome(answered, status)
	if !counted {
		return
	}
	u.errorRate().Record(failed, now)
	if answered {
		u.lastAnswer.Store(now.UnixNano())
	} else {
		u.lastFailure.Store(now.UnixNano())
	}
}

// upstreamOutcome is how the upstream error windows (health, 5xx shedding)
// see one passed-on request: a client that left is nobody's failure and is
// not counted; a 5xx, or no answer at all, is a failure.
func upstreamOutcome(answered bool, status int) (counted, failed bool) {
	if !answered && status == StatusClientClosed {
		return false, false
	}
	return true, !answered || status >= 500
}

// UpstreamHealth is what the gate observed of its upstream.
type UpstreamHealth struct {
	// Reachable is true if the latest observation within HealthWindow was an
	// answer, false if it was a failure to get one, nil if there was none.
	Reachable *bool `json:"reachable"`
	// LastAnswer is when the upstream last answered (any status).
	LastAnswer *time.Time `json:"last_answer,omitempty"`
	// LastFailure is when a request last got no answer at all.
	LastFailure *time.Time `json:"last_failure,omitempty"`
	// Responses counts requests passed on during the last HealthWindow.
	Responses int `json:"responses_last_minute"`
	// ErrorRatio is the share of them answered 5xx or not at all.
	ErrorRatio float64 `json:"error_ratio_last_minute"`
}

// UpstreamHealth reports the upstream as observed through this gate's
// traffic up to now.
func (g *Gate) UpstreamHealth(now time.Time) UpstreamHealth {
	u := &g.upstream
	var h UpstreamHealth
	h.ErrorRatio, h.Responses = u.errorRate().Ratio(now)
	answer, failure := u.lastAnswer.Load(), u.lastFailure.Load()
	if answer != 0 {
		t := time.Unix(0, answer)
		h.LastAnswer = &t
	}
	if failure != 0 {
		t := time.Unix(0, failure)
		h.LastFailure = &t
	}
	if latest := max(answer, failure); latest != 0 && now.Sub(time.Unix(0, latest)) <= HealthWindow {
		ok := answer >= failure
		h.Reachable = &ok
	}
	return h
}
