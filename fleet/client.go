package fleet

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// DefaultCallTimeout bounds every Redis call a request waits for: a slow
// Redis must cost a request at most this much before the local fallback.
const DefaultCallTimeout = 80 * time.Millisecond

// client is the fleet's connection to Redis with its breaker. up is false
// after any failed call until a heartbeat succeeds: request-path calls
// (rates, herds) are skipped while it is false, so a Redis that hangs costs
// one deadline, not one per request.
type client struct {
	rdb     *redis.Client
	addr    string // host:port, for status (no credentials)
	prefix  string // "mxgate:{zone}:"
	timeout time.Duration
	metrics *Metrics
	up      atomic.Bool
}

// quietRedisLog discards go-redis's own log lines: with Redis down it
// would print one per failed dial, and the fleet reports Redis's state
// itself (status, mxgate_fleet_redis_up, one log line per transition).
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

var silenceRedisLog sync.Once

func newClient(rawURL, zone string, timeout time.Duration, m *Metrics) (*client, error) {
	silenceRedisLog.Do(func() { redis.SetLogger(quietRedisLog{}) })
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("fleet redis URL: %w", err)
	}
	if timeout <= 0 {
		timeout = DefaultCallTimeout
	}
	// No retries and tight timeouts: a failed call falls back locally at
	// once rather than stacking retries under the request.
	opts.MaxRetries = -1
	opts.DialerRetries = 1
	opts.DialTimeout = 4 * timeout
	opts.ReadTimeout, opts.WriteTimeout, opts.PoolTimeout = timeout, timeout, timeout
	opts.ContextTimeoutEnabled = true
	opts.PoolSize = 64 // one call per request in flight on the hot path
	opts.DisableIdentity = true
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	return &client{
		rdb:     redis.NewClient(opts),
		addr:    opts.Addr,
		prefix:  "mxgate:{" + zone + "}:",
		timeout: timeout,
		metrics: m,
	}, nil
}

// RedactURL returns rawURL without its credentials, for logs and status.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparseable URL)"
	}
	u.User = nil
	return u.String()
}

// call runs f under the call deadline. A failure (other than a missing key)
// opens the breaker and counts a fallback for op; the caller then falls
// back locally.
func (c *client) call(op string, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	err := f(ctx)
	if err != nil && !errors.Is(err, redis.Nil) {
		c.setUp(false)
		c.metrics.fallback(op)
		return err
	}
	return nil
}

// skip counts a fallback for op taken without trying Redis (breaker open).
func (c *client) skip(op string) { c.metrics.fallback(op) }

func (c *client) setUp(up bool) {
	c.up.Store(up)
	c.metrics.setUp(up)
}

func (c *client) key(parts ...string) string {
	k := c.prefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}
