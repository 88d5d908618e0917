package webhook

import (
	"strings"
	"testing"

	"k8s.io/utils/ptr"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

func TestValidateRouting(t *testing.T) {
	routing := func(mode v1.RoutingMode, protocol v1.TunnelProtocol) *v1.DataplaneConfigSpec {
		return &v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{Mode: mode, TunnelProtocol: protocol}}
	}
	tests := []struct {
		name      string
		old, spec *v1.DataplaneConfigSpec
		// wantField and wantMessage are empty when the spec is accepted.
		wantField, wantMessage string
	}{
		{name: "no routing", spec: &v1.DataplaneConfigSpec{}},
		{name: "a Geneve tunnel", spec: routing(v1.RoutingModeTunnel, v1.TunnelProtocolGeneve)},
		{name: "a tunnel protocol with native routing", spec: routing(v1.RoutingModeNative, v1.TunnelProtocolVXLAN),
			wantField: "spec.routing.tunnelProtocol", wantMessage: "tunnelProtocol applies to mode Tunnel only"},
		{name: "a tunnel protocol without a mode", spec: routing("", v1.TunnelProtocolGeneve),
			wantField: "spec.routing.tunnelProtocol", wantMessage: "tunnelProtocol applies to mode Tunnel only"},
		{name: "routing with a bring-your-own CNI",
			spec:      &v1.DataplaneConfigSpec{NetworkPlugin: v1.NetworkPluginNone, Routing: &v1.RoutingSettings{}},
			wantField: "spec.routing", wantMessage: "routing needs networkPlugin: azure"},
		{name: "an underlay MTU too small for IPv6",
			spec:      &v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{UnderlayMTU: ptr.To[int32](1279)}},
			wantField: "spec.routing.underlayMTU", wantMessage: "must be from 1280"},
		{name: "an underlay MTU beyond jumbo frames",
			spec:      &v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{UnderlayMTU: ptr.To[int32](9001)}},
			wantField: "spec.routing.underlayMTU", wantMessage: "must be from 1280"},
		{name: "writing out the native mode in force", old: &v1.DataplaneConfigSpec{}, spec: routing(v1.RoutingModeNative, "")},
		{name: "the underlay MTU may change",
			old:  &v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{UnderlayMTU: ptr.To[int32](1500)}},
			spec: &v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{UnderlayMTU: ptr.To[int32](9000)}}},
		{name: "native to tunnel", old: &v1.DataplaneConfigSpec{}, spec: routing(v1.RoutingModeTunnel, ""),
			wantField: "spec.routing.mode", wantMessage: "routing.mode can't change on a running cluster"},
		{name: "removing a tunnel switches to native", old: routing(v1.RoutingModeTunnel, ""), spec: &v1.DataplaneConfigSpec{},
			wantField: "spec.routing.mode", wantMessage: "(the mode in force is Tunnel)"},
		{name: "writing out the VXLAN in force", old: routing(v1.RoutingModeTunnel, ""), spec: routing(v1.RoutingModeTunnel, v1.TunnelProtocolVXLAN)},
		{name: "VXLAN to Geneve", old: routing(v1.RoutingModeTunnel, ""), spec: routing(v1.RoutingModeTunnel, v1.TunnelProtocolGeneve),
			wantField: "spec.routing.tunnelProtocol", wantMessage: "a node decapsulates only the protocol in force (VXLAN)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := validateRouting(tt.old, tt.spec)
			if tt.wantField == "" {
				if len(errs) != 0 {
					t.Fatalf("validateRouting() = %v, want no errors", errs)
				}
				return
			}
			if len(errs) != 1 {
				t.Fatalf("validateRouting() = %v, want one error on %s", errs, tt.wantField)
			}
			if errs[0].Field != tt.wantField || !strings.Contains(errs[0].Error(), tt.wantMessage) {
				t.Errorf("error = %v on %s, want %q on %s", errs[0], errs[0].Field, tt.wantMessage, tt.wantField)
			}
		})
	}
}

func TestTunnelNotYetAvailable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		spec    *v1.DataplaneConfigSpec
		refused bool
	}{
		{name: "routing unset (Native in force)", spec: &v1.DataplaneConfigSpec{}},
		{name: "Native", spec: &v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{Mode: v1.RoutingModeNative}}},
		{name: "Tunnel", spec: &v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{Mode: v1.RoutingModeTunnel}}, refused: true},
		{name: "Geneve tunnel", spec: &v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{
			Mode: v1.RoutingModeTunnel, TunnelProtocol: v1.TunnelProtocolGeneve}}, refused: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := tunnelNotYetAvailable(tc.spec)
			if got := len(errs) > 0; got != tc.refused {
				t.Fatalf("refused = %v (%v), want %v", got, errs, tc.refused)
			}
			if tc.refused && (errs[0].Field != "spec.routing.mode" || !strings.Contains(errs[0].Detail, "use mode: Native")) {
				t.Errorf("refusal %v doesn't name spec.routing.mode and say what would be accepted", errs[0])
			}
		})
	}
}
