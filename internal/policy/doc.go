// Package policy compiles Kubernetes NetworkPolicies (networking.k8s.io/v1)
// into the entries Sluice's eBPF datapath enforces, and evaluates those
// entries the way the datapath does. It is pure Go: no kernel, no API
// server. entries.go is the contract with the datapath.
//
// The compiler reads a Cluster (namespaces, pods with their addresses,
// nodes, policies as written) and produces a Snapshot: the ipcache (prefix
// to peer class, longest match wins) and, per pod endpoint, whether each
// direction is isolated and which (class, protocol, destination port
// prefix) entries it allows. Compile does it once; a Compiler keeps a
// snapshot up to date as objects change. Snapshot.Allowed answers from the
// entries; ReferenceAllowed answers from the policy objects directly, and
// the tests check that the two always agree.
//
// # Semantics
//
// One rule per corner; each has a table test in semantics_test.go under
// the same name.
//
//   - open: a pod selected by no policy in a direction is not isolated in
//     it: everything passes that way.
//   - policy-types: a policy isolates the directions in its policyTypes.
//     Omitted, policyTypes is Ingress, plus Egress if the policy has egress
//     rules (Default, as the API server does). Rules of a direction not in
//     policyTypes are ignored.
//   - deny-all: a policy with a direction in policyTypes and no rules for
//     it (ingress: [] or omitted) isolates the selected pods and allows
//     nothing that way.
//   - allow-all: a rule with neither peers nor ports (ingress: [{}]) allows
//     everything that way: every peer, protocol and port.
//   - pod-selector: the policy's podSelector selects pods in its own
//     namespace only; an empty one selects them all.
//   - label-selectors: selectors use matchLabels and matchExpressions (In,
//     NotIn, Exists, DoesNotExist) with LabelSelectorAsSelector semantics;
//     NotIn and DoesNotExist match pods without the key.
//   - peer-pods: a peer with only podSelector is the matching pods of the
//     policy's namespace; an empty podSelector is all of them.
//   - peer-namespaces: a peer with only namespaceSelector is every pod of
//     the matching namespaces; an empty one is every pod of the cluster
//     (not nodes, not external addresses).
//   - peer-both: a peer with both is the pods matching podSelector in the
//     namespaces matching namespaceSelector.
//   - namespace-name: every namespace has the kubernetes.io/metadata.name
//     label, as the API server sets it.
//   - ip-block: an ipBlock peer is every address in cidr and in none of
//     its excepts: pod, node and external addresses alike. This is where
//     Sluice differs from Cilium, whose ipBlocks never select pods.
//   - external: an address that is neither a pod's nor a node's is only
//     ever selected by ipBlocks (and by rules without peers).
//   - rule-union: a rule allows a packet if one of its peers matches (or
//     it has none) and one of its ports matches (or it has none); the
//     rules of every policy selecting a pod in a direction add up.
//   - ports: a port is a protocol (TCP by default; UDP and SCTP too) and
//     a port number, a port range (port to endPort, inclusive), a name, or
//     nothing (every port of that protocol). Ranges become the fewest
//     port prefixes.
//   - no-ports: a rule without ports allows every protocol, ICMP and
//     others without ports included; ICMP is allowed only that way.
//   - named-ingress: an ingress named port is resolved against the
//     endpoint's own container ports, with the rule's protocol; if it has
//     none of that name and protocol, the port matches nothing.
//   - named-egress: an egress named port is resolved against the
//     destination pod's container ports, per peer pod; it never matches a
//     node or an external address, even one an ipBlock selects.
//   - both-ends: pod-to-pod traffic must pass the source's egress and the
//     destination's ingress.
//   - self: a pod always reaches itself.
//   - own-node: a node always reaches the pods whose Node it is (kubelet
//     probes), whatever their ingress says. Other nodes, and a pod's
//     egress to its own node, are subject to policy.
//   - ipv6: all of the above holds for IPv6 too; a cluster with any IPv6
//     address gets a ::/0 world entry.
//
// Replies of allowed connections are the datapath's conntrack's job, not
// the compiler's. Host-network pods are out of scope: a pod sharing an
// address with a node (or another pod) is an error.
//
// # Classes
//
// A class is a set of addresses every peer of every policy treats alike,
// so the entries can name classes instead of addresses:
//
//   - a pod's class is keyed by its namespace, its labels, the container
//     ports whose names some egress rule uses as a named port, and the set
//     of ipBlocks (after except) containing its address;
//   - a node's addresses form classes of the node alone (split by ipBlock
//     membership): the own-node entry of a pod must not admit other nodes;
//   - external space is split at every ipBlock cidr and except boundary;
//     a fragment's class is its set of ipBlocks, ClassWorld when it is in
//     none, and 0.0.0.0/0 (::/0 when there is IPv6) is ClassWorld.
//
// The ipcache has a host entry per pod and node address (longest match:
// they override fragments) and one entry per fragment whose class differs
// from its parent's. Only external classes with an address in the ipcache
// exist: a /32 ipBlock on a pod's address makes no external class.
//
// The entries of a direction are a union of (class, protocol, port range)
// items, minimized: an entry of ClassAny (a rule without peers) makes the
// same ports of other classes redundant, a ProtoAny entry the class's
// other entries, and each class's ranges become the fewest port prefixes.
// Everything is sorted, so equal inputs give equal snapshots.
//
// # Incremental compilation
//
// A Compiler recomputes an endpoint's entries only when something they
// depend on may have changed. Classes are the unit of change: a class
// appearing or disappearing invalidates the peers that may contain it
// (found through indexes by namespace, namespace selector, ipBlock and
// port name) and marks their policies dirty; the pods a dirty policy
// selects are recomputed. Pods with the same namespace, labels and ports
// share one computation per batch. Per kind of change:
//
//   - SetPod (new pod, labels, ports, address, node): the pod itself; if
//     its old class disappeared or its new class appeared, the pods
//     selected by policies with a peer that may contain either. Moving a
//     pod between existing classes recomputes nothing else.
//   - DeletePod: as SetPod for its class.
//   - SetNamespace (labels): the pods selected by policies with a
//     namespaceSelector peer whose match for the namespace flips, if the
//     namespace has pods. Namespace labels are not part of class keys, so
//     no address changes class.
//   - SetPolicy, DeletePolicy: the pods the old and new versions select.
//     If the set of distinct ipBlocks changes, the fragments are rebuilt
//     and the pods inside the changed cidrs and the node addresses are
//     reclassified; if the set of egress named-port names changes, the
//     pods with a container port of that name are. Classes that appear or
//     disappear then count as above.
//   - SetNode, DeleteNode: the node's pods (own-node entries), and the
//     policies whose ipBlocks contain the node's addresses.
//
// Changed reports the endpoints whose result differs; endpoint IDs start
// at 1, stay with a pod (namespace/name) while it exists, and are not
// reused during the Compiler's life.
package policy
