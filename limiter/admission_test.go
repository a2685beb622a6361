package limiter

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"
)

func oneClass(l ClassLimits) Config { return Config{Classes: []ClassLimits{l}} }

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
			release(a, 0)
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > 4 || p < 1 {
		t.Fatalf("peak in flight %d, want 1..4", p)
	}
	if g, cs := a.Snapshot(); g != 0 || cs[0].Inflight != 0 || cs[0].Queued != 0 {
		t.Fatalf("not drained: global %d, %+v", g, cs[0])
	}
	testkit.CheckGoroutines(t, before)
}

func TestAdmissionQueueFullAndTimeout(t *testing.T) {
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 1, QueueTimeout: 30 * time.Millisecond}), nil)
	if tk, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil || tk.Waited {
		t.Fatalf("first acquire: waited=%v err=%v", tk.Waited, err)
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
	release(a, 0)
	if _, cs := a.Snapshot(); cs[0].Inflight != 0 {
		t.Fatalf("slot went to a cancelled waiter: %+v", cs[0])
	}
	testkit.CheckGoroutines(t, before)
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
		if tk, err := a.Acquire(context.Background(), 2, LaneNormal); err != nil || tk.Waited {
			t.Fatalf("own-budget acquire %d: waited=%v err=%v", i, tk.Waited, err)
		}
	}
	release(a, 0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if g, cs := a.Snapshot(); g != 2 || cs[1].Inflight != 1 || cs[2].Inflight != 5 {
		t.Fatalf("global %d, classes %+v", g, cs)
	}
}

// grantOrder queues n waiters (lanes given) on a full one-slot class and
// returns the order in which they are granted as slots free one by one:
// first the slot held before, then each granted waiter's own.
func grantOrder(t *testing.T, a *Admission, clock *testkit.Clock, lanes []Lane, beforeGrants func()) []int {
	t.Helper()
	type grant struct {
		i      int
		ticket Ticket
	}
	order := make(chan grant, len(lanes))
	for i, lane := range lanes {
		go func() {
			tk, err := a.Acquire(context.Background(), 0, lane)
			if err != nil {
				t.Error(err)
				order <- grant{i: -1}
				return
			}
			order <- grant{i, tk}
		}()
		waitQueued(t, a, 0, i+1)
		if clock != nil {
			clock.Advance(time.Millisecond)
		}
	}
	if beforeGrants != nil {
		beforeGrants()
	}
	got := make([]int, 0, len(lanes))
	release(a, 0)
	for range lanes {
		g := <-order
		got = append(got, g.i)
		g.ticket.Done(Result{})
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

// A queue full of one room's herd still takes a normal request of the class:
// it displaces the longest-waiting herd request, which fails with
// ErrQueueFull. A herd request finding the queue full is refused, and so is
// a normal one once no herd request is left to displace.
func TestAdmissionNormalRequestDisplacesHerdFromFullQueue(t *testing.T) {
	before := runtime.NumGoroutine()
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 2, QueueTimeout: time.Minute}), nil)
	if _, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil {
		t.Fatal(err)
	}
	results := make([]chan error, 2)
	for i := range results {
		results[i] = make(chan error, 1)
		go func() {
			_, err := a.Acquire(context.Background(), 0, LaneHerd)
			results[i] <- err
		}()
		waitQueued(t, a, 0, i+1)
	}
	if _, err := a.Acquire(context.Background(), 0, LaneHerd); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("herd request on a full queue: %v, want ErrQueueFull", err)
	}
	normal := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := a.Acquire(context.Background(), 0, LaneNormal)
			normal <- err
		}()
	}
	for i := range results {
		select {
		case err := <-results[i]:
			if !errors.Is(err, ErrQueueFull) {
				t.Fatalf("displaced herd request %d: %v, want ErrQueueFull", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("herd request %d was not displaced", i)
		}
	}
	waitQueued(t, a, 0, 2)
	if _, err := a.Acquire(context.Background(), 0, LaneNormal); !errors.Is(err, ErrQueueFull) {
		t.Fatalf("normal request on a queue full of normal ones: %v, want ErrQueueFull", err)
	}
	for range 3 {
		release(a, 0)
	}
	for range 2 {
		select {
		case err := <-normal:
			if err != nil {
				t.Fatalf("normal request: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a normal request was not granted")
		}
	}
	if g, cs := a.Snapshot(); g != 0 || cs[0].Inflight != 0 || cs[0].Queued != 0 {
		t.Fatalf("after all released: global %d, class %+v", g, cs[0])
	}
	testkit.CheckGoroutines(t, before)
}

func TestAdmissionFIFOWhileQueueDrains(t *testing.T) {
	clock := testkit.NewClock(time.Unix(1000, 0))
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 10, QueueTimeout: time.Minute, LIFOAfter: time.Second}), clock.Now)
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
	clock := testkit.NewClock(time.Unix(1000, 0))
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 10, QueueTimeout: time.Minute, LIFOAfter: time.Second}), clock.Now)
	if _, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil {
		t.Fatal(err)
	}
	got := grantOrder(t, a, clock, []Lane{0, 0, 0, 0, 0, 0}, func() { clock.Advance(2 * time.Second) })
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
	// An adaptive limit lowers the cap in force (a new gradient starts in
	// its baseline probe at half its initial limit, clamped to the ceiling
	// 3: 2) and never raises it above the configured ceiling.
	a.Configure(oneClass(ClassLimits{MaxInflight: 3, Queue: 10, QueueTimeout: time.Minute, Adaptive: true}))
	if _, cs := a.Snapshot(); cs[0].Cap != 2 || !cs[0].Adaptive {
		t.Fatalf("dynamic cap not applied: %+v", cs[0])
	}
	if _, cs := a.Snapshot(); cs[0].AdaptiveLimit > 3 || cs[0].Cap > 3 {
		t.Fatalf("dynamic cap above ceiling: %+v", cs[0])
	}
}

