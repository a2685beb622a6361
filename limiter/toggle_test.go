package limiter

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestMemoryTogglesExpireAndReplace(t *testing.T) {
	m := NewMemoryToggles()
	now := time.Unix(1000, 0)
	v0 := m.Version()
	if err := m.Put(Toggle{Target: "search", Mode: ModeShed, Reason: "a", Since: now, Until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := m.Put(Toggle{Target: "*", Priority: "sheddable", Mode: ModeShed, Since: now, Until: now.Add(2 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := m.Put(Toggle{Target: "search", Mode: ModeQueue, Reason: "b", Since: now, Until: now.Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if m.Version() == v0 {
		t.Fatal("version did not change")
	}
	got := m.Active(now)
	if len(got) != 2 || got[0].Key() != "*:sheddable" || got[1].Mode != ModeQueue || got[1].Reason != "b" {
		t.Fatalf("active toggles: %+v", got)
	}
	if got := m.Active(now.Add(90 * time.Second)); len(got) != 1 || got[0].Target != "*" {
		t.Fatalf("after the search toggle expired: %+v", got)
	}
	if ok, _ := m.Remove("*:sheddable", now.Add(90*time.Second)); !ok {
		t.Fatal("remove of an active toggle reported none")
	}
	if got := m.Active(now); len(got) != 0 {
		t.Fatalf("left: %+v", got)
	}
}

func TestMemoryTogglesCapped(t *testing.T) {
	m := NewMemoryToggles()
	now := time.Unix(1000, 0)
	var err error
	for i := 0; i <= MaxToggles && err == nil; i++ {
		err = m.Put(Toggle{Target: fmt.Sprint("c", i), Since: now, Until: now.Add(time.Hour)})
	}
	if !errors.Is(err, ErrTooManyToggles) {
		t.Fatalf("want ErrTooManyToggles, got %v", err)
	}
}

func TestModeText(t *testing.T) {
	for _, m := range []Mode{ModeNormal, ModeQueue, ModeShed} {
		b, _ := m.MarshalText()
		var back Mode
		if err := back.UnmarshalText(b); err != nil || back != m {
			t.Fatalf("round trip of %v: %v %v", m, back, err)
		}
	}
	if _, err := ParseMode("off"); err == nil {
		t.Fatal("unknown mode accepted")
	}
}
