package scenario

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// WriteMarkdown writes the summary table and the per-class latency table of
// results.
func WriteMarkdown(w io.Writer, results []*Result) {
	fmt.Fprintln(w, "| scenario | peer | goodput (ok/s) | ok % | herd resynced | ideal | vs ideal | worst background p99 vs baseline | upstream peak (non-sync) | peak fds | wasted work | errors | recovery |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
	for _, r := range results {
		okPct := 0.0
		if r.Requests > 0 {
			okPct = 100 * float64(r.Goodput+classOK(r, matrix.Sync)) / float64(r.Requests)
		}
		herd, ideal, vs := "–", "–", "–"
		if r.HerdClients > 0 {
			herd = fmt.Sprintf("%d/%d", r.HerdResynced, r.HerdClients)
			ideal = fmt.Sprintf("%d (all in %s)", r.Ideal.Resynced, round(r.Ideal.Completion))
			if r.Ideal.Resynced > 0 {
				vs = fmt.Sprintf("%.2f×", float64(r.HerdResynced)/float64(r.Ideal.Resynced))
			}
		}
		fmt.Fprintf(w, "| %s | %s | %.1f | %.1f | %s | %s | %s | %s | %d (%d) | %d | %s of %s | %s | %s |\n",
			r.Scenario, r.Peer, r.GoodputPerSec, okPct, herd, ideal, vs, worstBackgroundCell(r),
			r.Upstream.Peak, r.Upstream.PeakNonSync, r.Upstream.PeakFDs,
			round(r.Upstream.WastedWork), round(r.Upstream.WorkDone), errorsCell(r.Errors), recoveryCell(r))
	}
	writeFamilies(w, results)
	for _, r := range results {
		if r.HerdClients > 0 {
			fmt.Fprintf(w, "\nIdeal (physical limit, from the %s run's baseline): with %.0f requests inside the homeserver, the background leaves %.2f CPU cores and %.1f DB connections;"+
				" a herd client costs room state + initial sync; a perfect gate resyncs %d of %d herd clients in the %s after the herd starts.\n",
				r.Peer, r.Ideal.Concurrency, r.Ideal.CPULeft, r.Ideal.DBLeft, r.Ideal.Resynced, r.HerdClients, round(r.Ideal.Window))
			break
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | peer | class | requests | ok | p50 | p99 |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|")
	for _, r := range results {
		for _, c := range r.Classes {
			fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %s | %s |\n", r.Scenario, r.Peer, c.Class, c.Count, c.OK, round(c.P50), round(c.P99))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Background only (the steady population, long-poll /sync excluded), requests started from the incident's start, finished ones:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | peer | class | requests | ok | p50 | p99 | failed |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---|")
	for _, r := range results {
		for _, c := range r.Background {
			fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %s | %s | %s |\n", r.Scenario, r.Peer, c.Class, c.Count, c.OK, round(c.P50), round(c.P99), errorsCell(c.Errors))
		}
	}
}

// worstBackgroundCell is the highest per-second background p99 from the
// incident's start to the end of the run, as a multiple of the baseline p99.
func worstBackgroundCell(r *Result) string {
	if !r.HasCause || r.BaselineP99 <= 0 {
		return "–"
	}
	var worst time.Duration
	for _, b := range r.Series {
		if b.At >= r.CauseStart {
			worst = max(worst, b.P99)
		}
	}
	return fmt.Sprintf("%.1f× (%s)", float64(worst)/float64(r.BaselineP99), round(worst))
}

func classOK(r *Result, class matrix.Class) int {
	for _, c := range r.Classes {
		if c.Class == class {
			return c.OK
		}
	}
	return 0
}

// ClassP99 returns the p99 of class in r (0 if it had no requests).
func (r *Result) ClassP99(class matrix.Class) time.Duration {
	for _, c := range r.Classes {
		if c.Class == class {
			return c.P99
		}
	}
	return 0
}

func errorsCell(errs map[string]int) string {
	if len(errs) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(errs))
	for k := range errs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, errs[k])
	}
	return strings.Join(parts, ", ")
}

func recoveryCell(r *Result) string {
	switch {
	case !r.HasCause:
		return "–"
	case !r.Recovered:
		return "not recovered"
	default:
		return round(r.Recovery).String()
	}
}

// round shortens a duration for a table.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Second:
		return d.Round(time.Second)
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	default:
		return d.Round(10 * time.Microsecond)
	}
}

// writeFamilies writes, for herd runs, how soon each client family of the
// herd resynced after the cause.
func writeFamilies(w io.Writer, results []*Result) {
	header := false
	for _, r := range results {
		for _, f := range r.HerdFamilies {
			if !header {
				fmt.Fprintln(w)
				fmt.Fprintln(w, "| scenario | peer | herd family | resynced | p50 after cause | last |")
				fmt.Fprintln(w, "|---|---|---|---:|---:|---:|")
				header = true
			}
			fmt.Fprintf(w, "| %s | %s | %s | %d/%d | %s | %s |\n", r.Scenario, r.Peer, f.Family, f.Resynced, f.Clients, round(f.P50), round(f.Max))
		}
	}
}
