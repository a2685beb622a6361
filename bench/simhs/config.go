// Package simhs is a simulated Matrix homeserver shaped like a single Synapse
// main process: a bounded database connection pool, a single-core CPU shared
// by every request, a file-descriptor limit, long-poll /sync, a table lock
// that slow read-marker writes hold for tens of seconds, and no cancellation
// of database work when the client goes away. bench/README.md lists the
// model's assumptions.
//
// All durations in Config and in method arguments are model time. The server
// divides them by TimeScale before sleeping, so a scenario can run 10-100x
// faster than real time with the same shape.
package simhs

import (
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// Cost is what one request of a class costs the homeserver, in model time.
type Cost struct {
	// DB is how long the request holds a connection from the DB pool.
	DB time.Duration
	// CPU is the request's CPU work on an idle server; under load the CPU is
	// shared (processor sharing), so it takes longer in wall time.
	CPU time.Duration
	// BodyBytes is the size of the JSON answer.
	BodyBytes int
	// Lock says the request writes the push-actions table and needs its lock
	// while it holds its DB connection.
	Lock bool
}

// Config is every parameter of the model. DefaultConfig documents the
// defaults; a zero field is replaced by its default in New.
type Config struct {
	// DBPool is the number of DB connections (default 10).
	DBPool int
	// MaxFDs is the most client connections open at once (default 1024).
	// At the limit the server stops accepting: new connections wait in the
	// kernel backlog, as when accept() fails with EMFILE.
	MaxFDs int
	// WedgeAfter is how long the server may sit at MaxFDs before it wedges:
	// it then answers nothing until Restart (default 60s).
	WedgeAfter time.Duration
	// CPUCores is the CPU capacity shared by all requests (default 1: a
	// Python main process is bound to one core by its interpreter lock).
	CPUCores float64
	// ContentionPerActive slows the CPU by this fraction per request inside
	// the server (memory, GC, scheduling): capacity = CPUCores /
	// (1 + ContentionPerActive*active). Default 0.002; negative turns it off.
	ContentionPerActive float64
	// SyncTimeout is the long-poll wait when /sync has no timeout parameter
	// (default 30s); MaxSyncTimeout caps the parameter (default 60s).
	SyncTimeout    time.Duration
	MaxSyncTimeout time.Duration
	// SlowWriteHold is how long an armed slow read-marker write holds its DB
	// connection and the table lock (default 30s). See ArmSlowWrites.
	SlowWriteHold time.Duration
	// Costs is the per-class cost table (default DefaultCosts). Its
	// RoomState entry prices the state of the herd's big room and of any
	// room not in RoomMembers.
	Costs [matrix.NumClasses]Cost
	// RoomMembers sizes the rooms whose state (/state, /members) costs what
	// the calibration measured for their member count (RoomStateCost), keyed
	// by room ID. A chat room of ten members answers its state in about a
	// millisecond; priced as the big room, every such read would cost a
	// third of a second of the one core.
	RoomMembers map[string]int
	// TimeScale divides every model duration (default 1: real time).
	TimeScale float64
}

// DefaultCosts is the per-class cost of one Synapse main process. The
// herd's classes (room state, initial sync) and sends are calibrated on a
// real Synapse 1.160 (bench/README.md, "Calibration"): measured for rooms
// of 10-300 members, they grow linearly with the room, and the defaults are
// that line taken to the herd's large room of ~7,500 members, whose state is
// 3 MB of JSON. DB is the part of a request's time Synapse spent not on its
// own CPU (waiting for the database), CPU its own CPU time. The other
// classes were not measured and keep the model's estimates.
var DefaultCosts = [matrix.NumClasses]Cost{
	// Measured: 11 ms + 0.067 ms per member CPU, DB ~0.55× CPU, 0.33 KiB
	// of JSON per member (lazy-loading off).
	matrix.SyncInitial: {DB: 280 * time.Millisecond, CPU: 510 * time.Millisecond, BodyBytes: 2500 << 10},
	matrix.Sync:        {DB: 2 * time.Millisecond, CPU: 500 * time.Microsecond, BodyBytes: 2 << 10},
	// Measured (/state and /members alike): 0.8 ms + 0.035 ms per member
	// CPU, DB ~0.33× CPU, 0.41 KiB of JSON per member.
	matrix.RoomState: {DB: 85 * time.Millisecond, CPU: 260 * time.Millisecond, BodyBytes: 3 << 20},
	matrix.History:   {DB: 20 * time.Millisecond, CPU: 10 * time.Millisecond, BodyBytes: 20 << 10},
	matrix.Search:    {DB: 200 * time.Millisecond, CPU: 50 * time.Millisecond, BodyBytes: 50 << 10},
	matrix.Receipts:  {DB: 10 * time.Millisecond, CPU: 2 * time.Millisecond, BodyBytes: 2, Lock: true},
	// Measured: 31-39 ms CPU and 10-40 ms waiting on the database,
	// whatever the room's size.
	matrix.Send:       {DB: 25 * time.Millisecond, CPU: 35 * time.Millisecond, BodyBytes: 64, Lock: true},
	matrix.Keys:       {DB: 20 * time.Millisecond, CPU: 10 * time.Millisecond, BodyBytes: 4 << 10},
	matrix.Media:      {DB: 5 * time.Millisecond, CPU: 5 * time.Millisecond, BodyBytes: 100 << 10},
	matrix.Auth:       {DB: 10 * time.Millisecond, CPU: 50 * time.Millisecond, BodyBytes: 512},
	matrix.Federation: {DB: 20 * time.Millisecond, CPU: 10 * time.Millisecond, BodyBytes: 2 << 10},
	matrix.Ephemeral:  {DB: 5 * time.Millisecond, CPU: 2 * time.Millisecond, BodyBytes: 2},
	matrix.Other:      {CPU: 1 * time.Millisecond, BodyBytes: 512},
	matrix.Admin:      {DB: 20 * time.Millisecond, CPU: 10 * time.Millisecond, BodyBytes: 2 << 10},
	matrix.Discovery:  {CPU: 1 * time.Millisecond, BodyBytes: 512},
}

// RoomStateCost is what a room's full state costs Synapse for a room of
// members members: the calibration's line (bench/README.md,
// "Calibration"), 0.8 ms + 0.035 ms per member of CPU, a third of that
// waiting on the database, 0.41 KiB of JSON per member.
func RoomStateCost(members int) Cost {
	cpu := 800*time.Microsecond + time.Duration(members)*35*time.Microsecond
	return Cost{DB: cpu / 3, CPU: cpu, BodyBytes: members * 420}
}

// StateCost is what the state of room (its ID, decoded) costs: by its
// members if RoomMembers lists it, else Costs[RoomState].
func (c Config) StateCost(room string) Cost {
	if n, ok := c.RoomMembers[room]; ok {
		return RoomStateCost(n)
	}
	return c.Costs[matrix.RoomState]
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		DBPool:              10,
		MaxFDs:              1024,
		WedgeAfter:          60 * time.Second,
		CPUCores:            1,
		ContentionPerActive: 0.002,
		SyncTimeout:         30 * time.Second,
		MaxSyncTimeout:      60 * time.Second,
		SlowWriteHold:       30 * time.Second,
		Costs:               DefaultCosts,
		TimeScale:           1,
	}
}

