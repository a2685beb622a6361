// Package herd protects the homeserver from many clients asking for the same
// expensive thing at once. It has two independent parts:
//
//   - Coalescer shares one upstream fetch among identical concurrent requests
//     and keeps a short-lived completion cache of the answer.
//   - Detector notices a thundering herd: many distinct users requesting the
//     same (endpoint class, room) within a sliding window.
//
// The package imports nothing from Caddy; it is plain net/http.
//
// # Safety rules the Coalescer enforces
//
// These are the rules of docs/DESIGN.md ("Safety rules for coalescing"); each is
// enforced here, not left to the caller:
//
//   - Only GET and HEAD without a body are coalesced (KeyOf returns ok=false
//     otherwise), and never Range requests or protocol upgrades.
//   - The key includes the SHA-256 of the requester's credential (access token,
//     or the raw Authorization header when it is not a bearer token) unless the
//     caller marks the key shared, so a response is never served to a different
//     token. The key is itself a SHA-256 digest: no token is ever held by the
//     Coalescer, logged or exposed.
//   - The key keeps the raw (never decoded) path and the raw query; only the
//     volatile `_cacheBuster` parameter and `access_token` (already covered by
//     the credential digest) are dropped. Host and the request headers that
//     can change a Matrix answer (Accept, Accept-Encoding, Accept-Language,
//     Origin, Cookie, conditional headers) are part of the key.
//   - The first client leaving does not fail the others: a detached leader's
//     fetch (LeadDetached) goes on for them, bounded by FetchTimeout; an
//     attached one ends with its client and the waiters elect a new leader.
//     An answer that may be incomplete (its client left during an attached
//     fetch, its body is short of its Content-Length, or its fetch panicked)
//     is never shared. Every waiter has its own deadline and its own context.
//   - Responses with Set-Cookie, Cache-Control: no-store, a Vary header naming a
//     request header outside the key, trailers, or a body over MaxBodyBytes are
//     not shared; waiters then call fetch with their own request (which, in the
//     gate, goes through admission). Cache-Control: private responses are not
//     shared across tokens.
//   - Errors (fetch errors, 5xx, 429) reach the waiters of the group that saw
//     them but are never kept in the completion cache.
//   - Memory is bounded: in-flight groups plus cached entries are capped by
//     MaxEntries, and recorded bodies (in flight and cached) share one byte
//     budget, CacheBytes.
package herd
