// Package bench holds benchmarks of the operator against a real API server
// (envtest's kube-apiserver and etcd), with the reconcilers running
// in-process. They need KUBEBUILDER_ASSETS (`make setup-envtest`) and take
// tens of seconds per iteration, so run them one iteration at a time:
//
//	KUBEBUILDER_ASSETS=$PWD/bin/k8s/1.37.0 go test -run '^$' -bench Converge -benchtime 1x ./test/bench/
//
// `make bench` does that, after the allocator micro-benchmarks.
//
// BenchmarkPodToPodLatency measures the datapath instead, between two pods
// of a node made of network namespaces (internal/netlab): it needs root, not
// envtest, and compares our programs with iptables rules when
// iptables-nft-restore is on the PATH.
//
// BenchmarkCrossNodePodToPod does the same between pods of two such nodes
// joined by an underlay, with kernel routes between their pod ranges.
package bench
