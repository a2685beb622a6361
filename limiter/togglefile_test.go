package limiter

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func shedToggle(target string, since time.Time, d time.Duration) Toggle {
	return Toggle{Target: target, Mode: ModeShed, Reason: "test", Since: since, Until: since.Add(d)}
}

func TestFileTogglesSurviveReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "toggles.json")
	f, err := NewFileToggles(path, t0, 0)
	if err != nil {
		t.Fatalf("new store on missing file: %v", err)
	}
	if err := f.Put(shedToggle("search", t0, time.Hour)); err != nil {
		t.Fatal(err)
	}
	brown := Toggle{Target: "*", Priority: "sheddable", Mode: ModeQueue, Reason: "brownout", Since: t0, Until: t0.Add(2 * time.Hour)}
	if err := f.Put(brown); err != nil {
		t.Fatal(err)
	}
	if err := f.Put(shedToggle("receipts", t0, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if removed, err := f.Remove("receipts", t0); err != nil || !removed {
		t.Fatalf("Remove = %v, %v; want true, nil", removed, err)
	}

	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("state file mode %v, want 0600", perm)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*.tmp"))
	if len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v", leftovers)
	}

	// A "restart" 30 minutes later: both remaining toggles are back.
	g, err := NewFileToggles(path, t0.Add(30*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	got := g.Active(t0.Add(30 * time.Minute))
	if len(got) != 2 || got[0].Key() != "*:sheddable" || got[1].Key() != "search" {
		t.Fatalf("reloaded toggles = %+v, want brownout and search", got)
	}
	if got[0].Mode != ModeQueue || got[0].Reason != "brownout" || !got[0].Until.Equal(brown.Until) {
		t.Errorf("brownout reloaded as %+v, want %+v", got[0], brown)
	}

	// A restart after the search toggle expired drops it on load.
	h, err := NewFileToggles(path, t0.Add(90*time.Minute), 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := h.Active(t0.Add(90 * time.Minute)); len(got) != 1 || got[0].Key() != "*:sheddable" {
		t.Fatalf("after expiry = %+v, want only the brownout", got)
	}
}

func TestFileTogglesRejectsOversizedAndCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, []byte(`{"version":1,"toggles":[]}`+strings.Repeat(" ", MaxToggleFileSize)), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := NewFileToggles(big, t0, 0)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized file: err = %v, want a size error", err)
	}
	// The store is still usable, and its next change replaces the bad file.
	if err := f.Put(shedToggle("search", t0, time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := NewFileToggles(big, t0, 0); err != nil {
		t.Fatalf("file rewritten by Put does not load: %v", err)
	}

	for name, content := range map[string]string{
		"garbage": "not json",
		"version": `{"version":99,"toggles":[]}`,
	} {
		p := filepath.Join(dir, name+".json")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		f, err := NewFileToggles(p, t0, 0)
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		if f == nil || len(f.Active(t0)) != 0 {
			t.Errorf("%s: want a usable empty store", name)
		}
	}
}

func TestFileTogglesReportsWriteFailure(t *testing.T) {
	dir := t.TempDir()
	// The state file's directory is a regular file: nothing can be written.
	blocker := filepath.Join(dir, "blocker")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := NewFileToggles(filepath.Join(blocker, "toggles.json"), t0, 0)
	if err == nil {
		t.Fatal("unreadable path: no error")
	}
	err = f.Put(shedToggle("search", t0, time.Hour))
	var npe *NotPersistedError
	if !errors.As(err, &npe) {
		t.Fatalf("Put err = %v, want NotPersistedError", err)
	}
	if got := f.Active(t0); len(got) != 1 {
		t.Errorf("toggle not in force after a failed write: %+v", got)
	}
}

func TestFileTogglesKeepConfigTogglesOutOfTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "toggles.json")
	f, _ := NewFileToggles(path, t0, 0)
	cfg := shedToggle("search", t0, time.Hour)
	cfg.FromConfig = true
	if err := f.Put(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a config toggle alone wrote the state file (stat err %v)", err)
	}
	if err := f.Put(shedToggle("receipts", t0, time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := f.Active(t0); len(got) != 2 {
		t.Fatalf("in memory: %+v, want both", got)
	}
	g, err := NewFileToggles(path, t0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := g.Active(t0); len(got) != 1 || got[0].Key() != "receipts" {
		t.Fatalf("after restart: %+v, want only the operator's receipts toggle", got)
	}
}
