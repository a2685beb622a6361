package limiter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// One bad entry drops only itself: unknown classes, unknown modes, bad
// brownout priorities and overlong reasons are left out (and listed),
// the rest load, and lifetimes are bounded by the maximum.
func TestFileTogglesValidateEntries(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toggles.json")
	long := strings.Repeat("x", MaxToggleReasonLen+1)
	data := `{"version":1,"toggles":[
		{"class":"search","mode":"shed","reason":"ok","since":"2025-03-01T11:00:00Z","until":"2026-03-01T12:00:00Z"},
		{"class":"no_such_class","mode":"shed","reason":"r","since":"2025-03-01T11:00:00Z","until":"2025-03-01T13:00:00Z"},
		{"class":"media","mode":"explode","reason":"r","since":"2025-03-01T11:00:00Z","until":"2025-03-01T13:00:00Z"},
		{"class":"*","priority":"critical","mode":"shed","reason":"r","since":"2025-03-01T11:00:00Z","until":"2025-03-01T13:00:00Z"},
		{"class":"history","mode":"shed","reason":"` + long + `","since":"2025-03-01T11:00:00Z","until":"2025-03-01T13:00:00Z"},
		{"class":"keys","mode":"shed","reason":"bell\u0007","since":"2025-03-01T11:00:00Z","until":"2025-03-01T13:00:00Z"},
		{"class":"*","priority":"normal","mode":"queue","reason":"brownout","since":"2025-03-01T11:30:00Z","until":"2025-03-01T12:30:00Z"}
	]}`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := NewFileToggles(path, t0, 24*time.Hour)
	if err != nil {
		t.Fatalf("a file with bad entries failed whole: %v", err)
	}
	got := f.Active(t0)
	if len(got) != 2 || got[0].Key() != "*:normal" || got[1].Key() != "search" {
		t.Fatalf("loaded %+v, want the brownout and search", got)
	}
	if want := time.Date(2025, 3, 2, 11, 0, 0, 0, time.UTC); !got[1].Until.Equal(want) {
		t.Errorf("a year-long shed ends %v, want its start + 24h = %v", got[1].Until, want)
	}
	if len(f.Dropped()) != 5 {
		t.Errorf("dropped %d entries (%q), want 5", len(f.Dropped()), f.Dropped())
	}
	// Every removal (restore --all) works on what loaded.
	for _, tg := range got {
		if _, err := f.Remove(tg.Key(), t0); err != nil {
			t.Errorf("Remove(%s): %v", tg.Key(), err)
		}
	}
}

func TestStateFileNamePerInstance(t *testing.T) {
	if a, b := StateFileName("default", "gw1"), StateFileName("default", "gw2"); a == b {
		t.Errorf("two instances share the file name %s", a)
	}
	if got := StateFileName("default", ""); got != "toggles-default.json" {
		t.Errorf("outside a fleet the file is %s, want the historical toggles-default.json", got)
	}
	if got := StateFileName("z", "host/../x:80"); strings.ContainsAny(got, "/:") {
		t.Errorf("unsafe characters kept: %s", got)
	}
}
