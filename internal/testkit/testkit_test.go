package testkit

import (
	"testing"
	"time"
)

func TestClock(t *testing.T) {
	at := time.Unix(1000, 0)
	c := NewClock(at)
	c.Advance(time.Second)
	if got := c.Now(); !got.Equal(at.Add(time.Second)) {
		t.Fatalf("Now = %v", got)
	}
}

func TestEventuallyAndLeakCheck(t *testing.T) {
	NoGoroutineLeak(t)
	done := make(chan struct{})
	go func() { close(done) }()
	Eventually(t, "the goroutine to finish", func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	})
}
