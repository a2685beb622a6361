package matrix

import (
	"net/url"
	"strings"
)

// Route is what the classifier learns from a request line.
type Route struct {
	Class Class
	// Room is the room ID or alias exactly as it appears in the path, still
	// percent-encoded (e.g. "%21abc%3Aexample.org"), or "" if the endpoint has none.
	Room string
}

// Classify returns the class and room of a request. rawPath is the request
// path in its raw, escaped form (r.URL.EscapedPath()); it is never decoded: a
// %2F stays %2F and does not split a segment. rawQuery is r.URL.RawQuery.
//
// The path is first split into an API family and the rest (see apiPrefixes),
// then the rest is matched against routeTable, first match wins. Whatever
// matches no row is Other. Paths are case-sensitive, as in the spec; trailing
// slashes are ignored ("/sync/" is "/sync"). Room is always a substring of
// rawPath. Classify never panics and does not allocate.
func Classify(method, rawPath, rawQuery string) Route {
	route, _ := lookup(method, rawPath, rawQuery)
	return route
}

// lookup is Classify that also returns the index of the matching routeTable
// row, or -1 when no row matches (tests use it to check every row is reached).
func lookup(method, rawPath, rawQuery string) (Route, int) {
	// CORS preflights are answered by the homeserver without touching its
	// database, whatever the path: they must not take an expensive class's slot.
	if method == "OPTIONS" {
		return Route{Class: Other}, -1
	}
	family, rest, ok := splitPrefix(rawPath)
	if !ok {
		return Route{Class: Other}, -1
	}
	path := splitSegments(strings.TrimRight(rest, "/"))
	for _, i := range routes.candidates(family, &path) {
		r := &routes.rows[i]
		if !r.method.matches(method, rawQuery) {
			continue
		}
		if room, ok := r.pattern.match(&path); ok {
			return Route{Class: r.class, Room: room}, i
		}
	}
	return Route{Class: Other}, -1
}

// apiFamily is the part of the API a path prefix selects.
type apiFamily uint8

const (
	clientAPI apiFamily = iota + 1
	mediaAPI
	serverAPI     // federation, key and policy server: server-to-server traffic
	clientRootAPI // /_matrix/client itself: only /versions lives here
	wellKnownAPI  // /.well-known/matrix
	synapseAPI    // Synapse's own /_synapse: SSO pages and the admin API

	numFamilies = iota + 1 // size of per-family arrays (index 0 unused)
)

// apiPrefixes are the path prefixes Classify knows, in match order (the
// authenticated media prefix must come before plain client v1, every
// versioned client prefix before the bare /_matrix/client). A prefix
// matches only whole segments: "/_matrix/client/v1" does not match
// "/_matrix/client/v1x/...", which falls to the bare client prefix, where
// only "versions" has a row. Federation, key and policy paths are matched
// by family, not version: the federation API has unstable MSC endpoints
// too, and all of it is server-to-server traffic with the same cost profile.
var apiPrefixes = [...]struct {
	prefix string
	family apiFamily
}{
	{"/_matrix/client/v1/media", mediaAPI}, // authenticated media (MSC3916)
	{"/_matrix/client/r0", clientAPI},
	{"/_matrix/client/v3", clientAPI},
	{"/_matrix/client/unstable", clientAPI},
	{"/_matrix/client/api/v1", clientAPI},
	{"/_matrix/client/v1", clientAPI},
	{"/_matrix/client", clientRootAPI},
	{"/_matrix/media/r0", mediaAPI},
	{"/_matrix/media/v3", mediaAPI},
	{"/_matrix/media/v1", mediaAPI},
	{"/_matrix/federation", serverAPI},
	{"/_matrix/key", serverAPI},
	{"/_matrix/policy", serverAPI}, // policy servers (MSC4284)
	{"/.well-known/matrix", wellKnownAPI},
	{"/_synapse", synapseAPI},
}

