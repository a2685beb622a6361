package matrix

import (
	"strings"
	"testing"
)

type classifyCase struct {
	method, path, query string
	class               Class
	room                string
}

const (
	v3   = "/_matrix/client/v3"
	mv3  = "/_matrix/media/v3"
	room = "%21abc%3Aexample.org"
)

// classifyCases are the edges around the rows of routeTable (query
// decoding, methods, prefixes, room extraction); specSamples are one
// request per endpoint. Together they reach every row
// (TestEveryClassAndRowIsCovered checks that).
var classifyCases = []classifyCase{
	// sync_initial / sync
	{"GET", v3 + "/sync", "", SyncInitial, ""},
	{"GET", v3 + "/sync", "since=s72594_4483_1934", Sync, ""},
	{"GET", v3 + "/sync", "timeout=30000&since=s1&filter=0", Sync, ""},
	{"GET", v3 + "/sync", "since=", SyncInitial, ""},
	{"GET", v3 + "/sync", "since=s1&full_state=true", SyncInitial, ""},
	{"GET", v3 + "/sync", "full_state=true&since=s1", SyncInitial, ""},
	{"GET", v3 + "/sync", "since=s1&full_state=false", Sync, ""},
	{"GET", v3 + "/sync", "since=s1&full_state=%74rue", SyncInitial, ""},
	{"GET", v3 + "/sync", "%73ince=s1", Sync, ""},
	{"GET", v3 + "/sync", "since=s1&since=", Sync, ""},        // first occurrence wins
	{"GET", v3 + "/sync", "since=&since=s1", SyncInitial, ""}, // first occurrence wins
	{"GET", v3 + "/sync", "since=%zz", SyncInitial, ""},       // bad escape: pair ignored
	{"GET", v3 + "/sync", "since=%4", SyncInitial, ""},        // truncated escape
	{"GET", v3 + "/sync", "%=x&since=s1&=&&", Sync, ""},       // junk pairs tolerated
	{"GET", v3 + "/sync", "sincere=s1", SyncInitial, ""},      // not the since key
	{"GET", v3 + "/sync", "since", SyncInitial, ""},           // key without value
	{"GET", v3 + "/sync", "filter=%7B%22a%22%7D", SyncInitial, ""},
	{"HEAD", v3 + "/sync", "since=s1", Sync, ""},
	{"GET", v3 + "/sync/", "since=s1", Sync, ""}, // trailing slash tolerated
	{"GET", v3 + "/sync/", "", SyncInitial, ""},
	{"POST", v3 + "/sync", "since=s1", Other, ""}, // no such endpoint: cheap 405
	{"GET", v3 + "/Sync", "", Other, ""},          // case-sensitive
	{"POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "pos=5", Sync, ""},
	{"POST", "/_matrix/client/unstable/org.matrix.msc3575/sync", "", SyncInitial, ""},
	{"POST", "/_matrix/client/unstable/org.matrix.msc3575/sync", "pos=1", Sync, ""},
	{"POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "", SyncInitial, ""},
	{"POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "pos=", SyncInitial, ""},
	{"POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "pos=%zz&pos=5", Sync, ""}, // bad pair skipped
	{"POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "timeout=1&%70os=5", Sync, ""},
	{"GET", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "", Other, ""},
	{"GET", v3 + "/initialSync", "", SyncInitial, ""},
	{"GET", v3 + "/rooms/" + room + "/initialSync", "", SyncInitial, room},
	{"GET", "/_matrix/client/r0/events", "from=s1", Sync, ""}, // a long-poll, never sync_initial
	{"GET", v3 + "/events", "", Sync, ""},
	{"POST", v3 + "/events", "", Other, ""},
	{"GET", v3 + "/events/$ev", "", History, ""}, // a single legacy event, not the stream

	// room_state
	{"GET", v3 + "/rooms/" + room + "/state", "", RoomState, room},
	{"GET", v3 + "/rooms/" + room + "/state/", "", RoomState, room},
	{"GET", v3 + "/rooms/" + room + "/members", "at=t1", RoomState, room},
	{"GET", v3 + "/rooms/" + room + "/joined_members", "", RoomState, room},
	{"POST", v3 + "/rooms/" + room + "/state", "", Other, room},

	// history
	{"GET", v3 + "/rooms/" + room + "/messages", "dir=b&limit=50", History, room},
	{"GET", v3 + "/rooms/" + room + "/context/%24event", "", History, room},
	{"GET", v3 + "/rooms/" + room + "/context", "", Other, room}, // context needs an event ID
	{"GET", "/_matrix/client/v1/rooms/" + room + "/relations/%24ev/m.thread", "", History, room},
	{"GET", "/_matrix/client/v1/rooms/" + room + "/threads", "", History, room},
	{"GET", v3 + "/rooms/" + room + "/event/%24ev", "", History, room},
	{"PUT", v3 + "/rooms/" + room + "/messages", "", Other, room},
	// a point read of one state event is not room_state
	{"GET", v3 + "/rooms/" + room + "/state/m.room.name", "", History, room},
	{"GET", v3 + "/rooms/" + room + "/state/m.room.member/%40u%3Aexample.org", "", History, room},
	{"GET", v3 + "/rooms/" + room + "/timestamp_to_event", "ts=1", History, room},
	{"GET", "/_matrix/client/unstable/org.matrix.msc3030/rooms/" + room + "/timestamp_to_event", "ts=1", History, room},

	// search
	{"POST", v3 + "/search", "", Search, ""},
	{"POST", v3 + "/user_directory/search", "", Search, ""},
	{"GET", v3 + "/publicRooms", "", Search, ""},
	{"POST", v3 + "/publicRooms", "server=example.org", Search, ""},
	{"GET", "/_matrix/client/v1/rooms/" + room + "/hierarchy", "", Search, room},
	{"GET", "/_matrix/client/unstable/org.matrix.msc2946/rooms/" + room + "/hierarchy", "", Search, room},
	{"GET", v3 + "/notifications", "", Search, ""},

	// receipts
	{"POST", v3 + "/rooms/" + room + "/read_markers", "", Receipts, room},
	{"POST", v3 + "/rooms/" + room + "/receipt/m.read/%24ev", "", Receipts, room},
	{"GET", v3 + "/rooms/" + room + "/read_markers", "", Other, room},

	// send
	{"PUT", v3 + "/rooms/" + room + "/send/m.room.message/txn1", "", Send, room},
	{"PUT", v3 + "/rooms/" + room + "/state/m.room.name", "", Send, room},
	{"PUT", v3 + "/rooms/" + room + "/state/m.room.member/%40u%3Aexample.org", "", Send, room},
	{"PUT", v3 + "/rooms/" + room + "/redact/%24ev/txn2", "", Send, room},
	{"POST", v3 + "/join/%23alias%3Aexample.org", "server_name=example.org", Send, "%23alias%3Aexample.org"},
	{"POST", v3 + "/join/!abc:example.org", "", Send, "!abc:example.org"},
	{"POST", v3 + "/knock/" + room, "", Send, room},
	{"POST", v3 + "/rooms/" + room + "/join", "", Send, room},
	{"POST", v3 + "/rooms/" + room + "/leave", "", Send, room},
	{"POST", v3 + "/rooms/" + room + "/invite", "", Send, room},
	{"POST", v3 + "/rooms/" + room + "/kick", "", Send, room},
	{"POST", v3 + "/rooms/" + room + "/ban", "", Send, room},
	{"POST", v3 + "/rooms/" + room + "/unban", "", Send, room},
	{"POST", v3 + "/rooms/" + room + "/forget", "", Send, room},
	{"POST", v3 + "/createRoom", "", Send, ""},
	{"POST", v3 + "/rooms/" + room + "/send/m.room.message", "", Send, room}, // no transaction ID
	{"GET", v3 + "/rooms/" + room + "/send/m.room.message/txn1", "", Other, room},
	{"PUT", v3 + "/createRoom/txn4", "", Send, ""},
	{"PUT", v3 + "/join/" + room + "/txn5", "", Send, room},
	{"PUT", v3 + "/knock/" + room + "/txn5", "", Send, room},
	{"PUT", v3 + "/rooms/" + room + "/invite/txn6", "", Send, room},
	{"POST", v3 + "/rooms/" + room + "/upgrade", "", Send, room},
	{"POST", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/d1", "", Send, ""},
	{"POST", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/d1/restart", "", Send, ""},
	{"GET", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events", "", Other, ""},
	{"GET", "/_matrix/client/unstable/org.matrix.msc4140/delayed_events/d1", "", Other, ""},
	{"DELETE", v3 + "/rooms/" + room + "/state/m.room.name", "", Other, room},

	// keys
	{"POST", v3 + "/keys/query", "", Keys, ""},
	{"POST", v3 + "/keys/claim", "", Keys, ""},
	{"POST", v3 + "/keys/upload", "", Keys, ""},
	{"POST", "/_matrix/client/r0/keys/upload/DEVICE", "", Keys, ""},
	{"GET", v3 + "/keys/changes", "from=a&to=b", Keys, ""},
	{"POST", v3 + "/keys/device_signing/upload", "", Keys, ""},
	{"POST", v3 + "/keys/signatures/upload", "", Keys, ""},
	{"PUT", v3 + "/sendToDevice/m.room.encrypted/txn3", "", Keys, ""},
	{"GET", v3 + "/room_keys/version", "", Keys, ""},
	{"PUT", v3 + "/room_keys/keys/" + room + "/sess", "version=1", Keys, ""},
	{"POST", v3 + "/keys/unknown", "", Other, ""},
	{"POST", "/_matrix/client/unstable/org.matrix.msc3983/keys/claim", "", Keys, ""},
	{"DELETE", v3 + "/devices/DEV", "", Keys, ""},
	{"POST", v3 + "/delete_devices", "", Keys, ""},
	{"PUT", "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device", "", Keys, ""},
	{"GET", "/_matrix/client/unstable/org.matrix.msc2697.v2/dehydrated_device", "", Keys, ""},

	// media
	{"GET", mv3 + "/download/example.org/abc", "", Media, ""},
	{"GET", mv3 + "/download/example.org/abc/name.png", "", Media, ""},
	{"GET", mv3 + "/thumbnail/example.org/abc", "width=64&height=64", Media, ""},
	{"POST", mv3 + "/upload", "filename=a.png", Media, ""},
	{"PUT", mv3 + "/upload/example.org/abc", "", Media, ""},
	{"POST", "/_matrix/media/v1/create", "", Media, ""},
	{"GET", mv3 + "/preview_url", "url=https%3A%2F%2Fexample.org", Media, ""},
	{"GET", mv3 + "/config", "", Media, ""},
	{"GET", "/_matrix/client/v1/media/download/example.org/abc", "", Media, ""},
	{"GET", "/_matrix/client/v1/media/thumbnail/example.org/abc", "", Media, ""},
	{"GET", "/_matrix/client/v1/media/preview_url", "url=x", Media, ""},
	{"GET", "/_matrix/client/v1/media/config", "", Media, ""},
	{"GET", mv3 + "/unknown", "", Other, ""},
	{"GET", v3 + "/media/download/example.org/abc", "", Other, ""}, // authenticated media is v1 only
	{"GET", "/_matrix/federation/v1/media/download/abc", "", Media, ""},
	{"GET", "/_matrix/federation/v1/media/thumbnail/abc", "width=1", Media, ""},
	{"GET", "/_matrix/federation/v2/media/download/abc", "", Federation, ""},

	// auth
	{"POST", v3 + "/login", "", Auth, ""},
	{"GET", v3 + "/login", "", Discovery, ""}, // login flows
	{"HEAD", v3 + "/login", "", Discovery, ""},
	{"POST", v3 + "/login/get_token", "", Auth, ""},
	{"GET", v3 + "/login/sso/redirect", "redirectUrl=x", Auth, ""},
	{"POST", v3 + "/register", "kind=guest", Auth, ""},
	{"GET", v3 + "/register/available", "username=a", Auth, ""},
	{"POST", v3 + "/logout", "", Auth, ""},
	{"POST", v3 + "/logout/all", "", Auth, ""},
	{"POST", v3 + "/refresh", "", Auth, ""},
	{"GET", v3 + "/account/whoami", "", Auth, ""},
	{"POST", v3 + "/account/password", "", Auth, ""},
	{"POST", v3 + "/account/deactivate", "", Auth, ""},
	{"POST", v3 + "/account/3pid/email/requestToken", "", Auth, ""},
	{"POST", v3 + "/registration/email/submit_token", "", Auth, ""},
	{"GET", v3 + "/password_policy", "", Auth, ""},
	{"POST", v3 + "/account_validity/renew", "", Auth, ""},
	{"GET", v3 + "/auth/m.login.terms/fallback/web", "", Auth, ""},
	{"GET", "/_matrix/client/unstable/add_threepid/email/submit_token", "", Auth, ""},
	{"POST", v3 + "/user/%40u%3Aexample.org/openid/request_token", "", Auth, ""},
	{"POST", "/_matrix/client/unstable/org.matrix.msc3882/login/token", "", Auth, ""},
	{"POST", "/_matrix/client/unstable/org.matrix.msc4108/rendezvous", "", Auth, ""},
	{"GET", "/_matrix/client/unstable/io.element.msc4388/rendezvous/r1", "", Auth, ""},
	{"GET", "/_synapse/client/pick_idp", "idp=x", Auth, ""},
	{"POST", "/_synapse/client/pick_username/account_details", "", Auth, ""},
	{"GET", "/_synapse/client/new_user_consent", "", Auth, ""},
	{"GET", "/_synapse/client/sso_register", "", Auth, ""},
	{"GET", "/_synapse/client/oidc/callback", "code=c", Auth, ""},
	{"POST", "/_synapse/client/saml2/authn_response", "", Auth, ""},
	{"POST", "/_synapse/client/password_reset/email/submit_token", "", Auth, ""},
	{"POST", "/_synapse/client/rendezvous", "", Auth, ""},
	{"POST", "/_synapse/mas/provision_user", "", Auth, ""},
	{"GET", "/_synapse/client/unsubscribe", "", Other, ""},
	{"GET", "/_synapse/client", "", Other, ""},
	{"GET", "/_synapse", "", Other, ""},
	{"GET", "/_synapsex/admin/v1/rooms", "", Other, ""},

	// admin
	{"GET", "/_synapse/admin/v1/server_version", "", Admin, ""},
	{"DELETE", "/_synapse/admin/v2/rooms/" + room, "", Admin, ""},
	{"GET", "/_synapse/admin", "", Admin, ""},
	{"GET", "/_matrix/client/v3/admin/whois/%40u%3Aexample.org", "", Admin, ""},
	{"PUT", "/_matrix/client/v1/admin/suspend/%40u%3Aexample.org", "", Admin, ""},

	// discovery
	{"GET", "/_matrix/client/versions", "", Discovery, ""},
	{"GET", "/_matrix/client/versions/", "", Discovery, ""},
	{"POST", "/_matrix/client/versions", "", Other, ""},
	{"GET", "/_matrix/client/versionsx", "", Other, ""},
	{"GET", "/.well-known/matrix/client", "", Discovery, ""},
	{"GET", "/.well-known/matrix/server", "", Discovery, ""},
	{"PUT", "/.well-known/matrix/server", "", Other, ""},
	{"GET", "/.well-known/matrix", "", Other, ""},
	{"GET", "/.well-known/matrix/client/x", "", Other, ""},
	{"GET", "/.well-known/matrixx/client", "", Other, ""},
	{"GET", "/.well-known/openid-configuration", "", Other, ""},
	{"GET", v3 + "/capabilities", "", Discovery, ""},
	{"GET", v3 + "/pushrules/", "", Discovery, ""},
	{"GET", v3 + "/pushrules/global/override/.m.rule.master/enabled", "", Discovery, ""},
	{"PUT", v3 + "/pushrules/global/override/.m.rule.master/enabled", "", Other, ""},
	{"GET", v3 + "/user/%40u%3Aexample.org/filter/1", "", Discovery, ""},
	{"POST", v3 + "/user/%40u%3Aexample.org/filter", "", Discovery, ""},
	{"GET", v3 + "/user/%40u%3Aexample.org/filter", "", Other, ""},
	{"GET", "/_matrix/client/v1/auth_metadata", "", Discovery, ""},
	{"GET", "/_matrix/client/unstable/org.matrix.msc2965/auth_metadata", "", Discovery, ""},
	{"GET", "/_matrix/client/unstable/org.matrix.msc2965/auth_issuer", "", Discovery, ""},
	{"GET", "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports", "", Discovery, ""},

	// federation
	{"PUT", "/_matrix/federation/v1/send/txn", "", Federation, ""},
	{"GET", "/_matrix/federation/v1/state/" + room, "event_id=x", Federation, ""},
	{"PUT", "/_matrix/federation/v2/invite/" + room + "/%24ev", "", Federation, ""},
	{"GET", "/_matrix/federation/unstable/org.matrix.msc0000/x", "", Federation, ""},
	{"GET", "/_matrix/key/v2/server", "", Federation, ""},
	{"POST", "/_matrix/key/v2/query", "", Federation, ""},
	{"POST", "/_matrix/policy/v1/sign", "", Federation, ""},
	{"GET", "/_matrix/federation", "", Federation, ""},
	{"GET", "/_matrix/federationx/v1/send", "", Other, ""},
	{"GET", "/_matrix/keys/v2/server", "", Other, ""},

	// ephemeral
	{"PUT", v3 + "/rooms/" + room + "/typing/%40u%3Aexample.org", "", Ephemeral, room},
	{"PUT", v3 + "/presence/%40u%3Aexample.org/status", "", Ephemeral, ""},
	{"GET", v3 + "/presence/%40u%3Aexample.org/status", "", Ephemeral, ""},

	// persistent account data is not ephemeral; room account data names its room
	{"PUT", v3 + "/user/%40u%3Aexample.org/account_data/m.direct", "", Other, ""},
	{"GET", v3 + "/user/%40u%3Aexample.org/rooms/" + room + "/account_data/m.fully_read", "", Other, room},
	{"DELETE", "/_matrix/client/unstable/org.matrix.msc3391/user/%40u%3Aexample.org/rooms/" + room + "/account_data/x", "", Other, room},
	{"PUT", v3 + "/user/%40u%3Aexample.org/rooms/" + room + "/tags/m.favourite", "", Other, room},
	{"GET", v3 + "/user/%40u%3Aexample.org/rooms/" + room + "/tags", "", Other, room},

	// other, with the room still named
	{"GET", v3 + "/rooms/" + room + "/aliases", "", Other, room},
	{"GET", v3 + "/rooms/" + room, "", Other, room},
	{"GET", "/_matrix/client/v1/room_summary/" + room, "", Other, room},
	{"GET", "/_matrix/client/unstable/im.nheko.summary/rooms/" + room + "/summary", "", Other, room},
	{"GET", "/_matrix/client/unstable/im.nheko.summary/summary/" + room, "", Other, room},
	{"PUT", v3 + "/directory/list/room/" + room, "", Other, room},

	// other
	{"GET", v3 + "/profile/%40u%3Aexample.org", "", Other, ""},
	{"GET", "/_matrix/client/v9/sync", "", Other, ""},
	{"GET", "/_matrix/client/v1x/sync", "", Other, ""},
	{"GET", "/_matrix/client/api/v2/sync", "", Other, ""},
	{"GET", "/_matrix/media/v9/download/a/b", "", Other, ""},
	{"GET", "/_matrix/client/v3", "", Other, ""},
	{"GET", "/_matrix/client/v3/", "", Other, ""},
	{"OPTIONS", v3 + "/sync", "", Other, ""},
	{"OPTIONS", v3 + "/rooms/" + room + "/messages", "", Other, ""},
	{"OPTIONS", "/_matrix/federation/v1/send/txn", "", Other, ""},
}

func TestClassify(t *testing.T) {
	for _, c := range classifyCases {
		got := Classify(c.method, c.path, c.query)
		want := Route{Class: c.class, Room: c.room}
		if got != want {
			t.Errorf("Classify(%q, %q, %q) = %+v, want %+v", c.method, c.path, c.query, got, want)
		}
	}
}

// TestEveryPrefix runs a representative endpoint under every known prefix.
func TestEveryPrefix(t *testing.T) {
	clientPrefixes := []string{"/_matrix/client/r0", "/_matrix/client/v3", "/_matrix/client/unstable", "/_matrix/client/api/v1", "/_matrix/client/v1"}
	clientPaths := []classifyCase{
		{"GET", "/sync", "since=s1", Sync, ""},
		{"GET", "/sync", "", SyncInitial, ""},
		{"GET", "/rooms/" + room + "/messages", "", History, room},
		{"PUT", "/rooms/" + room + "/send/m.room.message/t", "", Send, room},
		{"POST", "/keys/query", "", Keys, ""},
		{"POST", "/login", "", Auth, ""},
	}
	for _, prefix := range clientPrefixes {
		for _, c := range clientPaths {
			got := Classify(c.method, prefix+c.path, c.query)
			if want := (Route{Class: c.class, Room: c.room}); got != want {
				t.Errorf("Classify(%q, %q, %q) = %+v, want %+v", c.method, prefix+c.path, c.query, got, want)
			}
		}
	}
	mediaPrefixes := []string{"/_matrix/media/r0", "/_matrix/media/v3", "/_matrix/media/v1", "/_matrix/client/v1/media"}
	for _, prefix := range mediaPrefixes {
		for _, p := range []string{"/download/s/m", "/thumbnail/s/m", "/upload", "/create", "/preview_url", "/config"} {
			if got := Classify("GET", prefix+p, ""); got != (Route{Class: Media}) {
				t.Errorf("Classify(GET, %q) = %+v, want media", prefix+p, got)
			}
		}
	}
	for _, prefix := range []string{"/_matrix/federation/v1", "/_matrix/federation/v2", "/_matrix/key/v2"} {
		if got := Classify("GET", prefix+"/anything", ""); got != (Route{Class: Federation}) {
			t.Errorf("Classify(GET, %q) = %+v, want federation", prefix+"/anything", got)
		}
	}
}

// TestRoomStaysRaw checks room IDs are returned exactly as written: never
// decoded, and an escaped slash does not split the segment.
func TestRoomStaysRaw(t *testing.T) {
	for _, id := range []string{
		"%21abc%3Aexample.org",
		"!abc:example.org",
		"%21a%2Fb%3Aexample.org", // %2F inside the ID
		"%21A%2fb%3Aexample.org", // lower-case escape
		"%23alias%3Aexample.org",
	} {
		got := Classify("GET", v3+"/rooms/"+id+"/messages", "")
		if want := (Route{Class: History, Room: id}); got != want {
			t.Errorf("room %q: got %+v, want %+v", id, got, want)
		}
		got = Classify("POST", v3+"/join/"+id, "")
		if want := (Route{Class: Send, Room: id}); got != want {
			t.Errorf("join %q: got %+v, want %+v", id, got, want)
		}
	}
	// A %2F must not let a room ID smuggle in an extra segment.
	if got := Classify("GET", v3+"/rooms/%21a%2Fmessages", ""); got != (Route{Class: Other, Room: "%21a%2Fmessages"}) {
		t.Errorf("escaped slash split a segment: %+v", got)
	}
	// An empty room segment is not a room.
	if got := Classify("GET", v3+"/rooms//messages", ""); got != (Route{Class: Other}) {
		t.Errorf("empty room segment: %+v", got)
	}
}

func TestJunkIsOther(t *testing.T) {
	long := v3 + "/rooms/" + strings.Repeat("a", 1<<16) + "/" + strings.Repeat("x/", 1<<14)
	for _, p := range []string{
		"", "/", "//", "///", "/_matrix", "/_matrix/", "/_matrix//", "/_matrix/client",
		"/_matrix/client/", "_matrix/client/v3/sync", "//_matrix/client/v3/sync",
		v3 + "//sync", v3 + "/sync\x00", "/_matrix/client/v3\x00/sync", "\x00", "%2F_matrix%2Fclient%2Fv3%2Fsync",
		"/_matrix/client/v3%2Fsync", long, strings.Repeat("/", 1<<16),
	} {
		for _, m := range []string{"GET", "POST", "PUT", "", "\x00", "get"} {
			got := Classify(m, p, "since=\x00%")
			if got.Class != Other {
				t.Errorf("Classify(%q, %.60q) = %v, want other", m, p, got.Class)
			}
		}
	}
	// Long but well-formed paths still classify.
	if got := Classify("GET", v3+"/rooms/"+strings.Repeat("a", 1<<16)+"/messages", ""); got.Class != History {
		t.Errorf("long room ID: got %v, want history", got.Class)
	}
}

func TestClassNamesRoundTrip(t *testing.T) {
	for _, c := range Classes() {
		got, err := ParseClass(c.String())
		if err != nil || got != c {
			t.Errorf("ParseClass(%q) = %v, %v; want %v", c.String(), got, err, c)
		}
	}
	if _, err := ParseClass("nope"); err == nil {
		t.Error("ParseClass(nope) succeeded")
	}
}

// TestEveryClassAndRowIsCovered makes classifyCases and specSamples prove
// that every class is produced and every table row is reached by some
// request.
func TestEveryClassAndRowIsCovered(t *testing.T) {
	classes := make([]bool, NumClasses)
	rows := make([]bool, len(routeTable))
	reach := func(method, path, query string) {
		route, i := lookup(method, path, query)
		classes[route.Class] = true
		if i >= 0 {
			rows[i] = true
		}
	}
	for _, c := range classifyCases {
		reach(c.method, c.path, c.query)
	}
	for _, s := range specSamples {
		reach(s.method, s.path, s.query)
	}
	for c, seen := range classes {
		if !seen {
			t.Errorf("no test case produces class %v", Class(c))
		}
	}
	for i, seen := range rows {
		if !seen {
			t.Errorf("no test case reaches row %d %+v", i, routeTable[i])
		}
	}
}

func TestCompilePatternRejectsMalformed(t *testing.T) {
	for _, p := range []string{"", "a//b", "**/a", "/a", "a/"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("compilePattern(%q) did not panic", p)
				}
			}()
			compilePattern(p)
		}()
	}
}

func TestClassifyDoesNotAllocate(t *testing.T) {
	for _, c := range classifyCases {
		allocs := testing.AllocsPerRun(10, func() { Classify(c.method, c.path, c.query) })
		if allocs != 0 {
			t.Errorf("Classify(%q, %q, %q) allocates %v times", c.method, c.path, c.query, allocs)
		}
	}
}

var benchSink Route

func BenchmarkClassify(b *testing.B) {
	for _, bc := range []struct{ name, method, path, query string }{
		{"sync", "GET", v3 + "/sync", "filter=0&timeout=30000&since=s72594_4483_1934_8834_2_1_1_1_0"},
		{"send", "PUT", v3 + "/rooms/" + room + "/send/m.room.message/txn1", ""},
		{"typing", "PUT", v3 + "/rooms/" + room + "/typing/%40u%3Aexample.org", ""},
		{"media", "GET", "/_matrix/client/v1/media/download/example.org/abc", ""},
		{"federation", "PUT", "/_matrix/federation/v1/send/txn", ""},
		{"discovery", "GET", "/_matrix/client/versions", ""},
		{"other", "GET", v3 + "/profile/%40u%3Aexample.org", ""},
		{"sliding_sync", "POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", "timeout=30000&pos=12_34"},
		{"admin", "GET", "/_synapse/admin/v2/users/%40u%3Aexample.org", ""},
		{"room_other", "GET", v3 + "/rooms/" + room + "/aliases", ""},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				benchSink = Classify(bc.method, bc.path, bc.query)
			}
		})
	}
}
