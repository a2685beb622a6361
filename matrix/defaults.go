package matrix

import "time"

// Default gateway-wide settings.
const (
	DefaultMaxInflight   = 256
	DefaultQueueTimeout  = 10 * time.Second
	DefaultRetryAfterMin = 2 * time.Second
	DefaultRetryAfterMax = 20 * time.Second
	// DefaultUpstreamTimeout is how long the upstream may take to begin an
	// answer: generous, because some answers are slow by nature (a room's
	// history far back, a remote media fetch); a stuck homeserver otherwise
	// holds each request, its slot and its connection until its own timeout.
	DefaultUpstreamTimeout = 2 * time.Minute
	// SlowUpstreamTimeout is for classes whose answers can take minutes on a
	// healthy homeserver: a large account's initial sync, an admin purge.
	SlowUpstreamTimeout = 10 * time.Minute
)

// DefaultLimits is the single table of built-in per-class defaults, sized for
// a mid-size Synapse (one main process, a DB pool of ~10-20 connections, a few
// thousand daily users). The README explains each choice. Every value can be
// overridden per class in config.
var DefaultLimits = [NumClasses]Limits{
	// Full-state resyncs cost MBs of JSON and seconds of DB time each: the
	// thundering herd. Few at once, a long queue with a long deadline, and a
	// per-user bucket so one client's retry loop cannot hold a slot. A big
	// room's state and initial sync are CPU-bound in Synapse's one-core main
	// process: past a few at once they only share the core and each takes
	// longer. A resyncing client needs both, the initial sync costing about
	// twice the state, so the initial sync gets three times the slots and
	// clients that have their state finish (bench/README.md, "Herd caps").
	SyncInitial: {Priority: Sheddable, MaxInflight: 6, Queue: 128, QueueTimeout: 30 * time.Second, Rate: 0.2, Burst: 3, Coalesce: 30 * time.Second, UpstreamTimeout: SlowUpstreamTimeout},
	// Long-polls: cheap while idle, and what keeps clients feeling alive.
	// No upstream timeout: the homeserver holds each open by design.
	Sync:      {Priority: Critical, MaxInflight: 4096, Queue: 256, QueueTimeout: 10 * time.Second, OwnBudget: true},
	RoomState: {Priority: Normal, MaxInflight: 2, Queue: 128, QueueTimeout: 15 * time.Second, Coalesce: 5 * time.Second, UpstreamTimeout: DefaultUpstreamTimeout},
	History:   {Priority: Normal, MaxInflight: 32, Queue: 128, QueueTimeout: 10 * time.Second, Coalesce: 2 * time.Second, UpstreamTimeout: DefaultUpstreamTimeout},
	Search:    {Priority: Sheddable, MaxInflight: 4, Queue: 16, QueueTimeout: 5 * time.Second, Rate: 0.5, Burst: 3, UpstreamTimeout: DefaultUpstreamTimeout},
	// Read markers and receipts are the "stacked requests" incident: a few
	// clear millions of push actions and lock a table. Keep them few.
	Receipts:   {Priority: Sheddable, MaxInflight: 8, Queue: 64, QueueTimeout: 5 * time.Second, Rate: 1, Burst: 5, UpstreamTimeout: DefaultUpstreamTimeout},
	Send:       {Priority: Critical, MaxInflight: 64, Queue: 256, QueueTimeout: 30 * time.Second, UpstreamTimeout: DefaultUpstreamTimeout},
	Keys:       {Priority: Normal, MaxInflight: 32, Queue: 128, QueueTimeout: 10 * time.Second, UpstreamTimeout: DefaultUpstreamTimeout},
	Media:      {Priority: Normal, MaxInflight: 32, Queue: 128, QueueTimeout: 20 * time.Second, Shared: true, UpstreamTimeout: DefaultUpstreamTimeout},
	Auth:       {Priority: Critical, MaxInflight: 16, Queue: 64, QueueTimeout: 10 * time.Second, UpstreamTimeout: DefaultUpstreamTimeout},
	Federation: {Priority: Normal, MaxInflight: 64, Queue: 256, QueueTimeout: 10 * time.Second, UpstreamTimeout: DefaultUpstreamTimeout},
	Ephemeral:  {Priority: Sheddable, MaxInflight: 16, Queue: 32, QueueTimeout: 2 * time.Second, UpstreamTimeout: DefaultUpstreamTimeout},
	Other:      {Priority: Normal, MaxInflight: 32, Queue: 64, QueueTimeout: 10 * time.Second, UpstreamTimeout: DefaultUpstreamTimeout},
	// The admin API is how the operator acts during an incident: never shed
	// by brownout, and on its own small budget so a gate saturated by the
	// incident still lets it through. Admin calls can be long (purging a
	// room), hence the patient queue.
	Admin: {Priority: Critical, MaxInflight: 8, Queue: 64, QueueTimeout: 30 * time.Second, OwnBudget: true, UpstreamTimeout: SlowUpstreamTimeout},
	// Startup and reconnect calls: cheap, needed before a client can sync,
	// and repeated by every client of a reconnect storm. Their own budget
	// keeps an expensive class's herd from exhausting them, and a short wait
	// keeps a stuck one from holding up a reconnecting client for long.
	// Coalescing for 2 s makes a reconnect storm cost the homeserver one
	// anonymous /versions per 2 s (shared: matrix.Request decides which
	// answers are anyone's); per-user calls coalesce per credential only.
	Discovery: {Priority: Critical, MaxInflight: 64, Queue: 512, QueueTimeout: 5 * time.Second, OwnBudget: true, Coalesce: 2 * time.Second, Shared: true, UpstreamTimeout: DefaultUpstreamTimeout},
}
