package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/mxgate/mxgate/internal/testkit"
)

const (
	floodCap     = 50
	floodClients = 500
	// floodUpstreamConns caps the proxy's connections to the upstream.
	floodUpstreamConns = 20
	// floodSlack covers descriptors that come and go besides the client
	// and upstream connections: the admin endpoint, epoll, the test's own
	// /proc reads, Go runtime files.
	floodSlack = 30
	// floodHelperEnv carries the gateway address to the client process.
	floodHelperEnv = "MXGATE_FLOOD_GATEWAY"
)

// floodResult is what the client process reports.
type floodResult struct {
	OK, Refused, Failed int
	FirstError          string
}

// TestConnsCapHoldsFDsUnderFlood sends 500 simultaneous clients at a
// gateway whose connection cap is 50, from a separate process so that
// /proc/self/fd counts only the gateway's descriptors.
func TestConnsCapHoldsFDsUnderFlood(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	upstream := newCountingUpstream(t, func(*http.Request) { time.Sleep(20 * time.Millisecond) })
	site := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	cfg := fmt.Appendf(nil, `{
	"admin": {"listen": %q, "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "ERROR"}}},
	"apps": {"http": {"servers": {"mx": {
		"listen": [%q],
		"listener_wrappers": [{"wrapper": "mxgate_conns", "max_conns": %d, "client_share": 1}],
		"automatic_https": {"disable": true},
		"routes": [{"handle": [
			{"handler": "mxgate", "state_file": "off"},
			{"handler": "reverse_proxy", "upstreams": [{"dial": %q}],
			 "transport": {"protocol": "http", "max_conns_per_host": %d}}
		]}]
	}}}}
}`, admin, site, floodCap, upstream.addr, floodUpstreamConns)
	loadJSON(t, cfg)
	t.Cleanup(func() { _ = caddy.Stop() })

	// Warm up (first request, upstream pool), then take the baseline.
	if resp, err := http.Get("http://" + site + historyURL); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	http.DefaultClient.CloseIdleConnections()
	baseline := countFDs(t)

	var peak atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if n, err := os.ReadDir("/proc/self/fd"); err == nil {
				for p := peak.Load(); int64(len(n)) > p && !peak.CompareAndSwap(p, int64(len(n))); p = peak.Load() {
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestConnsFloodClientProcess$", "-test.v")
	cmd.Env = append(os.Environ(), floodHelperEnv+"="+site)
	out, err := cmd.Output()
	close(stop)
	sampler.Wait()
	if err != nil {
		t.Fatalf("client process: %v\n%s", err, out)
	}
	var res floodResult
	if err := json.Unmarshal(lastLineWithPrefix(out, "RESULT "), &res); err != nil {
		t.Fatalf("client process output: %v\n%s", err, out)
	}
	t.Logf("clients: %+v; fds: baseline %d, peak %d; conn cap stats %+v", res, baseline, peak.Load(), connectionStatus())

	if res.OK+res.Refused != floodClients || res.Failed != 0 {
		t.Errorf("clients: %+v, want all %d served or refused with a 429 (first error: %s)", res, floodClients, res.FirstError)
	}
	limit := int64(baseline + floodCap + 2*floodUpstreamConns + floodSlack)
	if peak.Load() > limit {
		t.Errorf("open descriptors peaked at %d, above baseline %d + cap %d + upstream 2×%d + slack %d",
			peak.Load(), baseline, floodCap, floodUpstreamConns, floodSlack)
	}
	st := connectionStatus()
	if st == nil || st.Max != floodCap || st.Peak != floodCap {
		t.Errorf("connection cap %+v, want max and peak %d (the flood must have hit the cap)", st, floodCap)
	}
	// Still serving afterwards.
	resp, err := http.Get("http://" + site + historyURL)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("after the flood: %v %v", resp, err)
	}
	resp.Body.Close()
	if upstream.peak.Load() > floodUpstreamConns {
		t.Errorf("upstream saw %d concurrent requests, above max_conns_per_host %d", upstream.peak.Load(), floodUpstreamConns)
	}
}

// TestConnsFloodClientProcess is the client side of the flood test, run in
// its own process; it does nothing in a normal test run.
func TestConnsFloodClientProcess(t *testing.T) {
	site := os.Getenv(floodHelperEnv)
	if site == "" {
		t.Skip("helper process for TestConnsCapHoldsFDsUnderFlood")
	}
	var (
		mu  sync.Mutex
		res floodResult
		wg  sync.WaitGroup
	)
	start := make(chan struct{})
	for range floodClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 90 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			<-start
			resp, err := client.Get("http://" + site + historyURL)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				res.Failed++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				return
			case resp.StatusCode == http.StatusOK:
				res.OK++
			case resp.StatusCode == http.StatusTooManyRequests:
				res.Refused++
			default:
				res.Failed++
				if res.FirstError == "" {
					res.FirstError = "HTTP " + strconv.Itoa(resp.StatusCode)
				}
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	close(start)
	wg.Wait()
	b, _ := json.Marshal(res)
	fmt.Printf("RESULT %s\n", b)
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	return len(ents)
}

func lastLineWithPrefix(out []byte, prefix string) []byte {
	var found string
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			found = rest
		}
	}
	return []byte(found)
}

