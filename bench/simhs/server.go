package simhs

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// Server is a simulated homeserver. Create it with New, serve it with Start
// (or use it as an http.Handler behind your own listener), and end it with
// Close, which also releases every request still inside it.
type Server struct {
	cfg Config

	db     chan struct{} // the DB connection pool
	lock   chan struct{} // the push-actions table lock
	cpu    *cpu
	events *stream
	bodies [matrix.NumClasses][]byte
	// roomStates are the answers of the rooms in cfg.RoomMembers.
	roomStates map[string]roomState

	slowArmed atomic.Int64 // slow read-marker writes still to come
	stats     counters
	fds       fdCounters

	mu       sync.Mutex
	addr     string
	gen      *generation // current process lifetime; nil before Start
	closed   chan struct{}
	isClosed bool
	handlers sync.WaitGroup // requests inside ServeHTTP
	serving  sync.WaitGroup // Serve goroutines
}

// generation is one lifetime of the process, between a start and a stop.
type generation struct {
	stop   chan struct{} // closed when the process stops; frees every wait
	ln     *fdListener
	srv    *http.Server
	wedged atomic.Bool
}

// New returns a server with cfg (zero fields take their defaults).
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:    cfg,
		db:     make(chan struct{}, cfg.DBPool),
		lock:   make(chan struct{}, 1),
		events: newStream(),
		closed: make(chan struct{}),
		gen:    &generation{stop: make(chan struct{})},
	}
	s.cpu = newCPU(func() float64 {
		return cfg.CPUCores / (1 + cfg.ContentionPerActive*float64(s.stats.current.Load()))
	})
	for c, cost := range cfg.Costs {
		s.bodies[c] = stateEvents(cost.BodyBytes)
	}
	s.roomStates = make(map[string]roomState, len(cfg.RoomMembers))
	for room := range cfg.RoomMembers {
		cost := cfg.StateCost(room)
		s.roomStates[room] = roomState{cost: cost, body: stateEvents(cost.BodyBytes)}
	}
	return s
}

// roomState is what a sized room's state costs and answers.
type roomState struct {
	cost Cost
	body []byte
}

// Config returns the server's effective configuration.
func (s *Server) Config() Config { return s.cfg }

// Start listens on addr (e.g. "127.0.0.1:0") and serves until Close. It
// returns the base URL.
func (s *Server) Start(addr string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed {
		return "", errors.New("simhs: server closed")
	}
	if s.gen.srv != nil {
		return "", errors.New("simhs: already started")
	}
	if err := s.listenLocked(addr); err != nil {
		return "", err
	}
	return "http://" + s.addr, nil
}

// listenLocked starts a new generation on addr. Callers hold mu.
func (s *Server) listenLocked(addr string) error {
	inner, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("simhs: listen: %w", err)
	}
	g := &generation{stop: make(chan struct{}), ln: newFDListener(inner, s.cfg.MaxFDs, &s.fds)}
	g.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	s.gen, s.addr = g, inner.Addr().String()
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		_ = g.srv.Serve(g.ln)
	}()
	return nil
}

// stopLocked ends the current generation: closes the listener and every
// connection and frees every request waiting inside. Callers hold mu.
func (s *Server) stopLocked() {
	g := s.gen
	select {
	case <-g.stop:
		return
	default:
	}
	close(g.stop)
	if g.srv != nil {
		_ = g.srv.Close()
		_ = g.ln.Close()
	}
}

// Restart models a redeploy: the process stops (listener closed, open
// connections reset, work in progress lost), connections are refused for
// down (model time), and it comes back on the same address. It blocks for
// the down time, or until Close.
func (s *Server) Restart(down time.Duration) error {
	s.mu.Lock()
	if s.isClosed || s.gen.srv == nil {
		s.mu.Unlock()
		return errors.New("simhs: not running")
	}
	s.stopLocked()
	s.stats.restarts.Add(1)
	s.mu.Unlock()

	t := time.NewTimer(s.cfg.real(down))
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.closed:
		return errors.New("simhs: closed while down")
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed {
		return errors.New("simhs: closed while down")
	}
	return s.listenLocked(s.addr)
}

// Close stops the server and waits (bounded) for every request inside it to
// leave. Work in progress is abandoned.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.isClosed {
		s.mu.Unlock()
		return nil
	}
	s.isClosed = true
	close(s.closed)
	s.stopLocked()
	s.mu.Unlock()
	s.cpu.close()

	done := make(chan struct{})
	go func() {
		s.handlers.Wait()
		s.serving.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("simhs: requests still running 10s after close")
	}
}

// ArmSlowWrites makes the next n read-marker/receipt writes slow: each holds
// a DB connection and the table lock for SlowWriteHold, as a catch-up after
// months away clears millions of push actions.
func (s *Server) ArmSlowWrites(n int) { s.slowArmed.Add(int64(n)) }

// enterHandler registers a request with Close's wait group and returns the
// generation serving now, or nil once Close has begun (registering then
// would race with Close's Wait).
func (s *Server) enterHandler() *generation {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed {
		return nil
	}
	s.handlers.Add(1)
	return s.gen
}

// sleep waits d of model time, or until stop. It reports whether it slept
// the full time.
func (s *Server) sleep(ctx context.Context, d time.Duration, stop <-chan struct{}) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(s.cfg.real(d))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	case <-ctx.Done():
		return false
	}
}
