package e2e

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/fleet/redistest"
	"github.com/mxgate/mxgate/internal/testkit"
)

const caddyfileTemplate = `{
	admin {ADMIN}
	auto_https off
	persist_config off
}
http://{LISTEN} {
	mxgate {
		max_inflight 300
		class history {
			max_inflight 6
			queue 1000
			queue_timeout 30s
		}
		class ephemeral {
			rate 5 5
		}
		herd {
			window 10s
			min_users 50
		}
		fleet {
			redis {REDIS}
			name {NAME}
		}
	}
	reverse_proxy {UPSTREAM}
}
`

type fleetEnv struct {
	redis *redistest.Server
	up    *upstream
	gws   []*gateway
	dir   string
}

// startFleet starts redis-server, the test upstream and three gateways
// sharing one data directory.
func startFleet(t *testing.T) *fleetEnv {
	t.Helper()
	srv := redistest.Start(t)
	bin := mxgateBinary(t)
	up := &upstream{delay: 100 * time.Millisecond}
	hs := httptest.NewServer(up)
	t.Cleanup(hs.Close)
	dir := t.TempDir()
	env := []string{"XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"), "HOME=" + dir}
	e := &fleetEnv{redis: srv, up: up, dir: dir}
	for i := range 3 {
		name := fmt.Sprintf("gw%d", i)
		listen, admin := testkit.FreeLoopback(t), testkit.FreeLoopback(t)
		cf := strings.NewReplacer("{ADMIN}", admin, "{LISTEN}", listen, "{REDIS}", srv.URL(), "{NAME}", name,
			"{UPSTREAM}", strings.TrimPrefix(hs.URL, "http://")).Replace(caddyfileTemplate)
		e.gws = append(e.gws, startGateway(t, bin, dir, name, listen, admin, cf, env))
	}
	e.waitShared(t, 3)
	return e
}

// waitShared waits until every gateway sees Redis and n instances.
func (e *fleetEnv) waitShared(t *testing.T, n int) time.Duration {
	t.Helper()
	return waitFor(t, 15*time.Second, fmt.Sprintf("every gateway sees Redis and %d instances", n), func() bool {
		for _, g := range e.gws {
			st, err := g.status()
			if err != nil || st.Fleet == nil || !st.Fleet.RedisUp || len(st.Fleet.Instances) != n {
				return false
			}
		}
		return true
	})
}

var tokenSeq struct {
	sync.Mutex
	n int
}

func freshToken() string {
	tokenSeq.Lock()
	defer tokenSeq.Unlock()
	tokenSeq.n++
	return fmt.Sprintf("syt_fleet_%d", tokenSeq.n)
}

const (
	searchPath    = "/_matrix/client/v3/publicRooms"
	ephemeralPath = "/_matrix/client/v3/presence/@u:example.org/status"
)

func TestFleetOfThreeGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mxgate and runs three gateways")
	}
	e := startFleet(t)
	t.Run("toggle", e.testToggle)
	t.Run("rate", e.testRate)
	t.Run("herd", e.testHerd)
	t.Run("caps", e.testCaps)
	t.Run("redis_lost", e.testRedisLost)
}

// A toggle set through one gateway sheds on all three within 1s, and
// expires on all.
func (e *fleetEnv) testToggle(t *testing.T) {
	set := time.Now()
	if err := e.gws[0].call(http.MethodPost, "/mxgate/shed", `{"class":"search","mode":"shed","for":"3s","reason":"fleet test"}`); err != nil {
		t.Fatal(err)
	}
	for _, g := range e.gws {
		waitFor(t, 5*time.Second, g.name+" sheds search", func() bool { return g.get(searchPath, freshToken()) == 429 })
	}
	if d := time.Since(set); d > time.Second {
		t.Errorf("the shed reached all three gateways after %v, want within 1s", d)
	} else {
		t.Logf("a shed set through gw0 was in force on all three after %v", d.Round(time.Millisecond))
	}
	for _, g := range e.gws {
		waitFor(t, 5*time.Second, g.name+" lets search through after the expiry", func() bool { return g.get(searchPath, freshToken()) == 200 })
	}
	if d := time.Since(set); d > 4*time.Second {
		t.Errorf("the 3s shed ended on all three after %v, want within 1s of its expiry", d)
	}
	// Restore through another gateway ends a toggle everywhere too.
	if err := e.gws[1].call(http.MethodPost, "/mxgate/shed", `{"class":"search","mode":"shed","for":"10m","reason":"fleet test"}`); err != nil {
		t.Fatal(err)
	}
	for _, g := range e.gws {
		waitFor(t, time.Second, g.name+" sheds search", func() bool { return g.get(searchPath, freshToken()) == 429 })
	}
	// Each gateway wrote its own state file in the shared data directory.
	files, _ := filepath.Glob(filepath.Join(e.dir, "data", "caddy", "mxgate", "toggles-default@gw*.json"))
	if len(files) != 3 {
		t.Errorf("state files %v, want one per gateway", files)
	}
	if err := e.gws[2].call(http.MethodDelete, "/mxgate/shed/all", ""); err != nil {
		t.Fatal(err)
	}
	for _, g := range e.gws {
		waitFor(t, time.Second, g.name+" lets search through after a restore elsewhere", func() bool { return g.get(searchPath, freshToken()) == 200 })
	}
}