func TestConnsCaddyfileSyntax(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string // the adapted wrapper JSON, or "" for an error
	}{
		{"mxgate_conns 50", `{"max_conns":50,"wrapper":"mxgate_conns"}`},
		{"mxgate_conns", `{"wrapper":"mxgate_conns"}`},
		{"mxgate_conns 0", ""},
		{"mxgate_conns lots", ""},
		{"mxgate_conns 5 6", ""},
		{"mxgate_conns 50 {\n\t\t\t\tclient_share 0.25\n\t\t\t}", `{"client_share":0.25,"max_conns":50,"wrapper":"mxgate_conns"}`},
		{"mxgate_conns {\n\t\t\t\tclient_share 1\n\t\t\t}", `{"client_share":1,"wrapper":"mxgate_conns"}`},
		{"mxgate_conns {\n\t\t\t\tclient_share 0\n\t\t\t}", ""},
		{"mxgate_conns {\n\t\t\t\tclient_share 1.5\n\t\t\t}", ""},
		{"mxgate_conns {\n\t\t\t\tclient_share\n\t\t\t}", ""},
		{"mxgate_conns {\n\t\t\t\tshare 0.5\n\t\t\t}", ""},
	} {
		caddyfile := "{\n\tservers {\n\t\tlistener_wrappers {\n\t\t\t" + tc.in + "\n\t\t\ttls\n\t\t}\n\t}\n}\n:8080 {\n\trespond ok\n}\n"
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), nil)
		if tc.want == "" {
			if err == nil {
				t.Errorf("%q: adapted without error", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		var cfg struct {
			Apps struct {
				HTTP struct {
					Servers map[string]struct {
						Wrappers []json.RawMessage `json:"listener_wrappers"`
					} `json:"servers"`
				} `json:"http"`
			} `json:"apps"`
		}
		if err := json.Unmarshal(out, &cfg); err != nil {
			t.Fatal(err)
		}
		for _, srv := range cfg.Apps.HTTP.Servers {
			if len(srv.Wrappers) != 2 || string(srv.Wrappers[0]) != tc.want || string(srv.Wrappers[1]) != `{"wrapper":"tls"}` {
				t.Errorf("%q: wrappers %s, want %s then tls", tc.in, srv.Wrappers, tc.want)
			}
		}
	}
}

// TestConnsSlowHeadersFromOneAddressLeaveRoomForOthers opens 200
// connections from 127.0.0.1 that send half a request line and stop
// (slowloris) against mxgate_conns 200: with the default client share the
// address holds at most half the cap, and clients from other addresses
// (127.0.0.2 ...) keep being served while the slow connections last.
func TestConnsSlowHeadersFromOneAddressLeaveRoomForOthers(t *testing.T) {
	const slowConns, others = 200, 20
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	upstream := newCountingUpstream(t, nil)
	site := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t))
	loadJSON(t, fmt.Appendf(nil, `{
	"admin": {"listen": %q, "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "ERROR"}}},
	"apps": {"http": {"servers": {"mx": {
		"listen": [%q],
		"listener_wrappers": [{"wrapper": "mxgate_conns", "max_conns": %d}],
		"read_header_timeout": "5m",
		"automatic_https": {"disable": true},
		"routes": [{"handle": [
			{"handler": "mxgate", "state_file": "off"},
			{"handler": "reverse_proxy", "upstreams": [{"dial": %q}]}
		]}]
	}}}}
}`, admin, site, slowConns, upstream.addr))
	t.Cleanup(func() { _ = caddy.Stop() })

	// The slow client: every connection sends part of a request line and
	// stalls; the header timeout (5m here) would not free them in time.
	var slow []net.Conn
	t.Cleanup(func() {
		for _, c := range slow {
			c.Close()
		}
	})
	for range slowConns {
		c, err := net.DialTimeout("tcp", site, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
		if _, err := c.Write([]byte("GET /_matrix/client/v3/sync HTTP/1.1\r\nHost: x\r\n")); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, "the slow client to reach its share", func() bool {
		st := connectionStatus()
		return st != nil && st.Open >= slowConns/2 && st.OverShare > 0
	})

	// Other clients, one address each, each get an answer.
	for i := range others {
		src := net.IPv4(127, 0, 0, byte(2+i))
		client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}).DialContext,
		}}
		resp, err := client.Get("http://" + site + "/_matrix/client/versions")
		if err != nil {
			t.Fatalf("client %s was not served while one address held slow connections: %v", src, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		client.CloseIdleConnections()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("client %s: HTTP %d", src, resp.StatusCode)
		}
	}
	st := connectionStatus()
	if st.PerClientMax != slowConns/2 {
		t.Errorf("per-client max %d, want %d (default share 0.5)", st.PerClientMax, slowConns/2)
	}
	t.Logf("connections: %+v", st.ConnStats)
}
