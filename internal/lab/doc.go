// Package lab is a Kubernetes cluster on one machine for the demo,
// `make run` and the end-to-end tests. It owns two things:
//
//   - The control plane (lab.go, manifests.go): kube-apiserver and etcd
//     on loopback (started by controller-runtime's envtest), the Sluice
//     CRDs and the validating webhook configuration from config/, wired to
//     a webhook server on the loopback address instead of an in-cluster
//     Service.
//   - The node scenario (node.go, scenario.go, matrix.go, serve.go): a
//     node whose state persists on disk between `sluicectl lab`
//     invocations, its API forwarder, pods added through the API and the
//     real CNI plugin with an echo server each, and the reachability
//     matrix checked against an expectation. The node itself (network
//     namespaces, the conflist, CNI ADD and DEL through libcni, the echo
//     server and the probes) is package netlab's; this package adds what
//     a cluster adds around it: the API objects, the status a kubelet
//     would report, and the files that let separate commands share it.
//
// The control plane uses only envtest's ControlPlane: envtest neither
// installs the webhooks nor generates webhook certificates. The CRD's
// conversion webhook and the webhook configuration are installed without a
// caBundle, exactly as config/ ships them, and the operator's own
// certificate management must create the certificate and inject its CA
// bundle, as it does in a real cluster. Until it has, every
// DataplaneConfig request fails closed.
//
// There is no kubelet, scheduler or controller-manager. The price:
// DaemonSets are stored but never rolled out, so the node agent is run by
// hand (hack/demo.sh does it from the flags Node.AgentArgs writes), and a
// pod exists only because `lab pod add` created its object, its sandbox
// and its status in one go; nothing restarts or reschedules it.
package lab
