package limiter

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/mxgate/mxgate/matrix"
)

// MaxToggleFileSize bounds the state file FileToggles will read: a store
// holds at most MaxToggles small entries, so anything bigger is not ours.
const MaxToggleFileSize = 1 << 20

// FileToggles is a ToggleStore kept in memory and written to a JSON state
// file on every change, so that operator toggles survive a restart of the
// process until they expire. Writes are atomic (temporary file + rename) and
// the file is private to the owner (0600). Expired toggles are dropped when
// the file is loaded. It is safe for concurrent use.
type FileToggles struct {
	path string
	mem  *MemoryToggles

	mu      sync.Mutex // serialises change+write so the file always holds the latest set
	dropped []string   // entries left out at load, and why
}

// toggleFile is the state file's layout.
type toggleFile struct {
	Version int      `json:"version"`
	Toggles []Toggle `json:"toggles"`
}

// toggleFileEntries is the state file read entry by entry, so that one bad
// entry drops only itself.
type toggleFileEntries struct {
	Version int               `json:"version"`
	Toggles []json.RawMessage `json:"toggles"`
}

const toggleFileVersion = 1

// NotPersistedError reports that a toggle change took effect in memory but
// could not be written to the state file: it is in force, but a restart
// would lose it.
type NotPersistedError struct{ Err error }

func (e *NotPersistedError) Error() string {
	return "toggle is in force but was not saved to the state file: " + e.Err.Error()
}

func (e *NotPersistedError) Unwrap() error { return e.Err }

// NewFileToggles returns a store persisted at path, loaded with the
// unexpired toggles the file holds at now. A missing file is an empty store.
// Every entry is checked as CheckToggle does with maxLife: an entry that
// names no known class, has an unknown mode or a bad reason is dropped (and
// listed by Dropped) rather than failing the whole file, and a toggle set
// for longer than maxLife ends maxLife after it was set. If the
// file cannot be read or parsed at all, the returned store is still usable
// (empty, and it will overwrite the file on the next change) and err says
// why, so a caller can choose to start anyway: an unreadable state file
// must not keep a gateway down during an outage.
func NewFileToggles(path string, now time.Time, maxLife time.Duration) (*FileToggles, error) {
	f := &FileToggles{path: path, mem: NewMemoryToggles()}
	entries, err := readToggleFile(path)
	if err != nil {
		return f, err
	}
	for i, raw := range entries {
		var t Toggle
		if err := json.Unmarshal(raw, &t); err != nil {
			f.dropped = append(f.dropped, fmt.Sprintf("entry %d: %v", i, err))
			continue
		}
		if t.FromConfig {
			continue // the config renews its toggles; the file never holds them
		}
		t, err := CheckToggle(t, now, maxLife)
		if err != nil {
			f.dropped = append(f.dropped, fmt.Sprintf("entry %d: %v", i, err))
			continue
		}
		if !now.Before(t.Until) {
			continue // expired (perhaps once bounded by maxLife)
		}
		if err := f.mem.Put(t); err != nil {
			f.dropped = append(f.dropped, fmt.Sprintf("entry %d: %v", i, err))
		}
	}
	return f, nil
}

// Dropped says which entries of the state file were left out at load, and
// why.
func (f *FileToggles) Dropped() []string { return f.dropped }

// MaxToggleReasonLen bounds a toggle's reason: it is echoed in every 429 of
// the class, kept in the state file and shared by a fleet.
const MaxToggleReasonLen = 256