// release frees one admitted slot of class, for tests that do not keep the
// tickets of the requests they admitted.
func release(a *Admission, class int) {
	a.mu.Lock()
	a.releaseLocked(class, LaneNormal)
	a.mu.Unlock()
}

// BenchmarkAdmissionUncontended measures the admit/release fast path: no
// queue, slots free. This is the cost mxgate adds to every request.
func BenchmarkAdmissionUncontended(b *testing.B) {
	a := NewAdmission(Config{MaxInflight: 256, Classes: make([]ClassLimits, 13)}, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		tk, err := a.Acquire(ctx, 3, LaneNormal)
		if err != nil {
			b.Fatal(err)
		}
		tk.Done(Result{})
	}
}

// BenchmarkAdmissionParallel measures the same path from all cores at once.
func BenchmarkAdmissionParallel(b *testing.B) {
	a := NewAdmission(Config{MaxInflight: 0, Classes: make([]ClassLimits, 13)}, nil)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tk, err := a.Acquire(ctx, 3, LaneNormal)
			if err != nil {
				b.Error(err)
				return
			}
			tk.Done(Result{})
		}
	})
}

// A herd never takes a class's reserved slots: with a cap of two, one herd
// request is in flight and the next waits though a slot is free, while a
// normal request takes that slot at once, past the waiting herd request.
// The waiting one is granted when the herd's slot frees. A cap of one has no
// reserve: the herd may take the only slot.
func TestAdmissionHerdLeavesReserveToTheClass(t *testing.T) {
	if got := []int{herdReserve(1), herdReserve(2), herdReserve(6), herdReserve(32)}; !slices.Equal(got, []int{0, 1, 1, 4}) {
		t.Fatalf("herdReserve(1, 2, 6, 32) = %v, want [0 1 1 4]", got)
	}
	before := runtime.NumGoroutine()
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 2, Queue: 10, QueueTimeout: time.Minute}), nil)
	herd, err := a.Acquire(context.Background(), 0, LaneHerd)
	if err != nil || herd.Waited {
		t.Fatalf("first herd request: waited=%v err=%v, want admitted at once", herd.Waited, err)
	}
	second := make(chan Ticket, 1)
	go func() {
		tk, err := a.Acquire(context.Background(), 0, LaneHerd)
		if err != nil {
			t.Error(err)
		}
		second <- tk
	}()
	waitQueued(t, a, 0, 1)
	if _, cs := a.Snapshot(); cs[0].Inflight != 1 {
		t.Fatalf("in flight %d with a herd request queued, want 1 (the reserve is the class's)", cs[0].Inflight)
	}
	normal, err := a.Acquire(context.Background(), 0, LaneNormal)
	if err != nil || normal.Waited {
		t.Fatalf("normal request with the reserve free: waited=%v err=%v, want admitted at once", normal.Waited, err)
	}
	normal.Done(Result{}) // frees the reserve: still not the herd's
	if _, cs := a.Snapshot(); cs[0].Queued != 1 || cs[0].Inflight != 1 {
		t.Fatalf("after the normal request: %+v, want the herd request still queued", cs[0])
	}
	herd.Done(Result{})
	select {
	case tk := <-second:
		tk.Done(Result{})
	case <-time.After(5 * time.Second):
		t.Fatal("the queued herd request was not granted the herd's freed slot")
	}

	one := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 10}), nil)
	if tk, err := one.Acquire(context.Background(), 0, LaneHerd); err != nil || tk.Waited {
		t.Fatalf("herd request on a one-slot class: waited=%v err=%v, want admitted", tk.Waited, err)
	}
	waitGoroutines(t, before)
}

