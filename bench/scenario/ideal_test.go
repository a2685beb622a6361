package scenario

import (
	"math"
	"testing"
	"time"

	"github.com/mxgate/mxgate/bench/simclient"
	"github.com/mxgate/mxgate/bench/simhs"
	"github.com/mxgate/mxgate/matrix"
)

// herdTestConfig is the simulated homeserver with the herd's two costs
// pinned (room state 80ms CPU + 250ms DB, initial sync 120ms CPU + 300ms DB:
// 200ms CPU and 550ms DB per herd client), so the arithmetic below does not
// follow calibrations of the defaults.
func herdTestConfig() simhs.Config {
	hs := simhs.DefaultConfig()
	hs.Costs[matrix.RoomState].CPU, hs.Costs[matrix.RoomState].DB = 80*time.Millisecond, 250*time.Millisecond
	hs.Costs[matrix.SyncInitial].CPU, hs.Costs[matrix.SyncInitial].DB = 120*time.Millisecond, 300*time.Millisecond
	return hs
}

func TestHerdIdealFromCostModel(t *testing.T) {
	hs := herdTestConfig()      // 1 core, 10 DB connections
	hs.ContentionPerActive = -1 // off, for round numbers
	identity := func(d time.Duration) time.Duration { return d }

	// No background: the CPU allows 5 herd clients a second.
	id := herdIdeal(&hs, nil, 0, 500, 20*time.Second, 180*time.Second, identity)
	if id.Resynced != 500 || id.Completion != 100*time.Second || id.CPULeft != 1 || id.DBLeft != 10 {
		t.Errorf("idle background: %+v, want all 500 in 100s with 1 core and 10 connections left", id)
	}

	// A background of 35 history reads a second in the baseline window
	// (10s to 20s) takes 0.35 cores and 0.7 DB connections.
	var recs []simclient.Record
	for i := range 350 {
		at := 10*time.Second + time.Duration(i)*(10*time.Second/350)
		recs = append(recs, simclient.Record{Group: groupBackground, Class: matrix.History, Start: at, End: at})
	}
	recs = append(recs, simclient.Record{Group: groupHerd, Class: matrix.RoomState, Start: 15 * time.Second}) // not background
	id = herdIdeal(&hs, recs, 0, 500, 20*time.Second, 120*time.Second, identity)
	if math.Abs(id.CPULeft-0.65) > 1e-9 || math.Abs(id.DBLeft-9.3) > 1e-9 {
		t.Errorf("capacity left %.3f cores, %.3f connections; want 0.65 and 9.3", id.CPULeft, id.DBLeft)
	}
	// 3.25 clients a second: 325 in the 100s window, all 500 in ~154s.
	if id.Resynced != 325 || id.Completion.Round(time.Second) != 154*time.Second {
		t.Errorf("ideal %+v, want 325 resynced and completion 154s", id)
	}
}

func TestHerdIdealCountsContentionOfTheBackground(t *testing.T) {
	hs := herdTestConfig() // contention 0.002 per request inside
	identity := func(d time.Duration) time.Duration { return d }
	// 149 background requests inside (long-polls) plus the herd's one: the
	// core runs at 1/(1+0.002*150) = 1/1.3.
	id := herdIdeal(&hs, nil, 149, 500, 20*time.Second, 120*time.Second, identity)
	if math.Abs(id.CPULeft-1/1.3) > 1e-9 {
		t.Errorf("CPU left %.4f, want %.4f", id.CPULeft, 1/1.3)
	}
	if want := 384; id.Resynced != want { // 1/1.3 cores / 0.2 s per client * 100 s
		t.Errorf("resynced %d, want %d", id.Resynced, want)
	}
	if got := baselineConcurrency([]int64{99, 99, 99, 10, 20, 30, 99}, 6*time.Second); got != 20 {
		t.Errorf("baseline concurrency %v, want the mean of seconds 3-5 (20)", got)
	}
}
