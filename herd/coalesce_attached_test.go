package herd

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
)

// An attached leader fetches on its own client's request: when that client
// leaves mid-answer the upstream request ends with it, and the waiters
// elect one of themselves to fetch again; every waiter gets that one
// complete answer.
func TestAttachedLeaderLeavingHandsTheGroupToAWaiter(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	firstHalfSent := make(chan struct{})
	u := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Leader") == "first" {
			fmt.Fprint(w, strings.Repeat("a", 1000))
			w.(http.Flusher).Flush()
			close(firstHalfSent)
			<-r.Context().Done() // ends only with the leader's client
			return
		}
		fmt.Fprint(w, "complete answer")
	})
	const path = "/_matrix/client/v3/rooms/!r:x/messages"
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, path, nil), false)

	leaderCtx, leave := context.WithCancel(context.Background())
	t.Cleanup(leave) // before the upstream closes, which waits for its handler
	leaderDone := make(chan Outcome, 1)
	go func() {
		r := httptest.NewRequest(http.MethodGet, path, nil).WithContext(leaderCtx)
		r.Header.Set("X-Leader", "first")
		o, _ := c.Do(httptest.NewRecorder(), r, key, LeadAttached, time.Minute, time.Minute, u.fetch)
		leaderDone <- o
	}()
	<-firstHalfSent

	const waiters = 5
	results := make(chan *httptest.ResponseRecorder, waiters)
	outcomes := make(chan Outcome, waiters)
	for range waiters {
		go func() {
			w := httptest.NewRecorder()
			o, err := c.Do(w, httptest.NewRequest(http.MethodGet, path, nil), key, LeadAttached, time.Minute, time.Minute, u.fetch)
			if err != nil {
				t.Errorf("waiter: %v", err)
			}
			outcomes <- o
			results <- w
		}()
	}
	testkit.Eventually(t, "waiters", func() bool { return c.Waiting() == waiters })
	leave()
	if o := <-leaderDone; o != Leader {
		t.Fatalf("first leader: %v", o)
	}
	leaders := 0
	for range waiters {
		switch o := <-outcomes; o {
		case Leader:
			leaders++
		case Coalesced:
		default:
			t.Fatalf("waiter outcome %v, want one leader and the rest coalesced", o)
		}
		if w := <-results; w.Code != http.StatusOK || w.Body.String() != "complete answer" {
			t.Fatalf("waiter got %d %q, want the new leader's complete answer", w.Code, w.Body.String())
		}
	}
	if leaders != 1 {
		t.Fatalf("%d waiters led a fetch, want 1", leaders)
	}
	if got := u.hits.Load(); got != 2 {
		t.Fatalf("upstream saw %d requests, want 2 (the first leader's, cut short, and its successor's)", got)
	}
	if g, _, _ := c.Len(); g != 0 {
		t.Fatalf("%d groups left", g)
	}
}

// A leader whose client left while its request queued (the gate refuses
// it without going upstream) hands the group on too, rather than giving
// its waiters its refusal.
func TestLeaderRefusedForLeavingHandsTheGroupOn(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	for _, lead := range []Lead{LeadAttached, LeadDetached} {
		c := NewCoalescer(CoalescerConfig{})
		key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
		queued := make(chan struct{})
		leaderCtx, leave := context.WithCancel(context.Background())
		leaderDone := make(chan error, 1)
		go func() {
			_, err := c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(leaderCtx), key, lead, 0, time.Minute,
				func(http.ResponseWriter, *http.Request) error {
					close(queued)
					<-leaderCtx.Done() // waits for a slot until its client leaves
					return fmt.Errorf("refused: %w", leaderCtx.Err())
				})
			leaderDone <- err
		}()
		<-queued
		waiter := make(chan string, 1)
		go func() {
			w := httptest.NewRecorder()
			o, err := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, lead, 0, time.Minute,
				func(w http.ResponseWriter, _ *http.Request) error { fmt.Fprint(w, "fetched"); return nil })
			waiter <- fmt.Sprintf("%v %v %s", o, err, w.Body.String())
		}()
		testkit.Eventually(t, "the waiter", func() bool { return c.Waiting() == 1 })
		leave()
		if err := <-leaderDone; err == nil {
			t.Fatalf("lead %d: the leader's refusal was lost", lead)
		}
		if got, want := <-waiter, fmt.Sprintf("%v <nil> fetched", Leader); got != want {
			t.Fatalf("lead %d: waiter got %q, want %q", lead, got, want)
		}
	}
}

