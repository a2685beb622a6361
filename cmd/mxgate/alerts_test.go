//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/internal/testkit"
)

const rulesFile = "../../contrib/prometheus/mxgate.rules.yml"

// The shipped rules pass promtool's check and their unit tests, and every
// alert links to a runbook section that exists in the README.
func TestAlertRulesPromtool(t *testing.T) {
	promtool := debianTool(t, "promtool", "prometheus")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"check", "rules", "mxgate.rules.yml"},
		{"test", "rules", "mxgate.rules.test.yml"},
	} {
		cmd := exec.CommandContext(ctx, promtool, args...)
		cmd.Dir = filepath.Dir(rulesFile)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	rules := readFile(t, rulesFile)
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\w+)`).FindAllStringSubmatch(rules, -1)
	runbooks := regexp.MustCompile(`(?m)^\s*runbook_url: "https://github\.com/mxgate/mxgate#([a-z0-9-]+)"`).FindAllStringSubmatch(rules, -1)
	if len(alerts) < 8 || len(runbooks) != len(alerts) {
		t.Fatalf("%d alerts, %d runbook_urls", len(alerts), len(runbooks))
	}
	// A misspelt metric would make its alert silently never fire.
	known := gateMetricNames(t)
	for _, fleet := range []string{"mxgate_fleet_instances", "mxgate_fleet_redis_up"} {
		known[fleet] = true // the fleet's gauges, registered by the fleet code
	}
	for _, n := range regexp.MustCompile(`\bmxgate_[a-z0-9_]+`).FindAllString(rules, -1) {
		if !known[n] {
			t.Errorf("the rules use %s, which mxgate does not export", n)
		}
	}
	anchors := readmeAnchors(readFile(t, "../../README.md"))
	for i, rb := range runbooks {
		if !anchors[rb[1]] {
			t.Errorf("alert %s: runbook #%s is not a README heading", alerts[i][1], rb[1])
		}
	}
}

// gateMetricNames are the series names the gate's collectors export.
func gateMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m := gate.NewMetrics()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	// Vectors without a series are not gathered: give each one.
	for _, v := range []*prometheus.GaugeVec{m.HerdsActive, m.ShedMode, m.Limit} {
		v.WithLabelValues("room_state")
	}
	m.HerdsStarted.WithLabelValues("room_state")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		out[mf.GetName()] = true
		if mf.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[mf.GetName()+s] = true
			}
		}
	}
	return out
}

// readmeAnchors are the anchors GitHub gives the README's headings.
func readmeAnchors(readme string) map[string]bool {
	out := map[string]bool{}
	drop := regexp.MustCompile("[^a-z0-9 _-]")
	for _, line := range strings.Split(readme, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		out[strings.ReplaceAll(drop.ReplaceAllString(h, ""), " ", "-")] = true
	}
	return out
}

// A real Prometheus scrapes a gateway (Caddy's admin /metrics) whose
// homeserver fails a third of its requests, and fires MxgateUpstreamErrors.
// The rules are the shipped ones with their windows shortened to seconds.
// The dashboard's queries then run on it too.
func TestUpstreamFailureAlertFires(t *testing.T) {
	prom := debianTool(t, "prometheus", "prometheus")
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "/messages") {
			http.Error(w, `{"errcode":"M_UNKNOWN"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{}`)
	}))
	t.Cleanup(failing.Close)
	site, admin := runGateway(t, failing.URL, gatewayResilience{})
	stopTraffic := trafficTo(site, []string{
		"/_matrix/client/v3/rooms/!r:example.org/messages",
		"/_matrix/client/v3/rooms/!r:example.org/state",
		"/_matrix/client/versions",
	})
	t.Cleanup(stopTraffic)

	dir := t.TempDir()
	rules := readFile(t, rulesFile)
	rules = regexp.MustCompile(`for: \w+`).ReplaceAllString(rules, "for: 3s")
	rules = regexp.MustCompile(`\[\d+m\]`).ReplaceAllString(rules, "[10s]")
	writeFile(t, filepath.Join(dir, "rules.yml"), rules)
	writeFile(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [rules.yml]
scrape_configs:
  - job_name: mxgate
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
`, admin))
	web := testkit.FreeLoopback(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, prom, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+web, "--log.level=warn")
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})

	deadline := time.Now().Add(60 * time.Second)
	var last string
	for {
		firing, seen := alertState(web, "MxgateUpstreamErrors")
		if firing != nil {
			if firing["instance"] != admin || firing["severity"] != "page" {
				t.Fatalf("firing with labels %v", firing)
			}
			t.Logf("MxgateUpstreamErrors firing after the homeserver failed: %v", firing)
			checkDashboardQueries(t, web)
			return
		}
		last = seen
		if time.Now().After(deadline) {
			t.Fatalf("MxgateUpstreamErrors did not fire within 60s; alerts: %s\nprometheus:\n%s", last, logs.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// checkDashboardQueries runs every query of the Grafana dashboard on the
// same Prometheus: each must parse and evaluate, and the failing upstream
// must show on the panel of answers by code class.
func checkDashboardQueries(t *testing.T, web string) {
	t.Helper()
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal([]byte(readFile(t, "../../contrib/grafana/mxgate.json")), &d); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "10s", "$instance", ".*", "$class", ".*")
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			expr := vars.Replace(tg.Expr)
			resp, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(expr))
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Status string `json:"status"`
				Error  string `json:"error"`
				Data   struct {
					Result []struct {
						Metric map[string]string `json:"metric"`
					} `json:"result"`
				} `json:"data"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err != nil || body.Status != "success" {
				t.Errorf("panel %q: %s: %v %s", p.Title, expr, err, body.Error)
				continue
			}
			if p.Title == "Upstream responses by code class" {
				var codes []string
				for _, r := range body.Data.Result {
					codes = append(codes, r.Metric["code_class"])
				}
				if !slices.Contains(codes, "5xx") || !slices.Contains(codes, "2xx") {
					t.Errorf("panel %q shows code classes %v, want 2xx and 5xx", p.Title, codes)
				}
			}
		}
	}
}

// alertState asks Prometheus for its alerts: the labels of name if it is
// firing, and what it saw for the failure message.
func alertState(web, name string) (firing map[string]string, seen string) {
	resp, err := http.Get("http://" + web + "/api/v1/alerts")
	if err != nil {
		return nil, err.Error()
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Alerts []struct {
				Labels map[string]string `json:"labels"`
				State  string            `json:"state"`
			} `json:"alerts"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err.Error()
	}
	var states []string
	for _, a := range body.Data.Alerts {
		states = append(states, a.Labels["alertname"]+"="+a.State)
		if a.Labels["alertname"] == name && a.State == "firing" {
			return a.Labels, ""
		}
	}
	return nil, strings.Join(states, " ")
}

// runGateway runs `mxgate gateway`'s config in this process in front of
// upstream with the resilience switches res.
func runGateway(t *testing.T, upstream string, res gatewayResilience) (site, admin string) {
	t.Helper()
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	site, admin = testkit.FreeLoopback(t), testkit.FreeLoopback(t)
	cfg, err := gatewayConfigWith(upstream, site, admin, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading the gateway config: %v", err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	return site, admin
}

// trafficTo sends GETs to paths on site in turn, every 20ms, until stopped.
func trafficTo(site string, paths []string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 5 * time.Second}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			req, _ := http.NewRequest(http.MethodGet, "http://"+site+paths[i%len(paths)], nil)
			req.Header.Set("Authorization", fmt.Sprintf("Bearer syt_traffic_%d", i%7))
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); wg.Wait() }) }
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
