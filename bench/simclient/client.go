package simclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// Options are shared by a population of clients. Durations are model time:
// a client divides them by Scale before waiting.
type Options struct {
	// Base is the homeserver (or proxy) URL, e.g. http://127.0.0.1:8008.
	Base string
	// HTTP sends the requests; its Timeout should be zero (clients set
	// their own per request).
	HTTP *http.Client
	// Recorder receives every request.
	Recorder *Recorder
	// Scale divides every model duration (default 1).
	Scale float64
	// GiveUpMin and GiveUpMax bound a client's request timeout, drawn per
	// client (defaults 30s and 60s: mobile SDK read timeouts).
	GiveUpMin, GiveUpMax time.Duration
	// MaxAttempts bounds the tries of one action (default 6).
	MaxAttempts int
	// MaxRetryAfter caps how long a client honours a server's Retry-After
	// (default 120s). The server's delay itself is taken as wall-clock time:
	// a gateway run at the same scale already scales it.
	MaxRetryAfter time.Duration
	// SyncTimeout is the long-poll timeout sent to /sync (default 30s);
	// SyncBuffer is added for the client-side timeout of a sync request
	// (default 80s, the js-sdk's BUFFER_PERIOD_MS).
	SyncTimeout, SyncBuffer time.Duration
	// Family is the SDK the clients model (family.go); default generic.
	Family Family
}

func (o Options) withDefaults() Options {
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.GiveUpMin <= 0 {
		o.GiveUpMin = 30 * time.Second
	}
	if o.GiveUpMax < o.GiveUpMin {
		o.GiveUpMax = max(60*time.Second, o.GiveUpMin)
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 6
	}
	if o.MaxRetryAfter <= 0 {
		o.MaxRetryAfter = 120 * time.Second
	}
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = 30 * time.Second
	}
	if o.SyncBuffer <= 0 {
		o.SyncBuffer = 80 * time.Second
	}
	return o
}

// Client is one simulated device with its own access token. Its loops may
// run concurrently; each draws from its own seeded random stream.
type Client struct {
	id     int
	seed   uint64
	token  string
	group  string
	giveUp time.Duration
	o      Options
}

// New returns client id of a population seeded with seed, recording its
// requests under group.
func New(id int, seed uint64, group string, o Options) *Client {
	o = o.withDefaults()
	c := &Client{id: id, seed: seed, group: group, o: o, token: fmt.Sprintf("syt_sim_%d_%016x", id, seed)}
	r := c.rand(0)
	c.giveUp = o.GiveUpMin + time.Duration(r.Int64N(int64(o.GiveUpMax-o.GiveUpMin)+1))
	return c
}

// rand returns the client's random stream number stream (one per loop), so
// that a client's behaviour depends only on the seed, not on scheduling.
func (c *Client) rand(stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(c.seed, uint64(c.id)<<8|stream))
}

func (c *Client) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / c.o.Scale)
}

// wait sleeps d of model time; it reports false if ctx ended first.
func (c *Client) wait(ctx context.Context, d time.Duration) bool {
	return c.waitReal(ctx, c.real(d))
}

// waitRetryAfter waits out a server's Retry-After (wall-clock, capped).
func (c *Client) waitRetryAfter(ctx context.Context, d time.Duration) bool {
	return c.waitReal(ctx, min(d, c.real(c.o.MaxRetryAfter)))
}

func (c *Client) waitReal(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// answer is what one request returned.
type answer struct {
	status     int
	head       []byte        // the first bytes of the body (enough for next_batch)
	retryAfter time.Duration // from a 429: retry_after_ms, else Retry-After
}

const headBytes = 256

// do sends one request with the client's timeout (or timeout if non-zero)
// and records it.
func (c *Client) do(ctx context.Context, method, path string, body []byte, timeout time.Duration) answer {
	if timeout == 0 {
		timeout = c.giveUp
	}
	rctx, cancel := context.WithTimeout(ctx, c.real(timeout))
	defer cancel()
	rawPath, rawQuery, _ := strings.Cut(path, "?")
	rec := Record{Client: c.id, Group: c.group, Class: matrix.Classify(method, rawPath, rawQuery).Class}
	rec.Start = time.Since(c.o.Recorder.Start())
	a := c.send(rctx, method, path, body)
	rec.End = time.Since(c.o.Recorder.Start())
	rec.Status = a.status
	// The client's own deadline, not the scenario ending, counts as giving up.
	rec.GaveUp = errors.Is(rctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	if rec.GaveUp {
		rec.Status = 0
	}
	// A request cut off by the end of the run is kept: leaving it out would
	// hide exactly the slowest requests.
	rec.Unfinished = ctx.Err() != nil
	if rec.Unfinished {
		rec.Status = 0
	}
	c.o.Recorder.add(rec)
	return a
}

func (c *Client) send(ctx context.Context, method, path string, body []byte) answer {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.o.Base+path, rd)
	if err != nil {
		return answer{}
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.o.HTTP.Do(req)
	if err != nil {
		return answer{}
	}
	defer resp.Body.Close()
	head := make([]byte, headBytes)
	n, _ := io.ReadFull(resp.Body, head)
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return answer{} // the answer did not arrive in full
	}
	a := answer{status: resp.StatusCode, head: head[:n]}
	if resp.StatusCode == http.StatusTooManyRequests {
		a.retryAfter = c.o.Family.retryAfter(resp.Header.Get("Retry-After"), a.head)
	}
	return a
}

// act performs one user action the way a mobile SDK does: on a 429 wait as
// its family reads it, on a timeout, 5xx or connection error (or a 429 it
// finds no delay in) back off exponentially with jitter, and give up after
// MaxAttempts (matrix-ios-sdk: once its waits would pass 20 s). It reports
// whether it succeeded.
func (c *Client) act(ctx context.Context, r *rand.Rand, method, path string, body []byte) bool {
	var waited time.Duration
	for attempt := range c.o.MaxAttempts {
		a := c.do(ctx, method, path, body, 0)
		switch {
		case a.status >= 200 && a.status < 300:
			return true
		case a.status >= 400 && a.status < 500 && a.status != http.StatusTooManyRequests:
			return false // a client error does not get better by retrying
		}
		if a.status == http.StatusTooManyRequests && a.retryAfter > 0 {
			if waited += a.retryAfter; c.o.Family == FamilyIOS && waited > c.real(iosRetryBudget) {
				return false
			}
			if !c.waitRetryAfter(ctx, a.retryAfter) {
				return false
			}
			continue
		}
		backoff := min(time.Second<<attempt, 30*time.Second)
		if !c.wait(ctx, time.Duration(float64(backoff)*(0.5+r.Float64()))) {
			return false
		}
	}
	return false
}
