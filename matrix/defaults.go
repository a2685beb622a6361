package matrix

import "time"

// Limits are the admission settings of one endpoint class. A zero field means
// "off" (no cap, no rate limit, no coalescing) except where noted.
type Limits struct {
	// Priority decides what a brownout sheds.
	Priority Priority
	// MaxInflight caps this class's requests at the upstream; 0 means no
	// per-class cap (the global cap still applies).
	MaxInflight int
	// Queue is how many requests may wait for a slot; beyond it they are shed.
	Queue int
	// QueueTimeout is how long a request may wait for a slot before a 429.
	QueueTimeout time.Duration
	// Rate and Burst are a per-user token bucket (tokens per second, bucket
	// size); Rate 0 disables it.
	Rate  float64
	Burst int
	// Coalesce shares identical in-flight GET/HEAD requests and keeps the
	// completed answer this long; 0 disables it.
	Coalesce time.Duration
	// Shared allows a coalesced answer to be served to other access tokens.
	// Only for answers that do not depend on who asks (media).
	Shared bool
	// OwnBudget keeps this class out of the global max_inflight: long-poll
	// /sync requests sit idle at the upstream for up to 30 s and would
	// otherwise crowd out active work (and be crowded out by it).
	OwnBudget bool
}

// Default gateway-wide settings.
const (
	DefaultMaxInflight   = 256
	DefaultQueueTimeout  = 10 * time.Second
	DefaultRetryAfterMin = 2 * time.Second
	DefaultRetryAfterMax = 20 * time.Second
)

// DefaultLimits is the single table of built-in per-class defaults, sized for
// a mid-size Synapse (one main process, a DB pool of ~10-20 connections, a few
// thousand daily users). The README explains each choice. Every value can be
// overridden per class in config.
var DefaultLimits = [NumClasses]Limits{
	// Full-state resyncs cost MBs of JSON and seconds of DB time each: the
	// thundering herd. Few at once, a long queue with a long deadline, and a
	// per-user bucket so one client's retry loop cannot hold a slot.
	SyncInitial: {Priority: Sheddable, MaxInflight: 8, Queue: 128, QueueTimeout: 30 * time.Second, Rate: 0.2, Burst: 3, Coalesce: 30 * time.Second},
	// Long-polls: cheap while idle, and what keeps clients feeling alive.
	Sync:      {Priority: Critical, MaxInflight: 4096, Queue: 256, QueueTimeout: 10 * time.Second, OwnBudget: true},
	RoomState: {Priority: Normal, MaxInflight: 16, Queue: 128, QueueTimeout: 15 * time.Second, Coalesce: 5 * time.Second},
	History:   {Priority: Normal, MaxInflight: 32, Queue: 128, QueueTimeout: 10 * time.Second, Coalesce: 2 * time.Second},
	Search:    {Priority: Sheddable, MaxInflight: 4, Queue: 16, QueueTimeout: 5 * time.Second, Rate: 0.5, Burst: 3},
	// Read markers and receipts are the "stacked requests" incident: a few
	// clear millions of push actions and lock a table. Keep them few.
	Receipts:   {Priority: Sheddable, MaxInflight: 8, Queue: 64, QueueTimeout: 5 * time.Second, Rate: 1, Burst: 5},
	Send:       {Priority: Critical, MaxInflight: 64, Queue: 256, QueueTimeout: 10 * time.Second},
	Keys:       {Priority: Normal, MaxInflight: 32, Queue: 128, QueueTimeout: 10 * time.Second},
	Media:      {Priority: Normal, MaxInflight: 32, Queue: 128, QueueTimeout: 20 * time.Second, Shared: true},
	Auth:       {Priority: Critical, MaxInflight: 16, Queue: 64, QueueTimeout: 10 * time.Second},
	Federation: {Priority: Normal, MaxInflight: 64, Queue: 256, QueueTimeout: 10 * time.Second},
	Ephemeral:  {Priority: Sheddable, MaxInflight: 16, Queue: 32, QueueTimeout: 2 * time.Second},
	Other:      {Priority: Normal, MaxInflight: 32, Queue: 64, QueueTimeout: 10 * time.Second},
}
