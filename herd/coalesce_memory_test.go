package herd

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// discardWriter is a leader's client that keeps nothing, so that the heap
// the test measures is the Coalescer's alone.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(int)             {}
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC() // the second cycle frees what the first one's finalizers released
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestCacheHeapStaysWithinBudget fills a Coalescer with many more distinct
// cacheable answers than its budget holds, as a homeserver's varied
// answers do, and checks the process's live heap: what the cache holds
// must be its budget plus at most cacheHeapOverhead, whatever the answers'
// shape. Both shapes cost more than their payload: small answers in their
// headers, keys and bookkeeping; streamed answers without Content-Length in
// the capacity a growing buffer allocates.
func TestCacheHeapStaysWithinBudget(t *testing.T) {
	const budget = 8 << 20
	// The allocator's rounding of what the store charges (size classes,
	// map buckets) is not charged exactly; this much on top is allowed.
	const cacheHeapOverhead = budget / 8
	for _, tc := range []struct {
		name      string
		body      int  // bytes per answer
		chunk     int  // written in pieces of this size
		length    bool // Content-Length sent
		answers   int
		extraHdrs int
	}{
		{"small answers with headers", 300, 300, true, 20000, 6},
		{"streamed 64KiB answers", 64 << 10, 24 << 10, false, 400, 2},
		{"64KiB answers with length", 64 << 10, 32 << 10, true, 400, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewCoalescer(CoalescerConfig{CacheBytes: budget, MaxEntries: 1 << 20})
			body := make([]byte, tc.body)
			for i := range body {
				body[i] = 'a' + byte(i%26)
			}
			before := liveHeap()
			w := &discardWriter{h: make(http.Header)}
			for i := range tc.answers {
				r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/_matrix/client/v3/profile/@user%d:example.org", i), nil)
				r.Header.Set("Authorization", "Bearer syt_memory_test")
				key, ok := keyFor(r, false)
				if !ok {
					t.Fatal("not coalescible")
				}
				clear(w.h)
				_, err := c.Do(w, r, key, LeadDetached, time.Hour, 0, func(w http.ResponseWriter, _ *http.Request) error {
					h := w.Header()
					h.Set("Content-Type", "application/json")
					h.Set("Cache-Control", "max-age=3600")
					for j := range tc.extraHdrs {
						h.Set("X-Upstream-"+strconv.Itoa(j), "some-value-"+strconv.Itoa(i))
					}
					if tc.length {
						h.Set("Content-Length", strconv.Itoa(len(body)))
					}
					for off := 0; off < len(body); off += tc.chunk {
						if _, err := w.Write(body[off:min(off+tc.chunk, len(body))]); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			_, entries, charged := c.Len()
			held := int64(liveHeap()) - int64(before)
			t.Logf("%d entries, %d bytes charged, %d bytes live heap (budget %d)", entries, charged, held, budget)
			if charged > budget {
				t.Errorf("charged %d bytes, over the budget of %d", charged, budget)
			}
			if held > budget+cacheHeapOverhead {
				t.Errorf("the cache holds %d bytes of heap, more than its budget %d + %d", held, budget, cacheHeapOverhead)
			}
			if entries < 2 {
				t.Errorf("only %d entries cached: the test fills nothing", entries)
			}
			runtime.KeepAlive(c)
		})
	}
}
