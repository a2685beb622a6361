package simclient

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"time"
)

// Random streams, one per kind of loop.
const (
	streamSync uint64 = iota + 1
	streamSend
	streamRead
	streamResync
	streamMark
)

// maxLoopIterations bounds every loop in addition to its context.
const maxLoopIterations = 100_000

const clientAPI = "/_matrix/client/v3"

var nextBatchRE = regexp.MustCompile(`"next_batch":"([^"]+)"`)

// SyncLoop runs a js-sdk style sync loop until ctx ends: 30 s long-polls
// from since (an initial sync first if since is empty, as for a fresh
// login). After an error it waits 2-7 s, then polls /versions until the
// server answers, then resumes; a 429 is waited out as told, except by
// FamilyJSSDK, whose sync loop treats it as any other error.
func (c *Client) SyncLoop(ctx context.Context, since string) {
	r := c.rand(streamSync)
	for range maxLoopIterations {
		if ctx.Err() != nil {
			return
		}
		path := clientAPI + "/sync"
		if since != "" {
			path += fmt.Sprintf("?since=%s&timeout=%d", url.QueryEscape(since), c.o.SyncTimeout.Milliseconds())
		}
		a := c.do(ctx, http.MethodGet, path, nil, c.o.SyncTimeout+c.o.SyncBuffer)
		switch {
		case a.status == http.StatusOK:
			if m := nextBatchRE.FindSubmatch(a.head); m != nil {
				since = string(m[1])
			}
			continue
		case a.status == http.StatusTooManyRequests && a.retryAfter > 0 && c.o.Family != FamilyJSSDK:
			if !c.waitRetryAfter(ctx, a.retryAfter) {
				return
			}
			continue
		}
		if !c.waitForServer(ctx, r) {
			return
		}
	}
}

// waitForServer is the js-sdk's keep-alive after a failed sync (SyncApi
// startKeepAlives): wait 2-7 s, poll /versions, and while that fails poll
// it again every 5-10 s; any answer but a failure (a 400 or 404 counts as
// an answer) ends the wait.
func (c *Client) waitForServer(ctx context.Context, r *rand.Rand) bool {
	lo, hi := 2*time.Second, 7*time.Second
	for range maxLoopIterations {
		if !c.wait(ctx, jitter(r, lo, hi)) {
			return false
		}
		switch a := c.do(ctx, http.MethodGet, "/_matrix/client/versions", nil, 0); a.status {
		case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
			return true
		}
		lo, hi = 5*time.Second, 10*time.Second
	}
	return false
}

// SyncOnce is one incremental /sync that returns at once, after delay: a
// client that was online before an incident, whose token the homeserver
// (and mxgate) has therefore seen accepted. Its outcome is in the records.
func (c *Client) SyncOnce(ctx context.Context, delay time.Duration) {
	if c.wait(ctx, delay) {
		c.do(ctx, http.MethodGet, clientAPI+"/sync?since=s0&timeout=0", nil, 0)
	}
}

// InitialSync is a js-sdk client starting (a page load, or Element Web
// after a homeserver restart): after delay, an initial /sync, retried the
// js-sdk way (waitForServer) until it succeeds or ctx ends. It reports
// whether it succeeded.
func (c *Client) InitialSync(ctx context.Context, delay time.Duration) bool {
	r := c.rand(streamResync)
	if !c.wait(ctx, delay) {
		return false
	}
	for range maxLoopIterations {
		if a := c.do(ctx, http.MethodGet, clientAPI+"/sync", nil, c.o.SyncTimeout+c.o.SyncBuffer); a.status == http.StatusOK {
			return true
		}
		if !c.waitForServer(ctx, r) {
			return false
		}
	}
	return false
}

// SendLoop sends a message to room about every interval (uniformly 0.5-1.5x)
// until ctx ends, retrying each with the same transaction ID.
func (c *Client) SendLoop(ctx context.Context, room string, every time.Duration) {
	r := c.rand(streamSend)
	for txn := range maxLoopIterations {
		if !c.wait(ctx, jitter(r, every/2, every*3/2)) {
			return
		}
		path := fmt.Sprintf("%s/rooms/%s/send/m.room.message/c%dt%d", clientAPI, url.PathEscape(room), c.id, txn)
		c.act(ctx, r, http.MethodPut, path, []byte(`{"msgtype":"m.text","body":"hello"}`))
	}
}

// ReadLoop reads room about every interval until ctx ends: mostly a page of
// history, one time in stateEvery the room's state.
func (c *Client) ReadLoop(ctx context.Context, room string, every time.Duration, stateEvery int) {
	r := c.rand(streamRead)
	for range maxLoopIterations {
		if !c.wait(ctx, jitter(r, every/2, every*3/2)) {
			return
		}
		path := fmt.Sprintf("%s/rooms/%s/messages?dir=b&limit=20", clientAPI, url.PathEscape(room))
		if stateEvery > 0 && r.IntN(stateEvery) == 0 {
			path = fmt.Sprintf("%s/rooms/%s/state", clientAPI, url.PathEscape(room))
		}
		c.act(ctx, r, http.MethodGet, path, nil)
	}
}

// Resync is a mobile client recovering from an odd event in a big room: it
// fetches the room's full state, then does an initial sync, each with
// retries. It starts after delay and reports whether both succeeded.
func (c *Client) Resync(ctx context.Context, room string, delay time.Duration) bool {
	r := c.rand(streamResync)
	if !c.wait(ctx, delay) {
		return false
	}
	if !c.act(ctx, r, http.MethodGet, fmt.Sprintf("%s/rooms/%s/state", clientAPI, url.PathEscape(room)), nil) {
		return false
	}
	return c.act(ctx, r, http.MethodGet, clientAPI+"/sync?full_state=true", nil)
}

// MarkRead sets the read marker in room after delay (with retries) and
// reports whether it succeeded.
func (c *Client) MarkRead(ctx context.Context, room string, delay time.Duration) bool {
	r := c.rand(streamMark)
	if !c.wait(ctx, delay) {
		return false
	}
	body := []byte(`{"m.fully_read":"$latest","m.read":"$latest"}`)
	return c.act(ctx, r, http.MethodPost, fmt.Sprintf("%s/rooms/%s/read_markers", clientAPI, url.PathEscape(room)), body)
}

func jitter(r *rand.Rand, lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(r.Int64N(int64(hi-lo)))
}
