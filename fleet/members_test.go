package fleet

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/fleet/redistest"
)

func shares(fs []*Fleet, cap int) (out []int, sum int) {
	for _, f := range fs {
		s := f.Share(cap)
		out = append(out, s)
		sum += s
	}
	return out, sum
}

func TestShareOf(t *testing.T) {
	for _, tc := range []struct{ cap, n, want0, wantLast int }{
		{10, 3, 4, 3}, {9, 3, 3, 3}, {2, 3, 1, 1}, {0, 3, 0, 0}, {5, 1, 5, 5},
	} {
		if a, b := ShareOf(tc.cap, 0, tc.n), ShareOf(tc.cap, tc.n-1, tc.n); a != tc.want0 || b != tc.wantLast {
			t.Errorf("ShareOf(%d, ·, %d) = %d..%d, want %d..%d", tc.cap, tc.n, a, b, tc.want0, tc.wantLast)
		}
	}
}

func TestHerdShareOf(t *testing.T) {
	for _, tc := range []struct {
		allowance, n int
		want         []int
	}{
		{1, 3, []int{1, 0, 0}}, {5, 3, []int{2, 2, 1}}, {0, 2, []int{0, 0}}, {4, 1, []int{4}},
	} {
		var got []int
		for rank := range tc.n {
			got = append(got, HerdShareOf(tc.allowance, rank, tc.n))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("HerdShareOf(%d, ·, %d) = %v, want %v", tc.allowance, tc.n, got, tc.want)
		}
	}
}

// Caps are divided among the live gateways, re-balanced as they leave or
// stop heartbeating, kept as they were while Redis is gone, and shared
// again when it is back.
func TestSharesRebalanceAndFailStatic(t *testing.T) {
	srv := redistest.Start(t)
	fs := testFleets(t, srv, 3, t0)
	if got, sum := shares(fs, 10); sum != 10 || got[0] != 4 {
		t.Fatalf("shares of 10 over 3 = %v (sum %d), want 4,3,3", got, sum)
	}
	m := fs[0].cfg.Metrics
	if n := testutil.ToFloat64(m.Instances); n != 3 {
		t.Errorf("mxgate_fleet_instances = %v, want 3", n)
	}
	// g2 leaves cleanly; g1 stops heartbeating and expires after the TTL.
	fs[2].Close()
	now := t0.Add(time.Second)
	_ = fs[0].members.heartbeat(now)
	_ = fs[1].members.heartbeat(now)
	if got := fs[0].Share(10); got != 5 {
		t.Fatalf("share after a gateway left = %d, want 5", got)
	}
	now = now.Add(DefaultMemberTTL + time.Second)
	_ = fs[0].members.heartbeat(now)
	if got := fs[0].Share(10); got != 10 {
		t.Fatalf("share after the other expired = %d, want the whole 10", got)
	}
	_ = fs[1].members.heartbeat(now) // g1 comes back
	_ = fs[0].members.heartbeat(now)
	v := fs[0].SharesVersion()

	srv.Kill()
	if err := fs[0].members.heartbeat(now.Add(time.Second)); err == nil {
		t.Fatal("heartbeat succeeded without Redis")
	}
	st := fs[0].Status()
	if got := fs[0].Share(10); got != 5 || !st.FailStatic || st.RedisUp || len(st.Instances) != 2 {
		t.Fatalf("without Redis: share %d, status %+v; want the last share 5, fail-static, 2 instances", got, st)
	}
	if up := testutil.ToFloat64(m.RedisUp); up != 0 {
		t.Errorf("mxgate_fleet_redis_up = %v, want 0", up)
	}
	if fs[0].SharesVersion() != v {
		t.Error("shares changed while Redis was gone")
	}
	srv.Restart()
	now = now.Add(2 * time.Second)
	if err := fs[0].members.heartbeat(now); err != nil {
		t.Fatal(err)
	}
	// Redis came back empty: until the others heartbeat again, g0 must not
	// take the whole cap on the strength of a list that holds only itself.
	if got := fs[0].Share(10); got != 5 {
		t.Fatalf("first heartbeat after Redis returned empty: share %d, want the last 5", got)
	}
	_ = fs[1].members.heartbeat(now)
	_ = fs[0].members.heartbeat(now)
	if got, sum := shares(fs[:2], 10); sum != 10 {
		t.Fatalf("after Redis returned: shares %v", got)
	}
	// A gateway gone for good is dropped once the rejoin TTL has passed.
	fs[1].Close()
	now = now.Add(DefaultMemberTTL)
	_ = fs[0].members.heartbeat(now)
	if got := fs[0].Share(10); got != 10 {
		t.Errorf("after the other left: share %d, want 10", got)
	}
	if up := testutil.ToFloat64(m.RedisUp); up != 1 {
		t.Errorf("mxgate_fleet_redis_up = %v after rejoining, want 1", up)
	}
}