// sendRoundRobin sends n requests for one token, spread over the gateways
// in turn, and returns how many were admitted, how many rate limited, and
// how many failed otherwise.
func (e *fleetEnv) sendRoundRobin(path, token string, n int) (ok, limited, failed int) {
	for i := range n {
		switch e.gws[i%len(e.gws)].get(path, token) {
		case 200:
			ok++
		case 429:
			limited++
		default:
			failed++
		}
	}
	return
}

// sharedRateAllows is the most the fleet's one bucket (5/s, burst 5) admits
// in elapsed: the burst, the tokens it earned meanwhile, and one for the
// rounding at either end.
func sharedRateAllows(elapsed time.Duration) int {
	return 5 + int(5*elapsed.Seconds()) + 1
}

// One user's requests over all three are held to the configured rate
// (5/s, burst 5), not three times it.
func (e *fleetEnv) testRate(t *testing.T) {
	start := time.Now()
	ok, limited, failed := e.sendRoundRobin(ephemeralPath, freshToken(), 60)
	elapsed := time.Since(start)
	allowedMax := sharedRateAllows(elapsed)
	t.Logf("60 requests round-robin in %v: %d admitted, %d rate limited (fleet limit allows %d, three local buckets %d)",
		elapsed.Round(time.Millisecond), ok, limited, allowedMax, 3*allowedMax)
	if failed != 0 {
		t.Errorf("%d requests failed", failed)
	}
	if ok > allowedMax || ok < 5 {
		t.Errorf("%d admitted, want the fleet rate: between the burst 5 and %d", ok, allowedMax)
	}
}

// 60 distinct users on one room, 20 through each gateway, are a herd of
// 60 on every gateway with min_users 50. Each user has been answered once
// by its gateway before (herds count only tokens the homeserver accepted).
func (e *fleetEnv) testHerd(t *testing.T) {
	const room = "!herd:example.org"
	path := "/_matrix/client/v3/rooms/" + room + "/state"
	tokens := make([]string, 60)
	for u := range tokens {
		tokens[u] = freshToken()
		if code := e.gws[u%3].get("/_matrix/client/v3/account/whoami", tokens[u]); code != 200 {
			t.Fatalf("whoami %d answered %d", u, code)
		}
	}
	for u, tok := range tokens {
		if code := e.gws[u%3].get(path, tok); code != 200 && code != 429 {
			t.Fatalf("request %d answered %d", u, code)
		}
	}
	for _, g := range e.gws {
		st, err := g.status()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, h := range st.Herds {
			if h.Room == room && h.Class == "room_state" {
				found = true
				if h.Users < 50 {
					t.Errorf("%s: herd of %d users, want at least 50", g.name, h.Users)
				}
			}
		}
		if !found {
			t.Errorf("%s sees no herd on %s (herds %+v), though 60 users requested it over the fleet", g.name, room, st.Herds)
		}
	}
}

// loadHistory sends n /messages requests of distinct users over the
// gateways from workers goroutines; it returns the answers by status.
func (e *fleetEnv) loadHistory(n, workers int) map[int]int {
	var mu sync.Mutex
	codes := map[int]int{}
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				code := e.gws[i%3].get(fmt.Sprintf("/_matrix/client/v3/rooms/!cap%d:example.org/messages", i), freshToken())
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return codes
}

