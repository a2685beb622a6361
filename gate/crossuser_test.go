package gate

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/hsmodel"
)

// whoUpstream answers every request with who the given homeserver model
// thinks sent it, holding each answer until release is closed so that
// requests the gate might coalesce are in flight together.
type whoUpstream struct {
	model   hsmodel.Model
	release chan struct{}
	arrived atomic.Int64
}

func (u *whoUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.arrived.Add(1)
	<-u.release
	a := u.model.Attrib(r.Header, r.URL.RawQuery)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate") // as Synapse
	_ = json.NewEncoder(w).Encode(a)
}

// Two users asking for the same resource at the same moment, each in any
// form a homeserver accepts, each get the answer for themselves: never the
// other's, never the anonymous one.
func TestConcurrentCredentialsNeverShareAnAnswer(t *testing.T) {
	forms := []struct {
		name string
		set  func(r *http.Request, tok string)
	}{
		{"header", func(r *http.Request, tok string) { r.Header.Set("Authorization", "Bearer "+tok) }},
		{"query", func(r *http.Request, tok string) { r.URL.RawQuery += "&access_token=" + tok }},
		{"encoded name", func(r *http.Request, tok string) { r.URL.RawQuery += "&%61ccess_token=" + tok }},
		{"encoded underscore", func(r *http.Request, tok string) { r.URL.RawQuery += "&access%5Ftoken=" + tok }},
		{"encoded value", func(r *http.Request, tok string) {
			r.URL.RawQuery += "&access_token=" + fmt.Sprintf("%%%02X", tok[0]) + tok[1:]
		}},
		{"basic plus query", func(r *http.Request, tok string) {
			r.Header.Set("Authorization", "Basic Zm9vOmJhcg==")
			r.URL.RawQuery += "&access_token=" + tok
		}},
		{"anonymous", func(*http.Request, string) {}},
	}
	paths := []string{
		"/_matrix/client/v3/rooms/%21private%3Ax/state",
		"/_matrix/client/v3/rooms/%21private%3Ax/messages?dir=b",
		"/_matrix/client/v3/sync",
		"/_matrix/media/v3/download/x/abc",
		"/_matrix/client/versions",
	}
	for _, model := range hsmodel.Models {
		t.Run(model.Name, func(t *testing.T) {
			cfg := DefaultConfig()
			for c := range cfg.Classes {
				cfg.Classes[c].Rate = 0 // the test repeats users on purpose
			}
			g := newTestGate(t, cfg, Options{})
			up := &whoUpstream{model: model}
			h := g.Middleware(up)
			for _, path := range paths {
				// One round: alice and bob in every pair of forms, at once.
				type call struct {
					rec  *httptest.ResponseRecorder
					req  *http.Request
					want hsmodel.Attribution
				}
				var calls []call
				for _, fa := range forms {
					for _, user := range []string{"alice", "bob"} {
						r := httptest.NewRequest(http.MethodGet, path, nil)
						if r.URL.RawQuery == "" {
							r.URL.RawQuery = "x=1"
						}
						fa.set(r, user)
						r.RequestURI = r.URL.RequestURI()
						calls = append(calls, call{rec: httptest.NewRecorder(), req: r, want: model.Attrib(r.Header, r.URL.RawQuery)})
					}
				}
				up.release = make(chan struct{})
				up.arrived.Store(0)
				var wg sync.WaitGroup
				for _, c := range calls {
					wg.Add(1)
					go func() {
						defer wg.Done()
						h.ServeHTTP(c.rec, c.req)
					}()
				}
				// Release once arrivals settle: the assertion below holds for
				// any interleaving, the hold only makes overlap likely.
				waitSettled(t, &up.arrived)
				close(up.release)
				wg.Wait()
				for _, c := range calls {
					if c.rec.Code != http.StatusOK {
						t.Fatalf("%s %s: %d %s", path, c.req.URL.RawQuery, c.rec.Code, c.rec.Body)
					}
					var got hsmodel.Attribution
					if err := json.Unmarshal(c.rec.Body.Bytes(), &got); err != nil {
						t.Fatal(err)
					}
					if got != c.want {
						t.Errorf("%s %s (auth %q): answered for %+v, asked as %+v", path, c.req.URL.RawQuery, c.req.Header.Get("Authorization"), got, c.want)
					}
				}
			}
		})
	}
}

// waitSettled waits until n has not changed for 100 ms (at most 5 s).
func waitSettled(t *testing.T, n *atomic.Int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	last, since := n.Load(), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
		if cur := n.Load(); cur != last {
			last, since = cur, time.Now()
		} else if time.Since(since) > 100*time.Millisecond {
			return
		}
	}
}

// A token spelling a client address never spends that address's anonymous
// rate bucket.
func TestTokenNeverSpendsAnAddressBucket(t *testing.T) {
	cfg := DefaultConfig()
	for c := range cfg.Classes {
		cfg.Classes[c].Rate, cfg.Classes[c].Burst = 0.001, 2
	}
	g := newTestGate(t, cfg, Options{})
	h := g.Middleware(okHandler())
	for range 3 {
		r := httptest.NewRequest("GET", "/_matrix/client/v3/login", nil)
		r.RemoteAddr = "203.0.113.66:4444"
		r.Header.Set("Authorization", "Bearer ip:192.0.2.1")
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/_matrix/client/v3/login", nil)) // anonymous, from 192.0.2.1
	if rec.Code == http.StatusTooManyRequests {
		t.Errorf("the address's bucket was spent by a token: %s", rec.Body)
	}
}
