package fleet

import (
	"testing"
	"time"

	"github.com/mxgate/mxgate/fleet/redistest"
	"github.com/mxgate/mxgate/limiter"
)

func shed(class string, since time.Time, d time.Duration) limiter.Toggle {
	return limiter.Toggle{Target: class, Mode: limiter.ModeShed, Reason: "fleet test", Since: since, Until: since.Add(d)}
}

func keys(ts []limiter.Toggle) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Key()
	}
	return out
}

// A toggle set on one gateway reaches the others at their next resync, an
// operator restore on another ends it everywhere, and expiry ends it on all
// (and in Redis).
func TestTogglesSetRestoreExpireAcrossGateways(t *testing.T) {
	srv := redistest.Start(t)
	fs := testFleets(t, srv, 3, t0)
	if err := fs[0].toggles.Put(shed("search", t0, time.Minute)); err != nil {
		t.Fatal(err)
	}
	for i, f := range fs {
		if err := f.toggles.sync(t0); err != nil {
			t.Fatal(err)
		}
		if got := keys(f.toggles.Active(t0)); len(got) != 1 || got[0] != "search" {
			t.Fatalf("gateway %d toggles = %v, want [search]", i, got)
		}
	}
	// Restore through another gateway.
	if removed, err := fs[2].toggles.Remove("search", t0); err != nil || !removed {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
	for i, f := range fs {
		_ = f.toggles.sync(t0)
		if got := f.toggles.Active(t0); len(got) != 0 {
			t.Fatalf("gateway %d still has %v after a restore elsewhere", i, keys(got))
		}
	}
	// Expiry: a 10s brownout is gone everywhere after 10s, and from Redis.
	brown := limiter.Toggle{Target: "*", Priority: "sheddable", Mode: limiter.ModeQueue, Reason: "b", Since: t0, Until: t0.Add(10 * time.Second)}
	if err := fs[1].toggles.Put(brown); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(10 * time.Second)
	for i, f := range fs {
		_ = f.toggles.sync(t0)
		if len(f.toggles.Active(t0)) != 1 {
			t.Fatalf("gateway %d did not get the brownout", i)
		}
	}
	for i, f := range fs {
		_ = f.toggles.sync(later)
		if got := f.toggles.Active(later); len(got) != 0 {
			t.Fatalf("gateway %d kept an expired toggle: %v", i, keys(got))
		}
	}
	if n := fs[0].c.rdb.HLen(t.Context(), fs[0].toggles.hashKey()).Val(); n != 0 {
		t.Errorf("%d expired toggles left in Redis", n)
	}
}

// Config toggles stay on their gateway: each gateway's config is its own.
func TestConfigTogglesStayLocal(t *testing.T) {
	srv := redistest.Start(t)
	fs := testFleets(t, srv, 2, t0)
	cfgShed := shed("receipts", t0, time.Hour)
	cfgShed.FromConfig = true
	if err := fs[0].toggles.Put(cfgShed); err != nil {
		t.Fatal(err)
	}
	_ = fs[0].toggles.sync(t0)
	_ = fs[1].toggles.sync(t0)
	if got := keys(fs[0].toggles.Active(t0)); len(got) != 1 {
		t.Errorf("the config shed was dropped by a resync: %v", got)
	}
	if got := fs[1].toggles.Active(t0); len(got) != 0 {
		t.Errorf("another gateway's config shed reached this one: %v", keys(got))
	}
}

// With Redis gone a change applies locally and is pushed when Redis is
// back; meanwhile the others keep their last copy.
func TestTogglesPendingWhileRedisIsDown(t *testing.T) {
	srv := redistest.Start(t)
	fs := testFleets(t, srv, 2, t0)
	if err := fs[0].toggles.Put(shed("media", t0, time.Hour)); err != nil {
		t.Fatal(err)
	}
	_ = fs[1].toggles.sync(t0)
	srv.Kill()
	if err := fs[0].toggles.Put(shed("search", t0, time.Hour)); err != nil {
		t.Fatalf("Put with Redis down = %v, want nil (pending)", err)
	}
	if got := keys(fs[0].toggles.Active(t0)); len(got) != 2 {
		t.Fatalf("local toggles = %v, want media and search in force", got)
	}
	if p := fs[0].toggles.Pending(); p != 1 {
		t.Fatalf("pending = %d, want 1", p)
	}
	if err := fs[1].toggles.sync(t0); err == nil {
		t.Fatal("sync succeeded with Redis down")
	}
	if got := keys(fs[1].toggles.Active(t0)); len(got) != 1 || got[0] != "media" {
		t.Fatalf("gateway 1 lost its last copy: %v", got)
	}
	// Redis comes back empty (no persistence): the survivors' copies and
	// the pending change repopulate it.
	srv.Restart()
	if err := fs[0].toggles.sync(t0); err != nil {
		t.Fatal(err)
	}
	if err := fs[1].toggles.sync(t0); err != nil {
		t.Fatal(err)
	}
	if got := keys(fs[1].toggles.Active(t0)); len(got) != 1 || got[0] != "search" {
		t.Errorf("gateway 1 after Redis returned: %v, want the pushed [search]", got)
	}
}

// Toggles in Redis are checked like a state file's: unknown classes and
// overlong reasons are ignored, lifetimes bounded.
func TestSharedTogglesAreValidated(t *testing.T) {
	srv := redistest.Start(t)
	fs := testFleets(t, srv, 1, t0)
	s := fs[0].toggles
	s.maxLife = time.Hour
	ctx := t.Context()
	h := s.hashKey()
	s.c.rdb.HSet(ctx, h, "nosuchclass", `{"class":"nosuchclass","mode":"shed","reason":"x","since":"2026-12-01T12:00:00Z","until":"2026-12-01T13:00:00Z"}`)
	s.c.rdb.HSet(ctx, h, "search", `{"class":"search","mode":"shed","reason":"x","since":"2026-12-01T12:00:00Z","until":"2027-12-01T13:00:00Z"}`)
	s.c.rdb.HSet(ctx, h, "media", `{"class":"media","mode":"explode","since":"2026-12-01T12:00:00Z","until":"2026-12-01T13:00:00Z"}`)
	if err := s.sync(t0); err != nil {
		t.Fatal(err)
	}
	got := s.Active(t0)
	if len(got) != 1 || got[0].Target != "search" {
		t.Fatalf("synced %v, want only search", keys(got))
	}
	if !got[0].Until.Equal(t0.Add(time.Hour)) {
		t.Errorf("a year-long toggle ends %v, want clamped to %v", got[0].Until, t0.Add(time.Hour))
	}
}
