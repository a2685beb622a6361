package limiter

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// waitGoroutines fails t unless the goroutine count falls back to base
// within a bounded time.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines leaked: %d > %d", runtime.NumGoroutine(), base)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestConnLimitHoldsConnectionsInBacklog(t *testing.T) {
	base := runtime.NumGoroutine()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := NewConnLimit(3)
	lim.SetClientShare(1) // every client dials from 127.0.0.1
	ln := lim.Wrap(raw)

	accepted := make(chan net.Conn, 16)
	var serving sync.WaitGroup
	serving.Add(1)
	go func() {
		defer serving.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()

	const clients = 10
	var dialed []net.Conn
	for range clients {
		c, err := net.Dial("tcp", ln.Addr().String()) // completes in the kernel backlog
		if err != nil {
			t.Fatal(err)
		}
		dialed = append(dialed, c)
	}

	// Serve every client one at a time as slots free: the limit must never
	// let more than 3 be open, and every client must get its turn.
	var held []net.Conn
	for served := 0; served < clients; served++ {
		var c net.Conn
		select {
		case c = <-accepted:
		case <-time.After(10 * time.Second):
			t.Fatalf("client %d never accepted", served)
		}
		held = append(held, c)
		if st := lim.Stats(); st.Open > 3 {
			t.Fatalf("%d connections open, cap is 3", st.Open)
		}
		if len(held) == 3 {
			held[0].Close()
			held[0].Close() // a second Close must not free a second slot
			held = held[1:]
		}
	}
	// The acceptor may already hold the next slot while it waits in the
	// underlying Accept for a client that is not coming.
	if st := lim.Stats(); st.Peak != 3 || st.Open < len(held) || st.Open > len(held)+1 {
		t.Errorf("stats %+v, want peak 3 and open %d or %d", st, len(held), len(held)+1)
	}

	// Closing the listener ends the waiting Accept and frees its slot.
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	serving.Wait()
	for _, c := range append(held, dialed...) {
		c.Close()
	}
	if st := lim.Stats(); st.Open != 0 {
		t.Errorf("%d slots held after every connection closed", st.Open)
	}
	waitGoroutines(t, base)
}

func TestConnLimitAcceptEndsOnClose(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := NewConnLimit(1)
	ln := lim.Wrap(raw)
	// Take the only slot.
	c1, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	s1, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()

	errc := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		errc <- err
	}()
	ln.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
}

func TestConnLimitSetMaxWakesAccept(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lim := NewConnLimit(1)
	lim.SetClientShare(1) // both clients dial from 127.0.0.1
	ln := lim.Wrap(raw)
	defer ln.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 2 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	first, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conns = append(conns, first)
	got := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			got <- c
		}
		close(got)
	}()
	lim.SetMax(2) // the waiting Accept may now take the second client
	select {
	case c, ok := <-got:
		if !ok {
			t.Fatal("Accept failed after raising the cap")
		}
		conns = append(conns, c)
	case <-time.After(10 * time.Second):
		t.Fatal("raising the cap did not wake Accept")
	}
	if st := lim.Stats(); st.Open != 2 || st.Max != 2 {
		t.Errorf("stats %+v, want open 2 max 2", st)
	}
}

func TestBudgetFromFDLimit(t *testing.T) {
	for _, tc := range []struct {
		soft                       uint64
		reserve, clients, upstream int
	}{
		{1024, 256, 576, 192},
		{65536, 256, 48960, 16320},
		{256, 128, 96, 32},
		{2, 1, 1, 1},
		{^uint64(0), 256, (maxBudgetedFDs - 256) * 3 / 4, (maxBudgetedFDs - 256) - (maxBudgetedFDs-256)*3/4},
	} {
		b := BudgetFromFDLimit(tc.soft)
		if b.Reserve != tc.reserve || b.Clients != tc.clients || b.Upstream != tc.upstream || b.Limit != tc.soft {
			t.Errorf("BudgetFromFDLimit(%d) = %+v, want reserve %d clients %d upstream %d",
				tc.soft, b, tc.reserve, tc.clients, tc.upstream)
		}
		if tc.soft > 2 && uint64(b.Reserve+b.Clients+b.Upstream) > tc.soft {
			t.Errorf("BudgetFromFDLimit(%d) = %+v exceeds the limit", tc.soft, b)
		}
	}
}

func TestFDLimitReadable(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("RLIMIT_NOFILE checked on linux only")
	}
	soft, ok := FDLimit()
	if !ok || soft == 0 {
		t.Fatalf("FDLimit() = %d, %v", soft, ok)
	}
}
