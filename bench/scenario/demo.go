package scenario

import (
	"context"
	"fmt"
	"io"
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

// RunDemo runs the thundering-herd scenario twice in this process against
// the simulated homeserver, once directly and once through mxgate at its
// defaults, and writes a comparison of what the homeserver and the clients
// saw. It needs nothing installed and takes about 2*Duration/Scale.
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
	opts := Options{Seed: o.Seed, Scale: o.Scale, Clients: o.Clients, HerdClients: o.HerdClients, Duration: o.Duration, Homeserver: &hs}
	fmt.Fprintf(w, "Thundering herd: %d clients resync a large room's state within one second,\nwhile %d others chat. Simulated homeserver: %d DB connections, one CPU core.\nEach run is %s of model time, played %gx faster.\n\n",
		o.HerdClients, o.Clients, hs.DBPool, o.Duration, o.Scale)

	var results []*Result
	for _, peer := range []Peer{Direct{}, &InProcess{Scale: o.Scale}} {
		fmt.Fprintf(w, "running %s...\n", peer.Name())
		r, err := Run(ctx, "herd", peer, opts)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	fmt.Fprintln(w)
	writeDemoTable(w, results[0], results[1])
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
	row("", func(r *Result) string {
		return map[string]string{"direct": "without mxgate", "mxgate-inprocess": "with mxgate"}[r.Peer]
	})
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
