package limiter

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func oneClass(l ClassLimits) Config { return Config{Classes: []ClassLimits{l}} }

// fakeClock is a settable clock for deterministic LIFO tests.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// waitQueued polls until class has n waiters; bounded.
func waitQueued(t *testing.T, a *Admission, class, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if _, cs := a.Snapshot(); cs[class].Queued == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	_, cs := a.Snapshot()
	t.Fatalf("class %d: want %d queued, have %d", class, n, cs[class].Queued)
}

func checkNoLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Fatalf("goroutine leak: %d before, %d after", before, n)
	}
}

func TestAdmissionNeverExceedsCap(t *testing.T) {
	before := runtime.NumGoroutine()
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 4, Queue: 1000, QueueTimeout: 10 * time.Second}), nil)
	var cur, peak atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil {
				t.Error(err)
				return
			}
			n := cur.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			runtime.Gosched()
			cur.Add(-1)
			a.Release(0)
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 4 || p < 1 {
		t.Fatalf("peak in flight %d, want 1..4", p)
	}
	if g, cs := a.Snapshot(); g != 0 || cs[0].Inflight != 0 || cs[0].Queued != 0 {
		t.Fatalf("not drained: global %d, %+v", g, cs[0])
	}
	checkNoLeak(t, before)
}

func TestAdmissionQueueFullAndTimeout(t *testing.T) {
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 1, QueueTimeout: 30 * time.Millisecond}), nil)
	if waited, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil || waited {
		t.Fatalf("first acquire: waited=%v err=%v", waited, err)
	}
	errc := make(chan error, 1)
	go func() { _, err := a.Acquire(context.Background(), 0, LaneNormal); errc <- err }()
	waitQueued(t, a, 0, 1)
	if _, err := a.Acquire(context.Background(), 0, LaneNormal); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third acquire: want ErrQueueFull, got %v", err)
	}
	if err := <-errc; !errors.Is(err, ErrQueueTimeout) {
		t.Fatalf("queued acquire: want ErrQueueTimeout, got %v", err)
	}
	if _, cs := a.Snapshot(); cs[0].Queued != 0 || cs[0].Inflight != 1 {
		t.Fatalf("after timeout: %+v", cs[0])
	}
}

func TestAdmissionCancelledWaiterLeavesAndNeverAdmitted(t *testing.T) {
	before := runtime.NumGoroutine()
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 10, QueueTimeout: time.Minute}), nil)
	if _, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { _, err := a.Acquire(ctx, 0, LaneNormal); errc <- err }()
	waitQueued(t, a, 0, 1)
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if _, cs := a.Snapshot(); cs[0].Queued != 0 {
		t.Fatalf("cancelled waiter still queued: %+v", cs[0])
	}
	a.Release(0)
	if _, cs := a.Snapshot(); cs[0].Inflight != 0 {
		t.Fatalf("slot went to a cancelled waiter: %+v", cs[0])
	}
	checkNoLeak(t, before)
}

func TestAdmissionGlobalCapAndOwnBudget(t *testing.T) {
	a := NewAdmission(Config{MaxInflight: 2, Classes: []ClassLimits{
		{MaxInflight: 10, Queue: 10, QueueTimeout: time.Minute},
		{MaxInflight: 10, Queue: 10, QueueTimeout: time.Minute},
		{MaxInflight: 10, Queue: 0, OwnBudget: true},
	}}, nil)
	for i := 0; i < 2; i++ {
		if _, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil {
			t.Fatal(err)
		}
	}
	// Class 1 must wait for the global cap even though its own cap is free.
	done := make(chan error, 1)
	go func() { _, err := a.Acquire(context.Background(), 1, LaneNormal); done <- err }()
	waitQueued(t, a, 1, 1)
	// The own-budget class is not held back by the global cap.
	for i := 0; i < 5; i++ {
		if waited, err := a.Acquire(context.Background(), 2, LaneNormal); err != nil || waited {
			t.Fatalf("own-budget acquire %d: waited=%v err=%v", i, waited, err)
		}
	}
	a.Release(0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if g, cs := a.Snapshot(); g != 2 || cs[1].Inflight != 1 || cs[2].Inflight != 5 {
		t.Fatalf("global %d, classes %+v", g, cs)
	}
}

// grantOrder queues n waiters (lanes given) on a full one-slot class and
// returns the order in which they are granted as slots free one by one.
func grantOrder(t *testing.T, a *Admission, clock *fakeClock, lanes []Lane, beforeGrants func()) []int {
	t.Helper()
	order := make(chan int, len(lanes))
	for i, lane := range lanes {
		go func() {
			if _, err := a.Acquire(context.Background(), 0, lane); err != nil {
				t.Error(err)
				order <- -1
				return
			}
			order <- i
		}()
		waitQueued(t, a, 0, i+1)
		if clock != nil {
			clock.add(time.Millisecond)
		}
	}
	if beforeGrants != nil {
		beforeGrants()
	}
	got := make([]int, 0, len(lanes))
	for range lanes {
		a.Release(0)
		got = append(got, <-order)
	}
	return got
}

func TestAdmissionHerdLaneWaitsBehindNormal(t *testing.T) {
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 10, QueueTimeout: time.Minute}), nil)
	if _, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil {
		t.Fatal(err)
	}
	got := grantOrder(t, a, nil, []Lane{LaneHerd, LaneHerd, LaneNormal, LaneNormal}, nil)
	want := []int{2, 3, 0, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("grant order %v, want %v", got, want)
		}
	}
}