// A gateway's part of a fleet's herd allowance (HerdMax) bounds the herd in
// place of the gateway's own reserve; with no part (NoHerd), herd requests
// are refused at once and a group relaned into the herd lane is refused,
// while the class's other requests are served.
func TestAdmissionHerdMaxAndNoHerd(t *testing.T) {
	if got := []int{HerdAllowance(1), HerdAllowance(2), HerdAllowance(6)}; !slices.Equal(got, []int{1, 1, 5}) {
		t.Fatalf("HerdAllowance(1, 2, 6) = %v, want [1 1 5]", got)
	}
	before := runtime.NumGoroutine()
	part := NewAdmission(oneClass(ClassLimits{MaxInflight: 6, Queue: 10, QueueTimeout: time.Minute, HerdMax: 2}), nil)
	var herd [2]Ticket
	for i := range herd {
		tk, err := part.Acquire(context.Background(), 0, LaneHerd)
		if err != nil || tk.Waited {
			t.Fatalf("herd request %d within HerdMax: waited=%v err=%v", i, tk.Waited, err)
		}
		herd[i] = tk
	}
	third := make(chan error, 1)
	go func() {
		tk, err := part.Acquire(context.Background(), 0, LaneHerd)
		if err == nil {
			tk.Done(Result{})
		}
		third <- err
	}()
	waitQueued(t, part, 0, 1) // 4 slots free, but the herd holds its part
	herd[0].Done(Result{})
	if err := <-third; err != nil {
		t.Fatalf("the queued herd request: %v", err)
	}
	herd[1].Done(Result{})

	whole := NewAdmission(oneClass(ClassLimits{MaxInflight: 2, Queue: 10, HerdMax: 2}), nil)
	for i := range 2 { // the fleet keeps the reserve elsewhere
		if tk, err := whole.Acquire(context.Background(), 0, LaneHerd); err != nil || tk.Waited {
			t.Fatalf("herd request %d with a part of the whole cap: waited=%v err=%v", i, tk.Waited, err)
		}
	}

	none := NewAdmission(oneClass(ClassLimits{MaxInflight: 1, Queue: 10, QueueTimeout: time.Minute, HerdMax: NoHerd}), nil)
	if _, err := none.Acquire(context.Background(), 0, LaneHerd); !errors.Is(err, ErrNoHerdPart) {
		t.Fatalf("herd request with no part: %v, want ErrNoHerdPart at once", err)
	}
	held, err := none.Acquire(context.Background(), 0, LaneNormal)
	if err != nil {
		t.Fatal(err)
	}
	const herdRoom = 7
	relaned := make(chan error, 1)
	go func() {
		_, err := none.AcquireFor(context.Background(), 0, LaneNormal, herdRoom)
		relaned <- err
	}()
	waitQueued(t, none, 0, 1)
	if n := none.Relane(0, herdRoom); n != 1 {
		t.Fatalf("Relane moved %d, want 1", n)
	}
	if err := <-relaned; !errors.Is(err, ErrNoHerdPart) {
		t.Fatalf("a relaned request with no part: %v, want ErrNoHerdPart", err)
	}
	held.Done(Result{})
	if _, cs := none.Snapshot(); cs[0].Inflight != 0 || cs[0].Queued != 0 {
		t.Fatalf("not drained: %+v", cs[0])
	}
	waitGoroutines(t, before)
}

