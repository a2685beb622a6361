package gate

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
// "join". The one requester-specific field, unsigned.transaction_id (set on
// events the requester's own device sent), is stripped. Requesters who fail
// the check, and every request when no herd is active, go the normal way.
//
// What it does not protect against: a member who leaves after being verified
// can be served the state for up to the herd window (the membership answer is
// cached that long) — the same state they could read a moment earlier.

// sharedStateMaxBody bounds what a shared state answer may hold in memory.
const sharedStateMaxBody = 16 << 20

// sharedStateMaxFlights caps rooms fetched for sharing at once.
const sharedStateMaxFlights = 1024

// stateSharer holds the in-flight shared fetches and the caches of who the
// tokens are and which rooms they are joined to. Caches are keyed by hashed
// tokens only.
type stateSharer struct {
	mu      sync.Mutex
	flights map[string]*stateFlight
	waiting atomic.Int64 // requests waiting on a flight

	users   *lru.Cache[matrix.TokenID, userEntry]
	members *lru.Cache[memberKey, time.Time] // verified joined until
}

type userEntry struct {
	id      string
	expires time.Time
}

type memberKey struct {
	token matrix.TokenID
	room  string
}

// stateFlight is one shared fetch. Its fields are written by the leader
// before done is closed and only read after.
type stateFlight struct {
	done   chan struct{}
	ok     bool
	status int
	header http.Header
	body   []byte
}

// whoamiTTL bounds how long a token's user ID is remembered; the membership
// check re-proves the token on every herd window anyway.
const whoamiTTL = 10 * time.Minute

func newStateSharer() *stateSharer {
	users, _ := lru.New[matrix.TokenID, userEntry](100_000)
	members, _ := lru.New[memberKey, time.Time](100_000)
	return &stateSharer{flights: make(map[string]*stateFlight), users: users, members: members}
}

// isSharedStatePath reports whether rawPath is a room's full state or
// joined members list.
func isSharedStatePath(rawPath string) bool {
	return strings.HasSuffix(rawPath, "/state") || strings.HasSuffix(rawPath, "/joined_members")
}

// serveSharedState serves r from a shared fetch if the requester is verified
// as joined. It reports false when r must go the normal way.
func (g *Gate) serveSharedState(w http.ResponseWriter, r *http.Request, cfg *Config, route matrix.Route, now time.Time, next Next) (bool, error) {
	if r.Method != http.MethodGet || r.ContentLength != 0 {
		return false, nil
	}
	token := matrix.AccessToken(r)
	if token == "" || !g.verifyJoined(r, cfg, route, matrix.IDOf(token), now, next) {
		return false, nil
	}
	key := rawPath(r) + "?" + r.URL.RawQuery
	s := g.sharer
	s.mu.Lock()
	f, joined := s.flights[key]
	if !joined {
		if len(s.flights) >= sharedStateMaxFlights {
			s.mu.Unlock()
			return false, nil
		}
		f = &stateFlight{done: make(chan struct{})}
		s.flights[key] = f
	}
	s.mu.Unlock()

	if !joined {
		return true, g.leadSharedState(w, r, cfg, route.Class, now, next, key, f)
	}
	s.waiting.Add(1)
	select {
	case <-f.done:
		s.waiting.Add(-1)
	case <-r.Context().Done():
		s.waiting.Add(-1)
		return true, g.reject(cfg, route.Class, OutcomeCanceled, "client went away while waiting", false, 0)
	}
	if !f.ok {
		return false, nil // not shareable: go upstream through admission
	}
	g.count(route.Class, OutcomeCoalesced)
	writeShared(w, f)
	return true, nil
}

// leadSharedState fetches the state with the leader's own token, buffering
// it; a shareable answer is cleaned, published to the waiters and written to
// the leader. An answer that is not shareable is written to the leader as it
// came (streaming once it outgrows the buffer).
func (g *Gate) leadSharedState(w http.ResponseWriter, r *http.Request, cfg *Config, class matrix.Class, now time.Time, next Next, key string, f *stateFlight) error {
	bw := &bufferingWriter{client: w, header: make(http.Header), max: sharedStateMaxBody}
	err := g.admitAndServe(r.Context(), bw, r, cfg, class, limiter.LaneHerd, now, next)
	f.ok = err == nil && !bw.passedThrough && bw.status == http.StatusOK &&
		len(bw.header.Values("Set-Cookie")) == 0
	if f.ok {
		f.status, f.header = bw.status, bw.header
		f.body, f.ok = stripTransactionIDs(bw.buf.Bytes())
	}
	g.sharer.mu.Lock()
	delete(g.sharer.flights, key)
	g.sharer.mu.Unlock()
	close(f.done)
	switch {
	case f.ok:
		writeShared(w, f)
		w.Header().Del(herd.CoalescedHeader) // the leader's answer is its own
	case err == nil && !bw.passedThrough:
		bw.flushToClient()
	}
	return err
}

