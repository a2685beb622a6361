package matrix

import (
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"net/http"
	"strings"
)

// CredentialForm says how a request presents who it is.
type CredentialForm uint8

const (
	// NoCredential: no Authorization header and no access_token parameter.
	NoCredential CredentialForm = iota
	// BearerHeader: one Authorization header "Bearer <token>" (scheme in
	// any case).
	BearerHeader
	// QueryToken: the deprecated access_token query parameter.
	QueryToken
	// BearerAndQuery: both, carrying the same token.
	BearerAndQuery
	// OtherAuthorization: an Authorization header that is not one bearer
	// token (a federation X-Matrix signature, Basic, a bare "Bearer").
	OtherAuthorization
)

var credentialFormNames = [...]string{
	NoCredential:       "none",
	BearerHeader:       "bearer",
	QueryToken:         "query",
	BearerAndQuery:     "bearer+query",
	OtherAuthorization: "other-authorization",
}

func (f CredentialForm) String() string {
	if int(f) < len(credentialFormNames) {
		return credentialFormNames[f]
	}
	return "form(?)"
}

// Credential is who a request says it is, read the way homeservers read it:
// the Authorization header (scheme case-insensitive) and the access_token
// query parameter after percent-decoding names and values, as Go's net/url
// (Dendrite, Conduit) and Python's parse_qs (Synapse) do. Build it with
// ParseCredential, once per request; everything that keys on identity uses
// it.
//
// A Credential holds the token only to hash it into keys (AppendKey); it
// prints as its form alone, never the token, whatever the verb or logger.
type Credential struct {
	// Form is how the credential was presented.
	Form CredentialForm
	// Ambiguous is set when homeservers could disagree on who is asking:
	// two different credentials in any mix of forms, more than one
	// Authorization header, a non-bearer header together with a query
	// token, a malformed escape anywhere in the query, or an access_token
	// that only some parsers see (behind a ';'). An ambiguous request may be
	// proxied, but is never coalesced, shared or cached.
	Ambiguous bool
	// ID is the one-way identifier of the access token, the same in the
	// header and the query; zero when there is none (OtherAuthorization,
	// NoCredential) or the request is ambiguous.
	ID TokenID

	token      string   // the access token; never logged, only hashed
	authHeader []string // the Authorization header lines verbatim
}

// Anonymous reports whether the request carries no credential at all.
func (c Credential) Anonymous() bool { return c.Form == NoCredential && !c.Ambiguous }

// String names the form only: a Credential never prints its token.
func (c Credential) String() string {
	if c.Ambiguous {
		return "ambiguous"
	}
	return c.Form.String()
}

// GoString keeps %#v from printing the token.
func (c Credential) GoString() string { return "matrix.Credential(" + c.String() + ")" }

// LogValue keeps slog from printing the token.
func (c Credential) LogValue() slog.Value { return slog.StringValue(c.String()) }

// AppendKey appends, length-prefixed, everything a homeserver could
// authenticate this request from: the form, every Authorization line
// verbatim and the decoded token. Two requests with the same material are
// attributed to the same credential by any parser that decodes like net/url
// or parse_qs. The result holds the token in the clear: hash it, never keep
// it.
func (c Credential) AppendKey(buf []byte) []byte {
	buf = append(buf, byte(c.Form))
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(c.authHeader)))
	for _, v := range c.authHeader {
		buf = appendLengthPrefixed(buf, v)
	}
	return appendLengthPrefixed(buf, c.token)
}

func appendLengthPrefixed(buf []byte, s string) []byte {
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(s)))
	return append(buf, s...)
}

// accessTokenParam is the query parameter name of the deprecated credential.
const accessTokenParam = "access_token"

// ParseCredential reads the credential of a request from its header and raw
// query (r.URL.RawQuery).
func ParseCredential(h http.Header, rawQuery string) Credential {
	var c Credential
	q := scanQueryTokens(rawQuery)
	auth := h["Authorization"]
	c.authHeader = auth
	switch {
	case len(auth) > 1:
		// Synapse refuses several headers; Go servers read the first.
		c.Ambiguous = true
		return c
	case len(auth) == 1:
		tok, bearer := bearerToken(auth[0])
		if !bearer {
			c.Form = OtherAuthorization
			// A non-bearer header beside a query token: Dendrite refuses
			// the header, a query-first server authenticates the token.
			c.Ambiguous = q.present || q.ambiguous
			return c
		}
		c.Form, c.token = BearerHeader, tok
		if q.present {
			c.Form = BearerAndQuery
			c.Ambiguous = q.token != tok
		}
		c.Ambiguous = c.Ambiguous || q.ambiguous
	case q.present:
		c.Form, c.token = QueryToken, q.token
		c.Ambiguous = q.ambiguous
	default:
		c.Ambiguous = q.ambiguous
	}
	if !c.Ambiguous && c.Form != NoCredential {
		c.ID = TokenIDOf(c.token)
	}
	return c
}

