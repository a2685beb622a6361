package scenario

import (
	"slices"
	"strconv"
	"time"

	"github.com/mxgate/mxgate/bench/simclient"
	"github.com/mxgate/mxgate/bench/simhs"
	"github.com/mxgate/mxgate/matrix"
)

// Result is what one scenario run through one peer showed. Durations are
// model time.
type Result struct {
	Scenario, Peer string
	Duration       time.Duration
	// Requests counts every request clients made; Goodput those answered
	// 2xx before the client gave up, long-poll /sync excluded (an idle poll
	// is not work delivered). GoodputPerSec is Goodput per model second.
	Requests, Goodput int
	GoodputPerSec     float64
	// HerdClients and HerdResynced: how many herd clients there were and
	// how many got both the room state and their initial sync.
	HerdClients, HerdResynced int
	// HerdFamilies is, per client family of the herd, how soon its clients
	// resynced after the cause (model time).
	HerdFamilies []FamilyResync
	// Ideal is the herd's physical limit (ideal.go); set with HerdClients.
	Ideal HerdIdeal
	// Classes holds latency per endpoint class, in class order.
	Classes []ClassLatency
	// Background holds, per class, the background's requests started from
	// the incident's start on (all of them if there is no incident), in
	// class order, long-poll /sync excluded: which class the worst
	// background second came from.
	Background []ClassLatency
	// Errors counts failed requests by kind: the HTTP status ("429",
	// "502", ...), "gave_up" (client timeout), "no_answer" (connection
	// refused or reset) and "unfinished" (cut off by the end of the run).
	Errors map[string]int
	// Upstream is what the homeserver counted.
	Upstream simhs.Stats
	// HasCause says the scenario injects an incident; CauseStart and
	// CauseEnd are when it started and ended. BaselineP99 is the background
	// p99 before it; Recovery is the
	// time from CauseEnd until the background p99 is back within 2x the
	// baseline for 3 consecutive seconds; Recovered is false if it never was.
	HasCause    bool
	CauseStart  time.Duration
	CauseEnd    time.Duration
	BaselineP99 time.Duration
	Recovery    time.Duration
	Recovered   bool
	// Series is one bucket per model second of background traffic.
	Series []Bucket
	// DroppedRecords counts requests beyond the recorder's cap.
	DroppedRecords int
}

// FamilyResync is how one client family of the herd fared.
type FamilyResync struct {
	Family            simclient.Family
	Clients, Resynced int
	P50, Max          time.Duration
}

// ClassLatency is the latency of one class's requests, failures included
// (a request the client gave up on counts with its give-up time).
type ClassLatency struct {
	Class     matrix.Class
	Count, OK int
	P50, P99  time.Duration
	// Errors counts the failures by kind, as Result.Errors (Background only).
	Errors map[string]int
}

// Bucket is one model second: background requests started in it, their p99
// (a failed request counts as the longest give-up time), and the
// homeserver's concurrency sampled at its end.
type Bucket struct {
	At                  time.Duration
	Requests, OK        int
	P99                 time.Duration
	UpstreamConcurrency int64
}

type analysisInput struct {
	scenario, peer string
	o              Options
	duration       time.Duration
	recs           []simclient.Record
	dropped        int
	stats          simhs.Stats
	samples        []int64
	herdOK         int64
	herdDone       map[simclient.Family][]time.Duration
	causeEnd       time.Duration
	hasCause       bool
}

// recoveryRun is how many consecutive good seconds count as recovered.
const recoveryRun = 3

