package scenario

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/mxgate/mxgate/bench/simhs"
	"github.com/mxgate/mxgate/matrix"
)

// DemoOptions size RunDemo. Zero fields take the defaults noted.
type DemoOptions struct {
	// Seed fixes the clients' behaviour (default 1).
	Seed uint64
	// HerdClients resync the big room at once (default 500).
	HerdClients int
	// Clients is the background population (default 20).
	Clients int
	// Duration is the model length of each run (default 120s).
	Duration time.Duration
	// Scale runs the model this many times faster (default 20, so each run
	// takes Duration/Scale of wall-clock time: 6 s by default).
	Scale float64
}

// demoWidth is the column the demo's prose wraps at.
const demoWidth = 90

// The demo's two runs, as the table and the legend name them.
const (
	demoDirect = "straight to the homeserver"
	demoGated  = "through mxgate"
)

// RunDemo runs the thundering-herd scenario twice in this process against
// the simulated homeserver, once straight to it and once through mxgate at
// its defaults, and writes a comparison of what the homeserver and the
// clients saw, a one-line legend per row and a closing sentence with the
// headline ratios. It needs nothing installed and takes about
// 2*Duration/Scale plus a few seconds of set-up.
func RunDemo(ctx context.Context, w io.Writer, o DemoOptions) error {
	if o.HerdClients <= 0 {
		o.HerdClients = 500
	}
	if o.Clients <= 0 {
		o.Clients = 20
	}
	if o.Duration <= 0 {
		o.Duration = 120 * time.Second
	}
	if o.Scale <= 0 {
		o.Scale = 20
	}
	hs := demoHomeserver()
	opts := Options{Seed: o.Seed, Scale: o.Scale, Clients: o.Clients, HerdClients: o.HerdClients, Duration: o.Duration, Homeserver: &hs}.withDefaults()
	fmt.Fprintf(w, "%s\n\n", wrap(fmt.Sprintf("Thundering herd: %d clients resync a large room's state within one second, %s "+
		"into the run, while %d others chat. Simulated homeserver: %d DB connections, one CPU core, "+
		"at most %d open connections. Each run is %s of model time, played %gx faster.",
		o.HerdClients, opts.CauseAt, o.Clients, hs.DBPool, hs.MaxFDs, o.Duration, o.Scale), demoWidth))

	runs := []struct {
		label string
		peer  Peer
	}{{demoDirect, Direct{}}, {demoGated, &InProcess{Scale: o.Scale}}}
	var results []*Result
	for i, run := range runs {
		fmt.Fprintf(w, "run %d of %d: %s (%s)...\n", i+1, len(runs), run.label, opts.real(o.Duration).Round(time.Second))
		r, err := Run(ctx, "herd", run.peer, opts)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	fmt.Fprintln(w)
	writeDemoTable(w, results[0], results[1])
	fmt.Fprintln(w)
	writeDemoLegend(w, opts)
	fmt.Fprintln(w)
	fmt.Fprintln(w, wrap(demoConclusion(results[0], results[1]), demoWidth))
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if note := busyNote(string(b), runtime.NumCPU()); note != "" {
			fmt.Fprintln(w)
			fmt.Fprintln(w, note)
		}
	}
	return nil
}

// demoHomeserver is the default model with smaller JSON bodies, so that the
// demo measures the homeserver's behaviour rather than loopback copying.
func demoHomeserver() simhs.Config {
	c := simhs.DefaultConfig()
	for i := range c.Costs {
		c.Costs[i].BodyBytes = min(c.Costs[i].BodyBytes, 256<<10)
	}
	return c
}

