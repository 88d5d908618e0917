package webhook

import (
	"testing"

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
