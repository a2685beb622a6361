package simhs

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// fdListener models a process with a file-descriptor limit. Each open client
// connection holds one descriptor until it is closed. At the limit Accept
// stops taking connections (they wait in the kernel's backlog, as when
// accept() fails with EMFILE and the server retries), and the listener
// remembers since when it has been exhausted so the server can wedge.
type fdListener struct {
	net.Listener
	slots  chan struct{}
	closed chan struct{}
	once   sync.Once

	cnt       *fdCounters
	fullSince atomic.Int64 // unix nanos since the limit was hit; 0 = not exhausted
}

// fdCounters outlive one listener, so that a restart does not reset peaks.
type fdCounters struct {
	open, peak, acceptErrors atomic.Int64
}

func newFDListener(inner net.Listener, maxFDs int, cnt *fdCounters) *fdListener {
	return &fdListener{Listener: inner, slots: make(chan struct{}, maxFDs), closed: make(chan struct{}), cnt: cnt}
}

// Accept waits for a free descriptor, then accepts.
func (l *fdListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	default:
		// Out of handles: a real accept() fails with EMFILE here.
		l.cnt.acceptErrors.Add(1)
		l.fullSince.CompareAndSwap(0, time.Now().UnixNano())
		select {
		case l.slots <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	raise(&l.cnt.peak, l.cnt.open.Add(1))
	return &fdConn{Conn: c, l: l}, nil
}

// Close stops accepting; open connections keep their descriptors until closed.
func (l *fdListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// exhaustedFor is how long the listener has been continuously near its limit.
func (l *fdListener) exhaustedFor() time.Duration {
	fs := l.fullSince.Load()
	if fs == 0 {
		return 0
	}
	return time.Since(time.Unix(0, fs))
}

func (l *fdListener) release() {
	<-l.slots
	l.cnt.open.Add(-1)
	// Exhaustion ends only when the process has real headroom again, not
	// when one descriptor frees and is taken at once by the backlog.
	if len(l.slots) < cap(l.slots)*9/10 {
		l.fullSince.Store(0)
	}
}

type fdConn struct {
	net.Conn
	l    *fdListener
	once sync.Once
}

func (c *fdConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.release)
	return err
}
