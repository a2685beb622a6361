package e2e

import (
	"runtime"
	"testing"
	"time"
)

// checkGoroutineLeaks fails t if, once every later-registered cleanup has run
// (closing idle connections), the goroutine count has not come back to what
// it was when the test started. Call it first in a test, so its cleanup runs
// last. Waits at most 5 s.
func checkGoroutineLeaks(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			now := runtime.NumGoroutine()
			if now <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("goroutine leak: %d at start, %d at end\n%s", before, now, buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
