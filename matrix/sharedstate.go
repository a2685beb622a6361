package matrix

import (
	"bytes"
	"encoding/json"
	"net/url"
	"strings"
)

// ShareableStateQuery reports whether a /state or /joined_members request
// with this raw query may be served a shared answer: the endpoints take no
// parameters, so only the credential and _cacheBuster may be there. Any
// other parameter (an appservice's user_id or device_id) may change whom
// the homeserver answers as, which the membership proof does not cover.
func ShareableStateQuery(rawQuery string) bool {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		name, _, _ := strings.Cut(pair, "=")
		if pair != "" && !IsCredentialParam(name) && name != "_cacheBuster" {
			return false
		}
	}
	return true
}

// MembershipProof names the two requests that prove, with the requester's
// own token, that it is joined to the room of a shared-state request:
// whoami for its user ID, then its own member event in that room.
type MembershipProof struct {
	prefix, room string
}

// ProofFor returns the membership proof for a request to a room's state at
// rawPath (with the room as the classifier found it); ok=false when the path
// has no client API prefix before /rooms/.
func ProofFor(rawPath, room string) (MembershipProof, bool) {
	prefix, _, ok := strings.Cut(rawPath, "/rooms/")
	return MembershipProof{prefix: prefix, room: room}, ok && room != ""
}

// WhoamiPath is the raw path of /account/whoami under the same API version.
func (p MembershipProof) WhoamiPath() string { return p.prefix + "/account/whoami" }

// MemberEventPath is the raw path of userID's m.room.member event in the
// room; a 200 answer with membership "join" proves the requester joined.
func (p MembershipProof) MemberEventPath(userID string) string {
	return p.prefix + "/rooms/" + p.room + "/state/m.room.member/" + url.PathEscape(userID)
}

// IsSharedStatePath reports whether rawPath is a room's full state or
// joined members list.
func IsSharedStatePath(rawPath string) bool {
	return strings.HasSuffix(rawPath, "/state") || strings.HasSuffix(rawPath, "/joined_members")
}

// sharedUnsigned lists the unsigned fields of a state event that are the
// same for every member. invite_room_state is stored with an invite event
// (Dendrite serves it in /state to everyone): the stripped state every
// member can read in full. Two are requester-specific and removed:
// transaction_id (only the sending device sees it) and membership (the
// requester's own membership when the event was sent; servers may omit it).
// Any other unsigned field makes the answer unshareable: what mxgate does
// not know, it does not share.
var sharedUnsigned = map[string]bool{
	"age": true, "replaces_state": true, "prev_content": true, "prev_sender": true, "redacted_because": true,
	"invite_room_state": true,
}

// VetSharedState vets a /state or /joined_members answer for sharing:
// it removes the requester-specific unsigned fields from every event and
// reports false if anything else would tell one member's answer from
// another's.
func VetSharedState(body []byte) (out []byte, ok bool) {
	var joined struct {
		Joined json.RawMessage `json:"joined"`
	}
	if body = bytes.TrimSpace(body); len(body) > 0 && body[0] == '{' {
		// /joined_members: {"joined": {user: {display_name, avatar_url}}}
		// is the same for every member.
		return body, json.Unmarshal(body, &joined) == nil && joined.Joined != nil
	}
	var events []map[string]json.RawMessage
	if err := json.Unmarshal(body, &events); err != nil {
		return nil, false
	}
	changed := false
	for _, ev := range events {
		raw, ok := ev["unsigned"]
		if !ok {
			continue
		}
		var unsigned map[string]json.RawMessage
		if json.Unmarshal(raw, &unsigned) != nil {
			return nil, false
		}
		for k := range unsigned {
			switch {
			case k == "transaction_id" || k == "membership":
				delete(unsigned, k)
				changed = true
			case !sharedUnsigned[k]:
				return nil, false
			}
		}
		ev["unsigned"], _ = json.Marshal(unsigned)
	}
	if !changed {
		return body, true
	}
	out, err := json.Marshal(events)
	return out, err == nil
}
