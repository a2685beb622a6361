package matrix

import (
	"strings"
	"testing"
)

func TestVetSharedState(t *testing.T) {
	in := `[{"type":"a","unsigned":{"age":1,"transaction_id":"x","membership":"join"}},{"type":"b"}]`
	st, ok := VetSharedState([]byte(in))
	if out := string(st.Body); !ok || strings.Contains(out, "transaction_id") || strings.Contains(out, "membership") || !strings.Contains(out, `"age":1`) {
		t.Fatalf("got %s %v", out, ok)
	}
	if _, ok := VetSharedState([]byte(`[{"type":"a","unsigned":{"something_new":1}}]`)); ok {
		t.Fatal("an unknown unsigned field was shared")
	}
	invite := `[{"type":"m.room.member","state_key":"@i:x","content":{"membership":"invite"},"unsigned":{"invite_room_state":[{"type":"m.room.name"}]}}]`
	if st, ok := VetSharedState([]byte(invite)); !ok || string(st.Body) != invite || len(st.Joined) != 0 {
		t.Fatalf("Dendrite's invite event with its stripped state: %s %v %v", st.Body, st.Joined, ok)
	}
	if _, ok := VetSharedState([]byte("\x1f\x8b compressed")); ok {
		t.Fatal("an undecodable answer was shared")
	}
	joined := `{"joined":{"@a:x":{"display_name":"transaction_id"}}}`
	if st, ok := VetSharedState([]byte(joined)); !ok || string(st.Body) != joined || !st.Joined["@a:x"] || len(st.Joined) != 1 {
		t.Fatalf("joined_members answer changed: %s %v %v", st.Body, st.Joined, ok)
	}
}

// The redaction event in redacted_because is vetted like the event: the
// moderator's device's transaction_id goes, anything unknown refuses.
func TestVetSharedStateVetsTheRedaction(t *testing.T) {
	redacted := func(unsigned string) []byte {
		return []byte(`[{"type":"m.room.topic","state_key":"","content":{},"unsigned":{"redacted_because":` +
			`{"type":"m.room.redaction","sender":"@mod:x","redacts":"$e","content":{},"unsigned":` + unsigned + `}}}]`)
	}
	st, ok := VetSharedState(redacted(`{"transaction_id":"mod-device-txn","membership":"join","age":3}`))
	if out := string(st.Body); !ok || strings.Contains(out, "mod-device-txn") || strings.Contains(out, "membership") || !strings.Contains(out, `"age":3`) {
		t.Fatalf("got %s %v", out, ok)
	}
	if _, ok := VetSharedState(redacted(`{"org.example.secret":1}`)); ok {
		t.Fatal("an unknown field inside redacted_because was shared")
	}
	if _, ok := VetSharedState([]byte(`[{"type":"a","unsigned":{"redacted_because":"not an event"}}]`)); ok {
		t.Fatal("a redacted_because that is not an event was shared")
	}
}

// Joined lists exactly the members the state shows joined.
func TestVetSharedStateJoined(t *testing.T) {
	in := `[{"type":"m.room.member","state_key":"@a:x","content":{"membership":"join"}},` +
		`{"type":"m.room.member","state_key":"@left:x","content":{"membership":"leave"}},` +
		`{"type":"m.room.member","state_key":"@b:x","content":{"membership":"join"},"unsigned":{"membership":"join"}},` +
		`{"type":"m.room.topic","state_key":"@c:x","content":{"membership":"join"}}]`
	st, ok := VetSharedState([]byte(in))
	if !ok || len(st.Joined) != 2 || !st.Joined["@a:x"] || !st.Joined["@b:x"] {
		t.Fatalf("joined %v (ok %v)", st.Joined, ok)
	}
}

func TestMembershipProofPaths(t *testing.T) {
	p, ok := ProofFor("/_matrix/client/v3/rooms/%21r%3Ax/state", "%21r%3Ax")
	if !ok {
		t.Fatal("no proof for a room state path")
	}
	if got := p.WhoamiPath(); got != "/_matrix/client/v3/account/whoami" {
		t.Errorf("whoami %q", got)
	}
	if got := p.MemberEventPath("@a/b:x"); got != "/_matrix/client/v3/rooms/%21r%3Ax/state/m.room.member/@a%2Fb:x" {
		t.Errorf("member event %q", got)
	}
	if _, ok := ProofFor("/_matrix/client/v3/sync", ""); ok {
		t.Error("a proof for a path without a room")
	}
}

func TestShareableStateQuery(t *testing.T) {
	for q, want := range map[string]bool{
		"":                                true,
		"access_token=a":                  true,
		"%61ccess_token=a&_cacheBuster=1": true,
		"user_id=%40p%3Ax":                false,
		"access_token=a&user_id=%40p%3Ax": false,
		"org.matrix.msc3202.device_id=D":  false,
		"_cacheBuster=1&device_id=D":      false,
		"&":                               true,
	} {
		if got := ShareableStateQuery(q); got != want {
			t.Errorf("ShareableStateQuery(%q) = %v, want %v", q, got, want)
		}
	}
}

// Synapse splits a query at ';' too: a pair hiding a user_id or device_id
// behind one is not shareable.
func TestShareableStateQueryRefusesWhatASemicolonHides(t *testing.T) {
	for _, q := range []string{
		"_cacheBuster=1;user_id=%40alice%3Ax",
		"_cacheBuster=1;org.matrix.msc3202.device_id=D",
		"access_token=t;user_id=x",
		"user%5Fid=x", "%75ser_id=x",
	} {
		if ShareableStateQuery(q) && !ParseCredential(nil, q).Ambiguous {
			t.Errorf("%q is shareable", q)
		}
	}
	for _, q := range []string{"", "_cacheBuster=1", "access_token=t&_cacheBuster=2"} {
		if !ShareableStateQuery(q) {
			t.Errorf("%q is not shareable", q)
		}
	}
}

// membership is read by its exact key, as homeservers read it: Go's struct
// tags would also take "Membership" or "memberſhip" (U+017F folds to s).
func TestMembershipOfReadsTheExactKey(t *testing.T) {
	for content, want := range map[string]string{
		`{"membership":"join"}`:                      "join",
		`{"membership":"leave","memberſhip":"join"}`: "leave",
		`{"membership":"leave","Membership":"join"}`: "leave",
		`{"Membership":"join"}`:                      "",
		`not json`:                                   "",
	} {
		if got := MembershipOf([]byte(content)); got != want {
			t.Errorf("%s: %q, want %q", content, got, want)
		}
	}
	st, ok := VetSharedState([]byte(`[{"type":"m.room.member","state_key":"@o:x","content":{"membership":"leave","memberſhip":"join"}}]`))
	if !ok || st.Joined["@o:x"] {
		t.Fatalf("a leave with a folded membership key counts as joined: %v %v", st.Joined, ok)
	}
}
