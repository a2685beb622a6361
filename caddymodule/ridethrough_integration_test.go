package caddymodule

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"

	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/matrix"
)

// restartableUpstream is a test homeserver on a fixed loopback port that
// can be stopped (its listener and connections closed) and started again
// on the same port, as a redeploy does.
type restartableUpstream struct {
	addr      string
	cur, peak atomic.Int64
	mu        sync.Mutex
	srv       *http.Server
}

func newRestartableUpstream(t *testing.T) *restartableUpstream {
	t.Helper()
	u := &restartableUpstream{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = l.Addr().String()
	u.serve(l)
	t.Cleanup(u.stop)
	return u
}

func (u *restartableUpstream) serve(l net.Listener) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 5 * time.Second}
	go u.srv.Serve(l)
}

func (u *restartableUpstream) stop() {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.srv != nil {
		u.srv.Close()
		u.srv = nil
	}
}

func (u *restartableUpstream) start(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", u.addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", u.addr, err)
	}
	u.serve(l)
}

func (u *restartableUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := u.cur.Add(1)
	defer u.cur.Add(-1)
	for p := u.peak.Load(); n > p && !u.peak.CompareAndSwap(p, n); p = u.peak.Load() {
	}
	// Long against the proxy's own time per request on a loaded machine
	// under the race detector, so that the looping clients keep the
	// gate's cap full and the samples show the cap, not the clients.
	time.Sleep(80 * time.Millisecond)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"chunk":[]}`)
}

// The redeploy must-show, through a running Caddy: the homeserver goes away
// for 3s under steady GET traffic (20 clients looping /messages) and no
// client sees an error; a POST during the outage gets the Matrix 429 with a
// short Retry-After; when the homeserver is back, its concurrency ramps up
// over slow start instead of jumping to the whole backlog.
func TestCaddyRideThroughRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("3s outage")
	}
	up := newRestartableUpstream(t)
	port, admin := testkit.FreePort(t), testkit.FreePort(t)
	const histCap, slowStart = 16, 3 * time.Second
	startCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
http://127.0.0.1:%d {
	mxgate {
		queue_timeout 10s
		retry_after 1s 5s
		health_dial %s
		ride_through {
			probe_interval 100ms
			slow_start 3s
		}
		class history {
			max_inflight %d
			queue 200
			coalesce 0s
		}
		herd {
			off
		}
	}
	reverse_proxy %s
}`, admin, port, up.addr, histCap, up.addr))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ok, bad atomic.Int64
	var badMu sync.Mutex
	var badSeen []string
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			url := fmt.Sprintf("%s/_matrix/client/v3/rooms/%%21r%d%%3Ax/messages", base, i)
			for ctx.Err() == nil {
				resp, body, err := get(ctx, url, fmt.Sprintf("token-%d", i))
				if ctx.Err() != nil {
					return
				}
				if err != nil || resp.StatusCode != http.StatusOK {
					bad.Add(1)
					badMu.Lock()
					if len(badSeen) < 5 {
						badSeen = append(badSeen, fmt.Sprintf("%v %v %s", resp != nil && resp.StatusCode != 0, err, body))
					}
					badMu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	testkit.Eventually(t, "steady traffic", func() bool { return ok.Load() > 200 })

	up.stop() // the redeploy begins
	outageStart := time.Now()
	time.Sleep(500 * time.Millisecond)
	req, _ := http.NewRequest(http.MethodPost, base+"/_matrix/client/v3/createRoom", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer token-post")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	checkLimitExceeded(t, resp, body, time.Second, 1500*time.Millisecond)
	okBefore := ok.Load()
	time.Sleep(3*time.Second - time.Since(outageStart))
	if got := ok.Load() - okBefore; got != 0 {
		t.Errorf("%d GETs answered while the upstream was away", got)
	}

	up.peak.Store(0)
	up.start(t) // the homeserver is back
	back := time.Now()
	var samples []int64
	var times []time.Duration
	for time.Since(back) < slowStart+time.Second {
		time.Sleep(50 * time.Millisecond)
		samples = append(samples, up.cur.Load())
		times = append(times, time.Since(back).Round(10*time.Millisecond))
	}
	capAfterRamp := -1
	zoneGates(func(_ string, g *gate.Gate) {
		for _, c := range g.Status(time.Now()).Classes {
			if c.Class == matrix.History.String() {
				capAfterRamp = c.Cap
			}
		}
	})
	cancel()
	wg.Wait()
	// Let the handlers of the cancelled requests finish before Caddy stops
	// (Handler.Cleanup must not race a request still in ServeHTTP).
	testkit.Eventually(t, "the gate to drain", func() bool {
		drained := true
		zoneGates(func(_ string, g *gate.Gate) {
			if st := g.Status(time.Now()).Global; st.Inflight != 0 || st.Queued != 0 {
				drained = false
			}
		})
		return drained
	})
	time.Sleep(100 * time.Millisecond)
	t.Logf("upstream in-flight every 50ms after its return: %v", samples)
	t.Logf("GETs: %d answered, %d failed", ok.Load(), bad.Load())

	if n := bad.Load(); n != 0 {
		t.Fatalf("%d GETs failed across the restart, e.g. %q", n, badSeen)
	}
	var early, late int64
	for i, s := range samples {
		switch {
		case times[i] <= 600*time.Millisecond:
			early = max(early, s)
		case times[i] >= slowStart:
			late = max(late, s)
		}
	}
	// Slow start admits 10% of the cap at first, +30%/s: by 600ms at most
	// ceil(16 × 0.28) = 5, against the 20 waiting clients.
	if early > 5 {
		t.Fatalf("upstream had %d in flight within 600ms of returning: no ramp (samples %v)", early, samples)
	}
	if capAfterRamp != histCap {
		t.Fatalf("history's cap is %d after the slow start, want %d", capAfterRamp, histCap)
	}
	if late < histCap-2 {
		t.Fatalf("upstream peaked at %d in flight after the ramp, want about the cap %d (samples %v)", late, histCap, samples)
	}
}

// cuttingUpstream answers its first request with the status line and
// headers only, then closes the connection, as a homeserver stopped
// mid-answer does; later requests are answered in full.
type cuttingUpstream struct {
	addr   string
	head   string // the first answer's header fields
	calls  atomic.Int64
	bodies chan string
}

func newCuttingUpstream(t *testing.T, head string) *cuttingUpstream {
	t.Helper()
	u := &cuttingUpstream{head: head, bodies: make(chan string, 8)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u.addr = l.Addr().String()
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return u
}

func (u *cuttingUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := u.calls.Add(1)
	b, _ := io.ReadAll(r.Body)
	u.bodies <- string(b)
	if n == 1 {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + u.head + "\r\n")
		buf.Flush()
		time.Sleep(20 * time.Millisecond) // the headers arrive on their own
		conn.Close()
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"event_id":"$e%d"}`, n)
}

// A homeserver that stops after sending a send's headers but before its
// body, through a running Caddy with ride-through: the client gets the
// retried send's full answer, not a 200 with a broken body (Caddy flushes
// a chunked answer's headers at once) or a dropped connection — whether
// the broken answer announced its length or was chunked.
func TestCaddyRideThroughRetriesAnAnswerCutAfterItsHeaders(t *testing.T) {
	for _, tc := range []struct{ name, head string }{
		{"content-length", "Content-Length: 20\r\n"},
		{"chunked", "Transfer-Encoding: chunked\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := newCuttingUpstream(t, tc.head)
			port, admin := testkit.FreePort(t), testkit.FreePort(t)
			startCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
http://127.0.0.1:%d {
	mxgate {
		ride_through {
			probe_interval 50ms
		}
	}
	reverse_proxy %s
}`, admin, port, up.addr))
			url := fmt.Sprintf("http://127.0.0.1:%d/_matrix/client/v3/rooms/%%21r%%3Ax/send/m.room.message/txn1", port)
			req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(`{"body":"hi"}`))
			req.Header.Set("Authorization", "Bearer token-cut")
			client := &http.Client{Timeout: 10 * time.Second}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || string(body) != `{"event_id":"$e2"}` {
				t.Fatalf("send answered %d %q (%v), want the retry's event ID", resp.StatusCode, body, err)
			}
			if got := up.calls.Load(); got != 2 {
				t.Fatalf("the homeserver was sent the request %d times, want 2", got)
			}
			for range 2 {
				if b := <-up.bodies; b != `{"body":"hi"}` {
					t.Fatalf("the homeserver got %q", b)
				}
			}
		})
	}
}
