package v1alpha1

import (
	"encoding/json"
	"fmt"
	"maps"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// V1FieldsAnnotation carries, on a v1alpha1 object, the v1 fields that
// v1alpha1 has no place for, so that v1 -> v1alpha1 -> v1 loses nothing (the
// way Kubernetes' own conversions keep fields of newer versions). It is
// written when converting to v1alpha1, read and removed when converting
// back, and never stored: objects are stored as v1.
const V1FieldsAnnotation = "dataplane.sluice.dev/v1-fields"

// v1Fields is the content of V1FieldsAnnotation.
type v1Fields struct {
	// ExplicitAzureDataplane records networkDataplane: azure written out;
	// v1alpha1 can only express the legacy dataplane by leaving
	// ebpfDataplane absent, which v1 reads as networkDataplane unset.
	ExplicitAzureDataplane bool                   `json:"explicitAzureDataplane,omitempty"`
	IPAMPools              []v1.IPAMPoolReference `json:"ipamPools,omitempty"`
	NodePoolLabel          string                 `json:"nodePoolLabel,omitempty"`
	Routing                *v1.RoutingSettings    `json:"routing,omitempty"`
	Agent                  *v1.AgentSettings      `json:"agent,omitempty"`
	Effective              *v1.EffectiveConfig    `json:"effective,omitempty"`
	AgentRollout           *v1.AgentRolloutStatus `json:"agentRollout,omitempty"`
}

func (f v1Fields) empty() bool {
	return !f.ExplicitAzureDataplane && len(f.IPAMPools) == 0 && f.NodePoolLabel == "" &&
		f.Routing == nil && f.Agent == nil && f.Effective == nil && f.AgentRollout == nil
}

// ConvertToV1 converts a v1alpha1 DataplaneConfig into the hub version.
// It fails only when V1FieldsAnnotation was edited into something that is
// not the JSON this package writes.
func ConvertToV1(src *DataplaneConfig, dst *v1.DataplaneConfig) error {
	var kept v1Fields
	if raw, ok := src.Annotations[V1FieldsAnnotation]; ok {
		if err := json.Unmarshal([]byte(raw), &kept); err != nil {
			return fmt.Errorf("annotation %s is not the JSON Sluice writes (%w); remove the annotation and retry", V1FieldsAnnotation, err)
		}
	}

	dst.ObjectMeta = *src.ObjectMeta.DeepCopy()
	dst.Annotations = withoutKey(dst.Annotations, V1FieldsAnnotation)

	in := src.Spec
	dst.Spec = v1.DataplaneConfigSpec{
		NetworkPlugin:     v1.NetworkPlugin(in.NetworkPlugin),
		NetworkPluginMode: v1.NetworkPluginMode(in.NetworkPluginMode),
		NetworkDataplane:  v1.NetworkDataplane(in.EBPFDataplane),
		NetworkPolicy:     v1.NetworkPolicyEngine(in.NetworkPolicy),
		PodCIDR:           in.PodCidr,
		IPAMPools:         kept.IPAMPools,
		NodePoolLabel:     kept.NodePoolLabel,
		Routing:           kept.Routing,
		Agent:             kept.Agent,
	}
	if in.EBPFDataplane == "" && kept.ExplicitAzureDataplane {
		dst.Spec.NetworkDataplane = v1.NetworkDataplaneAzure
	}

	dst.Status = v1.DataplaneConfigStatus{
		ObservedGeneration: src.Status.ObservedGeneration,
		Conditions:         src.Status.DeepCopy().Conditions,
		Effective:          kept.Effective,
		Agent:              kept.AgentRollout,
	}
	return nil
}

// ConvertFromV1 converts a hub DataplaneConfig into v1alpha1.
func ConvertFromV1(src *v1.DataplaneConfig, dst *DataplaneConfig) error {
	in := src.Spec.DeepCopy()
	kept := v1Fields{
		IPAMPools:     in.IPAMPools,
		NodePoolLabel: in.NodePoolLabel,
		Routing:       in.Routing,
		Agent:         in.Agent,
		Effective:     src.Status.DeepCopy().Effective,
		AgentRollout:  src.Status.DeepCopy().Agent,
	}

	dst.ObjectMeta = *src.ObjectMeta.DeepCopy()
	dst.Spec = DataplaneConfigSpec{
		NetworkPlugin:     string(in.NetworkPlugin),
		NetworkPluginMode: string(in.NetworkPluginMode),
		NetworkPolicy:     string(in.NetworkPolicy),
		PodCidr:           in.PodCIDR,
	}
	if in.NetworkDataplane == v1.NetworkDataplaneAzure {
		kept.ExplicitAzureDataplane = true
	} else {
		dst.Spec.EBPFDataplane = EBPFDataplane(in.NetworkDataplane)
	}

	dst.Status = DataplaneConfigStatus{
		ObservedGeneration: src.Status.ObservedGeneration,
		Conditions:         src.Status.DeepCopy().Conditions,
	}

	if kept.empty() {
		dst.Annotations = withoutKey(dst.Annotations, V1FieldsAnnotation)
		return nil
	}
	raw, err := json.Marshal(kept)
	if err != nil {
		return fmt.Errorf("encode v1 fields for annotation %s: %w", V1FieldsAnnotation, err)
	}
	if dst.Annotations == nil {
		dst.Annotations = map[string]string{}
	}
	dst.Annotations[V1FieldsAnnotation] = string(raw)
	return nil
}

// withoutKey returns annotations without key, or nil when nothing is left,
// so a round trip through the other version doesn't leave an empty map.
func withoutKey(annotations map[string]string, key string) map[string]string {
	if _, ok := annotations[key]; !ok {
		return annotations
	}
	out := maps.Clone(annotations)
	delete(out, key)
	if len(out) == 0 {
		return nil
	}
	return out
}
