package limiter

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fairListener wraps a loopback listener with lim and accepts in the
// background, as a server does.
type fairListener struct {
	ln       net.Listener
	accepted chan net.Conn
	done     sync.WaitGroup
}

func newFairListener(t *testing.T, lim *ConnLimit) *fairListener {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fairListener{ln: lim.Wrap(raw), accepted: make(chan net.Conn, 64)}
	f.done.Add(1)
	go func() {
		defer f.done.Done()
		for {
			c, err := f.ln.Accept()
			if err != nil {
				return
			}
			f.accepted <- c
		}
	}()
	t.Cleanup(func() {
		f.ln.Close()
		f.done.Wait()
		close(f.accepted)
		for c := range f.accepted {
			c.Close()
		}
	})
	return f
}

// dialFrom connects to f from the loopback address src (127.0.0.x).
func (f *fairListener) dialFrom(t *testing.T, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", f.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next returns the next connection the server accepted.
func (f *fairListener) next(t *testing.T) net.Conn {
	t.Helper()
	select {
	case c := <-f.accepted:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// closedByServer reports whether the server closed c: a read ends with EOF
// (or a reset) instead of blocking until the deadline.
func closedByServer(t *testing.T, c net.Conn) bool {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestConnLimitClientShare(t *testing.T) {
	lim := NewConnLimit(4)
	lim.SetClientShare(0.5) // 2 of 4 per client
	f := newFairListener(t, lim)

	var held []net.Conn
	for range 2 {
		f.dialFrom(t, "127.0.0.1")
		held = append(held, f.next(t))
	}
	// A third from the same address is closed at once; another client's
	// connection is then accepted.
	over := f.dialFrom(t, "127.0.0.1")
	f.dialFrom(t, "127.0.0.2")
	other := f.next(t)
	if got := other.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.2" {
		t.Fatalf("accepted a connection from %s, want the other client's", got)
	}
	if !closedByServer(t, over) {
		t.Error("the connection over the client's share was kept open")
	}
	// The acceptor may already hold the next slot while it waits in the
	// underlying Accept.
	st := lim.Stats()
	if st.Open < 3 || st.Open > 4 || st.PerClientMax != 2 || st.OverShare != 1 {
		t.Errorf("stats %+v, want open 3 (or 4), per-client max 2, 1 closed over share", st)
	}

	// Closing one of the first client's connections gives it room again.
	held[0].Close()
	f.dialFrom(t, "127.0.0.1")
	if c := f.next(t); c.RemoteAddr().(*net.TCPAddr).IP.String() != "127.0.0.1" {
		t.Errorf("after a close, accepted %s, want 127.0.0.1 again", c.RemoteAddr())
	}
}

func TestConnLimitClosesIdleKeepAlivesFirst(t *testing.T) {
	now := time.Unix(1000, 0)
	var clock sync.Mutex
	lim := NewConnLimit(2)
	lim.SetClientShare(1)
	lim.now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	f := newFairListener(t, lim)

	idleClient := f.dialFrom(t, "127.0.0.1")
	idle := f.next(t)
	busyClient := f.dialFrom(t, "127.0.0.1")
	busy := f.next(t)
	lim.ConnState(idle, http.StateActive)
	lim.ConnState(idle, http.StateIdle) // answered, waiting for the next request
	lim.ConnState(busy, http.StateActive)

	// Idle for less than IdleGrace: a new client waits.
	newcomer := f.dialFrom(t, "127.0.0.2")
	select {
	case c := <-f.accepted:
		t.Fatalf("accepted %s while at the cap with no connection idle long enough", c.RemoteAddr())
	case <-time.After(3 * idleRecheck):
	}

	clock.Lock()
	now = now.Add(IdleGrace)
	clock.Unlock()
	// The waiting Accept looks again within idleRecheck: the idle
	// connection is closed and the newcomer accepted; the busy one stays.
	got := f.next(t)
	if got.RemoteAddr().String() != newcomer.LocalAddr().String() {
		t.Fatalf("accepted %s, want the newcomer %s", got.RemoteAddr(), newcomer.LocalAddr())
	}
	if !closedByServer(t, idleClient) {
		t.Error("the idle keep-alive connection was not closed")
	}
	_ = busyClient.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := busyClient.Read(make([]byte, 1)); err == io.EOF {
		t.Error("the busy connection was closed")
	}
	if _, err := busy.Write([]byte("x")); err != nil {
		t.Errorf("the busy connection no longer writes: %v", err)
	}
	if st := lim.Stats(); st.ClosedIdle != 1 || st.Open != 2 {
		t.Errorf("stats %+v, want 1 closed idle and 2 open", st)
	}
}

func TestConnLimitConnStateIgnoresForeignConns(t *testing.T) {
	a, b := NewConnLimit(1), NewConnLimit(1)
	fa := newFairListener(t, a)
	fa.dialFrom(t, "127.0.0.1")
	c := fa.next(t)
	b.ConnState(c, http.StateIdle) // not b's: nothing happens
	if c.(*limitedConn).idleSince.Load() != 0 {
		t.Error("another limit's ConnState marked the connection idle")
	}
	a.ConnState(wrappedConn{c}, http.StateIdle) // found through NetConn, as in *tls.Conn
	if c.(*limitedConn).idleSince.Load() == 0 {
		t.Error("ConnState did not see through the wrapping connection")
	}
}

type wrappedConn struct{ net.Conn }

func (w wrappedConn) NetConn() net.Conn { return w.Conn }

func TestClientOfGroupsIPv6By64(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7:443", "192.0.2.7/32"},
		{"[::ffff:192.0.2.7]:443", "192.0.2.7/32"},
		{"[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:bbbb::9]:80", "2001:db8:1:2::/64"},
		{"[fe80::1%eth0]:80", "fe80::/64"},
	} {
		ap := netip.MustParseAddrPort(tc.addr)
		key, ok := clientOf(net.TCPAddrFromAddrPort(ap))
		if !ok || key.String() != tc.want {
			t.Errorf("clientOf(%s) = %v, %v; want %s", tc.addr, key, ok, tc.want)
		}
	}
	if _, ok := clientOf(&net.UnixAddr{Name: "/run/mx.sock", Net: "unix"}); ok {
		t.Error("a Unix socket address was given a client key")
	}
}
