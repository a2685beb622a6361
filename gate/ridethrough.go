package gate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// RideThroughConfig configures riding through upstream restarts: while the
// upstream is down, admission is held so that requests wait in their class
// queues; requests that can safely be sent twice and failed because the
// upstream was down are retried until their class deadline; when the
// upstream is back, admitted concurrency ramps up over SlowStart.
type RideThroughConfig struct {
	Enabled bool
	// Failures is how many consecutive "upstream down" failures (a 502,
	// 503 or 504 with no answer, or an answered 502/503) mark the upstream
	// down. A refused connection marks it down at once.
	Failures int
	// ProbeInterval is how often a down upstream is probed: a TCP dial to
	// Options.UpstreamAddr, or without one, a single queued request let
	// through as a canary. It also spaces the retries of a request that
	// failed while the upstream was not (yet) marked down.
	ProbeInterval time.Duration
	// SlowStart is how long admitted concurrency takes to ramp from 10% of
	// each class's cap back to all of it after the upstream returns.
	SlowStart time.Duration
	// MaxBody is the largest PUT body buffered so that the PUT can be
	// retried; bigger ones are sent once.
	MaxBody int64
}

// Ride-through defaults.
const (
	DefaultRideThroughFailures = 3
	DefaultProbeInterval       = 500 * time.Millisecond
	DefaultSlowStart           = 10 * time.Second
	// DefaultRideThroughMaxBody is the Matrix limit on an event's size.
	DefaultRideThroughMaxBody = 64 << 10
)

// DefaultRideThrough is ride-through with its defaults, off.
func DefaultRideThrough() RideThroughConfig {
	return RideThroughConfig{Failures: DefaultRideThroughFailures, ProbeInterval: DefaultProbeInterval,
		SlowStart: DefaultSlowStart, MaxBody: DefaultRideThroughMaxBody}
}

func (c *RideThroughConfig) validate() error {
	if c.Failures < 1 || c.ProbeInterval <= 0 || c.SlowStart < 0 || c.MaxBody < 0 {
		return fmt.Errorf("ride_through needs failures >= 1, probe_interval > 0, slow_start >= 0 and max_body >= 0, got %d %v %v %d",
			c.Failures, c.ProbeInterval, c.SlowStart, c.MaxBody)
	}
	return nil
}

// rampTick is how often caps are raised during slow start: finer than the
// housekeeping tick so that the ramp is smooth even over a few seconds.
const rampTick = 100 * time.Millisecond

// probeDialTimeout bounds one TCP probe of the upstream.
const probeDialTimeout = time.Second

// ErrUpstreamUnreachable may be wrapped by an error that Next returns to say
// the upstream could not be reached at all (the dial failed): nothing was
// sent, and with ride-through the upstream counts as down at once, as on a
// refused connection.
var ErrUpstreamUnreachable = errors.New("upstream unreachable")

// rideThrough is the gate's view of upstream liveness. Its zero value (with
// channels made by New) is "up".
type rideThrough struct {
	enabled atomic.Bool
	down    atomic.Bool
	// downByAnswer: the upstream was marked down on answered 502/503s
	// (probe with a canary request, not a dial).
	downByAnswer atomic.Bool
	downSince    atomic.Int64 // UnixNano
	failures     atomic.Int32 // consecutive "upstream down" failures
	ramping      atomic.Bool
	slowStart    atomic.Pointer[limiter.SlowStart]
	slowWin      time.Duration          // window of slowStart; written by configure only
	interval     atomic.Int64           // ProbeInterval
	addr         atomic.Pointer[string] // TCP address probed; "" = canary requests
	mu           sync.Mutex             // orders down/up transitions with the hold they imply
	wake         chan struct{}          // cap 1: tells the supervisor the state changed
	done         chan struct{}          // closed when the supervisor returns
}

// configureRideThrough applies cfg; turning ride-through off releases a hold.
func (g *Gate) configureRideThrough(cfg *Config) {
	rt := &g.ride
	c := cfg.RideThrough
	if rt.slowStart.Load() == nil || rt.slowWin != c.SlowStart {
		rt.slowWin = c.SlowStart
		win := c.SlowStart
		if win == 0 {
			win = time.Nanosecond // slow_start 0: no ramp
		}
		rt.slowStart.Store(limiter.NewSlowStart(win, 0))
	}
	rt.interval.Store(int64(c.ProbeInterval))
	addr := cfg.UpstreamAddr
	rt.addr.Store(&addr)
	rt.mu.Lock()
	defer rt.mu.Unlock()
	rt.enabled.Store(c.Enabled)
	if !c.Enabled && rt.down.Load() {
		rt.down.Store(false)
		g.adm.SetHeld(false)
	}
}

// rideState is one request's ride-through bookkeeping: it exists only for a
// request that may be retried.
type rideState struct {
	body     []byte // the buffered PUT body to replay, nil if none
	deadline time.Time
	ctx      context.Context // the client's context, ending at deadline
	cancel   context.CancelFunc
	retries  int
}

