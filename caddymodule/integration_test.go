package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mxgate/mxgate/gate"
)

const roomStatePath = "/_matrix/client/v3/rooms/%21herd%3Aexample.org/state"

// checkLimitExceeded asserts resp is exactly docs/DESIGN.md's 429: JSON body with
// errcode, error and retry_after_ms within [lo, hi], and a Retry-After
// header of ceil(retry_after_ms / 1000) seconds.
func checkLimitExceeded(t *testing.T, resp *http.Response, body []byte, lo, hi time.Duration) {
	t.Helper()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d, want 429", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var fields map[string]any
	if err := json.Unmarshal(body, &fields); err != nil {
		t.Fatalf("429 body is not JSON: %q", body)
	}
	if len(fields) != 3 || fields["errcode"] != "M_LIMIT_EXCEEDED" || fields["error"] == "" {
		t.Fatalf("429 body %s", body)
	}
	ms, ok := fields["retry_after_ms"].(float64)
	if !ok || ms < float64(lo.Milliseconds()) || ms > float64(hi.Milliseconds()) {
		t.Fatalf("retry_after_ms %v outside [%v, %v]", fields["retry_after_ms"], lo, hi)
	}
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || ra != int((int64(ms)+999)/1000) {
		t.Fatalf("Retry-After %q does not match retry_after_ms %v", resp.Header.Get("Retry-After"), ms)
	}
}

func get(ctx context.Context, url, token string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// The core must-show: 200 concurrent room-state requests with distinct
// tokens through a real Caddy server never put more than the class cap on
// the upstream, and each answer is a 200 or the exact Matrix 429.
func TestCaddyCapsRoomStateAt4(t *testing.T) {
	up := newCountingUpstream(t, func(*http.Request) { time.Sleep(20 * time.Millisecond) })
	port, admin := testkit.FreePort(t), testkit.FreePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
http://127.0.0.1:%d {
	mxgate {
		retry_after 1s 3s
		class room_state {
			max_inflight 4
			queue 100
			queue_timeout 20s
		}
	}
	reverse_proxy %s
}`, admin, port, up.addr))

	url := fmt.Sprintf("http://127.0.0.1:%d%s", port, roomStatePath)
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, body, err := get(context.Background(), url, fmt.Sprintf("token-%d", i))
			if err != nil {
				t.Error(err)
				return
			}
			if resp.StatusCode != http.StatusOK {
				// 200 users on one room are a herd: its 429s spread over
				// the herd range, retry_after's min to 3 × its max.
				checkLimitExceeded(t, resp, body, time.Second, 9*time.Second)
			}
			mu.Lock()
			statuses[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if p := up.peak.Load(); p > 4 {
		t.Fatalf("upstream saw %d concurrent requests, cap 4", p)
	}
	if statuses[200] < 100 || statuses[200]+statuses[429] != 200 {
		t.Fatalf("answers by status: %v (want ≥100 × 200, the rest 429)", statuses)
	}
	if int64(statuses[200]) != up.total.Load() {
		t.Fatalf("upstream served %d, clients got %d × 200", up.total.Load(), statuses[200])
	}
}

// Requests queued past queue_timeout get the 429; clients that disconnect
// while queued leave the queue and never reach the upstream.
func TestCaddyQueueTimeoutAndDisconnect(t *testing.T) {
	release := make(chan struct{})
	up := newCountingUpstream(t, func(r *http.Request) {
		if r.URL.Query().Get("hang") != "" {
			<-release
		}
	})
	port, admin := testkit.FreePort(t), testkit.FreePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
http://127.0.0.1:%d {
	mxgate {
		retry_after 2s 4s
		class room_state {
			max_inflight 2
			queue 50
			queue_timeout 300ms
		}
	}
	reverse_proxy %s
}`, admin, port, up.addr))
	base := fmt.Sprintf("http://127.0.0.1:%d%s", port, roomStatePath)
	queued := func() float64 { return testutil.ToFloat64(sharedMetrics.QueueLength.WithLabelValues("room_state")) }

	// Fill both slots with requests that hang at the upstream.
	var hangers sync.WaitGroup
	for i := 0; i < 2; i++ {
		hangers.Add(1)
		go func() {
			defer hangers.Done()
			resp, _, err := get(context.Background(), base+"?hang=1", fmt.Sprint("hanger-", i))
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("hanging request: %v %v", resp, err)
			}
		}()
	}
	testkit.Eventually(t, "both slots taken", func() bool { return up.cur.Load() == 2 })
	defer func() { close(release); hangers.Wait() }()

	// A queued request waits 300ms, then gets the 429.
	resp, body, err := get(context.Background(), base+"?timeout=1", "waiter")
	if err != nil {
		t.Fatal(err)
	}
	checkLimitExceeded(t, resp, body, 2*time.Second, 4*time.Second)

	// Clients that give up while queued never reach the upstream.
	ctx, cancel := context.WithCancel(context.Background())
	var quitters sync.WaitGroup
	for i := 0; i < 10; i++ {
		quitters.Add(1)
		go func() {
			defer quitters.Done()
			_, _, err := get(ctx, base+"?quitter=1", fmt.Sprint("quitter-", i))
			if err == nil {
				t.Error("a quitter got an answer")
			}
		}()
	}
	testkit.Eventually(t, "quitters queued", func() bool { return queued() == 10 })
	cancel()
	quitters.Wait()
	testkit.Eventually(t, "quitters left the queue", func() bool { return queued() == 0 })
	if n := up.total.Load(); n != 2 {
		t.Fatalf("upstream saw %d requests, want only the 2 hangers", n)
	}
}

