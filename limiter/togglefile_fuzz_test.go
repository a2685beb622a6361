package limiter

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// FuzzFileToggles loads arbitrary state files: a bad file is an error (and
// still a usable empty store), never a panic, and whatever loads is capped,
// unexpired, valid (CheckToggle accepts it unchanged) and within the
// maximum lifetime.
func FuzzFileToggles(f *testing.F) {
	f.Add([]byte(`{"version":1,"toggles":[{"class":"search","mode":"shed","reason":"r","since":"2026-01-01T00:00:00Z","until":"2999-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"toggles":[{"class":"*","priority":"sheddable","mode":"queue","until":"2999-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"toggles":[{"class":"nope","mode":"shed","since":"2026-11-28T11:00:00Z","until":"2999-01-01T00:00:00Z"},{"class":"media","mode":"x"}]}`))
	f.Add([]byte(`not json`))
	dir := f.TempDir()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "toggles.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		const maxLife = 24 * time.Hour
		store, _ := NewFileToggles(path, now, maxLife)
		if store == nil {
			t.Fatal("no store returned")
		}
		active := store.Active(now)
		if len(active) > MaxToggles {
			t.Fatalf("%d toggles loaded, cap %d", len(active), MaxToggles)
		}
		for _, tg := range active {
			if !now.Before(tg.Until) {
				t.Fatalf("expired toggle loaded: %+v", tg)
			}
			if back, err := CheckToggle(tg, now, maxLife); err != nil || back != tg {
				t.Fatalf("loaded toggle %+v fails its own check: %v", tg, err)
			}
			if tg.Until.Sub(minTime(tg.Since, now)) > maxLife {
				t.Fatalf("toggle outlives the maximum: %+v", tg)
			}
		}
	})
}