// splitPrefix returns the API family of rawPath and the path after its
// prefix, without the separating slash.
func splitPrefix(rawPath string) (apiFamily, string, bool) {
	// Every prefix starts with "/_" or "/.": a cheap rejection of the rest.
	if len(rawPath) < 2 || rawPath[0] != '/' || (rawPath[1] != '_' && rawPath[1] != '.') {
		return 0, "", false
	}
	for _, p := range apiPrefixes {
		if !strings.HasPrefix(rawPath, p.prefix) {
			continue
		}
		rest := rawPath[len(p.prefix):]
		if rest == "" {
			return p.family, "", true
		}
		if rest[0] == '/' {
			return p.family, rest[1:], true
		}
	}
	return 0, "", false
}

// methodRule says which requests a row applies to.
//
// Where a row names a method, a request with another method on that path
// falls through to the next rows and, usually, to Other: the homeserver
// answers it with a cheap 405/M_UNRECOGNIZED, so it must neither queue behind
// nor occupy the slots of an expensive class. Rows of endpoint groups that
// use several methods (publicRooms is GET and POST, presence GET and PUT,
// room keys GET, PUT and DELETE) take any method. HEAD counts as GET: the
// homeserver does the same work for it.
type methodRule uint8

const (
	anyMethod methodRule = iota
	get
	post
	put
	// putOrPost is a write that has a transaction-ID form (PUT .../{txnId})
	// and a form without one (POST).
	putOrPost
	// getIncremental is a GET /sync that asks for changes since a token: a
	// non-empty since and no full_state=true. See isIncrementalSync.
	getIncremental
	// postWithPos is a sliding sync POST that continues a connection: a
	// non-empty pos. Without one it opens a new connection.
	postWithPos
)

func (m methodRule) matches(method, rawQuery string) bool {
	switch m {
	case anyMethod:
		return true
	case get:
		return method == "GET" || method == "HEAD"
	case post:
		return method == "POST"
	case put:
		return method == "PUT"
	case putOrPost:
		return method == "PUT" || method == "POST"
	case getIncremental:
		return (method == "GET" || method == "HEAD") && isIncrementalSync(rawQuery)
	case postWithPos:
		return method == "POST" && queryParam(rawQuery, "pos") != ""
	}
	return false
}

// row is one line of the endpoint table.
//
// A pattern is slash-separated segments, matched against raw (still escaped)
// path segments:
//
//	literal  the segment exactly
//	{room}   one non-empty segment, returned as Route.Room
//	*        one non-empty segment (a user ID, an event ID)
//	**       zero or more segments; only as the last segment
type row struct {
	family  apiFamily
	method  methodRule
	pattern string
	class   Class
}

