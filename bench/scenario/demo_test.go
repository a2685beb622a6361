package scenario

import (
	"strings"
	"testing"
	"time"

	"github.com/mxgate/mxgate/bench/simhs"
	"github.com/mxgate/mxgate/matrix"
)

func demoResults() (direct, gated *Result) {
	direct = &Result{Peer: Direct{}.Name(), Goodput: 125, HerdClients: 500, HasCause: true,
		Upstream: simhs.Stats{PeakNonSync: 1005, PeakFDs: 1024},
		Classes:  []ClassLatency{{Class: matrix.Send, P99: 37 * time.Second}}}
	gated = &Result{Peer: (&InProcess{}).Name(), Goodput: 1194, HerdClients: 500, HerdResynced: 394, HasCause: true,
		Recovered: true, Recovery: 67 * time.Second,
		Upstream: simhs.Stats{PeakNonSync: 29, PeakFDs: 49},
		Classes:  []ClassLatency{{Class: matrix.Send, P99: 345 * time.Millisecond}}}
	return direct, gated
}

func TestDemoTableUsesPlainNames(t *testing.T) {
	direct, gated := demoResults()
	var b strings.Builder
	writeDemoTable(&b, direct, gated)
	out := b.String()
	header, _, _ := strings.Cut(out, "\n")
	if !strings.Contains(header, "straight to the homeserver") || !strings.Contains(header, "through mxgate") {
		t.Errorf("header does not name the runs plainly: %q", header)
	}
	for _, internal := range []string{direct.Peer, gated.Peer} {
		if strings.Contains(out, internal) {
			t.Errorf("table shows the internal peer name %q:\n%s", internal, out)
		}
	}
	if !strings.Contains(out, "not recovered") || !strings.Contains(out, "1m7s") {
		t.Errorf("recovery row missing:\n%s", out)
	}
}

func TestDemoLegendDefinesEveryRow(t *testing.T) {
	direct, gated := demoResults()
	var table, legend strings.Builder
	writeDemoTable(&table, direct, gated)
	o := Options{Clients: 20}.withDefaults()
	writeDemoLegend(&legend, o)
	// Each row's defining words open one legend line.
	for _, term := range []string{"peak concurrency", "peak open connections", "work done for clients already gone",
		"in time (goodput)", "fully resynced", "p99", "background"} {
		if !strings.Contains(table.String(), term) {
			t.Errorf("table has no row with %q", term)
		}
		if !strings.Contains(legend.String(), "\n"+term+":") && !strings.HasPrefix(legend.String(), term+":") {
			t.Errorf("legend defines no %q:\n%s", term, legend.String())
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(legend.String()), "\n") {
		if len(line) > 105 {
			t.Errorf("legend line longer than 105 columns: %q", line)
		}
	}
	for _, fact := range []string{"back to normal: ", "1024 is its limit (file descriptors)", "30s-1m0s", "20 chatting clients"} {
		if !strings.Contains(legend.String(), fact) {
			t.Errorf("legend lacks %q:\n%s", fact, legend.String())
		}
	}
}

func TestDemoConclusionStatesTheRatios(t *testing.T) {
	direct, gated := demoResults()
	got := oneLine(demoConclusion(direct, gated))
	for _, want := range []string{"at most 29 requests at once instead of 1005", "9.6x as many answers in time (1194 instead of 125)",
		"394 of 500 herd clients resynced instead of 0", "345ms instead of 37s"} {
		if !strings.Contains(got, want) {
			t.Errorf("conclusion lacks %q: %s", want, got)
		}
	}
	direct.Goodput = 0
	if got := oneLine(demoConclusion(direct, gated)); !strings.Contains(got, "1194 answers in time instead of 0") {
		t.Errorf("no ratio against zero goodput: %s", got)
	}
}

func TestBusyNoteOnlyWhenTheMachineIsBusy(t *testing.T) {
	if note := oneLine(busyNote("18.52 18.60 17.85 24/490 19895\n", 2)); !strings.Contains(note, "load average 18.5 on 2 CPUs") {
		t.Errorf("no note at load 18.5 on 2 CPUs: %q", note)
	}
	for _, idle := range []string{"3.90 1.00 0.50 1/100 7\n", "4.00 1 1 1/1 1", "", "garbage"} {
		if note := busyNote(idle, 2); note != "" {
			t.Errorf("note for loadavg %q on 2 CPUs: %q", idle, note)
		}
	}
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func TestWrapKeepsWordsAndWidth(t *testing.T) {
	in := "Through mxgate the homeserver worked on at most 35 requests at once instead of 1024, clients got more."
	got := wrap(in, 30)
	for _, line := range strings.Split(got, "\n") {
		if len(line) > 30 {
			t.Errorf("line longer than 30 columns: %q", line)
		}
	}
	if oneLine(got) != in {
		t.Errorf("wrap changed the words: %q", got)
	}
}
