package limiter

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is an operator's override of a class's admission.
type Mode uint8

const (
	// ModeNormal is the configured behaviour.
	ModeNormal Mode = iota
	// ModeQueue holds the class: nothing new reaches the upstream, requests
	// wait within their queue deadline and go on when the toggle ends.
	ModeQueue
	// ModeShed answers every request of the class with a 429 at once.
	ModeShed
)

var modeNames = [...]string{ModeNormal: "normal", ModeQueue: "queue", ModeShed: "shed"}

func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode returns the mode with the given name.
func ParseMode(s string) (Mode, error) {
	for i, n := range modeNames {
		if n == s {
			return Mode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown mode %q (known: normal, queue, shed)", s)
}

// MarshalText makes modes readable in JSON.
func (m Mode) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText parses a mode name.
func (m *Mode) UnmarshalText(b []byte) error {
	v, err := ParseMode(string(b))
	*m = v
	return err
}

// Toggle is one operator override. Target is a class name, or "*" together
// with Priority for a brownout of every class at or below that priority.
type Toggle struct {
	Target   string    `json:"class"`
	Priority string    `json:"priority,omitempty"`
	Mode     Mode      `json:"mode"`
	Reason   string    `json:"reason"`
	Since    time.Time `json:"since"`
	Until    time.Time `json:"until"`
	// FromConfig marks a toggle set by the configuration (`shed CLASS`):
	// every config load renews or drops it, so it is never persisted.
	FromConfig bool `json:"from_config,omitempty"`
}

// Key is the toggle's identity in a store: setting a toggle with the same
// key replaces the old one.
func (t Toggle) Key() string {
	if t.Target == "*" {
		return "*:" + t.Priority
	}
	return t.Target
}

// ToggleStore keeps operator toggles. Expired toggles are never returned.
// Version changes whenever the set of toggles changes, so readers can cache
// what they derived from it. It is an interface so that a store shared by a
// fleet of gateways can replace the in-memory one.
type ToggleStore interface {
	Put(t Toggle) error
	// Remove deletes the toggle with the given key and reports whether one
	// was active.
	Remove(key string, now time.Time) (bool, error)
	Active(now time.Time) []Toggle
	Version() uint64
}

// MaxToggles caps a store: there is one toggle per class or brownout level,
// so a store holding more is being fed garbage.
const MaxToggles = 64

// ErrTooManyToggles is returned by Put when the store is full.
var ErrTooManyToggles = errors.New("too many toggles")

// MemoryToggles is a ToggleStore in process memory.
type MemoryToggles struct {
	mu      sync.Mutex
	toggles map[string]Toggle
	version atomic.Uint64 // read on every request, without the lock
}

// NewMemoryToggles returns an empty store.
func NewMemoryToggles() *MemoryToggles {
	return &MemoryToggles{toggles: make(map[string]Toggle)}
}

// Put implements ToggleStore.
func (m *MemoryToggles) Put(t Toggle) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(t.Since)
	if _, ok := m.toggles[t.Key()]; !ok && len(m.toggles) >= MaxToggles {
		return ErrTooManyToggles
	}
	m.toggles[t.Key()] = t
	m.version.Add(1)
	return nil
}

// Remove implements ToggleStore.
func (m *MemoryToggles) Remove(key string, now time.Time) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, ok := m.toggles[key]
	if !ok {
		return false, nil
	}
	delete(m.toggles, key)
	m.version.Add(1)
	return now.Before(t.Until), nil
}

// Active implements ToggleStore, sorted by key.
func (m *MemoryToggles) Active(now time.Time) []Toggle {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pruneLocked(now)
	out := make([]Toggle, 0, len(m.toggles))
	for _, t := range m.toggles {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// Version implements ToggleStore.
func (m *MemoryToggles) Version() uint64 { return m.version.Load() }

func (m *MemoryToggles) pruneLocked(now time.Time) {
	for k, t := range m.toggles {
		if !now.Before(t.Until) {
			delete(m.toggles, k)
			m.version.Add(1)
		}
	}
}
