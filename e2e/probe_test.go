package e2e

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
)

// upstreamProbe is a transparent reverse proxy between a gateway and a homeserver
// that records, per capped class, how many requests it saw and the most it
// saw in flight at once: the homeserver's view of whether mxgate's cap held
// and whether coalescing saved it work.
type upstreamProbe struct {
	server *httptest.Server

	mu      sync.Mutex
	current map[string]int // keyed by probeClass result; two keys at most
	peak    map[string]int
	total   map[string]int
}

// newUpstreamProbe starts the probe on a loopback port in front of target.
func newUpstreamProbe(target string) (*upstreamProbe, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, err
	}
	p := &upstreamProbe{current: map[string]int{}, peak: map[string]int{}, total: map[string]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.Transport = &http.Transport{DisableKeepAlives: true} // see SetKeepAlivesEnabled below
	p.server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		class := probeClass(r)
		if class != "" {
			p.enter(class)
			defer p.leave(class)
		}
		rp.ServeHTTP(w, r)
	}))
	// One connection per request, on both sides: no idle keep-alive
	// goroutines linger in the test process (the leak checks count them).
	p.server.Config.SetKeepAlivesEnabled(false)
	p.server.Start()
	return p, nil
}

// hostPort is the probe's listen address, for a Caddyfile upstream.
func (p *upstreamProbe) hostPort() string { return strings.TrimPrefix(p.server.URL, "http://") }

func (p *upstreamProbe) enter(class string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current[class]++
	p.total[class]++
	p.peak[class] = max(p.peak[class], p.current[class])
}

func (p *upstreamProbe) leave(class string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.current[class]--
}

// reset forgets earlier peaks and totals so a test measures only its own
// traffic.
func (p *upstreamProbe) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.peak)
	clear(p.total)
}

// totalOf returns how many class requests reached the upstream since the
// last reset.
func (p *upstreamProbe) totalOf(class string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total[class]
}

// peakOf returns the highest concurrency seen for class since the last reset.
func (p *upstreamProbe) peakOf(class string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak[class]
}

// probeClass names the two classes the herd test caps, by the Matrix spec's
// own rules and independently of mxgate's classifier.
func probeClass(r *http.Request) string {
	if r.Method != http.MethodGet {
		return ""
	}
	path := r.URL.Path
	switch {
	case strings.HasSuffix(path, "/sync") && strings.HasPrefix(path, "/_matrix/client/"):
		q := r.URL.Query()
		if q.Get("since") == "" || q.Get("full_state") == "true" {
			return "sync_initial"
		}
	case strings.Contains(path, "/rooms/") &&
		(strings.HasSuffix(path, "/state") || strings.HasSuffix(path, "/members") || strings.HasSuffix(path, "/joined_members")):
		return "room_state"
	}
	return ""
}