func writeDemoTable(w io.Writer, direct, gated *Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	row := func(label string, f func(*Result) string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t\n", label, f(direct), f(gated))
	}
	fmt.Fprintf(tw, "\t%s\t%s\t\n", demoDirect, demoGated)
	row("homeserver peak concurrency", func(r *Result) string { return fmt.Sprint(r.Upstream.PeakNonSync) })
	row("homeserver peak open connections", func(r *Result) string { return fmt.Sprint(r.Upstream.PeakFDs) })
	row("work done for clients already gone", func(r *Result) string {
		return fmt.Sprintf("%s (%d req)", round(r.Upstream.WastedWork), r.Upstream.Wasted)
	})
	row("answers delivered in time (goodput)", func(r *Result) string { return fmt.Sprint(r.Goodput) })
	row("herd clients fully resynced", func(r *Result) string { return fmt.Sprintf("%d/%d", r.HerdResynced, r.HerdClients) })
	row("p99 room state", func(r *Result) string { return round(r.ClassP99(matrix.RoomState)).String() })
	row("p99 sending a message", func(r *Result) string { return round(r.ClassP99(matrix.Send)).String() })
	row("background back to normal after", func(r *Result) string { return recoveryCell(r) })
	tw.Flush()
}

// writeDemoLegend defines every row of the table in one line each; o is the
// run's options with defaults applied.
func writeDemoLegend(w io.Writer, o Options) {
	hs := o.Homeserver
	for _, line := range []string{
		"peak concurrency: most requests the homeserver worked on at once, long-poll /sync aside.",
		fmt.Sprintf("peak open connections: most client connections it held; %d is its limit (file descriptors).", hs.MaxFDs),
		"work done for clients already gone: homeserver DB+CPU time on answers nobody waited for any more.",
		fmt.Sprintf("in time (goodput): successful answers received before the client gave up (%s-%s), /sync aside.", o.GiveUpMin, o.GiveUpMax),
		"fully resynced: herd clients that got both the room's state and their initial sync.",
		"p99: 99th-percentile latency; a request the client gave up on counts with the time it waited.",
		fmt.Sprintf("background: the %d chatting clients; back to normal: their p99 within 2x of before the herd for %d s.", o.Clients, recoveryRun),
	} {
		fmt.Fprintln(w, line)
	}
}

// demoConclusion is the closing sentence: the headline ratios of the run.
func demoConclusion(direct, gated *Result) string {
	return fmt.Sprintf("Through mxgate the homeserver worked on at most %d requests at once instead of %d, "+
		"clients got %s, %d of %d herd clients resynced instead of %d, "+
		"and p99 for sending a message was %s instead of %s.",
		gated.Upstream.PeakNonSync, direct.Upstream.PeakNonSync,
		timesAsMany(gated.Goodput, direct.Goodput),
		gated.HerdResynced, gated.HerdClients, direct.HerdResynced,
		round(gated.ClassP99(matrix.Send)), round(direct.ClassP99(matrix.Send)))
}

// timesAsMany says how many answers arrived in time compared with base:
// "9.6x as many answers in time (1194 instead of 125)".
func timesAsMany(n, base int) string {
	if base == 0 {
		return fmt.Sprintf("%d answers in time instead of 0", n)
	}
	return fmt.Sprintf("%.1fx as many answers in time (%d instead of %d)", float64(n)/float64(base), n, base)
}

// busyNote returns a warning when the machine's 1-minute load average
// (the first field of loadavg, as in /proc/loadavg) was above twice its
// CPUs, or "". The simulation runs in scaled real time, so CPU taken by
// other programs slows the homeserver and mxgate alike and distorts every
// figure; the demo itself keeps at most one runnable thread per CPU.
func busyNote(loadavg string, cpus int) string {
	var load float64
	if _, err := fmt.Sscan(loadavg, &load); err != nil || load <= 2*float64(cpus) {
		return ""
	}
	return wrap(fmt.Sprintf("Note: this machine was busy (load average %.1f on %d CPUs). The simulation runs in "+
		"scaled real time, so other programs' CPU use distorts these figures; run it again when idle.", load, cpus), demoWidth)
}

// wrap breaks s into lines of at most width columns at spaces.
func wrap(s string, width int) string {
	var b strings.Builder
	col := 0
	for i, word := range strings.Fields(s) {
		if i > 0 {
			if col+1+len(word) > width {
				b.WriteByte('\n')
				col = 0
			} else {
				b.WriteByte(' ')
				col++
			}
		}
		b.WriteString(word)
		col += len(word)
	}
	return b.String()
}