// routeTable is the endpoint table of docs/DESIGN.md ("Endpoint classes"), one
// group per class, in the order Classify tries it: first match wins, so a
// method-specific row comes before a broader row for the same path. Every
// endpoint of the spec has a sample with its reason in
// spec_endpoints_test.go; the rules of thumb are in the README.
var routeTable = []row{
	// sync_initial and sync: GET /sync with since is a long-poll (sync);
	// without since, or with full_state=true, it is a full resync. Sliding
	// sync without pos opens a connection: room list and required state over
	// all the user's rooms, an initial sync. Long-polls are never
	// sync_initial: the legacy event stream (also js-sdk's room peek) waits
	// up to 30 s for news like /sync with since.
	{clientAPI, getIncremental, "sync", Sync},
	{clientAPI, get, "sync", SyncInitial},
	{clientAPI, postWithPos, "org.matrix.simplified_msc3575/sync", Sync},
	{clientAPI, post, "org.matrix.simplified_msc3575/sync", SyncInitial},
	{clientAPI, postWithPos, "org.matrix.msc3575/sync", Sync}, // proxy era
	{clientAPI, post, "org.matrix.msc3575/sync", SyncInitial},
	{clientAPI, get, "events", Sync},
	{clientAPI, anyMethod, "initialSync", SyncInitial},
	{clientAPI, anyMethod, "rooms/{room}/initialSync", SyncInitial},

	// room_state: the whole state and the member lists. One state event is
	// a point read (history, below).
	{clientAPI, get, "rooms/{room}/state", RoomState},
	{clientAPI, get, "rooms/{room}/members", RoomState},
	{clientAPI, get, "rooms/{room}/joined_members", RoomState},

	// history: the timeline and point reads of single events.
	{clientAPI, get, "rooms/{room}/messages", History},
	{clientAPI, get, "rooms/{room}/context/*", History},
	{clientAPI, get, "rooms/{room}/relations/**", History},
	{clientAPI, get, "rooms/{room}/threads", History},
	{clientAPI, get, "rooms/{room}/event/*", History},
	{clientAPI, get, "rooms/{room}/state/*/**", History}, // state/{type} and state/{type}/{key}
	{clientAPI, get, "rooms/{room}/timestamp_to_event", History},
	{clientAPI, get, "org.matrix.msc3030/rooms/{room}/timestamp_to_event", History},
	{clientAPI, get, "events/*", History}, // one event, legacy

	// search
	{clientAPI, anyMethod, "search", Search},
	{clientAPI, anyMethod, "user_directory/search", Search},
	{clientAPI, anyMethod, "publicRooms", Search},
	{clientAPI, anyMethod, "rooms/{room}/hierarchy", Search},
	{clientAPI, anyMethod, "org.matrix.msc2946/rooms/{room}/hierarchy", Search},
	{clientAPI, anyMethod, "notifications", Search},

	// receipts
	{clientAPI, post, "rooms/{room}/read_markers", Receipts},
	{clientAPI, post, "rooms/{room}/receipt/**", Receipts},

	// send: events, state events, redactions, membership changes, room
	// creation and upgrades, in their transaction-ID (PUT .../{txnId}) and
	// plain (POST) forms, and the actions on delayed events (MSC4140: a
	// restart is Element Call's heartbeat; shed, the user's delayed "leave"
	// is sent).
	{clientAPI, putOrPost, "rooms/{room}/send/**", Send},
	{clientAPI, put, "rooms/{room}/state/**", Send},
	{clientAPI, anyMethod, "rooms/{room}/redact/**", Send},
	{clientAPI, anyMethod, "join/{room}/**", Send},
	{clientAPI, anyMethod, "knock/{room}/**", Send},
	{clientAPI, anyMethod, "rooms/{room}/join/**", Send},
	{clientAPI, anyMethod, "rooms/{room}/leave/**", Send},
	{clientAPI, anyMethod, "rooms/{room}/invite/**", Send},
	{clientAPI, anyMethod, "rooms/{room}/kick/**", Send},
	{clientAPI, anyMethod, "rooms/{room}/ban/**", Send},
	{clientAPI, anyMethod, "rooms/{room}/unban/**", Send},
	{clientAPI, anyMethod, "rooms/{room}/forget/**", Send},
	{clientAPI, anyMethod, "rooms/{room}/upgrade", Send},
	{clientAPI, anyMethod, "createRoom/**", Send},
	{clientAPI, post, "org.matrix.msc4140/delayed_events/*", Send},   // action in the body
	{clientAPI, post, "org.matrix.msc4140/delayed_events/*/*", Send}, // cancel, restart, send

	// keys: end-to-end encryption and the devices that hold the keys.
	{clientAPI, anyMethod, "keys/query", Keys},
	{clientAPI, anyMethod, "keys/claim", Keys},
	{clientAPI, anyMethod, "keys/upload/**", Keys}, // r0 also had keys/upload/{deviceId}
	{clientAPI, anyMethod, "keys/changes", Keys},
	{clientAPI, anyMethod, "keys/device_signing/upload", Keys},
	{clientAPI, anyMethod, "keys/signatures/upload", Keys},
	{clientAPI, anyMethod, "org.matrix.msc3983/keys/claim", Keys},
	{clientAPI, anyMethod, "sendToDevice/**", Keys},
	{clientAPI, anyMethod, "room_keys/**", Keys},
	{clientAPI, anyMethod, "devices/**", Keys},
	{clientAPI, anyMethod, "delete_devices", Keys},
	{clientAPI, anyMethod, "org.matrix.msc3814.v1/dehydrated_device/**", Keys},
	{clientAPI, anyMethod, "org.matrix.msc2697.v2/dehydrated_device/**", Keys},

	// media: under /_matrix/media/* and the authenticated /_matrix/client/v1/media,
	// and what another homeserver fetches over federation.
	{mediaAPI, anyMethod, "download/**", Media},
	{mediaAPI, anyMethod, "thumbnail/**", Media},
	{mediaAPI, anyMethod, "upload/**", Media}, // also PUT upload/{server}/{id}
	{mediaAPI, anyMethod, "create", Media},
	{mediaAPI, anyMethod, "preview_url", Media},
	{mediaAPI, anyMethod, "config", Media},
	{serverAPI, anyMethod, "v1/media/download/**", Media},
	{serverAPI, anyMethod, "v1/media/thumbnail/**", Media},

	// discovery: what a client fetches to (re)connect, before its first
	// /sync. GET /login (the login flows) is here rather than in auth so a
	// login storm's password hashing cannot starve it; both are critical.
	// Creating a filter is a small insert a first start needs before /sync.
	{clientRootAPI, get, "versions", Discovery},
	{wellKnownAPI, get, "*", Discovery},
	{clientAPI, get, "capabilities", Discovery},
	{clientAPI, get, "pushrules/**", Discovery},
	{clientAPI, get, "user/*/filter/*", Discovery},
	{clientAPI, post, "user/*/filter", Discovery},
	{clientAPI, get, "login", Discovery},
	{clientAPI, get, "auth_metadata", Discovery},
	{clientAPI, get, "org.matrix.msc2965/auth_metadata", Discovery},
	{clientAPI, get, "org.matrix.msc2965/auth_issuer", Discovery},
	{clientAPI, get, "org.matrix.msc4143/rtc/transports", Discovery},

	// auth: logging in (password, SSO, QR code), registering, logging out,
	// account management (password, 3PIDs, deactivation) and the second half
	// of SSO on Synapse's own pages.
	{clientAPI, anyMethod, "login/**", Auth},
	{clientAPI, anyMethod, "register/**", Auth},
	{clientAPI, anyMethod, "registration/**", Auth}, // registration/{medium}/submit_token
	{clientAPI, anyMethod, "logout/**", Auth},       // logout and logout/all
	{clientAPI, anyMethod, "refresh", Auth},
	{clientAPI, anyMethod, "account/**", Auth}, // whoami, password, deactivate, 3pid
	{clientAPI, anyMethod, "add_threepid/**", Auth},
	{clientAPI, anyMethod, "account_validity/**", Auth},
	{clientAPI, anyMethod, "password_policy", Auth},
	{clientAPI, anyMethod, "auth/**", Auth}, // user-interactive auth fallback pages
	{clientAPI, anyMethod, "user/*/openid/request_token", Auth},
	{clientAPI, anyMethod, "org.matrix.msc3882/login/**", Auth},
	{clientAPI, anyMethod, "org.matrix.msc4108/rendezvous/**", Auth},
	{clientAPI, anyMethod, "io.element.msc4388/rendezvous/**", Auth},
	{synapseAPI, anyMethod, "client/pick_idp", Auth},
	{synapseAPI, anyMethod, "client/pick_username/**", Auth},
	{synapseAPI, anyMethod, "client/new_user_consent", Auth},
	{synapseAPI, anyMethod, "client/sso_register", Auth},
	{synapseAPI, anyMethod, "client/oidc/**", Auth},
	{synapseAPI, anyMethod, "client/saml2/**", Auth},
	{synapseAPI, anyMethod, "client/password_reset/**", Auth},
	{synapseAPI, anyMethod, "client/rendezvous/**", Auth},
	{synapseAPI, anyMethod, "mas/**", Auth}, // the authentication service's own API

	// admin: the spec's admin endpoints and Synapse's admin API. Never shed
	// by brownout.
	{clientAPI, anyMethod, "admin/**", Admin},
	{synapseAPI, anyMethod, "admin/**", Admin},

	// federation: everything else under /_matrix/federation, /_matrix/key
	// and /_matrix/policy.
	{serverAPI, anyMethod, "**", Federation},

	// ephemeral: worthless when late.
	{clientAPI, anyMethod, "rooms/{room}/typing/**", Ephemeral},
	{clientAPI, anyMethod, "presence/**", Ephemeral},

	// other, still naming the room for per-room herd detection: room
	// account data and tags are persistent user state (not ephemeral), room
	// summaries and directory visibility, and any other room endpoint
	// (aliases, report, ...).
	{clientAPI, anyMethod, "user/*/rooms/{room}/account_data/**", Other},
	{clientAPI, anyMethod, "org.matrix.msc3391/user/*/rooms/{room}/account_data/**", Other},
	{clientAPI, anyMethod, "user/*/rooms/{room}/tags/**", Other},
	{clientAPI, anyMethod, "room_summary/{room}", Other},
	{clientAPI, anyMethod, "im.nheko.summary/rooms/{room}/summary", Other},
	{clientAPI, anyMethod, "im.nheko.summary/summary/{room}", Other},
	{clientAPI, anyMethod, "directory/list/room/{room}", Other},
	{clientAPI, anyMethod, "rooms/{room}/**", Other},
}

