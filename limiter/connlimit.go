package limiter

import (
	"net"
	"sync"
)

// ConnLimit caps how many connections are open at once over every listener
// it wraps. At the cap, Accept does not accept: it waits until a connection
// closes, so further clients wait in the kernel's listen backlog instead of
// costing this process a file descriptor (and the backlog, once full, makes
// the kernel refuse them cleanly). It is safe for concurrent use.
type ConnLimit struct {
	mu   sync.Mutex
	max  int
	open int
	peak int
	wake chan struct{} // closed (and replaced) whenever a slot may have freed
}

// NewConnLimit returns a limit of n open connections; n < 1 means 1.
func NewConnLimit(n int) *ConnLimit {
	return &ConnLimit{max: max(n, 1), wake: make(chan struct{})}
}

// SetMax changes the cap (a config reload). Lowering it closes nothing:
// Accept waits until enough connections have closed.
func (c *ConnLimit) SetMax(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.max = max(n, 1)
	c.wakeLocked()
}

// ConnStats is a ConnLimit's state.
type ConnStats struct {
	Open int `json:"open"`
	Max  int `json:"max"`
	Peak int `json:"peak"` // the most connections open at once so far
}

// Stats returns the current counts.
func (c *ConnLimit) Stats() ConnStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConnStats{Open: c.open, Max: c.max, Peak: c.peak}
}

// Wrap returns ln limited by c. Closing the returned listener ends any
// Accept waiting for a slot with net.ErrClosed.
func (c *ConnLimit) Wrap(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, lim: c, closed: make(chan struct{})}
}

func (c *ConnLimit) acquire(closed <-chan struct{}) error {
	for {
		c.mu.Lock()
		if c.open < c.max {
			c.open++
			c.peak = max(c.peak, c.open)
			c.mu.Unlock()
			return nil
		}
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-wake:
		case <-closed:
			return net.ErrClosed
		}
	}
}

func (c *ConnLimit) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	c.wakeLocked()
}

func (c *ConnLimit) wakeLocked() {
	close(c.wake)
	c.wake = make(chan struct{})
}

type limitedListener struct {
	net.Listener
	lim       *ConnLimit
	closed    chan struct{}
	closeOnce sync.Once
}

// Accept takes a slot first, then a connection, so that at the cap no
// connection is taken from the backlog.
func (l *limitedListener) Accept() (net.Conn, error) {
	if err := l.lim.acquire(l.closed); err != nil {
		return nil, err
	}
	conn, err := l.Listener.Accept()
	if err != nil {
		l.lim.release()
		return nil, err
	}
	return &limitedConn{Conn: conn, lim: l.lim}, nil
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	lim     *ConnLimit
	release sync.Once
}

// Close frees the connection's slot exactly once, however often it is
// called.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release.Do(c.lim.release)
	return err
}

// FDBudget splits a process's file descriptor limit between client
// connections, upstream connections and a reserve for everything else
// (log files, certificates, the admin endpoint, DNS).
type FDBudget struct {
	Limit    uint64 `json:"limit"` // RLIMIT_NOFILE (soft) the budget was derived from
	Reserve  int    `json:"reserve"`
	Clients  int    `json:"clients"`
	Upstream int    `json:"upstream"`
}

// fdReserve is kept back for files, logs and the admin endpoint.
const fdReserve = 256

// maxBudgetedFDs bounds the split for "unlimited" descriptor limits.
const maxBudgetedFDs = 1 << 20

// BudgetFromFDLimit derives the default caps from the soft RLIMIT_NOFILE:
// after a reserve of 256 (or half of a tiny limit), three quarters go to
// client connections and the rest to upstream connections. Every admitted
// request needs one of each, and clients also hold idle keep-alives and
// queued requests, hence the larger share.
func BudgetFromFDLimit(soft uint64) FDBudget {
	n := min(soft, maxBudgetedFDs)
	reserve := uint64(fdReserve)
	if n < 2*reserve {
		reserve = n / 2
	}
	usable := int(n - reserve)
	clients := max(usable*3/4, 1)
	return FDBudget{Limit: soft, Reserve: int(reserve), Clients: clients, Upstream: max(usable-clients, 1)}
}
