package controllers

import (
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// metricLabelPool is the label naming the pool of an IPAM metric.
const metricLabelPool = "pool"

// IPAM metrics, served on the manager's /metrics endpoint.
var (
	ipamPoolAddresses = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_ipam_pool_addresses",
		Help: "IPv4 addresses of an IPAMPool by state (capacity, allocated, free).",
	}, []string{metricLabelPool, "state"})
	ipamPoolWaitingNodes = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sluice_ipam_pool_waiting_nodes",
		Help: "Nodes waiting for addresses an IPAMPool doesn't have (exhaustion).",
	}, []string{metricLabelPool})
	ipamAllocationFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_ipam_allocation_failures_total",
		Help: "Block allocations that failed, by pool and reason.",
	}, []string{metricLabelPool, "reason"})
)

func init() {
	metrics.Registry.MustRegister(ipamPoolAddresses, ipamPoolWaitingNodes, ipamAllocationFailures)
}
