package matrix

import (
	"net/http"
	"strings"
)

// Request is what mxgate knows about one Matrix request, read once from
// its request line and headers: its endpoint class and room, its raw path,
// and who is asking. Everything downstream reads it instead of parsing the
// request again.
type Request struct {
	Route
	// RawPath is the path as the client sent it (see RawPath).
	RawPath string
	// Credential is who the request says it is.
	Credential Credential
	// DotSegments is set when a path segment is "." or ".." (also as
	// %2E escapes): no Matrix client sends one (HTTP libraries and browsers
	// resolve them first), and servers disagree on resolving them, so
	// mxgate refuses such a request rather than guess what it names.
	DotSegments bool
}

// ParseRequest reads r once.
func ParseRequest(r *http.Request) Request {
	raw := RawPath(r.URL)
	return Request{
		Route:       Classify(r.Method, raw, r.URL.RawQuery),
		RawPath:     raw,
		Credential:  ParseCredential(r.Header, r.URL.RawQuery),
		DotSegments: hasDotSegment(raw),
	}
}

// SharedAcrossCredentials reports whether the answer to this request is the
// same for anyone who asks, so that one fetch may serve other requesters:
// only an anonymous GET or HEAD of exactly the unauthenticated legacy media
// download or thumbnail endpoints, or of /_matrix/client/versions. Every
// other endpoint, a request that carries any credential (an authenticated
// /versions may list per-user features; authenticated media checks each
// token), and any path with dot, empty or escaped-slash segments is not.
func (q *Request) SharedAcrossCredentials(method string) bool {
	if method != http.MethodGet && method != http.MethodHead || !q.Credential.Anonymous() || q.DotSegments {
		return false
	}
	if q.RawPath == "/_matrix/client/versions" {
		return true
	}
	return isLegacyMediaRead(q.RawPath)
}

// isLegacyMediaRead reports whether rawPath is exactly
// /_matrix/media/{r0,v3,v1}/download/{server}/{mediaId}[/{fileName}] or
// .../thumbnail/{server}/{mediaId}: server names and media IDs in their
// spec alphabets, a file name without escaped slashes.
func isLegacyMediaRead(rawPath string) bool {
	rest, ok := strings.CutPrefix(rawPath, "/_matrix/media/")
	if !ok {
		return false
	}
	version, rest, _ := strings.Cut(rest, "/")
	if version != "r0" && version != "v3" && version != "v1" {
		return false
	}
	endpoint, rest, _ := strings.Cut(rest, "/")
	parts := strings.Split(rest, "/")
	switch {
	case endpoint == "download" && (len(parts) == 2 || len(parts) == 3):
	case endpoint == "thumbnail" && len(parts) == 2:
	default:
		return false
	}
	if !isServerName(parts[0]) || !isMediaID(parts[1]) {
		return false
	}
	return len(parts) == 2 || isPlainSegment(parts[2])
}

// isServerName: a host name, IPv4 or bracketed IPv6 literal, optional port.
func isServerName(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") == "" && !isDotSegment(s)
}

// isMediaID: the spec's media ID alphabet, [A-Za-z0-9_-].
func isMediaID(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == ""
}

// isPlainSegment: non-empty, not a dot segment, no escaped slash or
// backslash that a decoding server would split at.
func isPlainSegment(s string) bool {
	if s == "" || isDotSegment(s) {
		return false
	}
	l := strings.ToLower(s)
	return !strings.Contains(l, "%2f") && !strings.Contains(l, "%5c") && !strings.Contains(s, `\`)
}

// hasDotSegment reports whether any segment of rawPath is "." or "..",
// literally or with %2E escapes.
func hasDotSegment(rawPath string) bool {
	if !strings.Contains(rawPath, ".") && !strings.Contains(rawPath, "%2") {
		return false
	}
	for seg := range strings.SplitSeq(rawPath, "/") {
		if isDotSegment(seg) {
			return true
		}
	}
	return false
}

func isDotSegment(seg string) bool {
	if len(seg) > 6 {
		return false
	}
	s := strings.ReplaceAll(strings.ReplaceAll(seg, "%2e", "."), "%2E", ".")
	return s == "." || s == ".."
}

// EndsSession reports whether a 2xx answer to this request means its token
// is no longer valid: POST /logout and /logout/all (with a trailing slash
// too: forgetting a valid token only costs its next answer).
func (q *Request) EndsSession(method string) bool {
	p := strings.TrimSuffix(q.RawPath, "/")
	return method == http.MethodPost && q.Class == Auth &&
		(strings.HasSuffix(p, "/logout") || strings.HasSuffix(p, "/logout/all"))
}

// ProvesToken reports whether a 2xx answer to this request shows that the
// homeserver accepted its token: only /account/whoami and classes whose
// every endpoint requires authentication (sync, room state and history,
// sends and membership, keys, receipts, typing and presence). Discovery,
// login and registration, legacy media, room directories and profiles may
// answer anyone, whatever token the request carries. The whoami path must
// be exact: the rest of its class may answer anyone (the auth fallback
// pages, .../auth/{stage}/fallback/web, ask for no token), and a suffix
// would leave it to the homeserver's router whether a longer path is one
// of those (Synapse 1.160 and Dendrite answer 404 at
// .../fallback/web/account/whoami).
func (q *Request) ProvesToken() bool {
	switch q.Class {
	case Sync, SyncInitial, RoomState, History, Send, Keys, Receipts, Ephemeral:
		return true
	case Auth:
		family, rest, ok := splitPrefix(q.RawPath)
		return ok && family == clientAPI && rest == "account/whoami"
	}
	return false
}