// An attached leader costs what its group costs; a detached one also a
// context, a timer, a watch on its client and a request copy. The
// difference is what every coalescing request outside a herd saves.
func TestAttachedLeaderAllocatesLessThanDetached(t *testing.T) {
	c := NewCoalescer(CoalescerConfig{})
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	ctx, cancel := context.WithCancel(context.Background()) // a client's: cancellable
	defer cancel()
	r = r.WithContext(ctx)
	key, _ := keyFor(r, false)
	w := &discardWriter{h: http.Header{}}
	fetch := func(w http.ResponseWriter, _ *http.Request) error {
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	allocs := func(lead Lead) float64 {
		return testing.AllocsPerRun(200, func() {
			clear(w.h)
			if o, err := c.Do(w, r, key, lead, 0, time.Minute, fetch); o != Leader || err != nil {
				t.Fatalf("lead %d: %v %v", lead, o, err)
			}
		})
	}
	attached, detached := allocs(LeadAttached), allocs(LeadDetached)
	if attached+5 > detached {
		t.Fatalf("a lone leader allocates %.0f attached, %.0f detached: want at least 5 fewer attached", attached, detached)
	}
	t.Logf("allocations per lone leader: attached %.0f, detached %.0f", attached, detached)
}

// A body that ends short of its Content-Length without an error (a proxy
// that lost the upstream mid-body and did not panic) is never shared: the
// waiters elect a new leader.
func TestShortBodyIsNotShared(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	c := NewCoalescer(CoalescerConfig{})
	key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
	started, release := make(chan struct{}), make(chan struct{})
	leaderDone := make(chan string, 1)
	go func() {
		w := httptest.NewRecorder()
		_, err := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadAttached, time.Hour, time.Minute,
			func(w http.ResponseWriter, _ *http.Request) error {
				w.Header().Set("Content-Length", "100")
				fmt.Fprint(w, strings.Repeat("a", 50))
				close(started)
				<-release
				return nil
			})
		leaderDone <- fmt.Sprint(err, " ", w.Body.Len())
	}()
	<-started
	waiter := make(chan string, 1)
	go func() {
		w := httptest.NewRecorder()
		o, _ := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadAttached, time.Hour, time.Minute,
			func(w http.ResponseWriter, _ *http.Request) error { fmt.Fprint(w, "whole"); return nil })
		waiter <- fmt.Sprintf("%v %s", o, w.Body.String())
	}()
	testkit.Eventually(t, "the waiter", func() bool { return c.Waiting() == 1 })
	close(release)
	if got := <-leaderDone; got != "<nil> 50" {
		t.Fatalf("leader: %s", got)
	}
	if got, want := <-waiter, fmt.Sprintf("%v whole", Leader); got != want {
		t.Fatalf("waiter got %q, want %q", got, want)
	}
}

// A 304 (or 204) may carry a Content-Length with no body: it is a whole
// answer, shared with the waiters rather than taken for a short body.
func TestBodylessAnswerWithContentLengthIsShared(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	for _, status := range []int{http.StatusNoContent, http.StatusNotModified} {
		c := NewCoalescer(CoalescerConfig{})
		key, _ := keyFor(httptest.NewRequest(http.MethodGet, "/x", nil), false)
		started, release := make(chan struct{}), make(chan struct{})
		leaderDone := make(chan struct{})
		go func() {
			defer close(leaderDone)
			c.Do(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadAttached, 0, time.Minute,
				func(w http.ResponseWriter, _ *http.Request) error {
					w.Header().Set("Content-Length", "100")
					close(started)
					<-release
					w.WriteHeader(status)
					return nil
				})
		}()
		<-started
		waiter := make(chan string, 1)
		go func() {
			w := httptest.NewRecorder()
			o, err := c.Do(w, httptest.NewRequest(http.MethodGet, "/x", nil), key, LeadAttached, 0, time.Minute,
				func(w http.ResponseWriter, _ *http.Request) error { w.WriteHeader(http.StatusTeapot); return nil })
			waiter <- fmt.Sprintf("%v %v %d", o, err, w.Code)
		}()
		testkit.Eventually(t, "the waiter", func() bool { return c.Waiting() == 1 })
		close(release)
		<-leaderDone
		if got, want := <-waiter, fmt.Sprintf("%v <nil> %d", Coalesced, status); got != want {
			t.Fatalf("%d: waiter got %q, want %q", status, got, want)
		}
	}
}
