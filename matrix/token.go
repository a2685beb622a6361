package matrix

import (
	"crypto/sha256"
	"encoding/binary"
	"net/http"
	"strings"
)

// AccessToken returns the request's access token: the Authorization Bearer
// header, else the deprecated access_token query parameter, else "".
// The token must never be logged; use TokenID to tell tokens apart.
func AccessToken(r *http.Request) string {
	if auth := r.Header.Get("Authorization"); auth != "" {
		if len(auth) > 7 && strings.EqualFold(auth[:7], "bearer ") {
			return strings.TrimSpace(auth[7:])
		}
		return ""
	}
	if r.URL == nil || !strings.Contains(r.URL.RawQuery, "access_token=") {
		return ""
	}
	return r.URL.Query().Get("access_token")
}

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
