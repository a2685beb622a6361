package caddymodule

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/internal/testkit"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mxgate/mxgate/gate"
)

// adminTestServer is Caddy running in this process with one mxgate zone in
// front of a test upstream, on free loopback ports.
type adminTestServer struct {
	admin, site string
	stateFile   string
	upstream    *countingUpstream
}

// config returns the JSON config; maxInflight varies it between reloads.
func (s *adminTestServer) config(maxInflight int) []byte {
	return fmt.Appendf(nil, `{
	"admin": {"listen": %q, "config": {"persist": false}},
	"logging": {"logs": {"default": {"level": "ERROR"}}},
	"apps": {"http": {"servers": {"mx": {
		"listen": [%q],
		"automatic_https": {"disable": true},
		"routes": [{"handle": [
			{"handler": "mxgate", "max_inflight": %d, "state_file": %q, "max_toggle_duration": "1h"},
			{"handler": "reverse_proxy", "upstreams": [{"dial": %q}]}
		]}]
	}}}}
}`, s.admin, s.site, maxInflight, s.stateFile, s.upstream.addr)
}

func startAdminTestServer(t *testing.T) *adminTestServer {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", t.TempDir()) // a fresh Caddy data dir per test; TestMain keeps all of them out of $HOME
	s := &adminTestServer{
		admin:     fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)),
		site:      fmt.Sprintf("127.0.0.1:%d", testkit.FreePort(t)),
		stateFile: filepath.Join(t.TempDir(), "toggles.json"),
		upstream:  newCountingUpstream(t, nil),
	}
	loadJSON(t, s.config(256))
	t.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			t.Errorf("stopping caddy: %v", err)
		}
	})
	return s
}

func loadJSON(t *testing.T, cfg []byte) {
	t.Helper()
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
}

