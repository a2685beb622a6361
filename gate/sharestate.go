package gate

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/mxgate/mxgate/herd"
	"github.com/mxgate/mxgate/limiter"
	"github.com/mxgate/mxgate/matrix"
)

// Cross-user sharing of room state under a herd (opt-in: `class room_state
// { share_state }`).
//
// During a herd on a room, GET /rooms/{id}/state and /joined_members of that
// room are fetched once and the answer is served to every requester whose own
// membership the gate has verified. It is safe because, per the Matrix spec
// and in Synapse and Dendrite, both endpoints give every *joined* member the
// same answer: the room's current state (a member who left gets the state at
// the time they left, which is why only "join" qualifies). The proof of
// membership is the requester's own token: a cheap
// GET /rooms/{id}/state/m.room.member/{user_id} with the user ID that
// /account/whoami returns for that same token, answered 200 with membership
// "join". The proof is cached for the herd window, but the snapshot decides:
// the answer is served only to requesters it shows joined, and shared only
// if it shows the leader joined (matrix.SharedState.Joined), so a member who
// left since its proof gets its own answer and a leader who left does not
// hand the members its old state. Proofs are kept per token and Host. The
// requester-specific unsigned fields (transaction_id, set on events the
// requester's own device sent, and membership) are stripped. Requesters who
// fail the check, tokens the homeserver has since refused (identity.go
// forgets them), and every request when no herd is active go the normal
// way. TestShareStateIsolation (e2e/) attacks it against Dendrite and
// Synapse.
//
// What it does not protect against: a joined member's token revoked
// elsewhere can be served the state for up to the herd window.

// sharedStateMaxBody bounds what a shared state answer may hold in memory.
const sharedStateMaxBody = 16 << 20

// sharedStateMaxFlights caps rooms fetched for sharing at once.
const sharedStateMaxFlights = 1024

// stateSharer holds the in-flight shared fetches and the caches of who the
// tokens are and which rooms they are joined to. Caches are keyed by hashed
// tokens only.
type stateSharer struct {
	mu      sync.Mutex
	flights map[herd.Key]*stateFlight
	waiting atomic.Int64 // requests waiting on a flight, for tests to sync on

	users   *lru.Cache[userKey, userEntry]
	members *lru.Cache[memberKey, membership]
}

// membership is the homeserver's last verdict on a token's membership of a
// room, trusted until it expires (the herd window). A token found not
// joined is not asked again meanwhile: during a herd an outsider's every
// request would otherwise cost the homeserver a proof. It only ever sends
// a request the normal way, so a user who joins meanwhile is served by the
// homeserver, just not shared.
type membership struct {
	until  time.Time
	joined bool
}

type userEntry struct {
	id      string
	expires time.Time
}

// userKey and memberKey name a token at one site: the same gate may front
// several hosts (sites without a zone of their own share one), and a
// token's user and memberships on one homeserver say nothing of another's.
type userKey struct {
	token matrix.TokenID
	host  string
}

type memberKey struct {
	userKey
	room string
}

// stateFlight is one shared fetch. Its fields are written by the leader
// before done is closed and only read after.
type stateFlight struct {
	done   chan struct{}
	ok     bool
	status int
	header http.Header
	body   []byte
	joined map[string]bool // who the answer shows joined (matrix.SharedState)
}

// whoamiTTL bounds how long a token's user ID is remembered; the membership
// check re-proves the token on every herd window anyway.
const whoamiTTL = 10 * time.Minute

func newStateSharer() *stateSharer {
	users, _ := lru.New[userKey, userEntry](100_000)
	members, _ := lru.New[memberKey, membership](100_000)
	return &stateSharer{flights: make(map[herd.Key]*stateFlight), users: users, members: members}
}

// shareFlow is what share_state needs of a request's flow: its parsed
// request, its arrival, and its way upstream through admission — pass sends
// w, r in lane; own says r is the flow's own request (a copy of it), not a
// subrequest of another class.
type shareFlow struct {
	cfg  *Config
	req  *matrix.Request
	now  time.Time
	pass func(w http.ResponseWriter, r *http.Request, lane limiter.Lane, own bool) error
}

