package e2e

import (
	"strings"
	"testing"
)

func TestNormalizerMapsRunSpecificIDsAndVolatileFields(t *testing.T) {
	n1 := newNormalizer(map[string]string{"@alice-1:localhost": "@alice", "!r1:localhost": "!room"}, false)
	n2 := newNormalizer(map[string]string{"@alice-2:localhost": "@alice", "!r2:localhost": "!room"}, false)
	a := n1.normalizeBody([]byte(`{"rooms":{"join":{"!r1:localhost":{"state":[{"sender":"@alice-1:localhost","event_id":"$x","origin_server_ts":1,"content":{"displayname":"alice-1 @alice-1:localhost"}}]}}},"next_batch":"s1"}`))
	b := n2.normalizeBody([]byte(`{"rooms":{"join":{"!r2:localhost":{"state":[{"sender":"@alice-2:localhost","event_id":"$y","origin_server_ts":2,"content":{"displayname":"alice-X @alice-2:localhost"}}]}}},"next_batch":"s9"}`))
	// Only the display name's free text differs ("alice-X" is not a name).
	if a == b {
		t.Fatalf("normalizer hid a real difference:\n%s", a)
	}
	if want := `"!room"`; !strings.Contains(a, want) || !strings.Contains(b, want) {
		t.Fatalf("room ID key not mapped: %s / %s", a, b)
	}
	c := n2.normalizeBody([]byte(`{"rooms":{"join":{"!r2:localhost":{"state":[{"sender":"@alice-2:localhost","event_id":"$y","origin_server_ts":2,"content":{"displayname":"alice-X @alice-2:localhost"}}]}}},"next_batch":"s9"}`))
	if b != c {
		t.Fatalf("normalizer is not deterministic")
	}
	d := n1.normalizeBody([]byte(`{"rooms":{"join":{"!r1:localhost":{"state":[{"sender":"@alice-1:localhost","event_id":"$z","origin_server_ts":7,"content":{"displayname":"alice-1 @alice-1:localhost"}}]}}},"next_batch":"s2"}`))
	if a != d {
		t.Fatalf("volatile fields not normalized:\n%s\n%s", a, d)
	}
}

func TestNormalizerReplacesLongestNameFirst(t *testing.T) {
	n := newNormalizer(map[string]string{"@alice-1:localhost": "@alice", "alice-1": "alice"}, false)
	for range 20 { // map order must not matter
		if got := n.name("is @alice-1:localhost here"); got != "is @alice here" {
			t.Fatalf("embedded user ID = %q", got)
		}
	}
	if got := n.name("alice-1"); got != "alice" {
		t.Fatalf("localpart = %q", got)
	}
}

func TestNormalizerOrderAndBinary(t *testing.T) {
	ordered := newNormalizer(nil, false)
	unordered := newNormalizer(nil, true)
	x, y := []byte(`[{"a":1},{"a":2}]`), []byte(`[{"a":2},{"a":1}]`)
	if ordered.normalizeBody(x) == ordered.normalizeBody(y) {
		t.Fatal("ordered normalizer ignored array order")
	}
	if unordered.normalizeBody(x) != unordered.normalizeBody(y) {
		t.Fatal("unordered normalizer kept array order")
	}
	if got := ordered.normalizeBody([]byte{0xff, 0x00}); !strings.HasPrefix(got, "<2 bytes sha256:") {
		t.Fatalf("binary body summary = %q", got)
	}
	if got := ordered.normalizeBody([]byte(`{"event_id":"$abc"}`)); !strings.Contains(got, `"<event_id>"`) {
		t.Fatalf("event_id not volatile: %s", got)
	}
	eid := "$" + strings.Repeat("A", 43)
	if got := ordered.normalizeBody([]byte(`["` + eid + `"]`)); !strings.Contains(got, "<event>") {
		t.Fatalf("bare event ID not normalized: %s", got)
	}
}
