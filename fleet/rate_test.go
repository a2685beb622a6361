package fleet

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/fleet/redistest"
	"github.com/mxgate/mxgate/limiter"
)

// One user's requests spread over three gateways get the configured rate
// once: burst at first, then one per emission interval.
func TestRatesSharedAcrossGateways(t *testing.T) {
	srv := redistest.Start(t)
	fs := testFleets(t, srv, 3, t0)
	rates := make([]*Rates, len(fs))
	for i, f := range fs {
		rates[i] = f.Rates(limiter.NewMemoryRates(0))
	}
	key := limiter.RateKey{Class: 3, ID: 0xfeedface}
	allowed := 0
	var lastWait time.Duration
	for i := range 9 { // round-robin, all at t0
		ok, wait := rates[i%3].Allow(key, 2, 3, t0)
		if ok {
			allowed++
		} else {
			lastWait = wait
		}
	}
	if allowed != 3 {
		t.Fatalf("%d of 9 requests at once allowed over 3 gateways, want the burst of 3", allowed)
	}
	if lastWait <= 0 || lastWait > 500*time.Millisecond {
		t.Errorf("retry after %v, want (0, 500ms] at 2/s", lastWait)
	}
	// 500ms later one more token, on whichever gateway.
	if ok, _ := rates[1].Allow(key, 2, 3, t0.Add(500*time.Millisecond)); !ok {
		t.Error("no token after one emission interval")
	}
	if ok, _ := rates[2].Allow(key, 2, 3, t0.Add(500*time.Millisecond)); ok {
		t.Error("two tokens after one emission interval")
	}
	// Another user has a bucket of their own.
	if ok, _ := rates[0].Allow(limiter.RateKey{Class: 3, ID: 7}, 2, 3, t0); !ok {
		t.Error("a second user was limited by the first")
	}
	if n := testutil.ToFloat64(fs[0].cfg.Metrics.Fallbacks.WithLabelValues(OpRate)); n != 0 {
		t.Errorf("%v rate fallbacks with Redis up", n)
	}
}

// Without Redis each gateway falls back to rate ÷ N and burst ÷ N, so the
// fleet's total stays near the configured rate; the fallback is counted.
func TestRatesFallBackToLocalShare(t *testing.T) {
	srv := redistest.Start(t)
	fs := testFleets(t, srv, 3, t0)
	r := fs[0].Rates(limiter.NewMemoryRates(0))
	srv.Kill()
	key := limiter.RateKey{Class: 1, ID: 42}
	allowed := 0
	for range 5 {
		if ok, _ := r.Allow(key, 3, 3, t0); ok {
			allowed++
		}
	}
	if allowed != 1 {
		t.Fatalf("%d of 5 allowed locally, want burst 3 ÷ 3 gateways = 1", allowed)
	}
	if ok, _ := r.Allow(key, 3, 3, t0.Add(time.Second)); !ok {
		t.Error("local bucket did not refill at rate 3 ÷ 3 = 1/s")
	}
	m := fs[0].cfg.Metrics
	if n := testutil.ToFloat64(m.Fallbacks.WithLabelValues(OpRate)); n != 6 {
		t.Errorf("rate fallbacks = %v, want 6", n)
	}
	if up := testutil.ToFloat64(m.RedisUp); up != 0 {
		t.Errorf("mxgate_fleet_redis_up = %v after a failed call, want 0", up)
	}
}

// A Redis that accepts connections but never answers costs a call its
// deadline once; then the breaker keeps requests off it until a heartbeat
// succeeds.
func TestRatesHangingRedisFallsBack(t *testing.T) {
	hang := hangingServer(t)
	f, err := New(Config{Redis: "redis://" + hang + "/0", Name: "g0", Zone: "hang", Metrics: NewMetrics(),
		CallTimeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.c.setUp(true) // as if a heartbeat had succeeded before Redis hung
	r := f.Rates(limiter.NewMemoryRates(0))
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			if ok, _ := r.Allow(limiter.RateKey{ID: 1}, 1000, 1000, t0); !ok {
				t.Error("local fallback refused within its burst")
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second): // a hang bound, not a speed claim
		t.Fatal("rate checks hung on an unresponsive Redis")
	}
	if f.c.up.Load() {
		t.Error("breaker still closed after a timed-out call")
	}
}