// compiledRow is a row with its pattern split into segments once, at init.
type compiledRow struct {
	family  apiFamily
	method  methodRule
	pattern pattern
	class   Class
}

// compiledTable is routeTable ready to walk, with an index that skips rows
// which cannot match because their first segment is a different literal.
// Walking the candidates in table order gives the same result as walking
// the whole table.
type compiledTable struct {
	rows []compiledRow
	// byFirst lists, for each (family, first literal segment) in the table,
	// the rows of that family starting with that literal or a wildcard.
	byFirst map[firstSegment][]int
	// wildcardFirst lists, per family, the rows starting with a wildcard:
	// the only candidates for a path whose first segment is in no row.
	wildcardFirst [numFamilies][]int
}

type firstSegment struct {
	family  apiFamily
	literal string
}

var routes = compileTable(routeTable)

func compileTable(table []row) compiledTable {
	t := compiledTable{
		rows:    make([]compiledRow, len(table)),
		byFirst: make(map[firstSegment][]int),
	}
	for i, r := range table {
		t.rows[i] = compiledRow{family: r.family, method: r.method, pattern: compilePattern(r.pattern), class: r.class}
		if first := t.rows[i].pattern[0]; first.kind == literalSegment {
			t.byFirst[firstSegment{r.family, first.literal}] = nil
		}
	}
	for i, r := range t.rows {
		first := r.pattern[0]
		if first.kind != literalSegment {
			t.wildcardFirst[r.family] = append(t.wildcardFirst[r.family], i)
		}
		for key := range t.byFirst {
			if key.family == r.family && (first.kind != literalSegment || first.literal == key.literal) {
				t.byFirst[key] = append(t.byFirst[key], i)
			}
		}
	}
	return t
}

