package freeport

import (
	"net"
	"strconv"
	"testing"
)

func TestPortsAreBelowTheEphemeralRangeDistinctAndBindable(t *testing.T) {
	low := ephemeralFrom()
	seen := map[int]bool{}
	for range 50 {
		port, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		if port >= low || port < 1024 {
			t.Fatalf("port %d outside [1024, %d)", port, low)
		}
		if seen[port] {
			t.Fatalf("port %d handed out twice", port)
		}
		seen[port] = true
	}
	addr, err := Loopback()
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("binding %s: %v", addr, err)
	}
	defer l.Close()
	_, p, _ := net.SplitHostPort(addr)
	if n, _ := strconv.Atoi(p); n >= low {
		t.Fatalf("loopback port %d not below %d", n, low)
	}
}