// client sends one Matrix request through the site and returns the status
// and body.
func (s *adminTestServer) client(t *testing.T, method, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.site+path, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer syt_admintest_secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// Right after a reload, a connection the old server accepted while
		// shutting down is closed unanswered. The tests here check only
		// statuses, so one more try changes nothing they assert.
		req, _ = http.NewRequest(method, "http://"+s.site+path, strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer syt_admintest_secret")
		resp, err = http.DefaultClient.Do(req)
	}
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// adminCall sends a request to the admin endpoint and decodes its JSON.
func (s *adminTestServer) adminCall(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://"+s.admin+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("admin %s %s: Content-Type %q, body %s", method, path, ct, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("admin %s %s: %v in %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func (s *adminTestServer) mustAdmin(t *testing.T, method, path, body string, out any) {
	t.Helper()
	if code := s.adminCall(t, method, path, body, out); code != http.StatusOK {
		t.Fatalf("admin %s %s %s: HTTP %d", method, path, body, code)
	}
}

const (
	searchURL   = "/_matrix/client/v3/search"
	historyURL  = "/_matrix/client/v3/rooms/%21r%3Aexample.org/messages"
	sendURL     = "/_matrix/client/v3/rooms/%21r%3Aexample.org/send/m.room.message/txn1"
	receiptsURL = "/_matrix/client/v3/rooms/%21r%3Aexample.org/read_markers"
	authURL     = "/_matrix/client/v3/account/whoami"
)

// expect checks that each request gets the given status.
func (s *adminTestServer) expect(t *testing.T, want int, reqs ...string) {
	t.Helper()
	for _, r := range reqs {
		method, path, _ := strings.Cut(r, " ")
		if code, body := s.client(t, method, path); code != want {
			t.Errorf("%s: HTTP %d, want %d (%s)", r, code, want, body)
		}
	}
}

func TestAdminModuleIsRegistered(t *testing.T) {
	mi, err := caddy.GetModule("admin.api.mxgate")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mi.New().(caddy.AdminRouter); !ok {
		t.Fatal("admin.api.mxgate is not an AdminRouter")
	}
}

func TestAdminShedExpiresRestoresAndBrownsOut(t *testing.T) {
	s := startAdminTestServer(t)
	s.expect(t, http.StatusOK, "POST "+searchURL, "GET "+historyURL)

	// Shed search for 2s: only search is refused, with the reason.
	var shed ShedResponse
	s.mustAdmin(t, "POST", "/mxgate/shed", `{"class":"search","for":"2s","reason":"db vacuum in progress"}`, &shed)
	if len(shed.Zones) != 1 || shed.Zones[0] != "default" || shed.Toggle == nil || shed.Toggle.Mode.String() != "shed" {
		t.Fatalf("shed response %+v", shed)
	}
	code, body := s.client(t, "POST", searchURL)
	var le struct {
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}
	if code != http.StatusTooManyRequests || json.Unmarshal([]byte(body), &le) != nil ||
		le.Errcode != "M_LIMIT_EXCEEDED" || !strings.Contains(le.Error, "db vacuum in progress") {
		t.Fatalf("shed search: HTTP %d %s", code, body)
	}
	s.expect(t, http.StatusOK, "GET "+historyURL, "PUT "+sendURL, "POST "+receiptsURL)

	// It ends by itself.
	testkit.Eventually(t, "the 2s shed to expire", func() bool {
		code, _ := s.client(t, "POST", searchURL)
		return code == http.StatusOK
	})

	// restore ends a long toggle at once.
	s.mustAdmin(t, "POST", "/mxgate/shed", `{"class":"search","for":"30m"}`, nil)
	s.expect(t, http.StatusTooManyRequests, "POST "+searchURL)
	var restored ShedResponse
	s.mustAdmin(t, "DELETE", "/mxgate/shed/search", "", &restored)
	if len(restored.Removed) != 1 || restored.Removed[0] != "default/search" {
		t.Errorf("restore response %+v", restored)
	}
	s.expect(t, http.StatusOK, "POST "+searchURL)

	// A sheddable brownout sheds search and receipts only.
	s.mustAdmin(t, "POST", "/mxgate/shed", `{"class":"*","priority":"sheddable","for":"1m","reason":"brownout"}`, nil)
	s.expect(t, http.StatusTooManyRequests, "POST "+searchURL, "POST "+receiptsURL)
	s.expect(t, http.StatusOK, "GET "+historyURL, "PUT "+sendURL, "GET "+authURL)
	// A normal brownout adds history; critical classes are never shed.
	s.mustAdmin(t, "POST", "/mxgate/shed", `{"class":"*","priority":"normal","for":"1m"}`, nil)
	s.expect(t, http.StatusTooManyRequests, "GET "+historyURL, "POST "+searchURL)
	s.expect(t, http.StatusOK, "PUT "+sendURL, "GET "+authURL)

	var st StatusResponse
	s.mustAdmin(t, "GET", "/mxgate/status", "", &st)
	if len(st.Zones) != 1 || len(st.Zones[0].Toggles) != 2 {
		t.Fatalf("status toggles %+v, want both brownouts", st.Zones)
	}
	raw := statusBody(t, s)
	if strings.Contains(raw, "syt_admintest_secret") {
		t.Fatal("status shows an access token")
	}

	// mode normal ends a toggle, like DELETE.
	s.mustAdmin(t, "POST", "/mxgate/shed", `{"class":"*","priority":"normal","mode":"normal"}`, nil)
	s.expect(t, http.StatusOK, "GET "+historyURL)
	s.expect(t, http.StatusTooManyRequests, "POST "+searchURL)
	s.mustAdmin(t, "DELETE", "/mxgate/shed/*?priority=sheddable", "", nil)
	s.expect(t, http.StatusOK, "POST "+searchURL, "POST "+receiptsURL)

	// queue mode holds the class: nothing new reaches the upstream; the
	// waiter goes on when the toggle is lifted.
	s.mustAdmin(t, "POST", "/mxgate/shed", `{"class":"history","mode":"queue","for":"1m"}`, nil)
	before := s.upstream.seen("/_matrix/client/v3/rooms/!r:example.org/messages")
	got := make(chan int, 1)
	go func() { // no t.Fatal off the test goroutine: report 0 on failure
		resp, err := http.Get("http://" + s.site + historyURL)
		if err != nil {
			got <- 0
			return
		}
		resp.Body.Close()
		got <- resp.StatusCode
	}()
	testkit.Eventually(t, "the history request to queue", func() bool {
		var st StatusResponse
		s.mustAdmin(t, "GET", "/mxgate/status", "", &st)
		for _, c := range st.Zones[0].Classes {
			if c.Class == "history" {
				return c.Queued == 1
			}
		}
		return false
	})
	if n := s.upstream.seen("/_matrix/client/v3/rooms/!r:example.org/messages"); n != before {
		t.Fatalf("a queued request reached the upstream (%d -> %d)", before, n)
	}
	s.mustAdmin(t, "DELETE", "/mxgate/shed/all", "", nil)
	select {
	case code := <-got:
		if code != http.StatusOK {
			t.Errorf("queued history after restore: HTTP %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queued request not released by restore")
	}
}

func statusBody(t *testing.T, s *adminTestServer) string {
	t.Helper()
	resp, err := http.Get("http://" + s.admin + "/mxgate/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestAdminToggleSurvivesReloadAndRestart(t *testing.T) {
	s := startAdminTestServer(t)
	s.mustAdmin(t, "POST", "/mxgate/shed", `{"class":"search","for":"10m","reason":"incident 42"}`, nil)
	s.expect(t, http.StatusTooManyRequests, "POST "+searchURL)

	// A config reload (a changed config, as `mxgate reload` sends it).
	loadJSON(t, s.config(128))
	http.DefaultClient.CloseIdleConnections() // the reload closed them server-side
	var st StatusResponse
	s.mustAdmin(t, "GET", "/mxgate/status", "", &st)
	if st.Zones[0].Global.MaxInflight != 128 {
		t.Fatalf("reload not applied: max_inflight %d", st.Zones[0].Global.MaxInflight)
	}
	s.expect(t, http.StatusTooManyRequests, "POST "+searchURL)

	// A restart: stopping empties the gate pool; the new gate reads the
	// state file.
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	zoneGates(func(zone string, _ *gate.Gate) { t.Errorf("zone %s survived Stop", zone) })
	// Keep-alive connections to the stopped server are dead; a POST on one
	// would not be retried.
	http.DefaultClient.CloseIdleConnections()
	loadJSON(t, s.config(128))
	code, body := s.client(t, "POST", searchURL)
	if code != http.StatusTooManyRequests || !strings.Contains(body, "incident 42") {
		t.Fatalf("after restart search: HTTP %d %s", code, body)
	}
	s.mustAdmin(t, "GET", "/mxgate/status", "", &st)
	for _, c := range st.Zones[0].Classes {
		if c.Class == "search" && (c.Counters.Shed != 1 || c.Mode.String() != "shed") {
			t.Errorf("after restart search status %+v, want a fresh gate with 1 shed", c)
		}
	}
	if len(st.Zones[0].Toggles) != 1 || st.Zones[0].Toggles[0].Reason != "incident 42" {
		t.Errorf("after restart toggles %+v", st.Zones[0].Toggles)
	}
}

func TestAdminRejectsBadRequests(t *testing.T) {
	s := startAdminTestServer(t)
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
	}{
		{"not JSON", "POST", "/mxgate/shed", `{class: search`, 400},
		{"unknown field", "POST", "/mxgate/shed", `{"class":"search","forever":true}`, 400},
		{"two objects", "POST", "/mxgate/shed", `{"class":"search"}{"class":"sync"}`, 400},
		{"no class", "POST", "/mxgate/shed", `{"for":"1m"}`, 400},
		{"unknown class", "POST", "/mxgate/shed", `{"class":"everything"}`, 400},
		{"bad mode", "POST", "/mxgate/shed", `{"class":"search","mode":"off"}`, 400},
		{"bad duration", "POST", "/mxgate/shed", `{"class":"search","for":"soon"}`, 400},
		{"negative duration", "POST", "/mxgate/shed", `{"class":"search","for":"-5m"}`, 400},
		{"over the max", "POST", "/mxgate/shed", `{"class":"search","for":"2h"}`, 400},
		{"brownout without priority", "POST", "/mxgate/shed", `{"class":"*"}`, 400},
		{"critical brownout", "POST", "/mxgate/shed", `{"class":"*","priority":"critical"}`, 400},
		{"priority on a class", "POST", "/mxgate/shed", `{"class":"search","priority":"normal"}`, 400},
		{"reason with newline", "POST", "/mxgate/shed", `{"class":"search","reason":"a\nb"}`, 400},
		{"unknown zone", "POST", "/mxgate/shed", `{"class":"search","zone":"nope"}`, 404},
		{"GET on shed", "GET", "/mxgate/shed", ``, 405},
		{"restore unknown class", "DELETE", "/mxgate/shed/everything", ``, 400},
		{"restore brownout without priority", "DELETE", "/mxgate/shed/*", ``, 400},
		{"restore nothing", "DELETE", "/mxgate/shed/", ``, 400},
		{"status of unknown zone", "GET", "/mxgate/status?zone=nope", ``, 404},
		{"POST on status", "POST", "/mxgate/status", `{}`, 405},
	} {
		var e struct {
			Error string `json:"error"`
		}
		if code := s.adminCall(t, tc.method, tc.path, tc.body, &e); code != tc.code || e.Error == "" {
			t.Errorf("%s: HTTP %d error %q, want %d with a message", tc.name, code, e.Error, tc.code)
		}
	}
	var st StatusResponse
	s.mustAdmin(t, "GET", "/mxgate/status", "", &st)
	if len(st.Zones[0].Toggles) != 0 {
		t.Errorf("a rejected request left toggles: %+v", st.Zones[0].Toggles)
	}
	// Restoring what is not shed is fine and says nothing was removed.
	var r ShedResponse
	s.mustAdmin(t, "DELETE", "/mxgate/shed/search", "", &r)
	if len(r.Removed) != 0 {
		t.Errorf("restore of an unshed class removed %v", r.Removed)
	}
}

func TestAdminHealthReportsUpstream(t *testing.T) {
	s := startAdminTestServer(t)
	var h HealthResponse
	s.mustAdmin(t, "GET", "/_mxgate/health", "", &h)
	if h.Status != "unknown" || len(h.Zones) != 1 || h.Zones[0].Reachable != nil {
		t.Fatalf("before traffic: %+v, want unknown", h)
	}
	s.expect(t, http.StatusOK, "GET "+historyURL)
	s.mustAdmin(t, "GET", "/_mxgate/health", "", &h)
	if z := h.Zones[0]; h.Status != "ok" || z.Source != "traffic" || z.Reachable == nil || !*z.Reachable || z.Upstream.Responses != 1 {
		t.Fatalf("after an answer: %+v", h)
	}

	// The upstream goes away: the proxy gets no answer, health says down
	// with a 503 so that a plain HTTP check pages.
	s.upstream.srv.Close()
	s.expect(t, http.StatusBadGateway, "GET "+historyURL)
	if code := s.adminCall(t, "GET", "/_mxgate/health", "", &h); code != http.StatusServiceUnavailable || h.Status != "down" {
		t.Fatalf("after a failed request: HTTP %d %+v", code, h)
	}
	if r := h.Zones[0].Upstream.ErrorRatio; r != 0.5 {
		t.Errorf("error ratio %v, want 0.5 (one answer, one failure)", r)
	}
}

func TestCaddyfileToggleSettings(t *testing.T) {
	var h Handler
	d := caddyfile.NewTestDispenser("mxgate {\n\tstate_file /var/lib/mxgate/toggles.json\n\tmax_toggle_duration 2h\n}")
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if h.StateFile != "/var/lib/mxgate/toggles.json" || time.Duration(h.MaxToggleDuration) != 2*time.Hour {
		t.Errorf("parsed %q %v", h.StateFile, time.Duration(h.MaxToggleDuration))
	}
	if cfg, err := h.gateConfig(); err != nil || cfg.MaxToggleDuration != 2*time.Hour {
		t.Errorf("gate config: max toggle duration %v, %v", cfg.MaxToggleDuration, err)
	}
	for _, bad := range []string{
		"mxgate {\n\tmax_toggle_duration 0s\n}",
		"mxgate {\n\tstate_file\n}",
		"mxgate {\n\tstate_file a b\n}",
	} {
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if p := defaultStateFile("a/../b c", ""); filepath.Base(p) != "toggles-a_.._b_c.json" || filepath.Base(filepath.Dir(p)) != "mxgate" {
		t.Errorf("default state file %q", p)
	}
}
