package gate

import (
	"net/http"
	"strings"
	"sync"

	"github.com/mxgate/mxgate/fleet"
	"github.com/mxgate/mxgate/matrix"
)

// acceptedTokensMax bounds the set of accepted tokens; a forgotten token
// counts again after its next successful answer.
const acceptedTokensMax = 100_000

// acceptedTokens are the tokens the homeserver has answered with a 2xx:
// the only identities herd detection counts and share_state verifies, so
// made-up tokens can neither declare a herd nor cost the homeserver a
// whoami. Only hashed IDs are held. A token counts as accepted on the Host
// it was accepted on: one gateway may front several homeservers, and a
// token one of them accepted proves nothing to another. In a fleet the
// gateways share what they learn (fleet.TokenVerdict), so that a client
// one gateway knows is known to all.
//
// The IDs are kept in two generations of at most acceptedTokensMax/2 each:
// a recorded ID goes to the current one; when it is full it becomes the
// previous one and the previous one is dropped, so a token is forgotten
// once a whole generation of other tokens was recorded without it being
// seen (close to least recently seen). The maps hold no pointers, so the
// garbage collector never walks them, where a linked LRU list of 100,000
// tokens is 100,000 objects for every GC cycle to mark.
//
// Tokens whose session ended (a logout) are remembered apart, also in two
// generations, and never accepted again: a 2xx the homeserver sent just
// before the logout (a long-poll's) may reach the gate after it, here or
// on another gateway of the fleet.
type acceptedTokens struct {
	mu        sync.RWMutex
	cur, prev map[matrix.TokenID]uint64 // token → its Host's hash
	ended     [2]map[matrix.TokenID]struct{}
}

// endedTokensMax bounds the remembered ended sessions.
const endedTokensMax = 20_000

func newAcceptedTokens() *acceptedTokens {
	return &acceptedTokens{cur: make(map[matrix.TokenID]uint64),
		ended: [2]map[matrix.TokenID]struct{}{make(map[matrix.TokenID]struct{}), nil}}
}

// canonicalHost is host as Caddy's host matcher tells sites apart: ASCII
// lower case, without a port or a trailing dot, so that spelling one Host
// differently neither re-proves a token nor announces it to the fleet again.
// It allocates only for a Host with upper case letters.
func canonicalHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 && strings.IndexByte(host[i:], ']') < 0 {
		host = host[:i]
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}

// hostHash is the canonical Host's 64-bit FNV-1a hash: the same on every
// gateway of a fleet, and cheap on every request. A Host crafted to collide
// with another gains nothing its sender could not have by naming that Host.
func hostHash(host string) uint64 {
	host = canonicalHost(host)
	h := uint64(14695981039346656037)
	for i := 0; i < len(host); i++ {
		h ^= uint64(host[i])
		h *= 1099511628211
	}
	return h
}

// record notes that the homeserver at host accepted id (zero: no token,
// ignored) and returns the Host's hash and whether the set changed. A token
// accepted on another Host since counts there only.
func (a *acceptedTokens) record(id matrix.TokenID, host string) (hash uint64, changed bool) {
	h := hostHash(host)
	return h, a.recordHash(id, h)
}

// recordHash is record for a Host's hash (another gateway's verdict). The
// read-locked lookup first keeps the common case, a token already known,
// off the write lock.
func (a *acceptedTokens) recordHash(id matrix.TokenID, h uint64) (changed bool) {
	if id == 0 {
		return false
	}
	a.mu.RLock()
	got, known := a.cur[id]
	a.mu.RUnlock()
	if known && got == h {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.endedLocked(id) {
		return false
	}
	if got, ok := a.cur[id]; ok && got == h {
		return false
	} else if !ok && len(a.cur) >= acceptedTokensMax/2 {
		a.prev, a.cur = a.cur, make(map[matrix.TokenID]uint64, acceptedTokensMax/2)
	}
	a.cur[id] = h
	return true
}

// forget drops id, on every Host, until its next 2xx, and reports whether
// it was held.
func (a *acceptedTokens) forget(id matrix.TokenID) (held bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, inCur := a.cur[id]
	_, inPrev := a.prev[id]
	delete(a.cur, id)
	delete(a.prev, id)
	return inCur || inPrev
}

// end forgets id for good: its session ended.
func (a *acceptedTokens) end(id matrix.TokenID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.cur, id)
	delete(a.prev, id)
	if len(a.ended[0]) >= endedTokensMax/2 {
		a.ended[1], a.ended[0] = a.ended[0], make(map[matrix.TokenID]struct{})
	}
	a.ended[0][id] = struct{}{}
}

func (a *acceptedTokens) endedLocked(id matrix.TokenID) bool {
	_, e0 := a.ended[0][id]
	_, e1 := a.ended[1][id]
	return e0 || e1
}

// apply takes another gateway's verdict.
func (a *acceptedTokens) apply(v fleet.TokenVerdict) {
	switch {
	case v.Ended:
		a.end(v.Token)
	case v.Forget:
		a.forget(v.Token)
	default:
		a.recordHash(v.Token, v.Host)
	}
}

// has reports whether id was last accepted on host (zero never is).
func (a *acceptedTokens) has(id matrix.TokenID, host string) bool {
	if id == 0 {
		return false
	}
	h := hostHash(host)
	a.mu.RLock()
	defer a.mu.RUnlock()
	if got, ok := a.cur[id]; ok {
		return got == h
	}
	got, ok := a.prev[id]
	return ok && got == h
}

// noteTokenVerdict keeps the accepted set in step with what the homeserver
// answered req: a 2xx that proves its token records it; a 401 (an unknown
// or logged-out token, or an interactive-auth step) and a successful logout
// forget it, so that share_state stops serving it a shared answer without
// asking the homeserver. A change is shared with the fleet, if any.
func (g *Gate) noteTokenVerdict(r *http.Request, req *matrix.Request, status int) {
	id := req.Credential.ID
	switch {
	case id == 0:
	case status/100 == 2 && req.EndsSession(r.Method):
		// Announced even if not held here: another gateway may hold it,
		// or be about to (its verdict still on the way).
		g.accepted.end(id)
		g.shareVerdict(fleet.TokenVerdict{Token: id, Ended: true})
	case status == http.StatusUnauthorized:
		if g.accepted.forget(id) {
			g.shareVerdict(fleet.TokenVerdict{Token: id, Forget: true})
		}
	case status/100 == 2 && req.ProvesToken():
		if h, changed := g.accepted.record(id, r.Host); changed {
			g.shareVerdict(fleet.TokenVerdict{Token: id, Host: h})
		}
	}
}

// shareVerdict tells the fleet's other gateways of v (outside a fleet,
// nothing).
func (g *Gate) shareVerdict(v fleet.TokenVerdict) {
	if g.fleet.member != nil {
		g.fleet.member.PublishVerdict(v)
	}
}
