package limiter

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A gateway that turns NoHerd (rebalanceFleet re-applies the config when a
// gateway joins) while a herd request waits in its queue refuses that
// waiter at once, as it refuses a new herd request: nothing would ever
// grant it.
func TestAdmissionTurningNoHerdRefusesQueuedHerdWaiters(t *testing.T) {
	lim := ClassLimits{MaxInflight: 2, Queue: 10, HerdMax: 1} // QueueTimeout 0: ctx alone bounds it
	a := NewAdmission(oneClass(lim), nil)
	first, err := a.Acquire(context.Background(), 0, LaneHerd)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		tk, err := a.Acquire(ctx, 0, LaneHerd)
		if err == nil {
			tk.Done(Result{})
		}
		res <- err
	}()
	waitQueued(t, a, 0, 1)
	lim.HerdMax = NoHerd // this gateway's part went to a newcomer
	a.Configure(oneClass(lim))
	first.Done(Result{})
	select {
	case err := <-res:
		if !errors.Is(err, ErrNoHerdPart) {
			t.Fatalf("queued herd request after NoHerd: %v, want ErrNoHerdPart", err)
		}
	case <-time.After(time.Second):
		_, cs := a.Snapshot()
		t.Fatalf("herd waiter stranded after Configure(NoHerd): queued=%d inflight=%d, every slot free", cs[0].Queued, cs[0].Inflight)
	}
}

// Below the configured cap (an adaptive limit, slow start) a gateway with
// a herd part keeps its own reserve of the cap in force too: a
// single-gateway fleet (HerdMax = HerdAllowance of the whole cap) leaves
// the class what a gateway outside a fleet does.
func TestAdmissionHerdMaxKeepsTheReserveOfALoweredCap(t *testing.T) {
	herdHeld := func(herdMax int) (held, capInForce int) {
		a := NewAdmission(oneClass(ClassLimits{MaxInflight: 64, Adaptive: true, HerdMax: herdMax}), nil)
		_, cs := a.Snapshot()
		for {
			if _, err := a.Acquire(doneCtx(), 0, LaneHerd); err != nil {
				return held, cs[0].Cap
			}
			held++
		}
	}
	noFleet, n := herdHeld(0)
	oneGateway, _ := herdHeld(HerdAllowance(64))
	if n >= 64 {
		t.Fatalf("cap in force %d: the adaptive limit should start below the ceiling", n)
	}
	if oneGateway != noFleet {
		t.Fatalf("cap in force %d: a herd holds %d slots in a one-gateway fleet, %d without a fleet (reserve left: %d)",
			n, oneGateway, noFleet, n-oneGateway)
	}
}

func doneCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