func TestAdmissionFIFOWhileQueueDrains(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 10, QueueTimeout: time.Minute, LIFOAfter: time.Second}), clock.now)
	if _, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil {
		t.Fatal(err)
	}
	got := grantOrder(t, a, clock, []Lane{0, 0, 0, 0}, nil)
	for i, g := range got {
		if g != i {
			t.Fatalf("young queue must be FIFO, got %v", got)
		}
	}
}

func TestAdmissionStandingQueueServesNewestFirstWithoutStarvingOldest(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1000, 0)}
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 10, QueueTimeout: time.Minute, LIFOAfter: time.Second}), clock.now)
	if _, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil {
		t.Fatal(err)
	}
	got := grantOrder(t, a, clock, []Lane{0, 0, 0, 0, 0, 0}, func() { clock.add(2 * time.Second) })
	// Standing for 2s > 1s: newest first, but every 4th grant goes to the oldest.
	want := []int{5, 4, 3, 0, 2, 1}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("grant order %v, want %v", got, want)
		}
	}
}

func TestAdmissionPauseHoldsThenAdmits(t *testing.T) {
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 5, Queue: 10, QueueTimeout: time.Minute}), nil)
	a.SetPaused(0, true)
	done := make(chan error, 1)
	go func() { _, err := a.Acquire(context.Background(), 0, LaneNormal); done <- err }()
	waitQueued(t, a, 0, 1)
	if _, cs := a.Snapshot(); cs[0].Inflight != 0 || !cs[0].Paused {
		t.Fatalf("paused class admitted: %+v", cs[0])
	}
	a.SetPaused(0, false)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestAdmissionConfigureKeepsInflightAndDynamicCap(t *testing.T) {
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 2, Queue: 10, QueueTimeout: time.Minute}), nil)
	for i := 0; i < 2; i++ {
		if _, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { _, err := a.Acquire(context.Background(), 0, LaneNormal); done <- err }()
	waitQueued(t, a, 0, 1)
	a.Configure(oneClass(ClassLimits{MaxInflight: 3, Queue: 10, QueueTimeout: time.Minute}))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, cs := a.Snapshot(); cs[0].Inflight != 3 || cs[0].Cap != 3 {
		t.Fatalf("after reconfigure: %+v", cs[0])
	}
	a.SetDynamicCap(0, 1)
	if _, cs := a.Snapshot(); cs[0].Cap != 1 {
		t.Fatalf("dynamic cap not applied: %+v", cs[0])
	}
	a.SetDynamicCap(0, 50) // never above the configured ceiling
	if _, cs := a.Snapshot(); cs[0].Cap != 3 {
		t.Fatalf("dynamic cap above ceiling: %+v", cs[0])
	}
}

// BenchmarkAdmissionUncontended measures the admit/release fast path: no
// queue, slots free. This is the cost mxgate adds to every request.
func BenchmarkAdmissionUncontended(b *testing.B) {
	a := NewAdmission(Config{MaxInflight: 256, Classes: make([]ClassLimits, 13)}, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Acquire(ctx, 3, LaneNormal); err != nil {
			b.Fatal(err)
		}
		a.Release(3)
	}
}

// BenchmarkAdmissionParallel measures the same path from all cores at once.
func BenchmarkAdmissionParallel(b *testing.B) {
	a := NewAdmission(Config{MaxInflight: 0, Classes: make([]ClassLimits, 13)}, nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Acquire(ctx, 3, LaneNormal); err != nil {
				b.Error(err)
				return
			}
			a.Release(3)
		}
	})
}
