package e2e

import (
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// switchProbe is a counting reverse proxy between a gateway and a homeserver
// that can be switched off and on again on the same address. Switched off,
// it listens on nothing, so the gateway's dials are refused exactly as while
// the homeserver itself restarts; the test switches it off just before
// stopping the homeserver and on once the homeserver answers again. It
// records when each request to the homeserver began and ended, so a test can
// read the upstream's concurrency over time (ride-through's slow start).
type switchProbe struct {
	addr  string
	proxy *httputil.ReverseProxy

	mu     sync.Mutex
	server *http.Server // nil while off
	served chan struct{}
	spans  []probeSpan
}

// probeSpan is one request as the homeserver saw it.
type probeSpan struct {
	class      string // probeClass, or "" for unclassified requests
	start, end time.Time
}

// newSwitchProbe returns a probe for target on a free loopback address,
// switched off.
func newSwitchProbe(target string) (*switchProbe, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	addrs, err := freeLoopbackAddrs(1)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.Transport = &http.Transport{DisableKeepAlives: true}
	// Switching off cuts requests in flight on purpose; the proxy's
	// complaints about it are noise.
	rp.ErrorLog = log.New(io.Discard, "", 0)
	return &switchProbe{addr: addrs[0], proxy: rp}, nil
}

// on starts listening on the probe's address.
func (p *switchProbe) on() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.server != nil {
		return nil
	}
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(p.serve), ErrorLog: log.New(io.Discard, "", 0)}
	srv.SetKeepAlivesEnabled(false) // no idle connection goroutines outlive a request
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			panic(err) // Serve only fails on a broken listener
		}
	}()
	p.server, p.served = srv, served
	return nil
}

// off closes the listener and every connection at once, as a homeserver
// going away does, and returns once the server goroutine has ended.
func (p *switchProbe) off() {
	p.mu.Lock()
	srv, served := p.server, p.served
	p.server = nil
	p.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
		<-served
	}
}

func (p *switchProbe) serve(w http.ResponseWriter, r *http.Request) {
	span := probeSpan{class: probeClassAll(r), start: time.Now()}
	p.proxy.ServeHTTP(w, r)
	span.end = time.Now()
	p.mu.Lock()
	p.spans = append(p.spans, span)
	p.mu.Unlock()
}

// peakConcurrency returns the most requests of class that were at the
// homeserver at once during [from, to). Requests still running are not
// counted (the probe records a request when it ends).
func (p *switchProbe) peakConcurrency(class string, from, to time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, s := range p.spans {
		if s.class != class || !s.end.After(from) || !s.start.Before(to) {
			continue
		}
		edges = append(edges, edge{maxTime(s.start, from), +1}, edge{s.end, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].at.Equal(edges[j].at) {
			return edges[i].at.Before(edges[j].at)
		}
		return edges[i].delta < edges[j].delta // an end before a start at the same instant
	})
	peak, cur := 0, 0
	for _, e := range edges {
		cur += e.delta
		peak = max(peak, cur)
	}
	return peak
}

// countIn returns how many requests of class started during [from, to).
func (p *switchProbe) countIn(class string, from, to time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.spans {
		if s.class == class && !s.start.Before(from) && s.start.Before(to) {
			n++
		}
	}
	return n
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// probeClassAll extends probeClass with the classes the redeploy traffic
// uses.
func probeClassAll(r *http.Request) string {
	if c := probeClass(r); c != "" {
		return c
	}
	path := r.URL.Path
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(path, "/messages"):
		return "history"
	case r.Method == http.MethodPut && strings.Contains(path, "/send/"):
		return "send"
	}
	return ""
}
