package gate

import (
	"sync/atomic"

	"github.com/mxgate/mxgate/matrix"
)

// outcomeCounters are the gate's own totals per class and outcome since the
// gate was built, for the admin status. (The Prometheus counters are shared
// by every gate of the process and cannot be read back per gate.)
type outcomeCounters [matrix.NumClasses][numOutcomes]atomic.Uint64

const (
	idxAdmitted = iota
	idxQueued
	idxShed
	idxRateLimited
	idxCoalesced
	idxTimeout
	idxCanceled
	idxInvalid
	idxWouldShed
	idxWouldRateLimited
	idxWouldTimeout
	numOutcomes
)

func outcomeIndex(o Outcome) int {
	switch o {
	case OutcomeAdmitted:
		return idxAdmitted
	case OutcomeQueued:
		return idxQueued
	case OutcomeShed:
		return idxShed
	case OutcomeRateLimited:
		return idxRateLimited
	case OutcomeCoalesced:
		return idxCoalesced
	case OutcomeTimeout:
		return idxTimeout
	case OutcomeCanceled:
		return idxCanceled
	case OutcomeInvalid:
		return idxInvalid
	case OutcomeWouldShed:
		return idxWouldShed
	case OutcomeWouldRateLimited:
		return idxWouldRateLimited
	case OutcomeWouldTimeout:
		return idxWouldTimeout
	}
	return -1
}

// Counters are one class's request totals by outcome. Queued requests are
// also counted under what happened to them next (admitted, timeout, ...).
type Counters struct {
	Admitted    uint64 `json:"admitted"`
	Queued      uint64 `json:"queued"`
	Shed        uint64 `json:"shed"`
	RateLimited uint64 `json:"rate_limited"`
	Coalesced   uint64 `json:"coalesced"`
	Timeout     uint64 `json:"timeout"`
	Canceled    uint64 `json:"canceled"`
	// Would-be refusals of shadow mode (shadow.go): let through.
	WouldShed        uint64 `json:"would_shed,omitempty"`
	WouldRateLimited uint64 `json:"would_rate_limited,omitempty"`
	WouldTimeout     uint64 `json:"would_timeout,omitempty"`
}

// Refused is every request answered with a 429: shed, rate-limited or
// timed out in the queue.
func (c Counters) Refused() uint64 { return c.Shed + c.RateLimited + c.Timeout }

func (c *outcomeCounters) snapshot(class matrix.Class) Counters {
	v := &c[class]
	return Counters{
		Admitted:    v[idxAdmitted].Load(),
		Queued:      v[idxQueued].Load(),
		Shed:        v[idxShed].Load(),
		RateLimited: v[idxRateLimited].Load(),
		Coalesced:   v[idxCoalesced].Load(),
		Timeout:     v[idxTimeout].Load(),
		Canceled:    v[idxCanceled].Load(),

		WouldShed:        v[idxWouldShed].Load(),
		WouldRateLimited: v[idxWouldRateLimited].Load(),
		WouldTimeout:     v[idxWouldTimeout].Load(),
	}
}

// count records one request's outcome in the metrics and the gate's totals.
func (g *Gate) count(class matrix.Class, o Outcome) {
	if i := outcomeIndex(o); i >= 0 {
		g.metrics.of(class).outcomes[i].Inc()
		g.counters[class][i].Add(1)
	}
}
