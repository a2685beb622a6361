package e2e

import (
	"context"
	"sync"
	"time"
)

// metricsWatch scrapes a gateway's metrics every interval while a test runs
// and keeps the highest value each watched gauge reached, since gauges such
// as mxgate_herds_active fall back to zero once the load is gone.
type metricsWatch struct {
	stop chan struct{}
	done chan struct{}

	mu     sync.Mutex
	peaks  map[string]float64 // keyed by gauge name + "/" + class
	errors int                // failed scrapes
}

// watchGauges starts scraping admin for the per-class gauges names.
func watchGauges(ctx context.Context, admin string, interval time.Duration, classes, names []string) *metricsWatch {
	w := &metricsWatch{stop: make(chan struct{}), done: make(chan struct{}), peaks: map[string]float64{}}
	go func() {
		defer close(w.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			samples, err := scrapeMetrics(ctx, admin)
			w.mu.Lock()
			if err != nil {
				w.errors++
			}
			for _, name := range names {
				for _, class := range classes {
					v := metricSum(samples, name, map[string]string{"class": class})
					w.peaks[name+"/"+class] = max(w.peaks[name+"/"+class], v)
				}
			}
			w.mu.Unlock()
			select {
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

// finish stops the watcher, waits for its goroutine, and returns the peaks
// and the number of failed scrapes.
func (w *metricsWatch) finish() (map[string]float64, int) {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peaks, w.errors
}