// prepareRideThrough returns the ride state of a request that may be
// retried (nil for one that may not, or if ride-through is off). While the
// upstream is down, a request that may not be retried is refused at once
// with a short Retry-After instead of being held.
func (g *Gate) prepareRideThrough(waitCtx context.Context, cfg *Config, class matrix.Class, r *http.Request, start time.Time) (*rideState, error) {
	if !g.ride.enabled.Load() {
		return nil, nil
	}
	retryable := idempotent(r.Method, matrix.RawPath(r.URL))
	var body []byte
	if retryable {
		body, retryable = bufferBody(r, cfg.RideThrough.MaxBody)
	}
	if !retryable {
		if g.ride.down.Load() {
			return nil, g.rejectUnavailable(cfg, class)
		}
		return nil, nil
	}
	wait := cfg.Classes[class].QueueTimeout
	if wait <= 0 {
		wait = matrix.DefaultQueueTimeout // never retry forever
	}
	rs := &rideState{body: body, deadline: start.Add(wait)}
	rs.ctx, rs.cancel = context.WithDeadline(waitCtx, rs.deadline)
	return rs, nil
}

func (rs *rideState) close() {
	if rs != nil {
		rs.cancel()
	}
}

// waitCtx is the context a (re)try queues under: the client's, and for a
// retry also the class deadline counted from the request's arrival.
func (rs *rideState) waitCtx(client context.Context) context.Context {
	if rs == nil || rs.retries == 0 {
		return client
	}
	return rs.ctx
}

// expired reports whether err from Acquire is the retry deadline passing
// (rather than the client leaving).
func (rs *rideState) expired(client context.Context, err error) bool {
	return rs != nil && rs.retries > 0 && errors.Is(err, context.DeadlineExceeded) && client.Err() == nil
}

// afterAttempt observes one passed-on request's result for upstream
// liveness and decides what follows: retry is true when the request should
// queue again; otherwise a non-nil err replaces next's error (a 429 for a
// request that failed because the upstream is down and cannot be retried).
// written is the status the upstream answered, 0 if none.
func (g *Gate) afterAttempt(rs *rideState, cfg *Config, class matrix.Class, r *http.Request, written int, nextErr error, now time.Time) (retry bool, err error) {
	if !g.ride.enabled.Load() {
		return false, nil
	}
	evidence, refused := downEvidence(written, nextErr)
	switch {
	case evidence:
		if n := g.ride.failures.Add(1); refused || int(n) >= cfg.RideThrough.Failures {
			g.markDown(now, !refused)
		}
	case written != 0 && written != StatusClientClosed:
		if g.ride.failures.Load() != 0 { // no shared write on the hot path
			g.ride.failures.Store(0)
		}
		g.markUp(now) // a canary or a late answer: it is back
	}
	if !evidence || written != 0 {
		return false, nil // answered (the client has it) or not the upstream's fault
	}
	if rs == nil {
		if refused {
			// Nothing reached the upstream: the client may safely retry.
			return false, g.rejectUnavailable(cfg, class)
		}
		return false, nil // it may have been sent: the upstream's error stands
	}
	if !now.Before(rs.deadline) {
		return false, g.reject(cfg, class, OutcomeTimeout, "upstream unavailable", false, 0)
	}
	if !g.ride.down.Load() {
		// Not (yet) marked down: space retries so that a flaky upstream is
		// not hammered; a down one is waited for in the queue instead.
		t := time.NewTimer(time.Duration(g.ride.interval.Load()))
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

// rejectUnavailable refuses a request that cannot wait out an upstream
// outage, with a short Retry-After: the upstream is expected back soon.
func (g *Gate) rejectUnavailable(cfg *Config, class matrix.Class) error {
	g.count(class, OutcomeShed)
	return &Rejection{Class: class, Outcome: OutcomeShed, Reason: "upstream unavailable, retry shortly",
		RetryAfter: jitter(cfg.RetryAfterMin, cfg.RetryAfterMin+cfg.RetryAfterMin/2)}
}

// downEvidence tells whether a request's result says the upstream is down
// (restarting): a refused connection or failed dial (refused: nothing was
// sent), no answer and a 502/503 error, or an answered 502/503 (a proxy in
// front of it saying so). A 504 is not: a slow upstream is overloaded, not
// away, and retrying its most expensive requests would feed the overload.
func downEvidence(written int, err error) (evidence, refused bool) {
	if written != 0 {
		return written == http.StatusBadGateway || written == http.StatusServiceUnavailable, false
	}
	if err == nil {
		return false, false
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, ErrUpstreamUnreachable) {
		return true, true
	}
	switch statusOf(err) {
	case http.StatusBadGateway, http.StatusServiceUnavailable:
		return true, false
	}
	return false, false
}

// markDown holds admission: requests wait in their queues for the upstream.
// answered says the evidence was 502/503 answers rather than refused
// connections: something in front of the homeserver is up and answering
// for it, so only a real request (a canary), not a TCP dial, can tell that
// the homeserver is back.
func (g *Gate) markDown(now time.Time, answered bool) {
	g.ride.mu.Lock()
	defer g.ride.mu.Unlock()
	if g.ride.down.Load() || !g.ride.enabled.Load() {
		return
	}
	g.ride.down.Store(true)
	g.ride.downByAnswer.Store(answered)
	g.ride.downSince.Store(now.UnixNano())
	g.adm.SetHeld(true)
	g.wakeSupervisor()
	g.log.Warn("upstream down: holding requests until it answers", "probe", *g.ride.addr.Load())
}

// markUp ends a hold: slow start begins, and the ramped caps are in force
// before the hold is released so that the backlog does not rush in.
func (g *Gate) markUp(now time.Time) {
	g.ride.mu.Lock()
	defer g.ride.mu.Unlock()
	if !g.ride.down.Load() {
		return
	}
	g.ride.down.Store(false)
	g.ride.failures.Store(0)
	g.ride.slowStart.Load().Begin(now)
	g.ride.ramping.Store(true)
	g.pushDynamicCaps(now)
	g.adm.SetHeld(false)
	g.wakeSupervisor()
	g.log.Info("upstream back: slow start", "down_for", now.Sub(time.Unix(0, g.ride.downSince.Load())).Round(time.Millisecond).String())
}

func (g *Gate) wakeSupervisor() {
	select {
	case g.ride.wake <- struct{}{}:
	default:
	}
}

// superviseUpstream is the gate's goroutine for ride-through: while the
// upstream is down it probes it every ProbeInterval; while slow start ramps
// it raises the caps every rampTick; otherwise it sleeps until woken. It
// returns when the gate closes.
func (g *Gate) superviseUpstream() {
	defer close(g.ride.done)
	for {
		var wait time.Duration
		switch {
		case g.ride.down.Load():
			wait = time.Duration(g.ride.interval.Load())
		case g.ride.ramping.Load():
			now := g.now()
			g.ride.mu.Lock() // a markUp between the check and the store would lose its ramp
			if !g.ride.slowStart.Load().Ramping(now) {
				g.ride.ramping.Store(false)
			}
			g.ride.mu.Unlock()
			g.pushDynamicCaps(now)
			wait = rampTick
		}
		ticked, open := g.sleep(wait)
		if !open {
			return
		}
		// Probe only after a full interval down: right after being marked
		// down the upstream is certainly still down.
		if ticked && g.ride.down.Load() {
			g.probeUpstream()
		}
	}
}

// sleep waits for d (forever if d is 0) or until the supervisor is woken.
// ticked reports that d passed; open is false if the gate closed meanwhile.
func (g *Gate) sleep(d time.Duration) (ticked, open bool) {
	var tick <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		tick = t.C
	}
	select {
	case <-g.stop:
		return false, false
	case <-g.ride.wake:
		return false, true
	case <-tick:
		return true, true
	}
}

// probeUpstream checks a down upstream once: a TCP dial to its address, or
// — without one, or when answers rather than refused connections marked it
// down — one queued request let through (its answer, seen by afterAttempt,
// ends the hold).
func (g *Gate) probeUpstream() {
	addr := *g.ride.addr.Load()
	if addr == "" || g.ride.downByAnswer.Load() {
		g.adm.PassOne()
		return
	}
	// The dial is bounded, so Close waits at most that long for it.
	d := net.Dialer{Timeout: min(probeDialTimeout, time.Duration(g.ride.interval.Load()))}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return
	}
	conn.Close()
	g.markUp(g.now())
}