func writeShared(w http.ResponseWriter, f *stateFlight) {
	h := w.Header()
	for k, v := range f.header {
		if k != "Content-Length" {
			h[k] = append([]string(nil), v...)
		}
	}
	h.Set(herd.CoalescedHeader, "1")
	w.WriteHeader(f.status)
	_, _ = w.Write(f.body)
}

// verifyJoined reports whether the token's user is joined to the room,
// asking the homeserver (through admission, ahead of the herd) when the
// answer is not cached.
func (g *Gate) verifyJoined(r *http.Request, cfg *Config, route matrix.Route, tok matrix.TokenID, now time.Time, next Next) bool {
	s := g.sharer
	mk := memberKey{tok, route.Room}
	if until, ok := s.members.Get(mk); ok && now.Before(until) {
		return true
	}
	prefix, _, ok := strings.Cut(rawPath(r), "/rooms/")
	if !ok {
		return false
	}
	user, ok := s.users.Get(tok)
	if !ok || !now.Before(user.expires) {
		var who struct {
			UserID string `json:"user_id"`
		}
		if !g.subrequest(r, cfg, matrix.Auth, prefix+"/account/whoami", now, next, &who) || who.UserID == "" {
			return false
		}
		user = userEntry{id: who.UserID, expires: now.Add(whoamiTTL)}
		s.users.Add(tok, user)
	}
	var member struct {
		Membership string `json:"membership"`
	}
	path := prefix + "/rooms/" + route.Room + "/state/m.room.member/" + url.PathEscape(user.id)
	if !g.subrequest(r, cfg, matrix.RoomState, path, now, next, &member) || member.Membership != "join" {
		return false
	}
	s.members.Add(mk, now.Add(cfg.Herd.Window))
	return true
}

// subrequest sends a small GET with r's credentials through admission (the
// normal lane) and the rest of the chain, and decodes a 200 JSON answer
// into v.
func (g *Gate) subrequest(r *http.Request, cfg *Config, class matrix.Class, rawPath string, now time.Time, next Next, v any) bool {
	u := *r.URL
	u.RawQuery = ""
	if err := setRawPath(&u, rawPath); err != nil {
		return false
	}
	sub := r.Clone(r.Context())
	sub.URL = &u
	sub.RequestURI = u.RequestURI()
	sub.Method = http.MethodGet
	sub.Body, sub.ContentLength = http.NoBody, 0
	sub.Header.Del("Accept-Encoding") // decode the answer here, uncompressed
	rec := httptest.NewRecorder()
	if err := g.admitAndServe(r.Context(), rec, sub, cfg, class, limiter.LaneNormal, now, next); err != nil {
		return false
	}
	if rec.Code != http.StatusOK || rec.Body.Len() > 64<<10 {
		return false
	}
	return json.Unmarshal(rec.Body.Bytes(), v) == nil
}

func setRawPath(u *url.URL, raw string) error {
	p, err := url.PathUnescape(raw)
	if err != nil {
		return err
	}
	u.Path, u.RawPath = p, raw
	return nil
}

// stripTransactionIDs removes unsigned.transaction_id from the events of a
// /state answer: it tells the device that sent an event that this is its
// own, and must not be shown to anyone else. ok is false when the body
// mentions a transaction_id it cannot remove: such an answer is not shared.
func stripTransactionIDs(body []byte) (out []byte, ok bool) {
	if !bytes.Contains(body, []byte(`"transaction_id"`)) {
		return body, true
	}
	var events []map[string]json.RawMessage
	if err := json.Unmarshal(body, &events); err != nil {
		return nil, false
	}
	for _, ev := range events {
		raw, ok := ev["unsigned"]
		if !ok {
			continue
		}
		var unsigned map[string]json.RawMessage
		if json.Unmarshal(raw, &unsigned) != nil {
			return nil, false
		}
		if _, ok := unsigned["transaction_id"]; ok {
			delete(unsigned, "transaction_id")
			ev["unsigned"], _ = json.Marshal(unsigned)
		}
	}
	out, err := json.Marshal(events)
	return out, err == nil
}
