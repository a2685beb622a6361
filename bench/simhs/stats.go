package simhs

import (
	"sync/atomic"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// Stats is what the homeserver saw.
type Stats struct {
	// Current and Peak count requests inside the server (any phase).
	Current, Peak int64
	// PeakNonSync is the peak excluding long-poll /sync, which a gateway
	// budgets separately; compare it with a gateway's global cap.
	PeakNonSync int64
	// OpenFDs and PeakFDs count open client connections.
	OpenFDs, PeakFDs int64
	// AcceptErrors counts accepts that a real process would have failed
	// with EMFILE (the connection then waited in the backlog).
	AcceptErrors int64
	// Wedges counts times the process wedged; Restarts counts Restart calls.
	Wedges, Restarts int64
	// ByClass counts requests received per endpoint class.
	ByClass [matrix.NumClasses]int64
	// Completed counts requests whose work finished; Wasted those of them
	// whose client had already gone.
	Completed, Wasted int64
	// WorkDone and WastedWork are the DB+CPU model time behind them.
	WorkDone, WastedWork time.Duration
	// LastSlowWriteEnd is when the last armed slow write released the lock
	// (zero if none did).
	LastSlowWriteEnd time.Time
}

type counters struct {
	current, peak               atomic.Int64
	currentNonSync, peakNonSync atomic.Int64
	byClass                     [matrix.NumClasses]atomic.Int64
	completed, wasted           atomic.Int64
	workDone, wastedWork        atomic.Int64 // nanoseconds of model time
	wedges, restarts            atomic.Int64
	lastSlowEnd                 atomic.Int64 // unix nanos
}

func raise(peak *atomic.Int64, n int64) {
	for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
	}
}

func (c *counters) enter(class matrix.Class) {
	c.byClass[class].Add(1)
	raise(&c.peak, c.current.Add(1))
	if class != matrix.Sync {
		raise(&c.peakNonSync, c.currentNonSync.Add(1))
	}
}

func (c *counters) leave(class matrix.Class) {
	c.current.Add(-1)
	if class != matrix.Sync {
		c.currentNonSync.Add(-1)
	}
}

func (c *counters) complete(work time.Duration, wasted bool) {
	c.completed.Add(1)
	c.workDone.Add(int64(work))
	if wasted {
		c.wasted.Add(1)
		c.wastedWork.Add(int64(work))
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	st := Stats{
		Current:     c.current.Load(),
		Peak:        c.peak.Load(),
		PeakNonSync: c.peakNonSync.Load(),
		Wedges:      c.wedges.Load(),
		Restarts:    c.restarts.Load(),
		Completed:   c.completed.Load(),
		Wasted:      c.wasted.Load(),
		WorkDone:    time.Duration(c.workDone.Load()),
		WastedWork:  time.Duration(c.wastedWork.Load()),
	}
	for i := range st.ByClass {
		st.ByClass[i] = c.byClass[i].Load()
	}
	if t := c.lastSlowEnd.Load(); t != 0 {
		st.LastSlowWriteEnd = time.Unix(0, t)
	}
	st.OpenFDs = s.fds.open.Load()
	st.PeakFDs = s.fds.peak.Load()
	st.AcceptErrors = s.fds.acceptErrors.Load()
	return st
}
