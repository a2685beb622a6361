package herd

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

var t0 = time.Unix(1_700_000_000, 0)

func TestHerdDeclaredOnceFor60UsersInOneRoom(t *testing.T) {
	d := NewDetector(DetectorConfig{Window: 10 * time.Second, MinUsers: 50})
	starts := 0
	for i := range 60 {
		now := t0.Add(time.Duration(i) * 100 * time.Millisecond)
		active, started := d.Observe(matrix.RoomState, "!big:x", matrix.TokenID(i+1), now)
		if started {
			starts++
			if i != 49 {
				t.Fatalf("herd started at user %d, want the 50th", i+1)
			}
		}
		if active != (i >= 49) {
			t.Fatalf("user %d: active=%v", i+1, active)
		}
	}
	// Repeat requests by the same users neither restart nor inflate it.
	for i := range 60 {
		if _, started := d.Observe(matrix.RoomState, "!big:x", matrix.TokenID(i+1), t0.Add(7*time.Second)); started {
			t.Fatal("herd started twice")
		}
	}
	if starts != 1 {
		t.Fatalf("started %d times, want 1", starts)
	}
	herds := d.Active(t0.Add(8 * time.Second))
	if len(herds) != 1 {
		t.Fatalf("active herds %v, want one", herds)
	}
	h := herds[0]
	if h.Class != matrix.RoomState || h.Room != "!big:x" || h.Users != 60 || !h.Since.Equal(t0.Add(4900*time.Millisecond)) {
		t.Fatalf("herd %+v", h)
	}
	if want := 120.0 / 10; h.Rate != want {
		t.Fatalf("rate %v, want %v requests/s", h.Rate, want)
	}
	// Anonymous requests see the herd but are not counted.
	if active, _ := d.Observe(matrix.RoomState, "!big:x", 0, t0.Add(8*time.Second)); !active {
		t.Fatal("anonymous request does not see the herd")
	}
}

func TestNoHerdWhenUsersSpreadOverRooms(t *testing.T) {
	d := NewDetector(DetectorConfig{Window: 10 * time.Second, MinUsers: 50})
	for i := range 60 {
		if active, _ := d.Observe(matrix.RoomState, fmt.Sprintf("!r%d:x", i), matrix.TokenID(i+1), t0); active {
			t.Fatalf("herd in room %d", i)
		}
	}
	if herds := d.Active(t0); len(herds) != 0 {
		t.Fatalf("herds %v", herds)
	}
}

func TestNoHerdWhenUsersSpreadOverTime(t *testing.T) {
	d := NewDetector(DetectorConfig{Window: 10 * time.Second, MinUsers: 50})
	// 60 users, one every 250ms: never more than 40 in any 10s window.
	for i := range 60 {
		if active, _ := d.Observe(matrix.History, "!r:x", matrix.TokenID(i+1), t0.Add(time.Duration(i)*250*time.Millisecond)); active {
			t.Fatalf("herd at user %d", i+1)
		}
	}
}

func TestNoHerdAcrossClasses(t *testing.T) {
	d := NewDetector(DetectorConfig{Window: 10 * time.Second, MinUsers: 50})
	for i := range 60 {
		class := []matrix.Class{matrix.RoomState, matrix.History}[i%2]
		if active, _ := d.Observe(class, "!r:x", matrix.TokenID(i+1), t0); active {
			t.Fatal("30+30 users over two classes make a herd")
		}
	}
}

func TestHerdEndsAfterWindow(t *testing.T) {
	d := NewDetector(DetectorConfig{Window: 10 * time.Second, MinUsers: 50})
	for i := range 60 {
		d.Observe(matrix.SyncInitial, "!r:x", matrix.TokenID(i+1), t0)
	}
	if len(d.Active(t0.Add(9*time.Second))) != 1 {
		t.Fatal("herd not active inside the window")
	}
	if herds := d.Active(t0.Add(11 * time.Second)); len(herds) != 0 {
		t.Fatalf("herd still active after the window: %v", herds)
	}
	// Ended by Observe too: a lone user after the window sees no herd.
	for i := range 60 {
		d.Observe(matrix.SyncInitial, "!s:x", matrix.TokenID(i+1), t0)
	}
	if active, _ := d.Observe(matrix.SyncInitial, "!s:x", 1, t0.Add(20*time.Second)); active {
		t.Fatal("herd active after the window")
	}
	// And it can start again.
	started := 0
	for i := range 60 {
		if _, s := d.Observe(matrix.SyncInitial, "!s:x", matrix.TokenID(i+100), t0.Add(21*time.Second)); s {
			started++
		}
	}
	if started != 1 {
		t.Fatalf("second herd started %d times", started)
	}
}

