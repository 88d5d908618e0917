package webhook

import (
	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/dataplane"
)

// validateRouting repeats the routing rules of the v1 schema. The API
// server checks a request against the schema of the version it was sent
// in, so a v1alpha1 client that drops or edits the v1-fields annotation
// reaches v1 without them; this webhook sees every version as v1. The
// messages are the schema's, so a user hears the same thing either way.
// old is nil on create.
func validateRouting(old, spec *v1.DataplaneConfigSpec) field.ErrorList {
	path := field.NewPath("spec", "routing")
	var errs field.ErrorList
	if r := spec.Routing; r != nil {
		if spec.NetworkPlugin != "" && spec.NetworkPlugin != v1.NetworkPluginAzure {
			errs = append(errs, field.Forbidden(path,
				"routing needs networkPlugin: azure (or unset); with networkPlugin: none your own CNI carries pod traffic between nodes, so leave routing unset"))
		}
		if r.TunnelProtocol != "" && r.Mode != v1.RoutingModeTunnel {
			errs = append(errs, field.Invalid(path.Child("tunnelProtocol"), r.TunnelProtocol,
				"tunnelProtocol applies to mode Tunnel only: Native routing doesn't encapsulate; set mode: Tunnel or remove tunnelProtocol"))
		}
		if mtu := r.UnderlayMTU; mtu != nil && (*mtu < 1280 || *mtu > 9000) {
			errs = append(errs, field.Invalid(path.Child("underlayMTU"), *mtu,
				"must be from 1280 (IPv6's minimum) to 9000 (jumbo frames)"))
		}
	}
	if old == nil {
		return errs
	}
	// Compare what is in force, not what is written: removing the field
	// from a Tunnel cluster switches it to Native just as surely.
	was, is := dataplane.EffectiveRouting(old.Routing), dataplane.EffectiveRouting(spec.Routing)
	if was.Mode != is.Mode {
		errs = append(errs, field.Invalid(path.Child("mode"), is.Mode,
			"routing.mode can't change on a running cluster: nodes that switch at different moments can't reach each other's pods (the mode in force is "+
				string(was.Mode)+"); create a new cluster to use another mode"))
	} else if was.TunnelProtocol != is.TunnelProtocol {
		errs = append(errs, field.Invalid(path.Child("tunnelProtocol"), is.TunnelProtocol,
			"routing.tunnelProtocol can't change on a running cluster: a node decapsulates only the protocol in force ("+
				string(was.TunnelProtocol)+"), so nodes that switch at different moments can't reach each other's pods; create a new cluster to use another protocol"))
	}
	return errs
}

// tunnelNotYetAvailable refuses mode Tunnel: the API has the setting and
// the operator computes its pod MTU, but this version's agents carry pod
// traffic between nodes with native routing only. Accepting it would give
// every pod a tunnel's MTU and leave nodes unable to reach each other's
// pods; refusing it says so where the choice is made.
func tunnelNotYetAvailable(spec *v1.DataplaneConfigSpec) field.ErrorList {
	if dataplane.EffectiveRouting(spec.Routing).Mode != v1.RoutingModeTunnel {
		return nil
	}
	return field.ErrorList{field.Forbidden(field.NewPath("spec", "routing", "mode"),
		"mode Tunnel isn't available yet: this version's agents carry pod traffic between nodes with native routing only "+
			"(a kernel route to each node's pod ranges via its address); use mode: Native, or leave routing unset")}
}
