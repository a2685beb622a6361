package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/caddymodule"
)

var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildErr  error
)

// TestMain removes the built binary after the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// mxgateBinary builds cmd/mxgate once per test binary.
func mxgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		var err error
		if binDir, err = os.MkdirTemp("", "mxgate-fleet-bin-"); err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(binDir, "mxgate")
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", binPath, "github.com/mxgate/mxgate/cmd/mxgate").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// gateway is one mxgate process.
type gateway struct {
	name, listen, admin string
	cmd                 *exec.Cmd
	log                 string
}

// startGateway runs `mxgate run` with caddyfile (already holding the
// addresses) and waits for its admin endpoint, for at most a minute.
func startGateway(t *testing.T, bin, dir, name, listen, admin, caddyfile string, env []string) *gateway {
	t.Helper()
	cfgPath := filepath.Join(dir, name+".Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	g := &gateway{name: name, listen: listen, admin: admin, log: filepath.Join(dir, name+".log")}
	logf, err := os.Create(g.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	g.cmd = exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	g.cmd.Env = append(os.Environ(), env...)
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.stop(t) })
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := g.status(); err == nil {
			return g
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(g.log)
			t.Fatalf("%s did not come up within a minute; log:\n%s", name, b)
		}
		time.Sleep(50 * time.Millisecond) // polling a starting process, bounded above
	}
}

func (g *gateway) stop(t *testing.T) {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = g.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = g.cmd.Process.Kill()
		<-done
	}
	if t.Failed() {
		b, _ := os.ReadFile(g.log)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		t.Logf("%s log tail:\n%s", g.name, strings.Join(lines, "\n"))
	}
	g.cmd = nil
}

var client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 200}}

func (g *gateway) status() (caddymodule.ZoneStatus, error) {
	var st caddymodule.StatusResponse
	resp, err := client.Get("http://" + g.admin + "/mxgate/status")
	if err != nil {
		return caddymodule.ZoneStatus{}, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return caddymodule.ZoneStatus{}, err
	}
	if len(st.Zones) != 1 {
		return caddymodule.ZoneStatus{}, fmt.Errorf("%d zones", len(st.Zones))
	}
	return st.Zones[0], nil
}

// get sends one GET through g with token and returns the status code, or
// 0 when the request failed at the transport (a failed request).
func (g *gateway) get(path, token string) int {
	req, _ := http.NewRequest(http.MethodGet, "http://"+g.listen+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// metrics returns the gateway's Prometheus exposition.
func (g *gateway) metrics(t *testing.T) string {
	t.Helper()
	resp, err := client.Get("http://" + g.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// rateFallbacks is how many rate checks the gateway has answered locally
// (mxgate_fleet_fallbacks_total{op="rate"}).
func (g *gateway) rateFallbacks(t *testing.T) int {
	t.Helper()
	const series = `mxgate_fleet_fallbacks_total{op="rate"} `
	for line := range strings.Lines(g.metrics(t)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series); ok {
			n, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", g.name, line, err)
			}
			return int(n)
		}
	}
	return 0
}

func (g *gateway) call(method, path, body string) error {
	req, _ := http.NewRequest(method, "http://"+g.admin+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	return nil
}

// upstream is the test homeserver: it answers every request 200 after
// delay (for /messages) and records the peak concurrency of /messages.
type upstream struct {
	delay    time.Duration
	inflight atomic.Int64
	peak     atomic.Int64
	served   atomic.Int64
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.served.Add(1)
	if strings.HasSuffix(r.URL.Path, "/messages") {
		n := u.inflight.Add(1)
		defer u.inflight.Add(-1)
		for {
			p := u.peak.Load()
			if n <= p || u.peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(u.delay) // the homeserver's work
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{}`)
}

// waitFor polls cond every 20ms until it holds or within passes; it
// returns how long it took.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond) // polling other processes, bounded above
	}
	return time.Since(start)
}
