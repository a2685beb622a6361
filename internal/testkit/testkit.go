// Package testkit holds the helpers mxgate's tests share: a bounded
// Eventually, a goroutine-leak check, a settable clock and free ports. Every wait here
// is bounded; none of it measures speed.
package testkit

import (
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/freeport"
)

// WaitBound is how long Eventually and the leak check wait before failing:
// generous, because a loaded machine is slow, and only ever reached when a
// test fails.
const WaitBound = 10 * time.Second

// Eventually polls cond until it holds and fails t (from the test's own
// goroutine) after WaitBound. It waits for a state; it does not measure
// speed.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(WaitBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// NoGoroutineLeak records the goroutine count now and, when the test ends
// (after every cleanup registered later has run), fails t if more are left
// after a bounded wait. Call it first in a test so that its check runs last.
func NoGoroutineLeak(t testing.TB) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() { CheckGoroutines(t, before) })
}

// CheckGoroutines fails t if the goroutine count does not return to before
// within WaitBound, printing every goroutine's stack.
func CheckGoroutines(t testing.TB, before int) {
	t.Helper()
	deadline := time.Now().Add(WaitBound)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Clock is a settable clock for code that takes its time from a func() time.Time.
// It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock reading at.
func NewClock(at time.Time) *Clock { return &Clock{t: at} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// FreePort returns a port for a server the test starts by address (see
// package freeport), failing t if none is free.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freeport.Port()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// FreeLoopback is FreePort as "127.0.0.1:PORT".
func FreeLoopback(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}
