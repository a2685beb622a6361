package herd

import (
	"github.com/mxgate/mxgate/matrix"

	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is an httptest homeserver counting the requests it serves.
type upstream struct {
	srv   *httptest.Server
	hits  atomic.Int64
	proxy *httputil.ReverseProxy
	tr    *http.Transport
}

func newUpstream(t *testing.T, h http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		h(w, r)
	}))
	target, err := url.Parse(u.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	u.tr = &http.Transport{MaxIdleConnsPerHost: 200}
	u.proxy = &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: u.tr,
		// Stream as the upstream writes, like Caddy's reverse_proxy does for
		// unknown-length bodies.
		FlushInterval: -1,
	}
	t.Cleanup(func() {
		u.tr.CloseIdleConnections()
		u.srv.Close()
	})
	return u
}

// fetch is the Coalescer fetch function proxying to the upstream.
func (u *upstream) fetch(w http.ResponseWriter, r *http.Request) error {
	u.proxy.ServeHTTP(w, r)
	return nil
}

// keyFor is KeyOf with r's own credential, as the gate calls it.
func keyFor(r *http.Request, shared bool) (Key, bool) {
	return KeyOf(r, matrix.ParseCredential(r.Header, r.URL.RawQuery), shared)
}

// gateway is a front server running every request through the Coalescer,
// the way package gate will.
func newGateway(t *testing.T, c *Coalescer, u *upstream, ttl, wait time.Duration, shared bool) (*httptest.Server, *http.Client) {
	t.Helper()
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key, ok := keyFor(r, shared)
		if !ok {
			_ = u.fetch(w, r)
			return
		}
		if outcome, err := c.Do(w, r, key, LeadDetached, ttl, wait, u.fetch); outcome == Abandoned && err != nil {
			http.Error(w, "abandoned", http.StatusTooManyRequests)
		}
	}))
	tr := &http.Transport{MaxIdleConnsPerHost: 200, DisableCompression: true}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		front.Close()
	})
	return front, &http.Client{Transport: tr}
}
