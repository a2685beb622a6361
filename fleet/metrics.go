package fleet

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Fallback operations: the bounded values of the op label of
// mxgate_fleet_fallbacks_total.
const (
	OpRate      = "rate"      // a rate check used the local bucket
	OpHerd      = "herd"      // a herd count used the local count only
	OpToggle    = "toggle"    // a toggle change was kept locally, to push later
	OpSync      = "sync"      // a toggle resync failed: the last copy stays
	OpHeartbeat = "heartbeat" // a heartbeat failed: the last share stays
	OpVerdict   = "verdict"   // token verdicts were not shared (Redis away, or a backlog)
)

var fallbackOps = []string{OpRate, OpHerd, OpToggle, OpSync, OpHeartbeat, OpVerdict}

// Metrics are the fleet's Prometheus collectors. Build them once per process
// (NewMetrics) and share them between fleets of all zones; a nil *Metrics
// records nothing.
type Metrics struct {
	Instances prometheus.Gauge
	RedisUp   prometheus.Gauge
	Fallbacks *prometheus.CounterVec

	fallbacks map[string]prometheus.Counter
}

// NewMetrics builds the collectors with every op series present from start.
func NewMetrics() *Metrics {
	const ns = "mxgate"
	m := &Metrics{
		Instances: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "fleet_instances",
			Help: "Live gateways in the fleet as last seen in Redis (kept while Redis is unreachable)."}),
		RedisUp: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "fleet_redis_up",
			Help: "1 while the fleet's Redis answers, 0 while the gateway runs on local fallbacks."}),
		Fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "fleet_fallbacks_total",
			Help: "Fleet operations served by a local fallback because Redis failed or was unreachable."}, []string{"op"}),
		fallbacks: make(map[string]prometheus.Counter, len(fallbackOps)),
	}
	for _, op := range fallbackOps {
		m.fallbacks[op] = m.Fallbacks.WithLabelValues(op)
	}
	return m
}

func (m *Metrics) fallback(op string) {
	if m != nil {
		m.fallbacks[op].Inc()
	}
}

func (m *Metrics) setUp(up bool) {
	if m == nil {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	m.RedisUp.Set(v)
}

func (m *Metrics) setInstances(n int) {
	if m != nil {
		m.Instances.Set(float64(n))
	}
}

// Register adds the collectors to reg; registering them again (a config
// reload) is not an error.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.Instances, m.RedisUp, m.Fallbacks} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return err
		}
	}
	return nil
}