// The upstream's peak /messages concurrency stays within history's cap of
// 6 while the load is spread over all three gateways (2 each).
func (e *fleetEnv) testCaps(t *testing.T) {
	for _, g := range e.gws {
		st, _ := g.status()
		for _, in := range st.Fleet.Instances {
			if in.Self && in.ClassShares["history"] != 2 {
				t.Errorf("%s: history share %d, want 6 ÷ 3 = 2", g.name, in.ClassShares["history"])
			}
		}
	}
	e.up.peak.Store(0)
	codes := e.loadHistory(120, 30)
	if codes[200] != 120 {
		t.Errorf("answers %v, want 120 × 200", codes)
	}
	if p := e.up.peak.Load(); p > 6 || p < 4 {
		t.Errorf("upstream peak concurrency %d, want at most the cap of 6 (and near it)", p)
	} else {
		t.Logf("upstream peak /messages concurrency %d with cap 6 over three gateways", p)
	}
}

// Redis killed mid-run: no request fails, caps hold at the last shares and
// rates continue locally; Redis back: the gateways rejoin and share again.
func (e *fleetEnv) testRedisLost(t *testing.T) {
	e.up.peak.Store(0)
	done := make(chan map[int]int)
	go func() { done <- e.loadHistory(240, 30) }()
	time.Sleep(300 * time.Millisecond) // let the load run before pulling Redis
	e.redis.Kill()
	codes := <-done
	if codes[200] != 240 {
		t.Errorf("answers while Redis died: %v, want 240 × 200", codes)
	}
	if p := e.up.peak.Load(); p > 6 {
		t.Errorf("upstream peak concurrency %d after Redis died, want the last shares to hold it at 6", p)
	}
	for _, g := range e.gws {
		waitFor(t, 5*time.Second, g.name+" reports Redis down and fail-static", func() bool {
			st, err := g.status()
			return err == nil && st.Fleet != nil && !st.Fleet.RedisUp && st.Fleet.FailStatic && len(st.Fleet.Instances) == 3
		})
	}
	metrics := e.gws[0].metrics(t)
	for _, want := range []string{"mxgate_fleet_redis_up 0", "mxgate_fleet_instances 3", `mxgate_fleet_fallbacks_total{op="heartbeat"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	out, err := exec.Command(mxgateBinary(t), "status", "--admin", e.gws[0].admin, "--interval", "0").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fleet: 3 instances, this is gw0") || !strings.Contains(string(out), "UNREACHABLE") {
		t.Errorf("mxgate status without Redis (%v):\n%s", err, out)
	}
	// Rates continue locally: each gateway at 5 ÷ 3 per second, burst 2.
	start := time.Now()
	ok, _, failed := e.sendRoundRobin(ephemeralPath, freshToken(), 60)
	localMax := 3 * (2 + int(5.0/3*time.Since(start).Seconds()) + 1)
	if failed != 0 || ok < 3 || ok > localMax {
		t.Errorf("without Redis: %d admitted, %d failed of 60; want between 3 and %d (local rate ÷ 3) and none failed", ok, failed, localMax)
	}
	t.Logf("without Redis: %d of 60 admitted (local buckets at rate ÷ 3)", ok)

	e.redis.Restart()
	took := e.waitShared(t, 3)
	t.Logf("gateways rejoined %v after Redis returned", took.Round(time.Millisecond))
	// A Redis call that misses its deadline (a loaded machine) answers that
	// request from the gateway's local bucket, at most its burst of 2 more.
	fellBack := make([]int, len(e.gws))
	for i, g := range e.gws {
		fellBack[i] = g.rateFallbacks(t)
	}
	start = time.Now()
	ok, _, failed = e.sendRoundRobin(ephemeralPath, freshToken(), 30)
	elapsed := time.Since(start)
	allowed, local := sharedRateAllows(elapsed), 0
	for i, g := range e.gws {
		if g.rateFallbacks(t) > fellBack[i] {
			local++
		}
	}
	allowed += 2 * local
	if failed != 0 || ok < 5 || ok > allowed {
		t.Errorf("after Redis returned: %d admitted, %d failed of 30 in %v (%d gateways fell back locally); want the shared bucket's burst of 5, at most %d, and none failed",
			ok, failed, elapsed.Round(time.Millisecond), local, allowed)
	}
	t.Logf("after Redis returned: %d of 30 admitted in %v, %d gateways fell back locally", ok, elapsed.Round(time.Millisecond), local)
	// A toggle set now reaches every gateway again.
	if err := e.gws[2].call(http.MethodPost, "/mxgate/shed", `{"class":"search","mode":"shed","for":"1m","reason":"after"}`); err != nil {
		t.Fatal(err)
	}
	for _, g := range e.gws {
		waitFor(t, time.Second, g.name+" sheds search after Redis returned", func() bool { return g.get(searchPath, freshToken()) == 429 })
	}
}