// withDefaults fills zero fields from DefaultConfig. A zero Costs table is
// replaced as a whole; a partly filled one is taken as given.
func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.DBPool <= 0 {
		c.DBPool = d.DBPool
	}
	if c.MaxFDs <= 0 {
		c.MaxFDs = d.MaxFDs
	}
	if c.WedgeAfter <= 0 {
		c.WedgeAfter = d.WedgeAfter
	}
	if c.CPUCores <= 0 {
		c.CPUCores = d.CPUCores
	}
	switch {
	case c.ContentionPerActive == 0:
		c.ContentionPerActive = d.ContentionPerActive
	case c.ContentionPerActive < 0: // explicitly off
		c.ContentionPerActive = 0
	}
	if c.SyncTimeout <= 0 {
		c.SyncTimeout = d.SyncTimeout
	}
	if c.MaxSyncTimeout <= 0 {
		c.MaxSyncTimeout = d.MaxSyncTimeout
	}
	if c.SlowWriteHold <= 0 {
		c.SlowWriteHold = d.SlowWriteHold
	}
	if c.Costs == ([matrix.NumClasses]Cost{}) {
		c.Costs = d.Costs
	}
	if c.TimeScale <= 0 {
		c.TimeScale = d.TimeScale
	}
	return c
}

// real converts a model duration to wall-clock time.
func (c Config) real(d time.Duration) time.Duration {
	return time.Duration(float64(d) / c.TimeScale)
}
