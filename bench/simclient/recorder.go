// Package simclient simulates Matrix clients as the SDKs behave: mobile
// clients that give up on a slow request and retry, honour Retry-After and
// retry_after_ms on 429, js-sdk style /sync loops, senders and readers. Each
// client has its own access token and its own seeded random streams, and
// every request it makes is recorded for goodput and latency analysis.
package simclient

import (
	"sync"
	"time"

	"github.com/mxgate/mxgate/matrix"
)

// Record is one HTTP request as its client saw it.
type Record struct {
	Client int
	// Group is the client population the request belongs to (e.g.
	// "background", "herd"), set by the scenario.
	Group string
	Class matrix.Class
	// Start and End are wall-clock offsets from the recorder's start.
	Start, End time.Duration
	// Status is the HTTP status, or 0 when no answer arrived.
	Status int
	// GaveUp is set when the client's own timeout ended the request.
	GaveUp bool
	// Unfinished is set when the end of the run cut the request off.
	Unfinished bool
}

// OK reports whether the request was answered successfully in time.
func (r Record) OK() bool { return r.Status >= 200 && r.Status < 300 && !r.GaveUp && !r.Unfinished }

// Recorder collects Records from many clients, up to a fixed number.
type Recorder struct {
	start time.Time
	max   int

	mu      sync.Mutex
	recs    []Record
	dropped int
}

// DefaultMaxRecords caps a recorder: about 100 MB of records.
const DefaultMaxRecords = 2_000_000

// NewRecorder starts a recorder now that keeps at most max records (0 means
// DefaultMaxRecords); further records are counted as dropped.
func NewRecorder(max int) *Recorder {
	if max <= 0 {
		max = DefaultMaxRecords
	}
	return &Recorder{start: time.Now(), max: max}
}

// Start is the recorder's time origin.
func (r *Recorder) Start() time.Time { return r.start }

func (r *Recorder) add(rec Record) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recs) >= r.max {
		r.dropped++
		return
	}
	r.recs = append(r.recs, rec)
}

// Records returns a copy of the records so far and how many were dropped.
func (r *Recorder) Records() ([]Record, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Record(nil), r.recs...), r.dropped
}
