package herd

import (
	"time"
	"unsafe"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// cacheEntry is a completed response kept for replay until expires.
type cacheEntry struct {
	res     *response
	expires time.Time
	size    int64
}

// store holds the Coalescer's bounded state: the in-flight groups and the
// completion cache, which together never exceed maxEntries, and one byte
// budget shared by bodies being recorded in flight and cached responses.
// Sharing the budget bounds the Coalescer's whole memory: MaxEntries
// concurrent 16 MiB recordings could otherwise reach far beyond CacheBytes.
// Bytes are counted as memory held, not payload: a recording is charged the
// capacity its buffer allocates as it grows, and a cached entry its
// response's size() plus entryOverhead — with many small answers the
// headers and bookkeeping outweigh the bodies.
//
// store is not safe for concurrent use; Coalescer.mu guards it.
type store struct {
	maxEntries int
	budget     int64
	used       int64 // bytes reserved by recordings plus bytes of cached entries
	waiting    int   // requests blocked in Coalescer.await
	groups     map[Key]*group
	cache      *simplelru.LRU[Key, *cacheEntry]
}

// entryOverhead is what a cached entry holds besides its response: the
// cacheEntry, and the LRU's list element and map slot, each with a copy of
// the key.
const entryOverhead = int64(unsafe.Sizeof(cacheEntry{})) + lruElementBytes + lruSlotBytes

// The LRU's own structures, each holding a copy of the key: a list element
// (three pointers, the value pointer, an expiry time and its bucket besides
// the key, in its allocation size class) and map slots (key, pointer and
// control byte). A map's tables double as they grow and keep deleted slots
// until they do, so under the cache's churn one live entry holds up to
// about three slots (measured by the cache's memory test).
const (
	keyBytes        = int64(unsafe.Sizeof(Key{}))
	lruElementBytes = (3*8 + 8 + 24 + 8 + keyBytes + 15) / 16 * 16
	lruSlotBytes    = 3 * (keyBytes + 8 + 1)
)

func newStore(maxEntries int, budget int64) *store {
	s := &store{maxEntries: maxEntries, budget: budget, groups: make(map[Key]*group)}
	// The LRU's own cap is never reached: roomForGroup and put keep
	// groups+entries <= maxEntries. Evictions go through onEvict so the
	// byte count always matches the entries held.
	cache, err := simplelru.NewLRU[Key, *cacheEntry](maxEntries, func(_ Key, e *cacheEntry) { s.used -= e.size })
	if err != nil {
		panic(err) // only for size <= 0, which NewCoalescer's defaults rule out
	}
	s.cache = cache
	return s
}

// lookup returns the cached response for key if it has not expired at now.
func (s *store) lookup(key Key, now time.Time) *response {
	e, ok := s.cache.Get(key)
	if !ok {
		return nil
	}
	if !now.Before(e.expires) {
		s.cache.Remove(key)
		return nil
	}
	return e.res
}

// roomForGroup makes room for one more in-flight group, evicting the least
// recently used cached entry if needed: an answer being fetched now is worth
// more than an old one. It reports false when every slot is in flight.
func (s *store) roomForGroup() bool {
	if len(s.groups)+s.cache.Len() < s.maxEntries {
		return true
	}
	_, _, evicted := s.cache.RemoveOldest()
	return evicted
}

// reserve charges n bytes to the budget, evicting cached entries (oldest
// first) to make room. It reports false, charging nothing, if n does not fit
// even with the cache empty.
func (s *store) reserve(n int64) bool {
	for s.used+n > s.budget {
		if _, _, ok := s.cache.RemoveOldest(); !ok {
			return false
		}
	}
	s.used += n
	return true
}

// unreserve returns n bytes to the budget.
func (s *store) unreserve(n int64) { s.used -= n }

// put caches res under key until expires. bodyReserved bytes are already
// charged (by the recording: the body's capacity); put charges the rest of
// the entry's size and takes over the reservation. If the entry does not fit, it is dropped and the
// reservation returned.
func (s *store) put(key Key, res *response, expires time.Time, bodyReserved int64, now time.Time) {
	s.dropExpired(now)
	s.cache.Remove(key) // a replaced entry must go through onEvict
	size := res.size() + entryOverhead
	if !s.reserve(size - bodyReserved) {
		s.unreserve(bodyReserved)
		return
	}
	if len(s.groups)+s.cache.Len() >= s.maxEntries {
		if _, _, ok := s.cache.RemoveOldest(); !ok {
			s.unreserve(size)
			return
		}
	}
	s.cache.Add(key, &cacheEntry{res: res, expires: expires, size: size})
}

// dropExpired removes expired entries from the least recently used end.
// Entries further in that expired are removed on lookup or by eviction; they
// never exceed the budget either way.
func (s *store) dropExpired(now time.Time) {
	for {
		_, e, ok := s.cache.GetOldest()
		if !ok || now.Before(e.expires) {
			return
		}
		s.cache.RemoveOldest()
	}
}
