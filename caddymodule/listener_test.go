package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
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
	site := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := fmt.Appendf(nil, `{
	"admin": {"listen": %q, "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "ERROR"}}},
	"apps": {"http": {"servers": {"mx": {
		"listen": [%q],
		"listener_wrappers": [{"wrapper": "mxgate_conns", "max_conns": %d}],
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