func analyse(in analysisInput) *Result {
	o := in.o
	res := &Result{
		Scenario: in.scenario, Peer: in.peer, Duration: in.duration,
		Requests: len(in.recs), Errors: map[string]int{}, Upstream: in.stats,
		HerdResynced: int(in.herdOK), HasCause: in.hasCause, CauseStart: o.CauseAt, CauseEnd: in.causeEnd,
		DroppedRecords: in.dropped,
	}
	model := func(d time.Duration) time.Duration { return time.Duration(float64(d) * o.Scale) }
	if in.scenario == "herd" {
		res.HerdClients = o.HerdClients
		res.HerdFamilies = familyResyncs(o.HerdClients, in.herdDone)
		res.Ideal = herdIdeal(o.Homeserver, in.recs, baselineConcurrency(in.samples, o.CauseAt), o.HerdClients, o.CauseAt, in.duration, model)
	}

	var perClass [matrix.NumClasses][]time.Duration
	var okClass [matrix.NumClasses]int
	for _, r := range in.recs {
		lat := model(r.End - r.Start)
		perClass[r.Class] = append(perClass[r.Class], lat)
		switch {
		case r.OK():
			okClass[r.Class]++
			if r.Class != matrix.Sync {
				res.Goodput++
			}
		case r.Unfinished:
			res.Errors["unfinished"]++
		default:
			res.Errors[failureKind(r)]++
		}
	}
	res.GoodputPerSec = float64(res.Goodput) / in.duration.Seconds()
	for c, lats := range perClass {
		if len(lats) == 0 {
			continue
		}
		slices.Sort(lats)
		res.Classes = append(res.Classes, ClassLatency{
			Class: matrix.Class(c), Count: len(lats), OK: okClass[c],
			P50: percentile(lats, 0.50), P99: percentile(lats, 0.99),
		})
	}

	// The background's experience over time. A failure counts as the
	// longest give-up; an unfinished request only once it has taken longer
	// than the recovery threshold (before that, its outcome is unknown).
	penalty := o.GiveUpMax
	background := func(r simclient.Record) bool { return r.Group == groupBackground && r.Class != matrix.Sync }
	var base []time.Duration
	for _, r := range in.recs {
		if !background(r) || r.Unfinished {
			continue
		}
		if st := model(r.Start); st >= o.CauseAt/2 && st < o.CauseAt {
			base = append(base, failLatency(r, model(r.End-r.Start), penalty))
		}
	}
	slices.Sort(base)
	res.BaselineP99 = percentile(base, 0.99)
	threshold := max(2*res.BaselineP99, res.BaselineP99+100*time.Millisecond)

	n := int(in.duration / time.Second)
	buckets := make([][]time.Duration, n)
	oks := make([]int, n)
	for _, r := range in.recs {
		b := int(model(r.Start) / time.Second)
		if !background(r) || b < 0 || b >= n {
			continue
		}
		lat := model(r.End - r.Start)
		if r.Unfinished && lat <= threshold {
			continue
		}
		buckets[b] = append(buckets[b], failLatency(r, lat, penalty))
		if r.OK() {
			oks[b]++
		}
	}
	res.Series = make([]Bucket, n)
	for i, lats := range buckets {
		slices.Sort(lats)
		res.Series[i] = Bucket{At: time.Duration(i) * time.Second, Requests: len(lats), OK: oks[i], P99: percentile(lats, 0.99)}
		if i < len(in.samples) {
			res.Series[i].UpstreamConcurrency = in.samples[i]
		}
	}
	if in.hasCause && res.BaselineP99 > 0 {
		res.Recovery, res.Recovered = recovery(res.Series, in.causeEnd, threshold)
	}
	res.Background = backgroundClasses(in.recs, o.CauseAt, in.hasCause, model, background)
	return res
}

// backgroundClasses is the latency per class of the background's finished
// requests started at or after causeAt (any time if there is no cause).
func backgroundClasses(recs []simclient.Record, causeAt time.Duration, hasCause bool,
	model func(time.Duration) time.Duration, background func(simclient.Record) bool) []ClassLatency {
	var lats [matrix.NumClasses][]time.Duration
	var oks [matrix.NumClasses]int
	var errs [matrix.NumClasses]map[string]int
	for _, r := range recs {
		if !background(r) || r.Unfinished || (hasCause && model(r.Start) < causeAt) {
			continue
		}
		lats[r.Class] = append(lats[r.Class], model(r.End-r.Start))
		if r.OK() {
			oks[r.Class]++
			continue
		}
		if errs[r.Class] == nil {
			errs[r.Class] = map[string]int{}
		}
		errs[r.Class][failureKind(r)]++
	}
	var out []ClassLatency
	for c, l := range lats {
		if len(l) == 0 {
			continue
		}
		slices.Sort(l)
		out = append(out, ClassLatency{Class: matrix.Class(c), Count: len(l), OK: oks[c],
			P50: percentile(l, 0.50), P99: percentile(l, 0.99), Errors: errs[c]})
	}
	return out
}

// failureKind names how a finished request failed, as Result.Errors does.
func failureKind(r simclient.Record) string {
	switch {
	case r.GaveUp:
		return "gave_up"
	case r.Status == 0:
		return "no_answer"
	default:
		return strconv.Itoa(r.Status)
	}
}

func failLatency(r simclient.Record, lat, penalty time.Duration) time.Duration {
	if r.OK() {
		return lat
	}
	return max(lat, penalty)
}

// recovery finds the first second at or after causeEnd from which
// recoveryRun consecutive buckets with traffic have p99 within threshold.
func recovery(series []Bucket, causeEnd, threshold time.Duration) (time.Duration, bool) {
	first := int((causeEnd + time.Second - 1) / time.Second)
	for i := first; i < len(series); i++ {
		good, seen := true, 0
		for j := i; j < len(series) && seen < recoveryRun; j++ {
			if series[j].Requests == 0 {
				continue
			}
			seen++
			if series[j].P99 > threshold {
				good = false
				break
			}
		}
		if good && seen == recoveryRun {
			return max(0, series[i].At-causeEnd), true
		}
	}
	return 0, false
}

// percentile is the nearest-rank percentile of sorted values (0 if none).
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// familyResyncs summarises herdDone per family of herdFamilies, for a herd
// of n clients dealt out in turn.
func familyResyncs(n int, done map[simclient.Family][]time.Duration) []FamilyResync {
	out := make([]FamilyResync, 0, len(herdFamilies))
	for i, f := range herdFamilies {
		fr := FamilyResync{Family: f, Clients: (n - i + len(herdFamilies) - 1) / len(herdFamilies)}
		at := slices.Clone(done[f])
		slices.Sort(at)
		if fr.Resynced = len(at); fr.Resynced > 0 {
			fr.P50, fr.Max = at[(len(at)-1)/2], at[len(at)-1]
		}
		out = append(out, fr)
	}
	return out
}
