package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mxgate/mxgate/caddymodule"
	"github.com/mxgate/mxgate/internal/testkit"
)

// startGateway runs `mxgate gateway`'s config in this process in front of
// a test homeserver and returns the client and admin addresses.
func startGateway(t *testing.T) (site, admin string) {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", t.TempDir())   // the toggle state file goes here
	t.Setenv("XDG_CONFIG_HOME", t.TempDir()) // and Caddy's config autosave here
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
	}))
	t.Cleanup(hs.Close)
	site, admin = testkit.FreeLoopback(t), testkit.FreeLoopback(t)
	cfg, err := gatewayConfig(hs.URL, site, admin)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading the gateway config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return site, admin
}

func status(t *testing.T, site, method, path string) int {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+site+path, strings.NewReader("{}"))
	req.Header.Set("Authorization", "Bearer syt_ctltest_secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestCtlAgainstStoppedGatewaySaysSo(t *testing.T) {
	addr := testkit.FreeLoopback(t) // nothing listens here
	for name, err := range map[string]error{
		"status":  runStatus(new(bytes.Buffer), addr, "", false, 0),
		"shed":    runShed(new(bytes.Buffer), addr, caddymodule.ShedRequest{Class: "search"}),
		"restore": runRestore(new(bytes.Buffer), addr, "search", "", "", false),
	} {
		if err == nil || !strings.Contains(err.Error(), "cannot reach mxgate admin endpoint at "+addr+": is the gateway running?") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestCtlArgumentErrors(t *testing.T) {
	addr := testkit.FreeLoopback(t)
	if err := runShed(new(bytes.Buffer), addr, caddymodule.ShedRequest{}); err == nil || !strings.Contains(err.Error(), "name a class") {
		t.Errorf("shed without class: %v", err)
	}
	if err := runShed(new(bytes.Buffer), addr, caddymodule.ShedRequest{Class: "search", Priority: "normal"}); err == nil {
		t.Error("shed with class and priority: no error")
	}
	if err := runRestore(new(bytes.Buffer), addr, "search", "", "", true); err == nil {
		t.Error("restore with class and --all: no error")
	}
	if err := runRestore(new(bytes.Buffer), addr, "", "", "", false); err == nil {
		t.Error("restore without target: no error")
	}
}

func TestCtlShedStatusRestore(t *testing.T) {
	site, admin := startGateway(t)
	const search = "/_matrix/client/v3/search"
	const history = "/_matrix/client/v3/rooms/%21r%3Aexample.org/messages"
	if code := status(t, site, "POST", search); code != http.StatusOK {
		t.Fatalf("search through the gateway: %d", code)
	}
	// The long-poll route (its own proxy and connection pool) works too.
	if code := status(t, site, "GET", "/_matrix/client/v3/sync?since=s1&timeout=0"); code != http.StatusOK {
		t.Fatalf("sync through the gateway: %d", code)
	}

	var out bytes.Buffer
	if err := runShed(&out, admin, caddymodule.ShedRequest{Class: "search", For: "20m", Reason: "db maintenance", Mode: "shed"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "search: shed for 20m0s") || !strings.Contains(out.String(), "db maintenance") {
		t.Errorf("shed output: %q", out.String())
	}
	if code := status(t, site, "POST", search); code != http.StatusTooManyRequests {
		t.Errorf("search after mxgate shed: %d", code)
	}
	out.Reset()
	if err := runShed(&out, admin, caddymodule.ShedRequest{Priority: "sheddable", For: "5m", Mode: "queue", Reason: "brownout"}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "every sheddable and lower-priority class: queue") {
		t.Errorf("brownout output: %q", out.String())
	}
	status(t, site, "POST", search)
	status(t, site, "GET", history)

	out.Reset()
	if err := runStatus(&out, admin, "", false, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	table := out.String()
	t.Logf("mxgate status:\n%s", table)
	for _, want := range []string{
		"zone default: global in-flight 0/256",
		"CLASS", "IN-FLIGHT/CAP", "429/s",
		"db maintenance", "* (sheddable and below)", "herds: none", "client connections:",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q", want)
		}
	}
	searchRow := rowOf(table, "search ")
	if f := strings.Fields(searchRow); len(f) < 8 || f[2] != "shed" || f[6] != "2" || f[7] != "1" {
		t.Errorf("search row %q: want mode shed, 2 refused, 1 admitted", searchRow)
	}
	if f := strings.Fields(rowOf(table, "receipts ")); len(f) < 3 || f[2] != "queue" {
		t.Errorf("receipts row %q: want mode queue from the brownout", rowOf(table, "receipts "))
	}
	if strings.Contains(table, "syt_ctltest_secret") {
		t.Fatal("status shows an access token")
	}

	out.Reset()
	if err := runStatus(&out, admin, "", true, 0); err != nil {
		t.Fatal(err)
	}
	var st caddymodule.StatusResponse
	if err := json.Unmarshal(out.Bytes(), &st); err != nil || len(st.Zones) != 1 || len(st.Zones[0].Toggles) != 2 {
		t.Fatalf("status --json: %v %s", err, out.String())
	}

	out.Reset()
	if err := runRestore(&out, admin, "search", "", "", false); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out.String()) != "restored search in zone default" {
		t.Errorf("restore output %q", out.String())
	}
	// search is still under the queue brownout: restore it all.
	out.Reset()
	if err := runRestore(&out, admin, "", "", "", true); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "restored *:sheddable in zone default") {
		t.Errorf("restore --all output %q", out.String())
	}
	if code := status(t, site, "POST", search); code != http.StatusOK {
		t.Errorf("search after restore: %d", code)
	}
	out.Reset()
	if err := runRestore(&out, admin, "search", "", "", false); err != nil || !strings.Contains(out.String(), "nothing to restore") {
		t.Errorf("restoring again: %v %q", err, out.String())
	}

	// The gateway knows its upstream: health dials it.
	var health caddymodule.HealthResponse
	c, _ := newAdminClient(admin)
	if err := c.call(http.MethodGet, "/_mxgate/health", nil, &health); err != nil {
		t.Fatal(err)
	}
	if z := health.Zones[0]; health.Status != "ok" || z.Source != "dial" || z.Reachable == nil || !*z.Reachable {
		t.Errorf("health %+v", health)
	}

	// API validation errors come back as the message.
	if err := runShed(new(bytes.Buffer), admin, caddymodule.ShedRequest{Class: "everything"}); err == nil || !strings.Contains(err.Error(), `unknown endpoint class "everything"`) {
		t.Errorf("shed of an unknown class: %v", err)
	}
	if err := runShed(new(bytes.Buffer), admin, caddymodule.ShedRequest{Class: "search", For: "48h"}); err == nil || !strings.Contains(err.Error(), "max_toggle_duration") {
		t.Errorf("shed for too long: %v", err)
	}
}

func rowOf(table, prefix string) string {
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}
