package limiter

import (
	"testing"
	"time"
)

func TestMemoryRatesBucketPerKey(t *testing.T) {
	m := NewMemoryRates(10)
	now := time.Unix(1000, 0)
	a, b := RateKey{Class: 1, ID: 1}, RateKey{Class: 1, ID: 2}
	for i := 0; i < 3; i++ {
		if ok, _ := m.Allow(a, 0.5, 3, now); !ok {
			t.Fatalf("burst request %d refused", i)
		}
	}
	ok, wait := m.Allow(a, 0.5, 3, now)
	if ok {
		t.Fatal("request past the burst allowed")
	}
	if wait < 1900*time.Millisecond || wait > 2*time.Second {
		t.Fatalf("retry after %v, want ~2s at 0.5/s", wait)
	}
	if ok, _ := m.Allow(b, 0.5, 3, now); !ok {
		t.Fatal("another user's bucket was drained too")
	}
	if ok, _ := m.Allow(a, 0.5, 3, now.Add(2*time.Second)); !ok {
		t.Fatal("bucket did not refill")
	}
}

func TestMemoryRatesBoundedAndRateChange(t *testing.T) {
	m := NewMemoryRates(100)
	now := time.Unix(1000, 0)
	for i := uint64(0); i < 100_000; i++ {
		m.Allow(RateKey{ID: i}, 1, 1, now)
	}
	if m.Len() > 100 {
		t.Fatalf("store holds %d buckets, cap 100", m.Len())
	}
	k := RateKey{ID: 7_000_000}
	m.Allow(k, 1, 1, now)
	if ok, _ := m.Allow(k, 1, 1, now); ok {
		t.Fatal("burst 1 allowed twice")
	}
	// A reload raising the rate applies to existing buckets: the next token
	// is a millisecond away instead of a second.
	if ok, wait := m.Allow(k, 1000, 1, now.Add(10*time.Millisecond)); !ok && wait > 2*time.Millisecond {
		t.Fatalf("raised rate not applied: retry after %v", wait)
	}
	if ok, _ := m.Allow(k, 0, 0, now); !ok {
		t.Fatal("rate 0 must mean unlimited")
	}
}
