package simhs

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// ServeHTTP serves one request through the model: classify, (long-poll wait
// for /sync), DB pool, table lock, shared CPU, answer. The DB and CPU phases
// deliberately ignore the client's context: like Synapse, the server keeps
// working for a client that has already given up, and counts that as waste.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g := s.enterHandler()
	if g == nil {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.handlers.Done()

	route := matrix.Classify(r.Method, r.URL.EscapedPath(), r.URL.RawQuery)
	class := route.Class
	s.stats.enter(class)
	defer s.stats.leave(class)

	if s.checkWedged(g) {
		// Wedged solid: the request is accepted and never answered.
		select {
		case <-r.Context().Done():
		case <-g.stop:
		}
		return
	}

	var pos int64
	if class == matrix.Sync {
		var ok bool
		if pos, ok = s.longPoll(r, g.stop); !ok {
			return
		}
	}

	cost, body := s.cfg.Costs[class], s.bodies[class]
	if isWhoami(r.URL.Path) {
		cost = whoamiCost
	}
	if class == matrix.RoomState {
		if room, err := url.PathUnescape(route.Room); err == nil {
			if rs, ok := s.roomStates[room]; ok {
				cost, body = rs.cost, rs.body
			}
		}
	}
	hold := cost.DB
	slow := class == matrix.Receipts && s.takeSlowWrite()
	if slow {
		hold = s.cfg.SlowWriteHold
	}
	if !s.useDB(hold, cost.Lock || slow, g.stop) {
		return
	}
	if slow {
		s.stats.lastSlowEnd.Store(time.Now().UnixNano())
	}
	if class == matrix.Send {
		pos = s.events.advance()
	}
	s.cpu.run(s.cfg.real(cost.CPU), g.stop)
	select {
	case <-g.stop:
		return // the process died before answering
	default:
	}

	work := hold + cost.CPU
	if r.Context().Err() != nil {
		s.stats.complete(work, true)
		return
	}
	s.stats.complete(work, false)
	s.answer(w, r, class, body, pos)
}

// checkWedged reports whether the process is wedged, wedging it if it has
// been out of file descriptors for longer than WedgeAfter.
func (s *Server) checkWedged(g *generation) bool {
	if g.wedged.Load() {
		return true
	}
	if g.ln != nil && g.ln.exhaustedFor() > s.cfg.real(s.cfg.WedgeAfter) {
		g.wedged.Store(true)
		s.stats.wedges.Add(1)
		return true
	}
	return false
}

// takeSlowWrite consumes one armed slow write, if any.
func (s *Server) takeSlowWrite() bool {
	for {
		n := s.slowArmed.Load()
		if n <= 0 {
			return false
		}
		if s.slowArmed.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// longPoll waits, holding no DB connection, until the stream moves past the
// request's since token or its timeout passes. An idle long-poll is dropped
// when its client leaves. It returns the position to answer with and false
// if there is nobody left to answer.
func (s *Server) longPoll(r *http.Request, stop <-chan struct{}) (int64, bool) {
	q := r.URL.Query()
	since, _ := strconv.ParseInt(strings.TrimPrefix(q.Get("since"), "s"), 10, 64)
	timeout := s.cfg.SyncTimeout
	if ms, err := strconv.ParseInt(q.Get("timeout"), 10, 64); err == nil && ms >= 0 {
		timeout = min(time.Duration(ms)*time.Millisecond, s.cfg.MaxSyncTimeout)
	}
	pos, wake := s.events.since()
	if pos > since {
		return pos, true
	}
	t := time.NewTimer(s.cfg.real(timeout))
	defer t.Stop()
	select {
	case <-wake:
		pos, _ = s.events.since()
		return pos, true
	case <-t.C:
		return pos, true
	case <-r.Context().Done():
		return 0, false
	case <-stop:
		return 0, false
	}
}

// useDB takes a pool connection (and the table lock if needed) and holds it
// for hold. Waiting is not cancelled by the client going away, only by the
// process stopping; it reports false then.
func (s *Server) useDB(hold time.Duration, needLock bool, stop <-chan struct{}) bool {
	if hold <= 0 && !needLock {
		return true
	}
	select {
	case s.db <- struct{}{}:
	case <-stop:
		return false
	}
	defer func() { <-s.db }()
	if needLock {
		// The transaction waits for the lock while holding its connection:
		// this is how a few slow writes drain the whole pool.
		select {
		case s.lock <- struct{}{}:
		case <-stop:
			return false
		}
		defer func() { <-s.lock }()
	}
	return s.sleep(context.Background(), hold, stop)
}

// answer writes the class's JSON answer around body.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, class matrix.Class, body []byte, pos int64) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case strings.HasSuffix(r.URL.Path, "/versions"):
		_, _ = w.Write([]byte(`{"versions":["v1.11","v1.12"]}`))
	case class == matrix.Sync || class == matrix.SyncInitial:
		if pos == 0 {
			pos, _ = s.events.since()
		}
		fmt.Fprintf(w, `{"next_batch":"s%d","rooms":{"join":{"!big:sim.test":{"state":{"events":`, pos)
		_, _ = w.Write(body)
		_, _ = w.Write([]byte(`}}}}}`))
	case class == matrix.Send:
		fmt.Fprintf(w, `{"event_id":"$sim%d"}`, pos)
	case class == matrix.RoomState:
		_, _ = w.Write(body)
	case isWhoami(r.URL.Path):
		fmt.Fprintf(w, `{"user_id":%q}`, userOf(r))
	case strings.Contains(r.URL.Path, "/state/m.room.member/"):
		// Every simulated user is joined to every room.
		_, _ = w.Write([]byte(`{"membership":"join"}`))
	default:
		_, _ = w.Write([]byte(`{"chunk":`))
		_, _ = w.Write(body)
		_, _ = w.Write([]byte(`}`))
	}
}

// whoamiCost is what /account/whoami costs: a token lookup Synapse caches,
// not the Auth class's password hashing.
var whoamiCost = Cost{DB: time.Millisecond, CPU: time.Millisecond, BodyBytes: 64}

func isWhoami(path string) bool { return strings.HasSuffix(path, "/account/whoami") }

// userOf is the user a request's access token belongs to: one user per
// token, named after it.
func userOf(r *http.Request) string {
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	return "@" + token + ":sim.test"
}
