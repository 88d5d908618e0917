package policy

import "net/netip"

// This file is the contract between the compiler (this package) and the
// datapath (internal/datapath): what the compiler outputs is exactly what
// the datapath writes into its maps, and the evaluator in this package
// answers from the same entries. Change it only together with both.

// Class is a peer class: a set of addresses that every rule of every policy
// treats alike (the same pods' labels and namespace, the same named ports,
// the same ipBlock memberships). Classes replace Cilium's identities; unlike
// identities they also split on ipBlock membership, so an ipBlock can select
// pod and node addresses. The ipcache maps every address to its class.
//
// Each node's addresses form a class of their own, and every endpoint whose
// ingress is isolated gets an entry allowing its own node's class on every
// protocol: traffic from a node to its own pods (kubelet probes) always
// passes, traffic from other nodes is subject to policy. A packet whose
// source and destination are the same pod always passes (a pod can't block
// itself); the datapath and the evaluator check that before any entry.
type Class uint32

// Reserved classes.
const (
	// ClassAny in a Entry matches a peer of any class (a rule with an
	// empty from/to, or a peer list that selects everything).
	ClassAny Class = 0
	// ClassWorld is any address no other entry covers and no ipBlock
	// selects.
	ClassWorld Class = 2
	// FirstDynamicClass is the first class the compiler hands out.
	FirstDynamicClass Class = 16
)

// Protocol numbers as in the IP header; ProtoAny matches every protocol.
const (
	ProtoAny  uint8 = 0
	ProtoTCP  uint8 = 6
	ProtoUDP  uint8 = 17
	ProtoSCTP uint8 = 132
)

// Direction of traffic relative to the endpoint.
type Direction uint8

const (
	// Ingress is traffic to the endpoint.
	Ingress Direction = 0
	// Egress is traffic from the endpoint.
	Egress Direction = 1
)

// IPCacheEntry maps a prefix to a class; lookups take the longest prefix.
// The compiler always emits a 0.0.0.0/0 (and ::/0) entry, so every address
// has a class.
type IPCacheEntry struct {
	Prefix netip.Prefix
	Class  Class
}

// Entry allows one (peer class, protocol, destination port prefix)
// in one direction of one endpoint. Port ranges become several entries with
// port prefixes. A packet is allowed if an entry for its exact class or for
// ClassAny matches its protocol and destination port; NetworkPolicy only
// allows, so any match allows.
type Entry struct {
	Class Class
	// Proto is ProtoAny or a protocol number; with ProtoAny, PortPrefixLen
	// is 0.
	Proto uint8
	// Port and PortPrefixLen: the destination ports whose top PortPrefixLen
	// bits equal Port's (0: every port, 16: Port alone).
	Port          uint16
	PortPrefixLen uint8
}

// EndpointPolicy is what one pod's datapath needs. A direction that no
// policy isolates allows everything and has no entries.
type EndpointPolicy struct {
	// ID is the endpoint's number in the datapath's maps, stable for the
	// pod's life.
	ID uint32
	// IP is the pod's address (the datapath finds the endpoint by it).
	IP netip.Addr

	IngressIsolated bool
	EgressIsolated  bool
	Ingress         []Entry
	Egress          []Entry
}

// Snapshot is the complete compiled state for one node (or, for the CLI,
// for the whole case): what the datapath's maps hold.
type Snapshot struct {
	IPCache   []IPCacheEntry
	Endpoints []EndpointPolicy
}
