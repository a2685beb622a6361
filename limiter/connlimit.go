package limiter

import (
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ConnLimit caps how many connections are open at once over every listener
// it wraps, and keeps the cap fair between clients. It is safe for
// concurrent use.
//
//   - At the cap, Accept does not accept: it waits until a connection
//     closes, so further clients wait in the kernel's listen backlog instead
//     of costing this process a file descriptor (and the backlog, once full,
//     makes the kernel refuse them cleanly).
//   - Under that pressure, idle keep-alive connections go first: before
//     waiting, Accept closes the connections that have been idle the longest
//     (at least IdleGrace), since a client waiting to connect is worth more
//     than a connection nobody uses. Idleness is what the HTTP server reports
//     through ConnState; without it no connection counts as idle.
//   - No client — one IPv4 address, or one IPv6 /64, which one host can fill
//     with addresses — holds more than its share of the cap
//     (SetClientShare): a connection beyond it is closed as soon as it is
//     accepted, so a single address opening slow connections leaves the rest
//     of the cap to everyone else. Connections without an IP address (Unix
//     sockets) are not counted per client.
type ConnLimit struct {
	mu         sync.Mutex
	max        int
	share      float64
	open       int
	peak       int
	perClient  map[netip.Prefix]int
	conns      map[*limitedConn]struct{}
	wake       chan struct{} // closed (and replaced) whenever a slot may have freed
	overShare  uint64
	closedIdle uint64
	now        func() time.Time // replaced in tests
}

// DefaultClientShare is the largest share of the cap one client holds
// unless SetClientShare says otherwise.
const DefaultClientShare = 0.5

// IdleGrace is how long a connection must have been idle before pressure
// closes it: a client that was just answered is likely to send its next
// request (a /sync loop does at once), and closing under it would race
// with that request.
const IdleGrace = time.Second

// idleRecheck is how often an Accept waiting at the cap looks again for
// connections that have become idle meanwhile (becoming idle wakes
// nobody, to keep the request path free of the limit's lock).
const idleRecheck = 250 * time.Millisecond

// NewConnLimit returns a limit of n open connections (n < 1 means 1) with
// DefaultClientShare.
func NewConnLimit(n int) *ConnLimit {
	return &ConnLimit{max: max(n, 1), share: DefaultClientShare, perClient: make(map[netip.Prefix]int),
		conns: make(map[*limitedConn]struct{}), wake: make(chan struct{}), now: time.Now}
}

// SetMax changes the cap (a config reload). Lowering it closes nothing:
// Accept waits until enough connections have closed.
func (c *ConnLimit) SetMax(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.max = max(n, 1)
	c.wakeLocked()
}

// SetClientShare sets the largest share of the cap one client may hold, in
// (0, 1]; 1 turns the per-client limit off (behind a proxy every connection
// comes from the proxy's address). Values outside the range mean 1. A client
// holds at least one connection whatever the share.
func (c *ConnLimit) SetClientShare(share float64) {
	if !(share > 0 && share < 1) {
		share = 1
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.share = share
}

// ConnStats is a ConnLimit's state.
type ConnStats struct {
	Open int `json:"open"`
	Max  int `json:"max"`
	Peak int `json:"peak"` // the most connections open at once so far
	// PerClientMax is the most one client address (IPv6: /64) may hold.
	PerClientMax int `json:"per_client_max"`
	// OverShare counts connections closed at accept because their client
	// already held PerClientMax.
	OverShare uint64 `json:"closed_over_share"`
	// ClosedIdle counts idle keep-alive connections closed to make room.
	ClosedIdle uint64 `json:"closed_idle"`
}

// Stats returns the current counts.
func (c *ConnLimit) Stats() ConnStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConnStats{Open: c.open, Max: c.max, Peak: c.peak, PerClientMax: c.perClientMaxLocked(),
		OverShare: c.overShare, ClosedIdle: c.closedIdle}
}

func (c *ConnLimit) perClientMaxLocked() int {
	return max(1, int(c.share*float64(c.max)))
}

// Wrap returns ln limited by c. Closing the returned listener ends any
// Accept waiting for a slot with net.ErrClosed.
func (c *ConnLimit) Wrap(ln net.Listener) net.Listener {
	return &limitedListener{Listener: ln, lim: c, closed: make(chan struct{})}
}

// ConnState is an http.Server ConnState hook: it tells the limit which of
// its connections are idle keep-alives. conn may be the limit's own
// connection or one wrapping it (a *tls.Conn); others are ignored.
func (c *ConnLimit) ConnState(conn net.Conn, state http.ConnState) {
	lc := c.own(conn)
	if lc == nil {
		return
	}
	switch state {
	case http.StateIdle:
		lc.idleSince.Store(c.now().UnixNano())
	case http.StateActive, http.StateHijacked:
		lc.idleSince.Store(0)
	}
}

// own finds c's connection inside conn, unwrapping TLS.
func (c *ConnLimit) own(conn net.Conn) *limitedConn {
	for conn != nil {
		if lc, ok := conn.(*limitedConn); ok {
			if lc.lim != c {
				return nil
			}
			return lc
		}
		u, ok := conn.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		conn = u.NetConn()
	}
	return nil
}

// acquire takes a slot, closing idle connections to make one at the cap.
func (c *ConnLimit) acquire(closed <-chan struct{}) error {
	var recheck *time.Timer
	defer func() {
		if recheck != nil {
			recheck.Stop()
		}
	}()
	for {
		c.mu.Lock()
		if c.open < c.max {
			c.open++
			c.peak = max(c.peak, c.open)
			c.mu.Unlock()
			return nil
		}
		victims := c.idleVictimsLocked()
		c.closedIdle += uint64(len(victims))
		wake := c.wake
		c.mu.Unlock()
		for _, v := range victims {
			_ = v.Close() // frees its slot (release) before returning
		}
		if len(victims) > 0 {
			continue
		}
		if recheck == nil {
			recheck = time.NewTimer(idleRecheck)
		} else {
			recheck.Reset(idleRecheck)
		}
		select {
		case <-wake:
		case <-recheck.C:
		case <-closed:
			return net.ErrClosed
		}
	}
}

// idleVictimsLocked picks the connections idle longest, at least IdleGrace,
// to close for room: a batch of a sixty-fourth of the cap, so that a burst
// of new clients does not rescan every connection for each one.
func (c *ConnLimit) idleVictimsLocked() []*limitedConn {
	cutoff := c.now().Add(-IdleGrace).UnixNano()
	var idle []*limitedConn
	for lc := range c.conns {
		if since := lc.idleSince.Load(); since != 0 && since <= cutoff {
			idle = append(idle, lc)
		}
	}
	slices.SortFunc(idle, func(a, b *limitedConn) int {
		x, y := a.idleSince.Load(), b.idleSince.Load()
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
	return idle[:min(len(idle), max(1, c.max/64))]
}

// admit registers conn, or reports false if its client is over its share.
func (c *ConnLimit) admit(lc *limitedConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if lc.counted {
		if c.perClient[lc.client] >= c.perClientMaxLocked() {
			c.overShare++
			return false
		}
		c.perClient[lc.client]++
	}
	c.conns[lc] = struct{}{}
	return true
}

// release frees a slot; lc, if not nil, was admitted and leaves.
func (c *ConnLimit) release(lc *limitedConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open--
	if lc != nil {
		delete(c.conns, lc)
		if lc.counted {
			if n := c.perClient[lc.client] - 1; n > 0 {
				c.perClient[lc.client] = n
			} else {
				delete(c.perClient, lc.client)
			}
		}
	}
	c.wakeLocked()
}

func (c *ConnLimit) wakeLocked() {
	close(c.wake)
	c.wake = make(chan struct{})
}

// clientOf is the per-client key of addr: the IPv4 address, or the /64 of
// an IPv6 one. ok is false for addresses without an IP.
func clientOf(addr net.Addr) (key netip.Prefix, ok bool) {
	var ip netip.Addr
	switch a := addr.(type) {
	case *net.TCPAddr:
		ip, ok = netip.AddrFromSlice(a.IP)
	default:
		if ap, err := netip.ParseAddrPort(addr.String()); err == nil {
			ip, ok = ap.Addr(), true
		}
	}
	if !ok {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	key, err := ip.WithZone("").Prefix(bits)
	return key, err == nil
}

type limitedListener struct {
	net.Listener
	lim       *ConnLimit
	closed    chan struct{}
	closeOnce sync.Once
}

// Accept takes a slot first, then a connection, so that at the cap no
// connection is taken from the backlog. A connection whose client is over
// its share is closed at once and the next one accepted.
func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		if err := l.lim.acquire(l.closed); err != nil {
			return nil, err
		}
		conn, err := l.Listener.Accept()
		if err != nil {
			l.lim.release(nil)
			return nil, err
		}
		lc := &limitedConn{Conn: conn, lim: l.lim}
		if conn.RemoteAddr() != nil {
			lc.client, lc.counted = clientOf(conn.RemoteAddr())
		}
		if l.lim.admit(lc) {
			return lc, nil
		}
		_ = conn.Close()
		l.lim.release(nil)
	}
}

func (l *limitedListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	lim       *ConnLimit
	client    netip.Prefix
	counted   bool         // client is an IP address, counted per client
	idleSince atomic.Int64 // Unix ns when the server last reported it idle; 0: not idle
	release   sync.Once
}

// Close frees the connection's slot exactly once, however often it is
// called.
func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release.Do(func() { c.lim.release(c) })
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
