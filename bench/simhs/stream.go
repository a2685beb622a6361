package simhs

import "sync"

// stream is the server's event stream position. Long-polling /sync requests
// wait on it; every send advances it and wakes them (all simulated users are
// joined to every room, so every send concerns every syncing client).
type stream struct {
	mu   sync.Mutex
	pos  int64
	wake chan struct{}
}

func newStream() *stream { return &stream{wake: make(chan struct{})} }

// since returns the current position and a channel closed at the next event.
func (s *stream) since() (int64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pos, s.wake
}

// advance records one new event and wakes every waiter.
func (s *stream) advance() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pos++
	close(s.wake)
	s.wake = make(chan struct{})
	return s.pos
}
