package limiter

import (
	"math"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// RateKey identifies one token bucket: a class and a one-way user identity
// (a hashed access token, or a hashed client IP for anonymous requests).
type RateKey struct {
	Class uint8
	ID    uint64
}

// RateStore holds per-user token buckets. Allow takes one token from key's
// bucket (limit tokens per second, burst size) at now, creating the bucket
// full if it is new; when the bucket is empty it reports how long until a
// token is available. It is an interface so that a store shared by a fleet of
// gateways can replace the in-memory one.
type RateStore interface {
	Allow(key RateKey, limit float64, burst int, now time.Time) (ok bool, retryAfter time.Duration)
}

// MemoryRates is a RateStore in process memory. It holds at most a fixed
// number of buckets, evicting the least recently used: an evicted user simply
// starts again with a full bucket, which errs towards letting traffic through.
type MemoryRates struct {
	buckets *lru.Cache[RateKey, *rate.Limiter]
}

// DefaultRateBuckets is how many buckets MemoryRates keeps by default.
const DefaultRateBuckets = 100_000

// NewMemoryRates returns a store of at most size buckets (DefaultRateBuckets if size <= 0).
func NewMemoryRates(size int) *MemoryRates {
	if size <= 0 {
		size = DefaultRateBuckets
	}
	c, err := lru.New[RateKey, *rate.Limiter](size)
	if err != nil {
		panic(err) // only for size <= 0, excluded above
	}
	return &MemoryRates{buckets: c}
}

// Allow implements RateStore.
func (m *MemoryRates) Allow(key RateKey, limit float64, burst int, now time.Time) (bool, time.Duration) {
	if limit <= 0 {
		return true, 0
	}
	if burst < 1 {
		burst = 1
	}
	lim, ok := m.buckets.Get(key)
	if !ok {
		fresh := rate.NewLimiter(rate.Limit(limit), burst)
		if prev, found, _ := m.buckets.PeekOrAdd(key, fresh); found {
			lim = prev
		} else {
			lim = fresh
		}
	}
	// A reload may have changed the class's rate; apply it to old buckets.
	if lim.Limit() != rate.Limit(limit) {
		lim.SetLimitAt(now, rate.Limit(limit))
	}
	if lim.Burst() != burst {
		lim.SetBurstAt(now, burst)
	}
	if lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - lim.TokensAt(now)
	wait := time.Duration(math.Ceil(missing / limit * float64(time.Second)))
	return false, wait
}

// Len is the number of buckets held.
func (m *MemoryRates) Len() int { return m.buckets.Len() }
