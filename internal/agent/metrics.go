package agent

import (
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-dev/sluice/internal/datapath"
)

// agentMetrics are the agent's own metrics. The applier records the apply
// metrics; the others are read from the parts at scrape time.
type agentMetrics struct {
	applySeconds prometheus.Histogram
	applyErrors  prometheus.Counter
	endpoints    prometheus.GaugeFunc
	packets      *packetCollector
}

func newMetrics(p *parts, dp Datapath) *agentMetrics {
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
		endpoints: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_agent_endpoints",
			Help: "Endpoints (pod addresses of this node) in the datapath.",
		}, func() float64 {
			res, _ := p.slot.Result()
			if res.InForce == nil {
				return 0
			}
			return float64(len(res.InForce.Snapshot.Endpoints))
		}),
		packets: &packetCollector{
			desc: prometheus.NewDesc("sluice_agent_endpoint_packets_total",
				"Packets the datapath judged for a pod of this node, by direction (ingress: to the pod, egress: from it) and verdict (allowed, dropped; spoofed: egress packets dropped before the policy for a source address that isn't the pod's).",
				[]string{"namespace", "pod", "direction", "verdict"}, nil),
			counters: func() []endpointCounters { return p.counters(dp) },
		},
	}
}

func (m *agentMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.applySeconds, m.applyErrors, m.endpoints, m.packets}
}

// register adds the metrics to r and returns what undoes it.
func (m *agentMetrics) register(r prometheus.Registerer) (func(), error) {
	return registerAll(r, m.collectors())
}

// registerAll adds cs to r, all or none, and returns what undoes it.
func registerAll(r prometheus.Registerer, cs []prometheus.Collector) (func(), error) {
	var done []prometheus.Collector
	undo := func() {
		for _, c := range done {
			r.Unregister(c)
		}
	}
	for _, c := range cs {
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

// counters are the datapath's counters of this node's pods: those of
// the endpoints in force, and the spoofed packets of the attached veths.
func (p *parts) counters(dp Datapath) []endpointCounters {
	byPod := map[string]*endpointCounters{}
	of := func(podKey string) *endpointCounters {
		ec := byPod[podKey]
		if ec == nil {
			ec = &endpointCounters{PodKey: podKey}
			byPod[podKey] = ec
		}
		return ec
	}
	for podKey, n := range p.endpoints.Spoofed() {
		of(podKey).Spoofed += n
	}
	if res, _ := p.slot.Result(); res.InForce != nil {
		for _, e := range res.InForce.Endpoints {
			c, err := dp.Counters(e.ID)
			if err != nil {
				continue
			}
			ec := of(e.PodKey)
			ec.IngressAllowed += c.IngressAllowed
			ec.IngressDropped += c.IngressDropped
			ec.EgressAllowed += c.EgressAllowed
			ec.EgressDropped += c.EgressDropped
		}
	}
	out := make([]endpointCounters, 0, len(byPod))
	for _, k := range slices.Sorted(maps.Keys(byPod)) {
		out = append(out, *byPod[k])
	}
	return out
}
