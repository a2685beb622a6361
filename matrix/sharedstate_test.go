package matrix

import (
	"strings"
	"testing"
)

func TestVetSharedState(t *testing.T) {
	in := `[{"type":"a","unsigned":{"age":1,"transaction_id":"x","membership":"join"}},{"type":"b"}]`
	out, ok := VetSharedState([]byte(in))
	if !ok || strings.Contains(string(out), "transaction_id") || strings.Contains(string(out), "membership") || !strings.Contains(string(out), `"age":1`) {
		t.Fatalf("got %s %v", out, ok)
	}
	if _, ok := VetSharedState([]byte(`[{"type":"a","unsigned":{"something_new":1}}]`)); ok {
		t.Fatal("an unknown unsigned field was shared")
	}
	invite := `[{"type":"m.room.member","content":{"membership":"invite"},"unsigned":{"invite_room_state":[{"type":"m.room.name"}]}}]`
	if out, ok := VetSharedState([]byte(invite)); !ok || string(out) != invite {
		t.Fatalf("Dendrite's invite event with its stripped state: %s %v", out, ok)
	}
	if _, ok := VetSharedState([]byte("\x1f\x8b compressed")); ok {
		t.Fatal("an undecodable answer was shared")
	}
	joined := `{"joined":{"@a:x":{"display_name":"transaction_id"}}}`
	if out, ok := VetSharedState([]byte(joined)); !ok || string(out) != joined {
		t.Fatalf("joined_members answer changed: %s %v", out, ok)
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
