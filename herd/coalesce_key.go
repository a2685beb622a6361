package herd

import (
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"net/url"
	"strings"

	"github.com/mxgate/mxgate/matrix"
)

// Key identifies a set of requests that must receive the same answer. It is a
// SHA-256 digest, so it holds no token, path or query in the clear and costs
// the same memory whatever the request looks like. Build it with KeyOf.
type Key struct {
	sum [sha256.Size]byte
	// shared is true when the key does not include the requester's credential,
	// i.e. the answer may be served to other tokens.
	shared bool
}

// keyedHeaders are the request headers that can change what a homeserver (or
// a proxy in front of it) answers to the same method, path and query. Two
// requests that differ in any of them never share a response. Cookie is here
// not because Matrix uses it but because an SSO flow or a fronting proxy may;
// hashing it costs nothing and forbids a cookie-dependent answer from leaking.
var keyedHeaders = [...]string{
	"Accept",
	"Accept-Encoding",
	"Accept-Language",
	"Origin",
	"Cookie",
	"If-None-Match",
	"If-Modified-Since",
	"If-Match",
	"If-Unmodified-Since",
}

// varyAllowed reports whether a response header Vary: name is satisfied by the
// key, i.e. requests sharing a key agree on that header.
func varyAllowed(name string) bool {
	if strings.EqualFold(name, "Authorization") {
		return true
	}
	for _, h := range keyedHeaders {
		if strings.EqualFold(name, h) {
			return true
		}
	}
	return false
}

// KeyOf returns the coalescing key of r and ok=true, or ok=false when r must
// never be coalesced: a method other than GET and HEAD, a request body
// (ContentLength != 0 or any Transfer-Encoding), a Range request, a
// protocol upgrade, or an ambiguous credential (homeservers could disagree
// on who is asking). cred is r's credential, from matrix.ParseCredential.
//
// The key covers: method, Host, the raw path (never decoded), the raw query
// minus _cacheBuster and the credential parameters (both recognised by their
// decoded names, so %61ccess_token is access_token; remaining parameters keep
// their order and encoding), the headers in keyedHeaders, and, unless shared,
// the credential's key material (cred.AppendKey, inside the hashed buffer
// only): its form, the Authorization lines verbatim and the decoded token.
//
// shared=true leaves the credential out, so the answer is served across
// requesters; callers pass it only where matrix.Request.SharedAcrossCredentials
// says the answer is the same for anyone (anonymous legacy media reads,
// anonymous /versions).
func KeyOf(r *http.Request, cred matrix.Credential, shared bool) (Key, bool) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead || cred.Ambiguous {
		return Key{}, false
	}
	// Direct map reads: the names are canonical already, and Header.Get
	// would canonicalise them again on every request.
	h := r.Header
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 || len(h["Transfer-Encoding"]) > 0 {
		return Key{}, false
	}
	if len(h["Range"]) > 0 || len(h["If-Range"]) > 0 || len(h["Upgrade"]) > 0 {
		return Key{}, false
	}

	// Fields are appended length-prefixed to one buffer (on the stack for
	// typical requests) and hashed once.
	var stack [1024]byte
	buf := stack[:0]
	buf = appendField(buf, r.Method)
	buf = appendField(buf, r.Host)
	buf = appendField(buf, matrix.RawPath(r.URL))
	buf = appendField(buf, keyedQuery(r.URL.RawQuery))
	for _, name := range keyedHeaders {
		// Each value separately, with their count, so that splitting or
		// joining header lines cannot make two different requests alike.
		vs := r.Header[name]
		buf = binary.LittleEndian.AppendUint64(buf, uint64(len(vs)))
		for _, v := range vs {
			buf = appendField(buf, v)
		}
	}
	if !shared {
		// The credential goes into the hashed buffer only: the buffer is
		// never kept, and the key is a digest.
		buf = cred.AppendKey(buf)
	}
	return Key{sum: sha256.Sum256(buf), shared: shared}, true
}

// keyedQuery returns raw without its _cacheBuster and credential pairs,
// leaving every other byte as the client sent it (no decoding, no
// reordering).
func keyedQuery(raw string) string {
	if raw == "" || (!strings.Contains(raw, "_cacheBuster") && !strings.Contains(raw, "access") && !strings.Contains(raw, "%")) {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	for part := range strings.SplitSeq(raw, "&") {
		name, _, _ := strings.Cut(part, "=")
		if matrix.IsCredentialParam(name) || isCacheBuster(name) {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(part)
	}
	return b.String()
}

// isCacheBuster reports whether a raw query name is _cacheBuster, a
// client-side cache defeat that does not change the answer.
func isCacheBuster(rawName string) bool {
	if rawName == "_cacheBuster" {
		return true
	}
	name, err := url.QueryUnescape(rawName)
	return err == nil && name == "_cacheBuster"
}

// appendField appends s length-prefixed, so field boundaries are
// unambiguous.
func appendField(buf []byte, s string) []byte {
	buf = binary.LittleEndian.AppendUint64(buf, uint64(len(s)))
	return append(buf, s...)
}
