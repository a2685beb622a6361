// Package grafana holds mxgate's Grafana dashboard (mxgate.json); its test
// checks the dashboard against the metrics the gate registers.
package grafana

import (
	"encoding/json"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxgate/mxgate/gate"
)

// dashboard is the part of Grafana's dashboard model the test reads.
type dashboard struct {
	Title      string  `json:"title"`
	UID        string  `json:"uid"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Panels []panel `json:"panels"` // a collapsed row's
}

// The dashboard is valid JSON; every panel queries the dashboard's data
// source, and every metric its queries name is one the gate registers.
func TestDashboardQueriesNameRegisteredMetrics(t *testing.T) {
	raw, err := os.ReadFile("mxgate.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("mxgate.json is not valid JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Fatalf("title %q uid %q", d.Title, d.UID)
	}
	known := registeredMetrics(t)
	ids := map[int]bool{}
	queried := map[string]bool{}
	var panels []panel
	for _, p := range d.Panels {
		panels = append(panels, p)
		panels = append(panels, p.Panels...)
	}
	for _, p := range panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the dashboard's data source variable", p.Title)
		}
		for _, tg := range p.Targets {
			names := metricNames(tg.Expr)
			if len(names) == 0 {
				t.Errorf("panel %q query %s names no mxgate metric: %s", p.Title, tg.RefID, tg.Expr)
			}
			for _, n := range names {
				if !known[n] {
					t.Errorf("panel %q query %s: %s is not a metric mxgate registers", p.Title, tg.RefID, n)
				}
				queried[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count"), "_sum")] = true
			}
		}
	}
	for _, v := range d.Templating.List {
		for _, n := range metricNames(v.Definition) {
			if !known[n] {
				t.Errorf("variable %s: %s is not a metric mxgate registers", v.Name, n)
			}
		}
	}
	// Every family is on the dashboard somewhere.
	for _, fam := range families(t) {
		if !queried[fam] {
			t.Errorf("no panel shows %s", fam)
		}
	}
}

var metricName = regexp.MustCompile(`\bmxgate_[a-z0-9_]+`)

func metricNames(expr string) []string { return metricName.FindAllString(expr, -1) }

// registeredMetrics are the series names the gate's collectors expose:
// each family's name, and for histograms its _bucket, _sum and _count.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	reg := prometheus.NewPedanticRegistry()
	m := gate.NewMetrics()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	// Touch every vector so that gathering sees each family.
	m.HerdsActive.WithLabelValues("room_state")
	m.HerdsStarted.WithLabelValues("room_state")
	m.ShedMode.WithLabelValues("room_state")
	m.Limit.WithLabelValues("room_state")
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		out[mf.GetName()] = true
		if mf.GetType().String() == "HISTOGRAM" {
			for _, s := range []string{"_bucket", "_sum", "_count"} {
				out[mf.GetName()+s] = true
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("gathered only %v", out)
	}
	return out
}

func families(t *testing.T) []string {
	var out []string
	for n := range registeredMetrics(t) {
		if !strings.HasSuffix(n, "_bucket") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}
