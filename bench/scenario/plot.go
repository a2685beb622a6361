package scenario

import (
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// WritePlots writes two SVG line charts per scenario into dir, one line per
// peer: SCENARIO-p99.svg (the background clients' p99 latency per second)
// and SCENARIO-upstream.svg (the homeserver's concurrency per second).
func WritePlots(dir string, results []*Result) error {
	byScenario := map[string][]*Result{}
	var order []string
	for _, r := range results {
		if _, ok := byScenario[r.Scenario]; !ok {
			order = append(order, r.Scenario)
		}
		byScenario[r.Scenario] = append(byScenario[r.Scenario], r)
	}
	for _, sc := range order {
		var p99, upstream []line
		for _, r := range byScenario[sc] {
			lp := line{name: r.Peer}
			lu := line{name: r.Peer}
			for _, b := range r.Series {
				lp.ys = append(lp.ys, b.P99.Seconds())
				lu.ys = append(lu.ys, float64(b.UpstreamConcurrency))
			}
			p99, upstream = append(p99, lp), append(upstream, lu)
		}
		charts := []struct {
			file, title, unit string
			lines             []line
		}{
			{sc + "-p99.svg", sc + ": background p99 latency per second", "seconds", p99},
			{sc + "-upstream.svg", sc + ": homeserver concurrency", "requests", upstream},
		}
		for _, c := range charts {
			var b strings.Builder
			writeLineChart(&b, c.title, c.unit, c.lines)
			if err := os.WriteFile(filepath.Join(dir, c.file), []byte(b.String()), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

type line struct {
	name string
	ys   []float64 // one value per model second
}

var palette = []string{"#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"}

// writeLineChart draws lines over x = 0..n seconds as a self-contained SVG.
func writeLineChart(w io.Writer, title, unit string, lines []line) {
	const width, height, left, right, top, bottom = 860.0, 420.0, 70.0, 170.0, 40.0, 50.0
	plotW, plotH := width-left-right, height-top-bottom
	n, ymax := 1, 0.0
	for _, l := range lines {
		n = max(n, len(l.ys))
		for _, y := range l.ys {
			ymax = math.Max(ymax, y)
		}
	}
	ymax = niceCeil(ymax)
	x := func(i int) float64 { return left + plotW*float64(i)/float64(n) }
	y := func(v float64) float64 { return top + plotH*(1-v/ymax) }

	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%.0f" y="22" font-size="15">%s</text>`+"\n", left, escape(title))
	for i := 0; i <= 5; i++ {
		v := ymax * float64(i) / 5
		fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, left+plotW, y(v), y(v))
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="end">%g</text>`+"\n", left-6, y(v)+4, v)
	}
	step := max(1, n/10)
	for i := 0; i <= n; i += step {
		fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%ds</text>`+"\n", x(i), top+plotH+18, i)
	}
	fmt.Fprintf(w, `<text x="%.0f" y="%.0f" text-anchor="middle">model time</text>`+"\n", left+plotW/2, height-8)
	fmt.Fprintf(w, `<text transform="translate(16 %.0f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", top+plotH/2, escape(unit))
	for i, l := range lines {
		color := palette[i%len(palette)]
		pts := make([]string, len(l.ys))
		for j, v := range l.ys {
			pts[j] = fmt.Sprintf("%.1f,%.1f", x(j), y(v))
		}
		fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		ly := top + 16*float64(i)
		fmt.Fprintf(w, `<line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="3"/>`+"\n", left+plotW+12, left+plotW+32, ly, ly, color)
		fmt.Fprintf(w, `<text x="%.0f" y="%.0f">%s</text>`+"\n", left+plotW+38, ly+4, escape(l.name))
	}
	fmt.Fprintln(w, "</svg>")
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for v <= 0).
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
