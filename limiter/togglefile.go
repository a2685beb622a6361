package limiter

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
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

	mu sync.Mutex // serialises change+write so the file always holds the latest set
}

// toggleFile is the state file's layout.
type toggleFile struct {
	Version int      `json:"version"`
	Toggles []Toggle `json:"toggles"`
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
// If the file cannot be read or parsed, the returned store is still usable
// (empty, and it will overwrite the file on the next change) and err says
// why, so a caller can choose to start anyway: an unreadable state file
// must not keep a gateway down during an outage.
func NewFileToggles(path string, now time.Time) (*FileToggles, error) {
	f := &FileToggles{path: path, mem: NewMemoryToggles()}
	toggles, err := readToggleFile(path)
	if err != nil {
		return f, err
	}
	for _, t := range toggles {
		if t.Target == "" || t.FromConfig || !now.Before(t.Until) {
			continue
		}
		if err := f.mem.Put(t); err != nil {
			return f, fmt.Errorf("toggle state file %s: %w", path, err)
		}
	}
	return f, nil
}

func readToggleFile(path string) ([]Toggle, error) {
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
	var tf toggleFile
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
