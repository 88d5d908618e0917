package dataplane

import (
	"slices"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// Routing defaults. Native because the cloud product Sluice models routes
// pod addresses in the cloud network; VXLAN because it is the tunnel every
// kernel and network appliance knows; 1500 because it is Ethernet's MTU and
// the one a cloud network promises unless jumbo frames are asked for.
const (
	DefaultRoutingMode    = v1.RoutingModeNative
	DefaultTunnelProtocol = v1.TunnelProtocolVXLAN
	DefaultUnderlayMTU    = int32(1500)
)

// Encapsulation overhead in bytes over an IPv4 underlay: the outer IPv4
// header (20), UDP (8), the tunnel header (8) and the inner Ethernet header
// (14). VXLAN's header is always 8 bytes; Geneve's is 8 plus its options,
// and Sluice's tunnel sends none. An IPv6 underlay would need 20 bytes more
// (a 40-byte outer header); node addresses are IPv4 in every network Sluice
// runs on today, so the overhead assumes IPv4 rather than costing every
// IPv4 cluster 20 bytes of pod MTU.
const (
	VXLANOverhead  = int32(20 + 8 + 8 + 14)
	GeneveOverhead = int32(20 + 8 + 8 + 14)
)

// EffectiveRouting fills in the routing defaults and derives the pod MTU.
func EffectiveRouting(in *v1.RoutingSettings) *v1.EffectiveRouting {
	if in == nil {
		in = &v1.RoutingSettings{}
	}
	out := &v1.EffectiveRouting{
		Mode:        or(in.Mode, DefaultRoutingMode),
		UnderlayMTU: orPtr(in.UnderlayMTU, DefaultUnderlayMTU),
		// Copied, not shared: the effective config is written to status
		// and rendered for the agents apart from the spec it came from.
		NonMasqueradeCIDRs: slices.Clone(in.NonMasqueradeCIDRs),
	}
	if out.Mode == v1.RoutingModeTunnel {
		out.TunnelProtocol = or(in.TunnelProtocol, DefaultTunnelProtocol)
	}
	out.PodMTU = PodMTU(out.Mode, out.TunnelProtocol, out.UnderlayMTU)
	return out
}

// PodMTU is the MTU pods get: the underlay's MTU, less the encapsulation
// overhead when pod packets are tunnelled. A pod MTU that leaves room for
// the tunnel header keeps encapsulated packets within the underlay's MTU,
// so they are never fragmented or dropped for size on the way; TCP's MSS
// follows from it.
func PodMTU(mode v1.RoutingMode, protocol v1.TunnelProtocol, underlayMTU int32) int32 {
	if mode != v1.RoutingModeTunnel {
		return underlayMTU
	}
	if protocol == v1.TunnelProtocolGeneve {
		return underlayMTU - GeneveOverhead
	}
	return underlayMTU - VXLANOverhead
}
