package agent

import (
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/internal/datapath"
)

// agentMetrics are the agent's own metrics.
type agentMetrics struct {
	applySeconds prometheus.Histogram
	applyErrors  prometheus.Counter
	endpoints    prometheus.Gauge
	packets      *packetCollector
}

func newMetrics(counters func() []endpointCounters) *agentMetrics {
	return &agentMetrics{
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_agent_policy_apply_seconds",
			Help: "Time from the agent receiving a change (an API object or an endpoint registration) to the datapath enforcing the result (Apply returning), per batch of changes, from its oldest change.",
			// 1 ms to about 16 s.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15),
		}),
		applyErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_agent_policy_apply_errors_total",
			Help: "Applies of a snapshot to the datapath that failed (they are retried).",
		}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_agent_endpoints",
			Help: "Endpoints (pod addresses of this node) in the datapath.",
		}),
		packets: &packetCollector{
			desc: prometheus.NewDesc("sluice_agent_endpoint_packets_total",
				"Packets the datapath judged for a pod of this node, by direction (ingress: to the pod, egress: from it) and verdict (allowed, dropped; spoofed: egress packets dropped before the policy for a source address that isn't the pod's).",
				[]string{"namespace", "pod", "direction", "verdict"}, nil),
			counters: counters,
		},
	}
}

func (m *agentMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.applySeconds, m.applyErrors, m.endpoints, m.packets}
}

// register adds the metrics to r and returns what undoes it.
func (m *agentMetrics) register(r prometheus.Registerer) (func(), error) {
	var done []prometheus.Collector
	undo := func() {
		for _, c := range done {
			r.Unregister(c)
		}
	}
	for _, c := range m.collectors() {
		if err := r.Register(c); err != nil {
			undo()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("another agent's metrics are registered: " + err.Error())
			}
			return nil, err
		}
		done = append(done, c)
	}
	return undo, nil
}

// endpointCounters are one pod's datapath counters (summed over its
// addresses).
type endpointCounters struct {
	PodKey string
	datapath.Counters
	// Spoofed: packets from the pod dropped for a source address that
	// isn't the pod's (anti-spoofing, before any policy).
	Spoofed uint64
}

// packetCollector reads the datapath's per-endpoint counters at scrape
// time.
type packetCollector struct {
	desc     *prometheus.Desc
	counters func() []endpointCounters
}

func (c *packetCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Label values of sluice_agent_endpoint_packets_total's direction.
const (
	dirIngress = "ingress"
	dirEgress  = "egress"
)

func (c *packetCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ec := range c.counters() {
		ns, name, _ := strings.Cut(ec.PodKey, "/")
		for _, v := range []struct {
			dir, verdict string
			n            uint64
		}{
			{dirIngress, "allowed", ec.IngressAllowed},
			{dirIngress, "dropped", ec.IngressDropped},
			{dirEgress, "allowed", ec.EgressAllowed},
			{dirEgress, "dropped", ec.EgressDropped},
			{dirEgress, "spoofed", ec.Spoofed},
		} {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(v.n), ns, name, v.dir, v.verdict)
		}
	}
}
