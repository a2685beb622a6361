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
		// A ';' is a separator to Synapse (Twisted): behind it could be a
		// user_id, which this pair would hide.
		if pair != "" && (strings.Contains(pair, ";") || !IsCredentialParam(name) && name != "_cacheBuster") {
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

// SharedState is a /state or /joined_members answer vetted for sharing.
type SharedState struct {
	// Body is the answer without its requester-specific fields.
	Body []byte
	// Joined holds the user IDs the answer itself shows joined: its
	// m.room.member events with membership "join", or /joined_members'
	// keys. Only a requester in it may be served Body, which ties the
	// membership proof to this very snapshot: a member who left before it
	// was taken is not in it, and a leader who left gets the state at its
	// leave, in which it is not joined either.
	Joined map[string]bool
}

// VetSharedState vets a /state or /joined_members answer for sharing:
// it removes the requester-specific unsigned fields from every event (and
// from the redaction event in redacted_because) and reports false if
// anything else would tell one member's answer from another's.
func VetSharedState(body []byte) (SharedState, bool) {
	if body = bytes.TrimSpace(body); len(body) > 0 && body[0] == '{' {
		// /joined_members: {"joined": {user: {display_name, avatar_url}}}
		// is the same for every member.
		var members struct {
			Joined map[string]json.RawMessage `json:"joined"`
		}
		if json.Unmarshal(body, &members) != nil || members.Joined == nil {
			return SharedState{}, false
		}
		joined := make(map[string]bool, len(members.Joined))
		for user := range members.Joined {
			joined[user] = true
		}
		return SharedState{Body: body, Joined: joined}, true
	}
	var events []map[string]json.RawMessage
	if err := json.Unmarshal(body, &events); err != nil {
		return SharedState{}, false
	}
	joined := map[string]bool{}
	changed := false
	for _, ev := range events {
		c, ok := vetUnsigned(ev, 0)
		if !ok {
			return SharedState{}, false
		}
		changed = changed || c
		if user, ok := joinedMember(ev); ok {
			joined[user] = true
		}
	}
	if !changed {
		return SharedState{Body: body, Joined: joined}, true
	}
	out, err := json.Marshal(events)
	return SharedState{Body: out, Joined: joined}, err == nil
}

// vetUnsigned removes the requester-specific fields of ev's unsigned, and
// of the redaction event nested in its redacted_because (depth counts the
// nesting; a redaction's own redaction is not what a server sends). It
// reports whether ev changed, and false when anything in it is not known
// to be the same for every member.
func vetUnsigned(ev map[string]json.RawMessage, depth int) (changed, ok bool) {
	raw, present := ev["unsigned"]
	if !present {
		return false, true
	}
	var unsigned map[string]json.RawMessage
	if json.Unmarshal(raw, &unsigned) != nil {
		return false, false
	}
	for k, v := range unsigned {
		switch {
		case k == "transaction_id" || k == "membership":
			delete(unsigned, k)
			changed = true
		case k == "redacted_because":
			var redaction map[string]json.RawMessage
			if depth > 0 || json.Unmarshal(v, &redaction) != nil || redaction == nil {
				return false, false
			}
			c, ok := vetUnsigned(redaction, depth+1)
			if !ok {
				return false, false
			}
			if c {
				unsigned[k], _ = json.Marshal(redaction)
				changed = true
			}
		case !sharedUnsigned[k]:
			return false, false
		}
	}
	if changed {
		ev["unsigned"], _ = json.Marshal(unsigned)
	}
	return changed, true
}

// joinedMember returns the user an m.room.member state event shows
// joined.
func joinedMember(ev map[string]json.RawMessage) (string, bool) {
	var typ, user string
	if json.Unmarshal(ev["type"], &typ) != nil || typ != "m.room.member" ||
		json.Unmarshal(ev["state_key"], &user) != nil || user == "" ||
		MembershipOf(ev["content"]) != "join" {
		return "", false
	}
	return user, true
}

// MembershipOf reads an m.room.member content's "membership" by its exact
// key, as homeservers do (a struct tag would also match "Membership" or
// "memberſhip", which Go folds case-insensitively).
func MembershipOf(content []byte) string {
	var c map[string]json.RawMessage
	var m string
	if json.Unmarshal(content, &c) != nil || json.Unmarshal(c["membership"], &m) != nil {
		return ""
	}
	return m
}
