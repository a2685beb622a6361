package fleet

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Heartbeat timing: a gateway renews its membership every
// DefaultHeartbeatInterval and is dropped by the others once its last
// heartbeat is older than DefaultMemberTTL.
const (
	DefaultHeartbeatInterval = time.Second
	DefaultMemberTTL         = 3 * time.Second
)

// heartbeatScript registers ARGV[1] as live at ARGV[2] (unix ms), forgets
// members last seen before ARGV[2]-ARGV[3] and returns the live members.
// The set itself expires long after its last heartbeat.
var heartbeatScript = redis.NewScript(`
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl))
redis.call('PEXPIRE', KEYS[1], ttl * 10)
return redis.call('ZRANGE', KEYS[1], 0, -1)
`)

// members is this gateway's view of the fleet: the live members last seen
// in Redis, sorted by name. It keeps that view while Redis is unreachable
// (fail-static): the shares computed from it stay as they were.
type members struct {
	c    *client
	self string
	ttl  time.Duration

	mu       sync.Mutex
	names    []string  // sorted; always holds self
	seen     time.Time // last successful heartbeat; zero: never
	version  uint64    // bumped whenever names change
	rejoined time.Time // first heartbeat after Redis was unreachable
}

func newMembers(c *client, self string, ttl time.Duration) *members {
	if ttl <= 0 {
		ttl = DefaultMemberTTL
	}
	return &members{c: c, self: self, ttl: ttl, names: []string{self}}
}

// heartbeat renews this gateway's membership at now and refreshes the view.
// On failure the view is kept and the breaker stays open.
//
// For one TTL after Redis was unreachable the view only grows: a Redis
// that restarted empty lists the gateways only as each heartbeats again,
// and shares computed from a partial list would add up to more than the
// cap.
func (m *members) heartbeat(now time.Time) error {
	wasDown := !m.c.up.Load()
	var names []string
	err := m.c.call(OpHeartbeat, func(ctx context.Context) error {
		var err error
		names, err = heartbeatScript.Run(ctx, m.c.rdb, []string{m.c.key("members")},
			m.self, now.UnixMilli(), m.ttl.Milliseconds()).StringSlice()
		return err
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	if wasDown && !m.seen.IsZero() {
		m.rejoined = now
	}
	if !m.rejoined.IsZero() && now.Sub(m.rejoined) < m.ttl {
		names = append(names, m.names...)
	}
	names = append(names, m.self) // ZADD ran first, but the view must hold self whatever Redis says
	slices.Sort(names)
	names = slices.Compact(names)
	if !slices.Equal(names, m.names) {
		m.names = names
		m.version++
	}
	m.seen = now
	m.mu.Unlock()
	m.c.metrics.setInstances(len(names))
	m.c.setUp(true)
	return nil
}

// leave removes this gateway from the fleet at once, so that the others
// re-balance without waiting for its TTL.
func (m *members) leave() {
	_ = m.c.call(OpHeartbeat, func(ctx context.Context) error {
		return m.c.rdb.ZRem(ctx, m.c.key("members"), m.self).Err()
	})
}

// view returns the live members (sorted), this gateway's rank among them,
// the view's version and when it was last confirmed.
func (m *members) view() (names []string, rank int, version uint64, seen time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	rank, _ = slices.BinarySearch(m.names, m.self)
	return m.names, rank, m.version, m.seen
}

// count is how many gateways are live as last seen (at least 1: this one).
func (m *members) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.names)
}
