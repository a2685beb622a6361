package scenario

import (
	"time"

	"github.com/mxgate/mxgate/bench/simclient"
	"github.com/mxgate/mxgate/bench/simhs"
	"github.com/mxgate/mxgate/matrix"
)

// HerdIdeal is the physical limit of the herd scenario: how many herd
// clients a perfect gate would resync in the run, from the simulated
// homeserver's cost model and the background's measured load.
//
// Each herd client needs the room's state and an initial sync: their CPU
// and DB costs (simhs.Config.Costs). The background takes what its
// requests in the baseline window (the second half of the time before the
// herd) cost per second, each room's state priced by its room's size; the
// herd may use the rest of the CPU cores and of the DB pool. The CPU's
// capacity is the model's under the contention (ContentionPerActive) of the
// requests that are inside the server anyway —
// the background's, long-polls included, at their baseline mean — plus one
// herd request: a perfect gate admits the herd one at a time. The herd's
// throughput is the tighter of CPU and DB, and the ideal is that
// throughput over the time from the herd's start to the end of the run, at
// most every herd client, with no work wasted on clients that gave up.
type HerdIdeal struct {
	// Resynced is the ideal count; Completion the time a perfect gate needs
	// for the whole herd.
	Resynced   int
	Completion time.Duration
	// Concurrency is the mean number of requests inside the homeserver
	// before the herd, which the CPU's contention counts.
	Concurrency float64
	// Window is the time from the herd's start to the end of the run.
	Window time.Duration
	// CPULeft and DBLeft are the capacity left by the background: cores
	// and DB connections.
	CPULeft, DBLeft float64
}

// herdIdeal computes the ideal for a herd of n clients starting at herdAt
// in a run of duration, with the background's records recs and the mean
// number of requests inside the homeserver before the herd, concurrency.
func herdIdeal(hs *simhs.Config, recs []simclient.Record, concurrency float64, n int, herdAt, duration time.Duration, model func(time.Duration) time.Duration) HerdIdeal {
	var bgCPU, bgDB time.Duration
	from, to := herdAt/2, herdAt
	for _, r := range recs {
		if r.Group != groupBackground {
			continue
		}
		if st := model(r.Start); st >= from && st < to {
			c := hs.Costs[r.Class]
			if r.Class == matrix.RoomState {
				c = hs.StateCost(backgroundRoom(r.Client))
			}
			bgCPU += c.CPU
			bgDB += c.DB
		}
	}
	window := (to - from).Seconds()
	contention := hs.ContentionPerActive
	switch {
	case contention == 0: // unset: the model's default
		contention = simhs.DefaultConfig().ContentionPerActive
	case contention < 0: // off
		contention = 0
	}
	cores := hs.CPUCores / (1 + contention*(concurrency+1))
	id := HerdIdeal{
		Concurrency: concurrency,
		Window:      duration - herdAt,
		CPULeft:     cores - bgCPU.Seconds()/window,
		DBLeft:      float64(hs.DBPool) - bgDB.Seconds()/window,
	}
	state, initial := hs.Costs[matrix.RoomState], hs.Costs[matrix.SyncInitial]
	perClientCPU := (state.CPU + initial.CPU).Seconds()
	perClientDB := (state.DB + initial.DB).Seconds()
	rate := 0.0 // herd clients per second
	switch {
	case id.CPULeft <= 0 || id.DBLeft <= 0:
	case perClientCPU == 0 && perClientDB == 0:
		rate = float64(n) // free: all at once
	default:
		rate = 1e18
		if perClientCPU > 0 {
			rate = min(rate, id.CPULeft/perClientCPU)
		}
		if perClientDB > 0 {
			rate = min(rate, id.DBLeft/perClientDB)
		}
	}
	if rate <= 0 {
		return id
	}
	id.Completion = time.Duration(float64(n) / rate * float64(time.Second))
	id.Resynced = min(n, int(rate*id.Window.Seconds()))
	return id
}

// baselineConcurrency is the mean of the per-second concurrency samples in
// the baseline window (the second half of the time before herdAt).
func baselineConcurrency(samples []int64, herdAt time.Duration) float64 {
	from, to := int(herdAt/2/time.Second), min(int(herdAt/time.Second), len(samples))
	if from >= to {
		return 0
	}
	sum := int64(0)
	for _, v := range samples[from:to] {
		sum += v
	}
	return float64(sum) / float64(to-from)
}
