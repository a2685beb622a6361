package gate

import (
	"context"
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

// record counts one attempt: one the upstream answered, or one that got no
// answer (it failed to connect or read). A client's fault is nobody's
// failure and is not counted (failure.go).
func (u *upstreamHealth) record(a attempt, now time.Time) {
	counted, failed := a.judged()
	if !counted {
		return
	}
	u.errorRate().Record(failed, now)
	if a.answered() {
		u.lastAnswer.Store(now.UnixNano())
	} else {
		u.lastFailure.Store(now.UnixNano())
	}
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

// Health is the gate's verdict on its upstream. Status is "down" (the
// upstream does not answer), "degraded" (it answers, but at least
// DegradedRatio of the last minute's requests failed), "unknown" (no
// traffic and nothing to dial), or "ok".
type Health struct {
	Status string `json:"status"`
	// Reachable and how it was judged: "dial" (the upstream probe, a TCP
	// connect to Config.UpstreamAddr, just now) or "traffic" (the latest
	// upstream answer or failure within HealthWindow); absent when unknown.
	Reachable *bool          `json:"reachable,omitempty"`
	Source    string         `json:"source,omitempty"`
	Dial      string         `json:"dial,omitempty"`
	DialError string         `json:"dial_error,omitempty"`
	Upstream  UpstreamHealth `json:"upstream"`
}

// DegradedRatio is the 5xx share over HealthWindow from which the upstream
// counts as degraded; MinDegradedSamples avoids judging on a handful of
// requests.
const (
	DegradedRatio      = 0.1
	MinDegradedSamples = 10
)

// Health judges the upstream at now: by the upstream probe when an address
// is configured (the same probe ride-through uses), else by traffic.
func (g *Gate) Health(ctx context.Context, now time.Time) Health {
	h := Health{Upstream: g.UpstreamHealth(now), Dial: g.cfg.Load().UpstreamAddr}
	if h.Dial != "" {
		err := g.probeDial(ctx)
		ok := err == nil
		if !ok {
			h.DialError = err.Error()
		}
		h.Reachable, h.Source = &ok, "dial"
	} else if h.Upstream.Reachable != nil {
		h.Reachable, h.Source = h.Upstream.Reachable, "traffic"
	}
	up := h.Upstream
	switch {
	case h.Reachable != nil && !*h.Reachable:
		h.Status = "down"
	case up.Responses >= MinDegradedSamples && up.ErrorRatio >= DegradedRatio:
		h.Status = "degraded"
	case h.Reachable == nil:
		h.Status = "unknown"
	default:
		h.Status = "ok"
	}
	return h
}
