package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/bench/simhs"
	"github.com/mxgate/mxgate/gate"
	"github.com/mxgate/mxgate/matrix"
)

// testCap is the gateway's global cap in these tests: small enough that the
// herd would exceed it many times over without the gateway. The discovery
// class (the js-sdk clients' /versions probes) has its own budget outside
// it, testDiscoveryCap.
//
// testScale runs the model this many times faster than real time: fast
// enough for a unit test, slow enough that scheduling delays of a loaded
// machine under the race detector stay small against the model's costs.
const (
	testCap          = 24
	testDiscoveryCap = 4
	testScale        = 10
)

// smallOptions runs a scenario testScale times faster with few clients and small JSON
// bodies, so that the run is cheap in real CPU.
func smallOptions(duration time.Duration) Options {
	hs := simhs.DefaultConfig()
	for i := range hs.Costs {
		hs.Costs[i].BodyBytes = min(hs.Costs[i].BodyBytes, 16<<10)
	}
	return Options{
		Seed: 7, Scale: testScale, Clients: 10, HerdClients: 150, SlowWrites: 2,
		Duration: duration, Homeserver: &hs,
	}
}

func testGate() *InProcess {
	cfg := gate.DefaultConfig()
	cfg.MaxInflight = testCap
	cfg.Classes[matrix.Discovery].MaxInflight = testDiscoveryCap
	return &InProcess{Config: &cfg, Scale: testScale}
}