// serveSharedState serves a herd's GET of room state from a shared fetch
// if the requester is verified as joined. It reports false when r must go
// the normal way: a request whose credential is ambiguous or not a token the
// homeserver has already accepted (a made-up token must not cost a whoami),
// or whose requester is not joined.
func (g *Gate) serveSharedState(w http.ResponseWriter, r *http.Request, sf shareFlow) (bool, error) {
	cfg, req := sf.cfg, sf.req
	cred := req.Credential
	if cred.ID == 0 || !g.accepted.has(cred.ID, r.Host) || !matrix.ShareableStateQuery(r.URL.RawQuery) {
		return false, nil
	}
	// The flight is keyed like a shared coalescing key: everything but the
	// credential, so members asking alike share one fetch.
	key, ok := herd.KeyOf(r, cred, true)
	if !ok {
		return false, nil
	}
	user, joined := g.verifyJoined(r, sf, cred.ID)
	if !joined {
		return false, nil
	}
	route := req.Route
	s := g.sharer
	s.mu.Lock()
	f, inFlight := s.flights[key]
	if !inFlight {
		if len(s.flights) >= sharedStateMaxFlights {
			s.mu.Unlock()
			return false, nil
		}
		f = &stateFlight{done: make(chan struct{})}
		s.flights[key] = f
	}
	s.mu.Unlock()

	if !inFlight {
		return true, g.leadSharedState(w, r, sf, key, f, user)
	}
	s.waiting.Add(1)
	defer s.waiting.Add(-1)
	timer := time.NewTimer(cfg.Classes[route.Class].QueueTimeout + coalesceWaitExtra)
	defer timer.Stop()
	select {
	case <-f.done:
	case <-r.Context().Done():
		return true, g.refuse(cfg, route.Class, byClient, OutcomeCanceled, "client went away while waiting", retryNormal, 0)
	case <-timer.C:
		err := g.refuse(cfg, route.Class, byLimit, OutcomeTimeout, "timed out waiting for the room's shared state", retryHerd, 0)
		return err != nil, err // not refused (shadow mode): it goes upstream through admission
	}
	if !f.ok || !f.joined[user] {
		// Not shareable, or the snapshot does not show this requester
		// joined (it left before the fetch): upstream through admission.
		return false, nil
	}
	g.count(route.Class, OutcomeCoalesced)
	writeShared(w, f, true)
	return true, nil
}

// leadSharedState fetches the state with the leader's own token (its user
// is user), buffering it; a shareable answer is cleaned, published to the
// waiters and written to the leader. An answer that is not shareable is
// written to the leader as it came (streaming once it outgrows the buffer).
func (g *Gate) leadSharedState(w http.ResponseWriter, r *http.Request, sf shareFlow, key herd.Key, f *stateFlight, user string) error {
	// Whatever happens below (a panic included), the waiters are released;
	// f.ok stays false unless the answer was fully vetted.
	defer func() {
		g.sharer.mu.Lock()
		delete(g.sharer.flights, key)
		g.sharer.mu.Unlock()
		close(f.done)
	}()
	// Ask for an uncompressed answer: a compressed body could not be
	// checked for requester-specific fields.
	lr := r.Clone(r.Context())
	lr.Header.Del("Accept-Encoding")
	bw := &bufferingWriter{client: w, header: make(http.Header), max: sharedStateMaxBody}
	err := sf.pass(bw, lr, limiter.LaneHerd, true)
	if err == nil && !bw.passedThrough && bw.status == http.StatusOK && shareableHeader(bw.header) {
		// A leader who left since its proof is answered the state at its
		// leave, which must not reach the members: it shows itself joined.
		if st, ok := matrix.VetSharedState(bw.buf.Bytes()); ok && st.Joined[user] {
			f.status, f.header, f.body, f.joined, f.ok = bw.status, bw.header, st.Body, st.Joined, true
		}
	}
	switch {
	case f.ok:
		writeShared(w, f, false)
	case err == nil && !bw.passedThrough:
		bw.flushToClient()
	}
	return err
}