// CheckToggle validates a toggle that comes from outside the process (a
// state file, a fleet's shared store) at now: its target must be a known
// class, or "*" with priority "sheddable" or "normal"; its mode known; its
// reason at most MaxToggleReasonLen bytes without control characters; and
// it must end after it starts. A toggle lasting longer than maxLife from
// when it was set (or from now, if it claims to be set later) ends maxLife
// after it (maxLife <= 0: no bound); measured from its start, the bound does
// not move with now, so checking the same toggle again gives the same one.
// It returns the toggle to keep.
func CheckToggle(t Toggle, now time.Time, maxLife time.Duration) (Toggle, error) {
	if t.Target == "*" {
		if p, err := matrix.ParsePriority(t.Priority); err != nil || p == matrix.Critical {
			return t, fmt.Errorf("brownout needs priority sheddable or normal, got %q", t.Priority)
		}
	} else if _, err := matrix.ParseClass(t.Target); err != nil {
		return t, err
	} else if t.Priority != "" {
		return t, fmt.Errorf("class %s: priority is only for a brownout", t.Target)
	}
	if t.Mode > ModeShed {
		return t, fmt.Errorf("unknown mode %v", t.Mode)
	}
	if len(t.Reason) > MaxToggleReasonLen || strings.ContainsFunc(t.Reason, unicode.IsControl) {
		return t, fmt.Errorf("%s: reason longer than %d bytes or with control characters", t.Key(), MaxToggleReasonLen)
	}
	if t.Since.IsZero() || !t.Until.After(t.Since) {
		return t, fmt.Errorf("%s: it must end after it starts", t.Key())
	}
	if maxLife > 0 {
		if limit := minTime(t.Since, now).Add(maxLife); t.Until.After(limit) {
			t.Until = limit
		}
	}
	return t, nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// StateFileName is the state file's name for a zone's toggles. instance,
// if not empty, names the gateway (a fleet member): gateways sharing a data
// directory then each keep their own file instead of overwriting one
// another's. Characters unsafe in a file name become '_'.
func StateFileName(zone, instance string) string {
	name := "toggles-" + safeFileName(zone)
	if instance != "" {
		name += "@" + safeFileName(instance)
	}
	return name + ".json"
}

func safeFileName(s string) string {
	const maxLen = 100
	if len(s) > maxLen {
		s = s[:maxLen]
	}
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

func readToggleFile(path string) ([]json.RawMessage, error) {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("toggle state file: %w", err)
	}
	defer fh.Close()
	// Read one byte past the limit so an oversized file is detected even if
	// it grows between a Stat and the read.
	b, err := io.ReadAll(io.LimitReader(fh, MaxToggleFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("toggle state file %s: %w", path, err)
	}
	if len(b) > MaxToggleFileSize {
		return nil, fmt.Errorf("toggle state file %s is larger than %d bytes: not a toggle file", path, MaxToggleFileSize)
	}
	var tf toggleFileEntries
	if err := json.Unmarshal(b, &tf); err != nil {
		return nil, fmt.Errorf("toggle state file %s: %w", path, err)
	}
	if tf.Version != toggleFileVersion {
		return nil, fmt.Errorf("toggle state file %s: unsupported version %d", path, tf.Version)
	}
	return tf.Toggles, nil
}

// Path is the state file's location.
func (f *FileToggles) Path() string { return f.path }

// Put implements ToggleStore. A write failure returns *NotPersistedError;
// the toggle is in force regardless.
func (f *FileToggles) Put(t Toggle) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.mem.Put(t); err != nil {
		return err
	}
	if t.FromConfig {
		return nil // the config renews it; the file never holds it
	}
	return f.saveLocked(t.Since)
}

// Remove implements ToggleStore. A write failure returns the removal's
// result with a *NotPersistedError.
func (f *FileToggles) Remove(key string, now time.Time) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	removed, err := f.mem.Remove(key, now)
	if err != nil {
		return removed, err
	}
	return removed, f.saveLocked(now)
}

// Active implements ToggleStore.
func (f *FileToggles) Active(now time.Time) []Toggle { return f.mem.Active(now) }

// Version implements ToggleStore.
func (f *FileToggles) Version() uint64 { return f.mem.Version() }

// saveLocked writes the operator toggles active at now. Expired ones and
// config toggles are left out; ones that expire later stay in the file and
// are dropped on load.
func (f *FileToggles) saveLocked(now time.Time) error {
	var keep []Toggle
	for _, t := range f.mem.Active(now) {
		if !t.FromConfig {
			keep = append(keep, t)
		}
	}
	b, err := json.MarshalIndent(toggleFile{Version: toggleFileVersion, Toggles: keep}, "", "\t")
	if err != nil {
		return &NotPersistedError{err}
	}
	if err := writeFileAtomic(f.path, b); err != nil {
		return &NotPersistedError{err}
	}
	return nil
}

// writeFileAtomic replaces path with b so that a reader (or a crash) sees
// either the old or the new content, never a torn file.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

var _ ToggleStore = (*FileToggles)(nil)
