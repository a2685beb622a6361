// Package scenario replays the homeserver incidents of docs/DESIGN.md against the
// simulated homeserver, with simulated clients, through a Peer (no proxy,
// mxgate, or another proxy), and reports what clients and homeserver saw.
package scenario

import (
	"time"

	"github.com/mxgate/mxgate/bench/simhs"
)

// Options size a run. Durations are model time; Scale runs them faster.
type Options struct {
	// Seed fixes every client's behaviour (default 1).
	Seed uint64
	// Scale runs the model this many times faster than real time (default 1).
	Scale float64
	// Clients is the background population: each syncs, sends and reads
	// (default 100).
	Clients int
	// HerdClients resync the big room's state at once in the herd scenario
	// (default 500).
	HerdClients int
	// SlowWrites is how many 30 s read-marker writes the stacked scenario
	// fires (default 3).
	SlowWrites int
	// Duration overrides each scenario's own length.
	Duration time.Duration
	// CauseAt is when the incident starts (default 20s): the time before it
	// is the warm-up and baseline.
	CauseAt time.Duration
	// SendEvery and ReadEvery are each background client's mean interval
	// between messages (default 30s) and between reads (default 10s).
	SendEvery, ReadEvery time.Duration
	// GiveUpMin and GiveUpMax bound the clients' request timeouts (default
	// 30s and 60s).
	GiveUpMin, GiveUpMax time.Duration
	// Homeserver is the simulated homeserver's model (default
	// simhs.DefaultConfig()); its TimeScale is set from Scale.
	Homeserver *simhs.Config
}

func (o Options) withDefaults() Options {
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Scale <= 0 {
		o.Scale = 1
	}
	if o.Clients <= 0 {
		o.Clients = 100
	}
	if o.HerdClients <= 0 {
		o.HerdClients = 500
	}
	if o.SlowWrites <= 0 {
		o.SlowWrites = 3
	}
	if o.CauseAt <= 0 {
		o.CauseAt = 20 * time.Second
	}
	if o.SendEvery <= 0 {
		o.SendEvery = 30 * time.Second
	}
	if o.ReadEvery <= 0 {
		o.ReadEvery = 10 * time.Second
	}
	if o.GiveUpMin <= 0 {
		o.GiveUpMin = 30 * time.Second
	}
	if o.GiveUpMax < o.GiveUpMin {
		o.GiveUpMax = max(60*time.Second, o.GiveUpMin)
	}
	hs := simhs.DefaultConfig()
	if o.Homeserver != nil {
		hs = *o.Homeserver
	}
	hs.TimeScale = o.Scale
	if hs.RoomMembers == nil {
		hs.RoomMembers = backgroundRoomMembers(o.Clients)
	}
	o.Homeserver = &hs
	return o
}

func (o Options) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / o.Scale)
}