// A herd's requests that queued before it was declared wait in the normal
// lane; Relane moves them, in their order, behind the rest of the class,
// where the herd's share of the cap counts them once admitted.
func TestAdmissionRelaneMovesAGroupBehindTheClass(t *testing.T) {
	before := runtime.NumGoroutine()
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 2, Queue: 10, QueueTimeout: time.Minute}), nil)
	var held [2]Ticket
	for i := range held {
		tk, err := a.Acquire(context.Background(), 0, LaneNormal)
		if err != nil {
			t.Fatal(err)
		}
		held[i] = tk
	}
	const herdRoom, otherRoom = 7, 9
	groups := []uint64{herdRoom, herdRoom, otherRoom, herdRoom}
	granted := make([]chan Ticket, len(groups))
	for i, group := range groups {
		granted[i] = make(chan Ticket, 1)
		go func() {
			tk, err := a.AcquireFor(context.Background(), 0, LaneNormal, group)
			if err != nil {
				t.Error(err)
			}
			granted[i] <- tk
		}()
		waitQueued(t, a, 0, i+1)
	}
	if n := a.Relane(0, 0); n != 0 {
		t.Fatalf("Relane of group 0 moved %d, want none", n)
	}
	if n := a.Relane(0, herdRoom); n != 3 {
		t.Fatalf("Relane moved %d waiters, want the herd room's 3", n)
	}
	next := func(want int) Ticket {
		t.Helper()
		select {
		case tk := <-granted[want]:
			return tk
		case <-time.After(5 * time.Second):
			t.Fatalf("waiter %d was not granted", want)
			return Ticket{}
		}
	}
	held[0].Done(Result{})
	other := next(2) // the other room's request, though it came third
	if other.lane != LaneNormal {
		t.Fatalf("the other room's request was granted in lane %d", other.lane)
	}
	held[1].Done(Result{})
	first := next(0)
	if first.lane != LaneHerd {
		t.Fatalf("a moved request was granted in lane %d, want the herd lane", first.lane)
	}
	other.Done(Result{})
	if _, cs := a.Snapshot(); cs[0].Inflight != 1 || cs[0].Queued != 2 {
		t.Fatalf("with one herd request in flight: %+v, want the reserve slot left free and 2 queued", cs[0])
	}
	first.Done(Result{})
	second := next(1)
	second.Done(Result{})
	last := next(3)
	last.Done(Result{})
	if _, cs := a.Snapshot(); cs[0].Inflight != 0 || cs[0].Queued != 0 {
		t.Fatalf("not drained: %+v", cs[0])
	}
	waitGoroutines(t, before)
}

func TestAdmissionEndProbesLiftsTheProbesShareOfTheCap(t *testing.T) {
	now := simEpoch
	a := NewAdmission(oneClass(ClassLimits{MaxInflight: 6, Queue: 10, QueueTimeout: time.Minute, Adaptive: true}), func() time.Time { return now })
	// A new gradient starts in its baseline probe at half its initial limit
	// (16, clamped to the ceiling 6): 3.
	if _, cs := a.Snapshot(); cs[0].Cap != 3 {
		t.Fatalf("cap in the initial probe %d, want 3", cs[0].Cap)
	}
	for range 3 {
		if _, err := a.Acquire(context.Background(), 0, LaneNormal); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { _, err := a.Acquire(context.Background(), 0, LaneNormal); done <- err }()
	waitQueued(t, a, 0, 1)
	a.EndProbes(now)
	if err := <-done; err != nil {
		t.Fatalf("the waiter the full cap has room for: %v", err)
	}
	if _, cs := a.Snapshot(); cs[0].Cap != 6 || cs[0].Inflight != 4 {
		t.Fatalf("after EndProbes: %+v, want cap 6 with 4 in flight", cs[0])
	}
}