func TestDetectorMemoryBounded(t *testing.T) {
	const maxKeys = 1000
	d := NewDetector(DetectorConfig{Window: 10 * time.Second, MinUsers: 50, MaxKeys: maxKeys})
	rng := rand.New(rand.NewPCG(1, 2))
	name := make([]byte, 0, 64)
	for i := range 1_000_000 {
		name = strconv.AppendUint(append(name[:0], '!'), rng.Uint64(), 36)
		room := string(append(name, ":evil.example"...))
		d.Observe(matrix.RoomState, room, matrix.TokenID(rng.Uint64()|1), t0.Add(time.Duration(i)*time.Microsecond))
		if i%100_000 == 0 && d.Len() > maxKeys {
			t.Fatalf("%d keys tracked, cap %d", d.Len(), maxKeys)
		}
	}
	if d.Len() != maxKeys {
		t.Fatalf("%d keys tracked, want the cap %d", d.Len(), maxKeys)
	}
	// One room flooded by many users keeps at most 2*MinUsers of them.
	for i := range 100_000 {
		d.Observe(matrix.RoomState, "!hot:x", matrix.TokenID(i+1), t0.Add(time.Second))
	}
	if got := d.TrackedUsers(matrix.RoomState, "!hot:x"); got != 100 {
		t.Fatalf("tracked users %d, want the per-key cap 100", got)
	}
	herds := d.Active(t0.Add(time.Second))
	if len(herds) != 1 || herds[0].Users != 100 {
		t.Fatalf("herds %+v, want !hot:x with 100 (capped) users", herds)
	}
	// Oversized room IDs are not tracked at all.
	before := d.Len()
	d.Observe(matrix.RoomState, "!"+string(make([]byte, MaxRoomIDBytes)), 1, t0)
	if d.TrackedUsers(matrix.RoomState, "!"+string(make([]byte, MaxRoomIDBytes))) != 0 || d.Len() != before {
		t.Fatal("oversized room ID tracked")
	}
}

func TestDetectorConcurrentUse(t *testing.T) {
	d := NewDetector(DetectorConfig{Window: time.Second, MinUsers: 5, MaxKeys: 50})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				d.Observe(matrix.RoomState, fmt.Sprintf("!r%d:x", i%60), matrix.TokenID(g*10000+i%20+1), now)
				if i%100 == 0 {
					d.Active(now)
					d.Len()
				}
			}
		})
	}
	wg.Wait()
	if d.Len() > 50 {
		t.Fatalf("%d keys, cap 50", d.Len())
	}
}

func BenchmarkObserve(b *testing.B) {
	d := NewDetector(DetectorConfig{})
	rooms := make([]string, 1000)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("!room%d:example.org", i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		d.Observe(matrix.RoomState, rooms[i%len(rooms)], matrix.TokenID(i%5000+1), t0.Add(time.Duration(i)*time.Microsecond))
		i++
	}
}

// A herd ends below half its MinUsers, not as soon as it dips below them:
// its clients come back at the pace their Retry-After spreads them, and a
// herd flapping off would send them to the normal lane each time. Once
// ended, it takes MinUsers again to start.
func TestHerdEndsBelowHalfItsUsers(t *testing.T) {
	d := NewDetector(DetectorConfig{Window: 10 * time.Second, MinUsers: 50})
	for i := range 50 {
		d.Observe(matrix.RoomState, "!big:x", matrix.TokenID(i+1), t0)
	}
	for i := range 25 {
		d.Observe(matrix.RoomState, "!big:x", matrix.TokenID(100+i), t0.Add(5*time.Second))
	}
	// The first 50 have left the window; the 25 who came later hold it.
	at := t0.Add(10500 * time.Millisecond)
	if active, _ := d.Observe(matrix.RoomState, "!big:x", 100, at); !active {
		t.Fatal("herd ended with 25 users of 50 in its window, want it held down to 25")
	}
	if herds := d.Active(at); len(herds) != 1 || herds[0].Users != 25 {
		t.Fatalf("active herds %+v, want one of 25 users", herds)
	}
	// Only user 100 (seen again) is left, and 23 more come: 24, below half.
	at = t0.Add(15500 * time.Millisecond)
	for i := range 23 {
		d.Observe(matrix.RoomState, "!big:x", matrix.TokenID(200+i), at)
	}
	if herds := d.Active(at); len(herds) != 0 {
		t.Fatalf("herd of 24 users still active: %+v", herds)
	}
	for i := 23; i < 48; i++ {
		if active, _ := d.Observe(matrix.RoomState, "!big:x", matrix.TokenID(200+i), at); active {
			t.Fatalf("ended herd restarted at %d users, want 50", i+2)
		}
	}
	if _, started := d.Observe(matrix.RoomState, "!big:x", 300, at); !started {
		t.Fatal("the 50th user did not start the herd again")
	}
}