// idempotent reports whether a request may be sent twice: GET, HEAD,
// OPTIONS, and the PUTs that Matrix makes idempotent — those carrying a
// transaction ID (send, sendToDevice, redact) and state events.
func idempotent(method, path string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	case http.MethodPut:
		return hasTxnID(path) || strings.Contains(path, "/state/")
	}
	return false
}

// hasTxnID reports whether path ends in /send/{type}/{txnId},
// /sendToDevice/{type}/{txnId} or /redact/{eventId}/{txnId}.
func hasTxnID(path string) bool {
	i := strings.LastIndexByte(path, '/')
	if i <= 0 || i == len(path)-1 {
		return false
	}
	j := strings.LastIndexByte(path[:i], '/')
	if j <= 0 || j == i-1 {
		return false
	}
	k := strings.LastIndexByte(path[:j], '/')
	switch path[k+1 : j] {
	case "send", "sendToDevice", "redact":
		return true
	}
	return false
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
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(buf), orig), orig}
		return nil, false
	}
	orig.Close()
	r.Body = io.NopCloser(bytes.NewReader(buf))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	return buf, true
}

// RideThroughStatus is the upstream liveness state ride-through acts on.
type RideThroughStatus struct {
	Enabled bool `json:"enabled"`
	// Down: admission is held until the upstream answers again.
	Down      bool       `json:"down"`
	DownSince *time.Time `json:"down_since,omitempty"`
	// SlowStart: caps are ramping up after the upstream came back.
	SlowStart bool `json:"slow_start"`
}

func (g *Gate) rideThroughStatus() RideThroughStatus {
	st := RideThroughStatus{Enabled: g.ride.enabled.Load(), Down: g.ride.down.Load(), SlowStart: g.ride.ramping.Load()}
	if st.Down {
		t := time.Unix(0, g.ride.downSince.Load())
		st.DownSince = &t
	}
	return st
}