// runChecked runs one scenario and checks what every run must satisfy: it
// stops by itself, in bounded time, leaving no goroutine behind.
func runChecked(t *testing.T, name string, peer Peer, o Options) *Result {
	t.Helper()
	before := runtime.NumGoroutine()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := Run(ctx, name, peer, o)
	if err != nil {
		t.Fatalf("%s through %s: %v", name, peer.Name(), err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%s through %s left goroutines: %d before, %d after\n%s",
				name, peer.Name(), before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
	if res.Requests == 0 || res.DroppedRecords != 0 {
		t.Fatalf("%s through %s: %d requests recorded, %d dropped", name, peer.Name(), res.Requests, res.DroppedRecords)
	}
	return res
}

// checkGateCap asserts the gateway kept the homeserver within its caps
// (the global one and discovery's own). The slack covers requests whose
// client gave up: the gateway frees their slot, but the homeserver keeps
// working on them (that is the model), and the instant between the
// homeserver answering and counting itself done.
func checkGateCap(t *testing.T, r *Result) {
	t.Helper()
	slack := int64(r.Errors["gave_up"]) + 2 + testDiscoveryCap
	if r.Upstream.PeakNonSync > testCap+slack {
		t.Errorf("%s with mxgate: homeserver peak %d above cap %d (+%d)", r.Scenario, r.Upstream.PeakNonSync, testCap, slack)
	}
}

func TestHerd(t *testing.T) {
	o := smallOptions(120 * time.Second)
	o.HerdClients = 400 // 80 s of CPU work arriving within a second
	direct := runChecked(t, "herd", Direct{}, o)
	gated := runChecked(t, "herd", testGate(), o)
	logTable(t, direct, gated)

	checkGateCap(t, gated)
	if direct.Upstream.PeakNonSync <= testCap {
		t.Errorf("the herd did not overload the homeserver without mxgate (peak %d): the scenario tests nothing", direct.Upstream.PeakNonSync)
	}
	if gated.Goodput < direct.Goodput {
		t.Errorf("goodput with mxgate %d < without %d", gated.Goodput, direct.Goodput)
	}
	if gated.HerdResynced < direct.HerdResynced {
		t.Errorf("herd resynced with mxgate %d < without %d", gated.HerdResynced, direct.HerdResynced)
	}
	if !gated.HasCause || gated.Errors["429"] == 0 {
		t.Errorf("mxgate answered no 429 to a herd: %+v", gated.Errors)
	}
}

func TestStacked(t *testing.T) {
	o := smallOptions(120 * time.Second)
	direct := runChecked(t, "stacked", Direct{}, o)
	gated := runChecked(t, "stacked", testGate(), o)
	logTable(t, direct, gated)

	checkGateCap(t, gated)
	for _, r := range []*Result{direct, gated} {
		// Two 30 s writes in a row, from t=20s: the cause lasts about 60 s.
		if r.Upstream.LastSlowWriteEnd.IsZero() || r.CauseEnd < 60*time.Second {
			t.Errorf("%s: slow writes did not hold the lock (cause end %v)", r.Peer, r.CauseEnd)
		}
	}
	if gated.Goodput < direct.Goodput*9/10 {
		t.Errorf("goodput with mxgate %d well below without %d", gated.Goodput, direct.Goodput)
	}
}

func TestRedeploy(t *testing.T) {
	o := smallOptions(60 * time.Second)
	direct := runChecked(t, "redeploy", Direct{}, o)
	gated := runChecked(t, "redeploy", testGate(), o)
	logTable(t, direct, gated)

	checkGateCap(t, gated)
	for _, r := range []*Result{direct, gated} {
		if r.Upstream.Restarts != 1 || r.CauseEnd < 25*time.Second {
			t.Errorf("%s: no 5 s restart at 20 s (restarts %d, cause end %v)", r.Peer, r.Upstream.Restarts, r.CauseEnd)
		}
	}
	if direct.Errors["no_answer"] == 0 {
		t.Errorf("clients talking to a restarting homeserver saw no failed connection: %+v", direct.Errors)
	}
	if gated.Errors["502"] == 0 {
		t.Errorf("clients behind mxgate saw no 502 while the homeserver was down: %+v", gated.Errors)
	}
}

func TestSteady(t *testing.T) {
	o := smallOptions(30 * time.Second)
	direct := runChecked(t, "steady", Direct{}, o)
	gated := runChecked(t, "steady", testGate(), o)
	logTable(t, direct, gated)

	checkGateCap(t, gated)
	for _, r := range []*Result{direct, gated} {
		if r.HasCause || r.Goodput == 0 || r.Errors["429"] != 0 {
			t.Errorf("%s: steady traffic should flow untouched: goodput %d, errors %v", r.Peer, r.Goodput, r.Errors)
		}
	}
}

func TestRunRejectsUnknownScenario(t *testing.T) {
	if _, err := Run(context.Background(), "nope", Direct{}, Options{}); err == nil {
		t.Fatal("unknown scenario accepted")
	}
}

func TestRecoveryNeedsConsecutiveGoodSeconds(t *testing.T) {
	s := func(p99s ...time.Duration) []Bucket {
		b := make([]Bucket, len(p99s))
		for i, p := range p99s {
			b[i] = Bucket{At: time.Duration(i) * time.Second, Requests: 1, P99: p}
		}
		return b
	}
	ms := time.Millisecond
	// Cause ends at 1 s; one good second at 2 s is not recovery, 4-6 s is.
	series := s(9*ms, 9*ms, 1*ms, 9*ms, 1*ms, 1*ms, 1*ms)
	if d, ok := recovery(series, time.Second, 5*ms); !ok || d != 3*time.Second {
		t.Fatalf("got %v %v, want 3s true", d, ok)
	}
	if _, ok := recovery(s(9*ms, 9*ms, 9*ms), 0, 5*ms); ok {
		t.Fatal("recovered although every second was slow")
	}
}

func TestMarkdownTableHasEveryRun(t *testing.T) {
	var b bytes.Buffer
	WriteMarkdown(&b, []*Result{{Scenario: "herd", Peer: "direct", Errors: map[string]int{"429": 3}}, {Scenario: "herd", Peer: "mxgate-inprocess"}})
	out := b.String()
	for _, want := range []string{"| herd | direct |", "| herd | mxgate-inprocess |", "429: 3"} {
		if !strings.Contains(out, want) {
			t.Fatalf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestScaleGateConfig(t *testing.T) {
	c := scaleGateConfig(gate.DefaultConfig(), 10)
	d := gate.DefaultConfig()
	if c.RetryAfterMin != d.RetryAfterMin/10 || c.Classes[1].QueueTimeout != d.Classes[1].QueueTimeout/10 || c.Classes[1].Rate != d.Classes[1].Rate*10 {
		t.Fatalf("config not scaled: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func logTable(t *testing.T, results ...*Result) {
	t.Helper()
	var b bytes.Buffer
	WriteMarkdown(&b, results)
	t.Log("\n" + b.String())
}

func TestPlotsAreWrittenPerScenario(t *testing.T) {
	dir := t.TempDir()
	rs := []*Result{
		{Scenario: "herd", Peer: "direct", Series: []Bucket{{P99: time.Second, UpstreamConcurrency: 300}, {P99: 2 * time.Second}}},
		{Scenario: "herd", Peer: "mxgate-inprocess", Series: []Bucket{{P99: 100 * time.Millisecond, UpstreamConcurrency: 24}}},
	}
	if err := WritePlots(dir, rs); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"herd-p99.svg", "herd-upstream.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if strings.Count(s, "<polyline") != 2 || !strings.Contains(s, ">mxgate-inprocess</text>") || !strings.HasSuffix(s, "</svg>\n") {
			t.Fatalf("%s is not a two-line chart with a legend:\n%s", f, s)
		}
	}
	if niceCeil(0.37) != 0.5 || niceCeil(301) != 500 || niceCeil(0) != 1 {
		t.Fatal("niceCeil")
	}
}

func TestConfigureClasses(t *testing.T) {
	cfg := gate.DefaultConfig()
	err := configureClasses(&cfg, map[string]json.RawMessage{
		"room_state":   json.RawMessage(`{"max_inflight":3}`),
		"sync_initial": json.RawMessage(`{"queue_timeout":"5s"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Classes[matrix.RoomState].MaxInflight; got != 3 {
		t.Errorf("room_state max_inflight %d, want 3", got)
	}
	if got := cfg.Classes[matrix.SyncInitial]; got.QueueTimeout != 5*time.Second || got.MaxInflight != matrix.DefaultLimits[matrix.SyncInitial].MaxInflight {
		t.Errorf("sync_initial %+v: want queue_timeout 5s over the defaults", got)
	}
	for _, bad := range []map[string]json.RawMessage{
		{"no_such_class": json.RawMessage(`{}`)},
		{"room_state": json.RawMessage(`{"no_such_setting":1}`)},
		{"sync": json.RawMessage(`{"share_state":true}`)},
	} {
		cfg := gate.DefaultConfig()
		if err := configureClasses(&cfg, bad); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}