// The stacked-requests incident: every receipts request hangs at the
// upstream (a locked table), yet send and sync requests are admitted without
// waiting, and the upstream never holds more than max_inflight.
func TestCaddyReceiptsHangDoNotBlockSendOrSync(t *testing.T) {
	release := make(chan struct{})
	up := newCountingUpstream(t, func(r *http.Request) {
		if r.Method == http.MethodPost {
			<-release
		}
	})
	port, admin := testkit.FreePort(t), testkit.FreePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
http://127.0.0.1:%d {
	mxgate {
		max_inflight 20
		class receipts {
			max_inflight 8
			queue 16
			queue_timeout 30s
		}
	}
	reverse_proxy %s
}`, admin, port, up.addr))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	receiptURL := base + "/_matrix/client/v3/rooms/%21busy%3Aexample.org/receipt/m.read/%24ev"

	var receipts sync.WaitGroup
	for i := 0; i < 40; i++ {
		receipts.Add(1)
		go func() {
			defer receipts.Done()
			req, _ := http.NewRequest(http.MethodPost, receiptURL, nil)
			req.Header.Set("Authorization", fmt.Sprint("Bearer reader-", i))
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	defer func() { close(release); receipts.Wait() }()
	testkit.Eventually(t, "receipts stacked", func() bool {
		return up.cur.Load() == 8 && testutil.ToFloat64(sharedMetrics.QueueLength.WithLabelValues("receipts")) == 16
	})

	queuedBefore := func(class string) float64 {
		return testutil.ToFloat64(sharedMetrics.Requests.WithLabelValues(class, "queued"))
	}
	sendQ, syncQ := queuedBefore("send"), queuedBefore("sync")
	// 10 clients each send and sync 5 times: 8 hung receipts + 10 sends fit
	// in max_inflight 20, so nothing should wait unless receipts block them.
	var wg sync.WaitGroup
	for c := 0; c < 10; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/_matrix/client/v3/rooms/%%21busy%%3Aexample.org/send/m.room.message/txn%d-%d", base, c, i), nil)
				req.Header.Set("Authorization", fmt.Sprint("Bearer sender-", c))
				resp, err := http.DefaultClient.Do(req)
				if err != nil || resp.StatusCode != 200 {
					t.Errorf("send during stacked receipts: %v %v", resp, err)
					return
				}
				resp.Body.Close()
				resp, _, err = get(context.Background(), base+"/_matrix/client/v3/sync?since=s1&timeout=0", fmt.Sprint("sender-", c))
				if err != nil || resp.StatusCode != 200 {
					t.Errorf("sync during stacked receipts: %v %v", resp, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if d := queuedBefore("send") - sendQ; d != 0 {
		t.Fatalf("%v send requests had to queue behind receipts", d)
	}
	if d := queuedBefore("sync") - syncQ; d != 0 {
		t.Fatalf("%v sync requests had to queue behind receipts", d)
	}
	// max_inflight 20 covers everything except long-poll sync's own budget.
	if p := up.peak.Load(); p > 20 {
		t.Fatalf("upstream peak %d", p)
	}
	if n := up.seen("/_matrix/client/v3/rooms/!busy:example.org/receipt/m.read/$ev"); n != 8 {
		t.Fatalf("upstream got %d receipts, want exactly the 8 admitted", n)
	}
}

// A config reload keeps the gate: requests in flight still count against
// the (new) cap, and the metrics on the admin endpoint carry on.
func TestCaddyReloadKeepsInflightAndMetrics(t *testing.T) {
	release := make(chan struct{})
	up := newCountingUpstream(t, func(r *http.Request) {
		if r.URL.Query().Get("hang") != "" {
			<-release
		}
	})
	port, admin := testkit.FreePort(t), testkit.FreePort(t)
	site := func(limit int) string {
		return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	metrics
}
http://127.0.0.1:%d {
	mxgate {
		class room_state {
			max_inflight %d
			queue 10
			queue_timeout 200ms
		}
	}
	reverse_proxy %s
}`, admin, port, limit, up.addr)
	}
	startCaddy(t, site(2))
	base := fmt.Sprintf("http://127.0.0.1:%d%s", port, roomStatePath)
	var hangers sync.WaitGroup
	for i := 0; i < 2; i++ {
		hangers.Add(1)
		go func() {
			defer hangers.Done()
			get(context.Background(), base+"?hang=1", fmt.Sprint("hanger-", i))
		}()
	}
	testkit.Eventually(t, "two requests in flight", func() bool { return up.cur.Load() == 2 })
	defer func() { close(release); hangers.Wait() }()

	loadCaddyfile(t, site(3)) // reload with one more slot
	// The two hung requests still hold their slots: one more fits, the
	// next one times out in the queue.
	if resp, _, err := get(context.Background(), base+"?n=1", "third"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("third request after reload: %v %v", resp, err)
	}
	go get(context.Background(), base+"?hang=2", "fourth-hangs")
	testkit.Eventually(t, "three in flight", func() bool { return up.cur.Load() == 3 })
	if resp, body, err := get(context.Background(), base+"?n=2", "fifth"); err != nil {
		t.Fatal(err)
	} else {
		checkLimitExceeded(t, resp, body, 2*time.Second, 20*time.Second)
	}

	resp, body, err := get(context.Background(), fmt.Sprintf("http://127.0.0.1:%d/metrics", admin), "")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("metrics: %v %v", resp, err)
	}
	for _, want := range []string{
		`mxgate_inflight{class="room_state"} 3`,
		`mxgate_requests_total{class="room_state",outcome="timeout"}`,
		`mxgate_upstream_responses_total{class="room_state",code_class="2xx"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics after reload lack %s", want)
		}
	}
	for _, secret := range []string{"hanger-0", "third", "fifth"} {
		if strings.Contains(string(body), secret) {
			t.Fatalf("a token appears in the metrics: %s", secret)
		}
	}
}

// A reload that Caddy rejects must leave the running gate as it was, even
// though the new config's first mxgate handler was already provisioned.
func TestCaddyRejectedReloadKeepsGateConfig(t *testing.T) {
	port, admin := testkit.FreePort(t), testkit.FreePort(t)
	config := func(handlers ...string) []byte {
		routes := make([]string, len(handlers))
		for i, h := range handlers {
			routes[i] = fmt.Sprintf(`{"handle":[%s,{"handler":"static_response","body":"ok"}]}`, h)
		}
		return []byte(fmt.Sprintf(`{"admin":{"listen":"127.0.0.1:%d","config":{"persist":false}},
			"apps":{"http":{"servers":{"s":{"listen":["127.0.0.1:%d"],"routes":[%s]}}}}}`,
			admin, port, strings.Join(routes, ",")))
	}
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	if err := caddy.Load(config(`{"handler":"mxgate","max_inflight":8,"shed":["search"]}`), true); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { caddy.Stop() })
	check := func(when string) {
		t.Helper()
		var cfg gate.Config
		var modes []string
		zoneGates(func(zone string, g *gate.Gate) {
			cfg = g.Config()
			for _, tg := range g.Toggles().Active(time.Now()) {
				modes = append(modes, tg.Target+"="+tg.Mode.String())
			}
		})
		if cfg.MaxInflight != 8 || len(modes) != 1 || modes[0] != "search=shed" {
			t.Fatalf("%s: gate runs max_inflight %d, toggles %v", when, cfg.MaxInflight, modes)
		}
	}
	check("after first load")
	err := caddy.Load(config(
		`{"handler":"mxgate","max_inflight":99}`,
		`{"handler":"mxgate","classes":{"room_state":{"share_state":true}},"herd":{"disabled":true}}`,
	), true)
	if err == nil {
		t.Fatal("an invalid config was accepted")
	}
	check("after the rejected reload")
}

// With handle_errors, a rejection is a Caddy error that the site's
// handle_errors routes shape; the 429 headers are already set and the
// placeholders carry the reason and the retry delay.
func TestCaddyHandleErrorsShapesRejections(t *testing.T) {
	up := newCountingUpstream(t, nil)
	port, admin := testkit.FreePort(t), testkit.FreePort(t)
	startCaddy(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
}
http://127.0.0.1:%d {
	mxgate {
		handle_errors
		retry_after 3s 5s
		shed search
	}
	reverse_proxy %s
	handle_errors {
		respond "custom: {http.vars.mxgate_reason} after {http.vars.mxgate_retry_after_ms}ms" {err.status_code}
	}
}`, admin, port, up.addr))
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/_matrix/client/v3/search", port), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("status %d %s", resp.StatusCode, body)
	}
	var ms int
	if _, err := fmt.Sscanf(string(body), "custom: shed by operator: shed in config after %dms", &ms); err != nil || ms < 3000 || ms > 5000 {
		t.Fatalf("shaped body %q", body)
	}
	if ra := resp.Header.Get("Retry-After"); ra != strconv.Itoa((ms+999)/1000) {
		t.Fatalf("Retry-After %q for %dms", ra, ms)
	}
	if up.total.Load() != 0 {
		t.Fatal("a shed request reached the upstream")
	}
}