// candidates returns the indices of the rows that may match path, in table
// order.
func (t *compiledTable) candidates(family apiFamily, path *segments) []int {
	if path.n > 0 {
		if rows, ok := t.byFirst[firstSegment{family, path.seg[0]}]; ok {
			return rows
		}
	}
	return t.wildcardFirst[family]
}

type segmentKind uint8

const (
	literalSegment segmentKind = iota
	roomSegment                // {room}
	anySegment                 // *
	restSegments               // **
)

type segment struct {
	kind    segmentKind
	literal string
}

// pattern is a compiled row pattern.
type pattern []segment

// compilePattern panics on a malformed pattern: the table is a constant of
// this package, so a bad row is a programming error caught by any test run.
func compilePattern(s string) pattern {
	parts := strings.Split(s, "/")
	if len(parts) >= maxSegments {
		panic("matrix: route pattern longer than maxSegments: " + s)
	}
	p := make(pattern, len(parts))
	for i, part := range parts {
		switch part {
		case "":
			panic("matrix: empty segment in route pattern " + s)
		case "{room}":
			p[i] = segment{kind: roomSegment}
		case "*":
			p[i] = segment{kind: anySegment}
		case "**":
			if i != len(parts)-1 {
				panic("matrix: ** not last in route pattern " + s)
			}
			p[i] = segment{kind: restSegments}
		default:
			p[i] = segment{kind: literalSegment, literal: part}
		}
	}
	return p
}

