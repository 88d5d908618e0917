package dataplane

import (
	"fmt"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// Warnings are what a user must hear about a spec that is accepted but
// doesn't do what it may seem to say. old is nil on create. The admission
// webhook returns them and kubectl prints them.
func Warnings(old, spec *v1.DataplaneConfigSpec) []string {
	if spec.NetworkDataplane != v1.NetworkDataplaneCilium {
		return nil
	}
	var warnings []string
	switch spec.NetworkPolicy {
	case v1.NetworkPolicyAzure, v1.NetworkPolicyCalico:
		warnings = append(warnings, fmt.Sprintf(
			"networkPolicy %q is replaced by the eBPF dataplane's own enforcement: the %s engine will be uninstalled and cilium enforces NetworkPolicy (status.effective.networkPolicy shows cilium); set networkPolicy: cilium to silence this warning",
			spec.NetworkPolicy, spec.NetworkPolicy))
	case v1.NetworkPolicyNone:
		warnings = append(warnings,
			"networkPolicy \"none\" has no effect with networkDataplane cilium: the eBPF dataplane always enforces NetworkPolicy; set networkPolicy: cilium to silence this warning")
	}
	if old != nil && old.NetworkDataplane != v1.NetworkDataplaneCilium {
		warnings = append(warnings,
			"networkDataplane changes to cilium: every node pool is migrated to the eBPF dataplane and kube-proxy is removed; this can't be undone")
	}
	return warnings
}
