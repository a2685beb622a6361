// Package freeport hands tests and the bench ports for servers they start in
// another process or by address (Caddy, Synapse, Redis, nginx), where a
// listener cannot be passed over and the port is bound again a moment later.
//
// A port asked from the kernel with port 0 is the wrong choice there: it
// comes from the ephemeral range, from which the kernel also picks the local
// port of every outgoing connection, so between the check and the child's
// bind a connection of a package running in parallel can take it
// ("bind: address already in use"). The ports handed out here lie below that
// range, are free on every interface when chosen, and are never handed out
// twice by one process.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// span is how many ports below the ephemeral range are drawn from; random
// draws from it make two test processes choosing at once unlikely to meet.
const span = 10000

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Port returns a TCP port free on every interface right now, below the
// kernel's ephemeral range, not returned before by this process.
func Port() (int, error) {
	low := ephemeralFrom()
	width := min(low-1024, span)
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		port := low - 1 - rand.IntN(width)
		if handed[port] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", port))
		if err != nil {
			continue
		}
		l.Close()
		handed[port] = true
		return port, nil
	}
	return 0, fmt.Errorf("freeport: no free port in [%d, %d) after 200 tries", low-width, low)
}

// Loopback returns "127.0.0.1:PORT" with a port from Port.
func Loopback() (string, error) {
	port, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil
}

// ephemeralFrom returns the lowest port the kernel hands out for port 0 and
// outgoing connections (Linux's ip_local_port_range; 32768 where it cannot
// be read).
func ephemeralFrom() int {
	const fallback = 32768
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return fallback
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return fallback
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil || low <= 2048 {
		return fallback
	}
	return low
}
