package webhook

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

func TestValidateAgentMaxUnavailable(t *testing.T) {
	tests := []struct {
		value intstr.IntOrString
		ok    bool
	}{
		{intstr.FromInt32(1), true},
		{intstr.FromInt32(250), true},
		{intstr.FromInt32(0), false},
		{intstr.FromInt32(-3), false},
		{intstr.FromString("1%"), true},
		{intstr.FromString("10%"), true},
		{intstr.FromString("100%"), true},
		{intstr.FromString("0%"), false},
		{intstr.FromString("101%"), false},
		{intstr.FromString("05%"), false},
		{intstr.FromString("10"), false},
		{intstr.FromString("ten%"), false},
	}
	for _, tt := range tests {
		t.Run(tt.value.String(), func(t *testing.T) {
			errs := validateAgent(&v1.AgentSettings{MaxUnavailable: ptr.To(tt.value)})
			if (len(errs) == 0) != tt.ok {
				t.Fatalf("validateAgent(%s) = %v, want ok=%v", tt.value.String(), errs, tt.ok)
			}
			if !tt.ok && errs[0].Field != "spec.agent.maxUnavailable" {
				t.Errorf("error on field %s, want spec.agent.maxUnavailable", errs[0].Field)
			}
		})
	}
	if errs := validateAgent(nil); len(errs) != 0 {
		t.Errorf("no agent settings: %v", errs)
	}
}

func TestValidateAgentRequests(t *testing.T) {
	tests := []struct {
		name      string
		agent     v1.AgentSettings
		wantField string // empty: accepted
	}{
		{name: "defaults", agent: v1.AgentSettings{}},
		{name: "positive requests", agent: v1.AgentSettings{CPURequest: quantity("250m"), MemoryRequest: quantity("512Mi")}},
		{name: "zero requests, as Kubernetes allows", agent: v1.AgentSettings{CPURequest: quantity("0"), MemoryRequest: quantity("0")}},
		{name: "negative CPU", agent: v1.AgentSettings{CPURequest: quantity("-100m")}, wantField: "spec.agent.cpuRequest"},
		{name: "negative memory", agent: v1.AgentSettings{MemoryRequest: quantity("-1Mi")}, wantField: "spec.agent.memoryRequest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := validateAgent(&tt.agent)
			if tt.wantField == "" {
				if len(errs) != 0 {
					t.Fatalf("validateAgent = %v, want none", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tt.wantField || !strings.Contains(errs[0].Detail, "must not be negative") {
				t.Fatalf("validateAgent = %v, want one 'must not be negative' error on %s", errs, tt.wantField)
			}
		})
	}
}

func quantity(s string) *resource.Quantity {
	q := resource.MustParse(s)
	return &q
}
