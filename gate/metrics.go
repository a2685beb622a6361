package gate

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mxgate/mxgate/fleet"
	"github.com/mxgate/mxgate/matrix"
)

// Outcome is what happened to a request at the gate; it is the `outcome`
// label of mxgate_requests_total.
type Outcome string

const (
	OutcomeAdmitted    Outcome = "admitted"
	OutcomeQueued      Outcome = "queued"
	OutcomeShed        Outcome = "shed"
	OutcomeRateLimited Outcome = "rate_limited"
	OutcomeCoalesced   Outcome = "coalesced"
	OutcomeTimeout     Outcome = "timeout"
	OutcomeCanceled    Outcome = "canceled"
	// OutcomeInvalid: refused with 400 as no route a client could mean
	// (dot segments).
	OutcomeInvalid Outcome = "invalid"
)

// Metrics are mxgate's Prometheus collectors. Labels are bounded: class
// names, outcomes and status code classes only — never a user, token, room
// or address.
type Metrics struct {
	Requests          *prometheus.CounterVec
	Inflight          *prometheus.GaugeVec
	QueueLength       *prometheus.GaugeVec
	QueueWait         *prometheus.HistogramVec
	UpstreamDuration  *prometheus.HistogramVec
	UpstreamResponses *prometheus.CounterVec
	HerdsActive       *prometheus.GaugeVec
	HerdsStarted      *prometheus.CounterVec
	ShedMode          *prometheus.GaugeVec
	Limit             *prometheus.GaugeVec
	// Fleet are the fleet's collectors (mxgate_fleet_*), for fleet.Config.
	Fleet *fleet.Metrics

	// byClass holds every per-class series resolved once, so the request
	// path does no label hashing (and every series exists from the start).
	byClass [matrix.NumClasses]classMetrics
}

type classMetrics struct {
	outcomes         [numOutcomes]prometheus.Counter
	inflight         prometheus.Gauge
	queueLength      prometheus.Gauge
	queueWait        prometheus.Observer
	upstreamDuration prometheus.Observer
	responses        [len(codeClasses)]prometheus.Counter
}

var allOutcomes = [numOutcomes]Outcome{
	idxAdmitted: OutcomeAdmitted, idxQueued: OutcomeQueued, idxShed: OutcomeShed,
	idxRateLimited: OutcomeRateLimited, idxCoalesced: OutcomeCoalesced,
	idxTimeout: OutcomeTimeout, idxCanceled: OutcomeCanceled, idxInvalid: OutcomeInvalid,
	idxWouldShed: OutcomeWouldShed, idxWouldRateLimited: OutcomeWouldRateLimited, idxWouldTimeout: OutcomeWouldTimeout,
}

var codeClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx", "error"}

// NewMetrics builds the collectors. Build them once per process and register
// them on each registry (Register tolerates re-registration), so that values
// carry over config reloads.
func NewMetrics() *Metrics {
	const ns = "mxgate"
	class := []string{"class"}
	buckets := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "Requests seen by mxgate, by endpoint class and outcome."}, []string{"class", "outcome"}),
		Inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "inflight",
			Help: "Requests admitted to the upstream and not yet finished."}, class),
		QueueLength: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "queue_length",
			Help: "Requests waiting for an admission slot."}, class),
		QueueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "queue_wait_seconds",
			Help: "Time queued requests waited for a slot (admitted or not).", Buckets: buckets}, class),
		UpstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "upstream_duration_seconds",
			Help: "Time from admission to the end of the upstream answer.", Buckets: buckets}, class),
		UpstreamResponses: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "upstream_responses_total",
			Help: "Upstream answers by class and status code class (2xx..5xx, or error when none came)."}, []string{"class", "code_class"}),
		HerdsActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "herds_active",
			Help: "Thundering herds currently detected."}, class),
		HerdsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "herds_total",
			Help: "Thundering herds detected since start."}, class),
		ShedMode: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "shed_mode",
			Help: "Operator mode of the class: 0 normal, 1 queue, 2 shed."}, class),
		Limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "limit",
			Help: "The in-flight cap in force for the class (0 = none)."}, class),
		Fleet: fleet.NewMetrics(),
	}
	for c := range m.byClass {
		name := matrix.Class(c).String()
		cm := &m.byClass[c]
		for i, o := range allOutcomes {
			cm.outcomes[i] = m.Requests.WithLabelValues(name, string(o))
		}
		for i, cc := range codeClasses {
			cm.responses[i] = m.UpstreamResponses.WithLabelValues(name, cc)
		}
		cm.inflight = m.Inflight.WithLabelValues(name)
		cm.queueLength = m.QueueLength.WithLabelValues(name)
		cm.queueWait = m.QueueWait.WithLabelValues(name)
		cm.upstreamDuration = m.UpstreamDuration.WithLabelValues(name)
	}
	return m
}

func (m *Metrics) of(c matrix.Class) *classMetrics { return &m.byClass[c] }

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Requests, m.Inflight, m.QueueLength, m.QueueWait, m.UpstreamDuration,
		m.UpstreamResponses, m.HerdsActive, m.HerdsStarted, m.ShedMode, m.Limit}
}

// Register adds the collectors to reg. Registering the same collectors on
// the same registry again (a config reload) is not an error.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return err
		}
	}
	return m.Fleet.Register(reg)
}

// codeClass is the index in codeClasses of an upstream status; "error"
// when no status came back (or a nonsense one).
func codeClass(status int) int {
	if status >= 100 && status < 600 {
		return status/100 - 1
	}
	return len(codeClasses) - 1
}
