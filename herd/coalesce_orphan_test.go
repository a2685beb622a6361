package herd

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
)

// A leader's fetch whose own client and every waiter have gone is
// cancelled after OrphanGrace, not left to run for FetchTimeout against a
// stuck upstream; a waiter that is still there keeps it going.
func TestOrphanedFetchIsCancelledAfterGrace(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	const grace = 50 * time.Millisecond
	c := NewCoalescer(CoalescerConfig{OrphanGrace: grace})
	fetchEnded := make(chan error, 2)
	stuck := func(w http.ResponseWriter, r *http.Request) error {
		<-r.Context().Done() // a stuck upstream: only the context ends it
		fetchEnded <- r.Context().Err()
		return r.Context().Err()
	}
	leaderCtx, leave := context.WithCancel(context.Background())
	r := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/rooms/%21r%3Ax/state", nil).WithContext(leaderCtx)
	key, _ := keyFor(r, false)
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		c.Do(httptest.NewRecorder(), r, key, LeadDetached, 0, 0, stuck)
	}()
	testkit.Eventually(t, "the group to start", func() bool { g, _, _ := c.Len(); return g == 1 })

	// A waiter keeps the fetch alive past the leader's departure.
	waiterCtx, waiterLeaves := context.WithCancel(context.Background())
	waiterDone := make(chan Outcome, 1)
	go func() {
		o, _ := c.Do(httptest.NewRecorder(), r.WithContext(waiterCtx), key, LeadDetached, 0, time.Minute, stuck)
		waiterDone <- o
	}()
	testkit.Eventually(t, "the waiter", func() bool { return c.Waiting() == 1 })
	leave()
	select {
	case <-fetchEnded:
		t.Fatal("the fetch was cancelled while a waiter still wanted it")
	case <-time.After(4 * grace):
	}

	// The last one leaves: the fetch ends within about the grace.
	left := time.Now()
	waiterLeaves()
	if o := <-waiterDone; o != Abandoned {
		t.Fatalf("waiter outcome %v, want Abandoned", o)
	}
	select {
	case err := <-fetchEnded:
		if err != context.Canceled {
			t.Fatalf("fetch ended with %v, want context.Canceled", err)
		}
		if took := time.Since(left); took < grace {
			t.Fatalf("cancelled after %v, before the %v grace", took, grace)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("orphaned fetch not cancelled")
	}
	<-leaderDone
	if g, _, _ := c.Len(); g != 0 {
		t.Fatalf("%d groups left", g)
	}
}

// A detached fetch cancelled as orphaned ends without an error in Caddy:
// its reverse proxy answers the cancelled request 499 and returns nil. That
// answer is never cached: the client that asks again gets a fetch of its
// own, not a recorded 499.
func TestOrphanCancelledAnswerIsNotCached(t *testing.T) {
	testkit.NoGoroutineLeak(t)
	const grace = 20 * time.Millisecond
	c := NewCoalescer(CoalescerConfig{OrphanGrace: grace})
	caddyLike := func(w http.ResponseWriter, r *http.Request) error {
		<-r.Context().Done()
		w.WriteHeader(499) // Caddy's status for a request whose client went away
		return nil
	}
	leaderCtx, leave := context.WithCancel(context.Background())
	r := httptest.NewRequest(http.MethodGet, "/_matrix/client/v3/rooms/%21r%3Ax/state", nil)
	key, _ := keyFor(r, false)
	leaderDone := make(chan struct{})
	go func() {
		defer close(leaderDone)
		c.Do(httptest.NewRecorder(), r.WithContext(leaderCtx), key, LeadDetached, time.Hour, 0, caddyLike)
	}()
	testkit.Eventually(t, "the group to start", func() bool { g, _, _ := c.Len(); return g == 1 })
	leave()
	select {
	case <-leaderDone:
	case <-time.After(10 * time.Second):
		t.Fatal("orphaned fetch not cancelled")
	}

	w := httptest.NewRecorder()
	o, err := c.Do(w, r, key, LeadDetached, time.Hour, 0, func(w http.ResponseWriter, _ *http.Request) error {
		_, err := w.Write([]byte("fresh"))
		return err
	})
	if o != Leader || err != nil || w.Code != http.StatusOK || w.Body.String() != "fresh" {
		t.Fatalf("asking again: %v %v, %d %q; want a fetch of its own (Leader, 200 fresh)", o, err, w.Code, w.Body.String())
	}
}