// maxSegments bounds how many path segments are split out. Patterns are
// shorter (compilePattern checks), so a path with maxSegments or more
// segments can only match a pattern ending in **, which needs no more.
const maxSegments = 8

// segments is a path split at literal slashes, on the stack: the first n-1
// segments, and in seg[n-1] the last one or, when n == maxSegments, the
// unsplit remainder. Escaped slashes (%2F) do not split.
type segments struct {
	seg [maxSegments]string
	n   int
}

// splitSegments splits path (without leading or trailing slash); "" has no
// segments.
func splitSegments(path string) segments {
	var s segments
	if path == "" {
		return s
	}
	for s.n < maxSegments-1 {
		part, rest, found := strings.Cut(path, "/")
		if !found {
			break
		}
		s.seg[s.n], s.n = part, s.n+1
		path = rest
	}
	s.seg[s.n], s.n = path, s.n+1
	return s
}

// match reports whether the path matches the pattern, and returns the
// segment matched by {room}, if any.
func (p pattern) match(path *segments) (room string, ok bool) {
	// Cheap rejection by length first: most rows differ from most paths there.
	if n := len(p); p[n-1].kind == restSegments {
		if path.n < n-1 {
			return "", false
		}
	} else if path.n != n {
		return "", false
	}
	for i, s := range p {
		if s.kind == restSegments {
			return room, true
		}
		part := path.seg[i] // i < path.n: checked by length above
		switch s.kind {
		case literalSegment:
			if part != s.literal {
				return "", false
			}
		case roomSegment:
			if part == "" {
				return "", false
			}
			room = part
		case anySegment:
			if part == "" {
				return "", false
			}
		}
	}
	return room, path.n == len(p)
}

// isIncrementalSync reports whether a /sync query asks only for changes since
// a token: since is present with a non-empty value, and full_state is not
// "true". Junk therefore errs towards sync_initial, the more guarded class.
func isIncrementalSync(rawQuery string) bool {
	return queryParam(rawQuery, "since") != "" && !queryComponentEquals(queryParam(rawQuery, "full_state"), "true")
}

// queryParam returns the raw (still escaped) value of the first parameter
// of rawQuery whose decoded name is name, as url.Values.Get (and Synapse)
// would pick it, or "" if there is none: every caller treats an absent
// parameter as an empty one. The query is scanned in place, without allocating; names
// are compared in their decoded form ("%73ince" is "since"), and a pair
// whose escapes are invalid is ignored, as url.ParseQuery does. The value
// returned always has valid escapes.
func queryParam(rawQuery, name string) string {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		key, value, _ := strings.Cut(pair, "=")
		if !validQueryEscapes(key) || !validQueryEscapes(value) {
			continue
		}
		if queryComponentEquals(key, name) {
			return value
		}
	}
	return ""
}

// validQueryEscapes reports whether every % in s starts a valid %XX escape.
func validQueryEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return false
			}
			i += 2
		}
	}
	return true
}

// queryComponentEquals reports whether the raw query component s, decoded
// ('+' is a space, %XX a byte), equals want. s must have valid escapes.
func queryComponentEquals(s, want string) bool {
	j := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
		}
		if j >= len(want) || want[j] != c {
			return false
		}
		j++
	}
	return j == len(want)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default: // 'A'..'F'; callers check isHex first
		return c - 'A' + 10
	}
}

// RawPath is a request path exactly as the client sent it, for Classify.
// net/url keeps RawPath only when it differs from the default encoding of
// Path, so an empty RawPath means Path is already the raw form. (EscapedPath
// says the same but re-validates the encoding on every call.)
func RawPath(u *url.URL) string {
	if u.RawPath != "" {
		return u.RawPath
	}
	return u.Path
}
