package herd

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/mxgate/mxgate/matrix"
)

// DetectorConfig tunes a Detector. Zero fields take the defaults.
type DetectorConfig struct {
	// Window is the sliding window distinct users are counted in. Default 10s.
	Window time.Duration
	// MinUsers distinct users on one (class, room) within Window make a
	// herd. Default 50.
	MinUsers int
	// MaxKeys caps the tracked (class, room) keys, least recently observed
	// evicted first. Default 10000.
	MaxKeys int
}

// Defaults of DetectorConfig.
const (
	DefaultHerdWindow   = 10 * time.Second
	DefaultHerdMinUsers = 50
	DefaultHerdMaxKeys  = 10000
)

// MaxRoomIDBytes is the longest room ID tracked; the Matrix spec caps room
// IDs at 255 bytes, and longer strings must not make tracked keys costlier.
const MaxRoomIDBytes = 255

// Herd describes one active herd.
type Herd struct {
	Class matrix.Class
	Room  string
	Users int       // distinct users in the window (capped at 2*MinUsers)
	Since time.Time // when the herd was declared
	Rate  float64   // requests per second on the key over the window
}

type herdKey struct {
	class matrix.Class
	room  string
}

// Detector declares a herd when at least MinUsers distinct users request the
// same (class, room) within Window, and ends it when they fall below half
// that. Memory is bounded: at most MaxKeys keys (LRU) of at most 2*MinUsers
// users each, so a flood of random room IDs or user tokens cannot grow it.
//
// Time is passed in by the caller (like x/time/rate's AllowN), which makes
// the Detector deterministic under test. Safe for concurrent use; starts no
// goroutines. Herds end lazily, when their key is observed or Active is
// called.
type Detector struct {
	cfg      DetectorConfig
	capUsers int

	mu     sync.Mutex
	keys   *simplelru.LRU[herdKey, *userWindow] // guarded by mu
	active map[herdKey]*userWindow              // subset of keys with a herd; guarded by mu
}

// NewDetector returns a Detector tuned by cfg (zero fields: defaults).
func NewDetector(cfg DetectorConfig) *Detector {
	if cfg.Window <= 0 {
		cfg.Window = DefaultHerdWindow
	}
	if cfg.MinUsers <= 0 {
		cfg.MinUsers = DefaultHerdMinUsers
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultHerdMaxKeys
	}
	d := &Detector{cfg: cfg, capUsers: 2 * cfg.MinUsers, active: make(map[herdKey]*userWindow)}
	keys, err := simplelru.NewLRU[herdKey, *userWindow](cfg.MaxKeys, func(k herdKey, _ *userWindow) {
		delete(d.active, k) // an evicted key's herd is forgotten with it
	})
	if err != nil {
		panic(err) // only for MaxKeys <= 0, ruled out above
	}
	d.keys = keys
	return d
}

// Observe records that user requested (class, room) at now and reports
// whether a herd is active on that key, and whether this call declared it.
// Anonymous requests (user 0) are not counted but still learn whether the
// key has a herd. Room "" and room IDs longer than MaxRoomIDBytes are not
// tracked.
func (d *Detector) Observe(class matrix.Class, room string, user matrix.TokenID, now time.Time) (active, started bool) {
	return d.observe(class, room, user, 0, now)
}

func (d *Detector) observe(class matrix.Class, room string, user matrix.TokenID, fleetUsers int, now time.Time) (active, started bool) {
	if room == "" || len(room) > MaxRoomIDBytes {
		return false, false
	}
	k := herdKey{class, room}
	d.mu.Lock()
	defer d.mu.Unlock()
	if user == 0 {
		w, ok := d.keys.Peek(k)
		return ok && w.active, false
	}
	w, ok := d.keys.Get(k)
	if !ok {
		// The key string is cloned so a tracked key never pins a larger
		// buffer (e.g. the request's whole URL) in memory.
		k.room = strings.Clone(room)
		w = &userWindow{}
		d.keys.Add(k, w)
	}
	users := w.observe(user, now.UnixNano(), d.cfg.Window, d.capUsers)
	users = w.withFleet(fleetUsers, now.UnixNano(), users, d.cfg.Window) // detect_fleet.go
	return d.transition(k, w, users, now)
}

// transition starts or ends the herd on k given its distinct users.
func (d *Detector) transition(k herdKey, w *userWindow, users int, now time.Time) (active, started bool) {
	switch {
	case !w.active && users >= d.cfg.MinUsers:
		w.active, w.since = true, now
		d.active[k] = w
		return true, true
	case w.active && users < d.endBelow():
		w.active = false
		delete(d.active, k)
	}
	return w.active, false
}

// endBelow is how few distinct users end a herd: half of MinUsers. The
// hysteresis keeps a herd whose clients retry at the pace their Retry-After
// spreads them from flapping off and on, its requests taking the normal
// lane, ahead of the rest of their class, every time it is off.
func (d *Detector) endBelow() int { return max(1, d.cfg.MinUsers/2) }

// Active returns the herds active at now, sorted by class then room. Herds
// whose users fell below MinUsers are ended and left out.
func (d *Detector) Active(now time.Time) []Herd {
	t := now.UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	herds := make([]Herd, 0, len(d.active))
	for k, w := range d.active {
		users := w.withFleet(0, t, w.prune(t, d.cfg.Window), d.cfg.Window)
		if users < d.endBelow() {
			w.active = false
			delete(d.active, k)
			continue
		}
		herds = append(herds, Herd{Class: k.class, Room: k.room, Users: users, Since: w.since,
			Rate: w.rates.perSecond(t, d.cfg.Window)})
	}
	slices.SortFunc(herds, func(a, b Herd) int {
		return cmp.Or(cmp.Compare(a.Class, b.Class), cmp.Compare(a.Room, b.Room))
	})
	return herds
}

// Lookup returns the herd active on (class, room) at now, if any.
func (d *Detector) Lookup(class matrix.Class, room string, now time.Time) (Herd, bool) {
	t := now.UnixNano()
	d.mu.Lock()
	defer d.mu.Unlock()
	w, ok := d.active[herdKey{class, room}]
	if !ok {
		return Herd{}, false
	}
	return Herd{Class: class, Room: room, Users: w.withFleet(0, t, w.prune(t, d.cfg.Window), d.cfg.Window), Since: w.since,
		Rate: w.rates.perSecond(t, d.cfg.Window)}, true
}

// Len returns the number of tracked (class, room) keys.
func (d *Detector) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.keys.Len()
}

// TrackedUsers returns how many users are held for (class, room), at most
// 2*MinUsers; it exists to check the memory bound.
func (d *Detector) TrackedUsers(class matrix.Class, room string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	if w, ok := d.keys.Peek(herdKey{class, room}); ok {
		return len(w.seen)
	}
	return 0
}
