package gate

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// retryState is one request's ride-through bookkeeping: it exists only for
// a request that may be retried while the upstream restarts (one that can
// safely be sent twice, matrix.Idempotent).
type retryState struct {
	body     []byte // the buffered PUT body to replay, nil if none
	deadline time.Time
	ctx      context.Context // the client's context, ending at deadline
	cancel   context.CancelFunc
	interval time.Duration // spaces retries while the upstream is not marked down
	retries  int
	// brokenOff counts the retries of answers the upstream broke off
	// before their body (maxBrokenOffRetries).
	brokenOff int
}

// maxBrokenOffRetries bounds how often a request whose answer the upstream
// broke off is sent again: a restart cuts one answer, while an answer the
// homeserver breaks off every time (a worker killed by this very request)
// must not be asked for until the class deadline.
const maxBrokenOffRetries = 2

// prepareRetry returns the retry state of a request that may be retried
// (nil for one that may not, or if ride-through is off). While the upstream
// is down, a request that may not be retried is refused at once with a
// short Retry-After instead of being held.
func (g *Gate) prepareRetry(cfg *Config, req *matrix.Request, r *http.Request, client context.Context, start time.Time) (*retryState, error) {
	if !cfg.RideThrough.Enabled {
		return nil, nil
	}
	retryable := matrix.Idempotent(r.Method, req.RawPath)
	var body []byte
	if retryable {
		body, retryable = bufferBody(r, cfg.RideThrough.MaxBody)
	}
	if !retryable {
		if g.adm.Down() {
			return nil, g.refuse(cfg, req.Class, byHold, OutcomeShed, "upstream unavailable, retry shortly", retrySoon, 0)
		}
		return nil, nil
	}
	wait := cfg.Classes[req.Class].QueueTimeout
	if wait <= 0 {
		wait = matrix.DefaultQueueTimeout // never retry forever
	}
	rs := &retryState{body: body, deadline: start.Add(wait), interval: cfg.RideThrough.ProbeInterval}
	rs.ctx, rs.cancel = context.WithDeadline(client, rs.deadline)
	return rs, nil
}

func (rs *retryState) close() {
	if rs != nil {
		rs.cancel()
	}
}

// waitCtx is the context a (re)try queues under: the client's, and for a
// retry also the class deadline counted from the request's arrival.
func (rs *retryState) waitCtx(client context.Context) context.Context {
	if rs == nil || rs.retries == 0 {
		return client
	}
	return rs.ctx
}

// expired reports whether err from Acquire is the retry deadline passing
// (rather than the client leaving).
func (rs *retryState) expired(client context.Context, err error) bool {
	return rs != nil && rs.retries > 0 && errors.Is(err, context.DeadlineExceeded) && client.Err() == nil
}

// afterAttempt decides what follows one attempt: retry is true when the
// request should queue again; otherwise err is the request's result —
// next's error, or a 429 for a request that failed because the upstream is
// down and cannot be retried.
func (g *Gate) afterAttempt(rs *retryState, cfg *Config, class matrix.Class, r *http.Request, a attempt, now time.Time) (retry bool, err error) {
	if !cfg.RideThrough.Enabled || a.answered() {
		return false, a.err // answered: the client has it
	}
	switch ev := a.evidence(); {
	case a.brokenOff && (rs == nil || rs.brokenOff >= maxBrokenOffRetries):
		return false, a.err
	case a.brokenOff:
		rs.brokenOff++
	case ev != limiter.EvidenceFailed && ev != limiter.EvidenceRefused:
		return false, a.err // not the upstream's fault
	case rs == nil && ev == limiter.EvidenceRefused:
		// Nothing reached the upstream: the client may safely retry.
		return false, g.refuse(cfg, class, byHold, OutcomeShed, "upstream unavailable, retry shortly", retrySoon, 0)
	case rs == nil:
		return false, a.err // it may have been sent: the upstream's error stands
	}
	if !now.Before(rs.deadline) {
		return false, g.refuse(cfg, class, byHold, OutcomeTimeout, "upstream unavailable", retryNormal, 0)
	}
	if !g.adm.Down() {
		// Not (yet) marked down: space retries so that a flaky upstream is
		// not hammered; a down one is waited for in the queue instead.
		t := time.NewTimer(rs.interval)
		select {
		case <-t.C:
		case <-rs.ctx.Done():
		}
		t.Stop()
	}
	rs.retries++
	if rs.body != nil {
		r.Body = io.NopCloser(bytes.NewReader(rs.body))
	}
	return true, nil
}

// partlyReadBody is a body bufferBody read part of and put back: that part,
// then the rest of the original, which it closes.
type partlyReadBody struct {
	io.Reader
	io.Closer
}

// bufferBody makes r's body replayable if it is at most maxBody bytes: it
// reads it into memory, sets r.Body and r.GetBody over the copy and returns
// it. ok reports whether the request can be replayed (one without a body
// can). A bigger body, or one that fails to read, is put back as it was and
// the request is sent once.
func bufferBody(r *http.Request, maxBody int64) (body []byte, ok bool) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, true
	}
	if r.ContentLength > maxBody {
		return nil, false
	}
	orig := r.Body
	buf, err := io.ReadAll(io.LimitReader(orig, maxBody+1))
	if err != nil || int64(len(buf)) > maxBody {
		r.Body = partlyReadBody{io.MultiReader(bytes.NewReader(buf), orig), orig}
		return nil, false
	}
	orig.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	return buf, true
}
