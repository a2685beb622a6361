package gate

import (
	"hash/maphash"
	"net/http"
	"sync"

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
// token one of them accepted proves nothing to another.
//
// The IDs are kept in two generations of at most acceptedTokensMax/2 each:
// a recorded ID goes to the current one; when it is full it becomes the
// previous one and the previous one is dropped, so a token is forgotten
// once a whole generation of other tokens was recorded without it being
// seen (close to least recently seen). The maps hold no pointers, so the
// garbage collector never walks them, where a linked LRU list of 100,000
// tokens is 100,000 objects for every GC cycle to mark.
type acceptedTokens struct {
	seed      maphash.Seed // for the Host's hash; random per process
	mu        sync.RWMutex
	cur, prev map[matrix.TokenID]uint64 // token → its Host's hash
}

func newAcceptedTokens() *acceptedTokens {
	return &acceptedTokens{seed: maphash.MakeSeed(), cur: make(map[matrix.TokenID]uint64)}
}

// record notes that the homeserver at host accepted id (zero: no token,
// ignored). A token accepted on another Host since counts there only. The
// read-locked lookup first keeps the common case, a token already known,
// off the write lock.
func (a *acceptedTokens) record(id matrix.TokenID, host string) {
	if id == 0 {
		return
	}
	h := maphash.String(a.seed, host)
	a.mu.RLock()
	got, known := a.cur[id]
	a.mu.RUnlock()
	if known && got == h {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.cur[id]; !ok && len(a.cur) >= acceptedTokensMax/2 {
		a.prev, a.cur = a.cur, make(map[matrix.TokenID]uint64, acceptedTokensMax/2)
	}
	a.cur[id] = h
}

// forget drops id, on every Host, until its next 2xx.
func (a *acceptedTokens) forget(id matrix.TokenID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.cur, id)
	delete(a.prev, id)
}

// has reports whether id was last accepted on host (zero never is).
func (a *acceptedTokens) has(id matrix.TokenID, host string) bool {
	if id == 0 {
		return false
	}
	h := maphash.String(a.seed, host)
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
// asking the homeserver.
func (g *Gate) noteTokenVerdict(r *http.Request, req *matrix.Request, status int) {
	id := req.Credential.ID
	switch {
	case id == 0:
	case status == http.StatusUnauthorized, status/100 == 2 && req.EndsSession(r.Method):
		g.accepted.forget(id)
	case status/100 == 2 && req.ProvesToken():
		g.accepted.record(id, r.Host)
	}
}
