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

// apiFamily is the part of the Matrix API a path prefix selects.
type apiFamily uint8

const (
	clientAPI apiFamily = iota + 1
	mediaAPI
	serverAPI // federation and key server: server-to-server traffic
)

// apiPrefixes are the path prefixes Classify knows, in match order (the
// authenticated media prefix must come before plain client v1). A prefix
// matches only whole segments: "/_matrix/client/v1" does not match
// "/_matrix/client/v1x/...". Client versions not listed here (v9, versions)
// are Other. Federation and key paths are matched by family, not version: the
// federation API has unstable MSC endpoints too, and all of it is
// server-to-server traffic with the same cost profile.
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
	{"/_matrix/media/r0", mediaAPI},
	{"/_matrix/media/v3", mediaAPI},
	{"/_matrix/media/v1", mediaAPI},
	{"/_matrix/federation", serverAPI},
	{"/_matrix/key", serverAPI},
}

// splitPrefix returns the API family of rawPath and the path after its
// prefix, without the separating slash.
func splitPrefix(rawPath string) (apiFamily, string, bool) {
	if !strings.HasPrefix(rawPath, "/_matrix/") {
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
// Where DESIGN.md names a method, a request with another method on that path
// falls through to the next rows and, usually, to Other: the homeserver answers
// it with a cheap 405/M_UNRECOGNIZED, so it must neither queue behind nor
// occupy the slots of an expensive class. Rows where DESIGN.md names no method
// (search, keys, media, auth, membership, ...) take any method, because their
// endpoints use several (publicRooms is GET and POST, presence GET and PUT).
// HEAD counts as GET: the homeserver does the same work for it.
type methodRule uint8

const (
	anyMethod methodRule = iota
	get
	post
	put
	// getIncremental is a GET /sync that asks for changes since a token: a
	// non-empty since and no full_state=true. See isIncrementalSync.
	getIncremental
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
	case getIncremental:
		return (method == "GET" || method == "HEAD") && isIncrementalSync(rawQuery)
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

// routeTable is the endpoint table of DESIGN.md ("Endpoint classes"), one
// group per class, in the order Classify tries it: first match wins, so a
// method-specific row comes before a broader row for the same path.
var routeTable = []row{
	// sync_initial and sync: GET /sync with since is a long-poll (sync);
	// without since, or with full_state=true, it is a full resync.
	{clientAPI, getIncremental, "sync", Sync},
	{clientAPI, get, "sync", SyncInitial},
	{clientAPI, post, "org.matrix.simplified_msc3575/sync", Sync}, // sliding sync
	{clientAPI, post, "org.matrix.msc3575/sync", Sync},            // sliding sync, proxy era
	{clientAPI, anyMethod, "initialSync", SyncInitial},
	{clientAPI, anyMethod, "rooms/{room}/initialSync", SyncInitial},
	{clientAPI, get, "events", SyncInitial}, // legacy event stream

	// room_state: the full state, one state event (cheap, but still state),
	// and the member lists.
	{clientAPI, get, "rooms/{room}/state/**", RoomState},
	{clientAPI, get, "rooms/{room}/members", RoomState},
	{clientAPI, get, "rooms/{room}/joined_members", RoomState},

	// history
	{clientAPI, get, "rooms/{room}/messages", History},
	{clientAPI, get, "rooms/{room}/context/*", History},
	{clientAPI, get, "rooms/{room}/relations/**", History},
	{clientAPI, get, "rooms/{room}/threads", History},
	{clientAPI, get, "rooms/{room}/event/*", History},

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

	// send: events, state events, redactions and membership changes.
	{clientAPI, put, "rooms/{room}/send/**", Send},
	{clientAPI, put, "rooms/{room}/state/**", Send},
	{clientAPI, anyMethod, "rooms/{room}/redact/**", Send},
	{clientAPI, anyMethod, "join/{room}", Send},
	{clientAPI, anyMethod, "knock/{room}", Send},
	{clientAPI, anyMethod, "rooms/{room}/join", Send},
	{clientAPI, anyMethod, "rooms/{room}/leave", Send},
	{clientAPI, anyMethod, "rooms/{room}/invite", Send},
	{clientAPI, anyMethod, "rooms/{room}/kick", Send},
	{clientAPI, anyMethod, "rooms/{room}/ban", Send},
	{clientAPI, anyMethod, "rooms/{room}/unban", Send},
	{clientAPI, anyMethod, "rooms/{room}/forget", Send},
	{clientAPI, anyMethod, "createRoom", Send},

	// keys: end-to-end encryption.
	{clientAPI, anyMethod, "keys/query", Keys},
	{clientAPI, anyMethod, "keys/claim", Keys},
	{clientAPI, anyMethod, "keys/upload/**", Keys}, // r0 also had keys/upload/{deviceId}
	{clientAPI, anyMethod, "keys/changes", Keys},
	{clientAPI, anyMethod, "keys/device_signing/upload", Keys},
	{clientAPI, anyMethod, "keys/signatures/upload", Keys},
	{clientAPI, anyMethod, "sendToDevice/**", Keys},
	{clientAPI, anyMethod, "room_keys/**", Keys},

	// media: under /_matrix/media/* and the authenticated /_matrix/client/v1/media.
	{mediaAPI, anyMethod, "download/**", Media},
	{mediaAPI, anyMethod, "thumbnail/**", Media},
	{mediaAPI, anyMethod, "upload/**", Media}, // also PUT upload/{server}/{id}
	{mediaAPI, anyMethod, "create", Media},
	{mediaAPI, anyMethod, "preview_url", Media},
	{mediaAPI, anyMethod, "config", Media},

	// auth
	{clientAPI, anyMethod, "login/**", Auth},
	{clientAPI, anyMethod, "register/**", Auth},
	{clientAPI, anyMethod, "logout/**", Auth}, // logout and logout/all
	{clientAPI, anyMethod, "refresh", Auth},
	{clientAPI, anyMethod, "account/whoami", Auth},

	// federation: everything under /_matrix/federation and /_matrix/key.
	{serverAPI, anyMethod, "**", Federation},

	// ephemeral
	{clientAPI, anyMethod, "rooms/{room}/typing/**", Ephemeral},
	{clientAPI, anyMethod, "presence/**", Ephemeral},
	{clientAPI, anyMethod, "user/*/account_data/**", Ephemeral},
	{clientAPI, anyMethod, "user/*/rooms/{room}/account_data/**", Ephemeral},

	// other: any other room endpoint (aliases, upgrade, report, ...) still
	// names its room, for per-room herd detection.
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
	wildcardFirst [serverAPI + 1][]int
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
// "true". As with url.Values.Get (and Synapse), the first occurrence of a
// parameter counts. The query is scanned in place, without allocating; keys
// and values are compared in their decoded form ("%73ince" is "since"), and
// a pair whose escapes are invalid is ignored, as url.ParseQuery does. Junk
// therefore errs towards sync_initial, the more guarded class.
func isIncrementalSync(rawQuery string) bool {
	var sinceSeen, fullStateSeen, hasSince, fullState bool
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		key, value, _ := strings.Cut(pair, "=")
		if !validQueryEscapes(key) || !validQueryEscapes(value) {
			continue
		}
		switch {
		case !sinceSeen && queryComponentEquals(key, "since"):
			sinceSeen, hasSince = true, value != ""
		case !fullStateSeen && queryComponentEquals(key, "full_state"):
			fullStateSeen, fullState = true, queryComponentEquals(value, "true")
		}
	}
	return hasSince && !fullState
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