// bearerToken returns the token of an "Authorization: Bearer <token>"
// value: the scheme in any case (RFC 9110), one space, and a token without
// blanks. Anything else (no token, extra spaces, which homeservers read as
// part of the token or refuse) is not a bearer credential.
func bearerToken(v string) (string, bool) {
	const scheme = "bearer "
	if len(v) <= len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		return "", false
	}
	tok := v[len(scheme):]
	if strings.ContainsAny(tok, " \t") {
		return "", false
	}
	return tok, true
}

// queryTokens is what scanQueryTokens found.
type queryTokens struct {
	present   bool   // at least one access_token parameter
	token     string // its decoded value (the first one's)
	ambiguous bool
}

// scanQueryTokens finds the access_token parameters of a raw query as
// net/url and parse_qs see them: pairs split at '&', names and values
// decoded ('+' is a space, %XX a byte). Two different values, a malformed
// escape anywhere in the query (net/url drops such a pair, parse_qs keeps it
// undecoded), or an access_token hidden behind a ';' (some parsers split
// there, others do not) make it ambiguous.
func scanQueryTokens(rawQuery string) queryTokens {
	var q queryTokens
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		if !validQueryEscapes(pair) {
			q.ambiguous = true
			continue
		}
		if strings.IndexByte(pair, ';') >= 0 {
			for piece := range strings.SplitSeq(pair, ";") {
				name, _, _ := strings.Cut(piece, "=")
				if queryComponentEquals(name, accessTokenParam) {
					q.ambiguous = true
				}
			}
		}
		name, value, _ := strings.Cut(pair, "=")
		if !queryComponentEquals(name, accessTokenParam) {
			continue
		}
		v := decodeQueryComponent(value)
		if q.present && v != q.token {
			q.ambiguous = true
		}
		if !q.present {
			q.present, q.token = true, v
		}
	}
	return q
}

// IsCredentialParam reports whether a raw query pair's name is the
// access_token parameter once decoded, so that keys drop exactly the pairs
// ParseCredential reads.
func IsCredentialParam(rawName string) bool {
	return validQueryEscapes(rawName) && queryComponentEquals(rawName, accessTokenParam)
}

// decodeQueryComponent decodes a raw query component with valid escapes
// ('+' is a space, %XX a byte), allocating only when something changes.
func decodeQueryComponent(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '+':
			c = ' '
		case '%':
			c = unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
		}
		b = append(b, c)
	}
	return string(b)
}

// TokenIDOf is the ID of an access token (which may be empty:
// "access_token=" is a credential, if a useless one the homeserver answers
// 401). Token IDs and ClientIPID's are hashed in separate domains, so no
// token, whatever its bytes, shares an ID (a rate bucket) with a client
// address.
func TokenIDOf(tok string) TokenID { return IDOf("\x00token\x00" + tok) }

// ClientIPID is the ID of an anonymous client's address, for its rate
// bucket; it never equals a TokenIDOf.
func ClientIPID(ip string) TokenID { return IDOf("\x00ip\x00" + ip) }

// TokenID is a one-way identifier of an access token, used as a map key for
// per-user state so that tokens themselves are never held in long-lived maps,
// logs, metrics or status output. The zero TokenID means "no token".
type TokenID uint64

// IDOf hashes a token (or any identity string, such as a client IP) into a
// TokenID. SHA-256 rather than a fast hash: a client must not be able to
// craft tokens that collide with another user's buckets or coalescing keys.
func IDOf(s string) TokenID {
	if s == "" {
		return 0
	}
	sum := sha256.Sum256([]byte(s))
	id := TokenID(binary.LittleEndian.Uint64(sum[:8]))
	if id == 0 {
		id = 1
	}
	return id
}