// shareableHeader refuses answers that set cookies or are encoded.
func shareableHeader(h http.Header) bool {
	ce := h.Get("Content-Encoding")
	return len(h.Values("Set-Cookie")) == 0 && (ce == "" || strings.EqualFold(ce, "identity"))
}

// writeShared writes a shared answer; coalesced marks it as served from
// another requester's fetch.
func writeShared(w http.ResponseWriter, f *stateFlight, coalesced bool) {
	h := w.Header()
	for k, v := range f.header {
		if k != "Content-Length" {
			h[k] = append([]string(nil), v...)
		}
	}
	if coalesced {
		h.Set(herd.CoalescedHeader, "1")
	}
	w.WriteHeader(f.status)
	_, _ = w.Write(f.body)
}

// verifyJoined returns the token's user and whether it is joined to the
// room, asking the homeserver (through admission, ahead of the herd) when
// the answer is not cached.
func (g *Gate) verifyJoined(r *http.Request, sf shareFlow, tok matrix.TokenID) (string, bool) {
	cfg, route, now := sf.cfg, sf.req.Route, sf.now
	s := g.sharer
	uk := userKey{tok, canonicalHost(r.Host)}
	user, known := s.users.Get(uk)
	known = known && now.Before(user.expires)
	mk := memberKey{uk, route.Room}
	if m, ok := s.members.Get(mk); ok && now.Before(m.until) && known {
		return user.id, m.joined
	}
	proof, ok := matrix.ProofFor(sf.req.RawPath, route.Room)
	if !ok {
		return "", false
	}
	if !known {
		var who struct {
			UserID string `json:"user_id"`
		}
		if status := subrequest(r, sf, proof.WhoamiPath(), &who); status != http.StatusOK || who.UserID == "" {
			return "", false
		}
		user = userEntry{id: who.UserID, expires: now.Add(whoamiTTL)}
		s.users.Add(uk, user)
	}
	var member json.RawMessage
	switch status := subrequest(r, sf, proof.MemberEventPath(user.id), &member); {
	case status == http.StatusOK && matrix.MembershipOf(member) == "join":
		s.members.Add(mk, membership{until: now.Add(cfg.Herd.Window), joined: true})
		return user.id, true
	case status == http.StatusOK, status == http.StatusForbidden, status == http.StatusNotFound:
		s.members.Add(mk, membership{until: now.Add(cfg.Herd.Window)})
	}
	return user.id, false // not proven: a refused or failed proof is asked again next time
}

// subrequest sends a small GET with r's credentials through admission (the
// herd lane of the class of its own path: it is asked for a herd's request,
// so the rest of that class goes first) and the rest of the chain, and
// decodes a 200 JSON answer into v; r's query goes along, which
// ShareableStateQuery has left holding only the credential (and a cache
// buster). It returns the homeserver's status: 200 only with v decoded, and
// 0 for no verdict (the request failed or was refused before the
// homeserver, or the answer was not one to read).
func subrequest(r *http.Request, sf shareFlow, rawPath string, v any) int {
	u := *r.URL
	if err := setRawPath(&u, rawPath); err != nil {
		return 0
	}
	sub := r.Clone(r.Context())
	sub.URL = &u
	sub.RequestURI = u.RequestURI()
	sub.Method = http.MethodGet
	sub.Body, sub.ContentLength = http.NoBody, 0
	sub.Header.Del("Accept-Encoding") // decode the answer here, uncompressed
	// Small answers only: anything bigger is not what was asked for.
	rec := &bufferingWriter{client: discardWriter{}, header: make(http.Header), max: 64 << 10}
	if err := sf.pass(rec, sub, limiter.LaneHerd, false); err != nil || rec.passedThrough {
		return 0
	}
	if rec.status != http.StatusOK {
		return rec.status
	}
	if !shareableHeader(rec.header) || json.Unmarshal(rec.buf.Bytes(), v) != nil {
		return 0
	}
	return http.StatusOK
}

// discardWriter swallows an answer that outgrew a bufferingWriter.
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) WriteHeader(int)             {}
func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func setRawPath(u *url.URL, raw string) error {
	p, err := url.PathUnescape(raw)
	if err != nil {
		return err
	}
	u.Path, u.RawPath = p, raw
	return nil
}
