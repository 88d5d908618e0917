package v1alpha1

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/randfill"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// fillFuncs keep random objects to what the API server can hold: enum
// fields that conversion maps take their allowed values, and quantities and
// int-or-strings are well formed (their JSON travels in the annotation).
func fillFuncs() []any {
	return []any{
		func(tm *metav1.TypeMeta, _ randfill.Continue) { *tm = metav1.TypeMeta{} },
		func(d *v1.NetworkDataplane, c randfill.Continue) {
			*d = []v1.NetworkDataplane{"", v1.NetworkDataplaneAzure, v1.NetworkDataplaneCilium}[c.Intn(3)]
		},
		func(d *EBPFDataplane, c randfill.Continue) {
			*d = []EBPFDataplane{"", EBPFDataplaneCilium}[c.Intn(2)]
		},
		func(q *resource.Quantity, c randfill.Continue) {
			*q = *resource.NewMilliQuantity(c.Int63n(1<<40), resource.DecimalSI)
		},
		func(v *intstr.IntOrString, c randfill.Continue) {
			if c.Bool() {
				*v = intstr.FromInt32(c.Int31())
			} else {
				*v = intstr.FromString(fmt.Sprintf("%d%%", c.Intn(101)))
			}
		},
	}
}

func roundTripFromV1(t *testing.T, f *randfill.Filler) {
	t.Helper()
	in := &v1.DataplaneConfig{}
	f.Fill(in)

	spoke := &DataplaneConfig{}
	if err := ConvertFromV1(in, spoke); err != nil {
		t.Fatalf("v1 -> v1alpha1: %v", err)
	}
	out := &v1.DataplaneConfig{}
	if err := ConvertToV1(spoke, out); err != nil {
		t.Fatalf("v1alpha1 -> v1: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(in, out) {
		t.Fatalf("v1 -> v1alpha1 -> v1 lost something (-in +out):\n%s", cmp.Diff(in, out))
	}
}

func roundTripFromV1alpha1(t *testing.T, f *randfill.Filler) {
	t.Helper()
	in := &DataplaneConfig{}
	f.Fill(in)
	// The annotation is the converter's own; a v1alpha1 object that carries
	// one came from a conversion, which the other direction covers.
	delete(in.Annotations, V1FieldsAnnotation)

	hub := &v1.DataplaneConfig{}
	if err := ConvertToV1(in, hub); err != nil {
		t.Fatalf("v1alpha1 -> v1: %v", err)
	}
	out := &DataplaneConfig{}
	if err := ConvertFromV1(hub, out); err != nil {
		t.Fatalf("v1 -> v1alpha1: %v", err)
	}
	if !apiequality.Semantic.DeepEqual(in, out) {
		t.Fatalf("v1alpha1 -> v1 -> v1alpha1 lost something (-in +out):\n%s", cmp.Diff(in, out))
	}
}

// TestRoundTrip runs a fixed number of random objects each way on every
// `go test`; the fuzz targets below explore further with `make fuzz`.
func TestRoundTrip(t *testing.T) {
	for seed := range int64(500) {
		f := randfill.NewWithSeed(seed).NilChance(0.3).Funcs(fillFuncs()...)
		t.Run(fmt.Sprintf("from v1 seed %d", seed), func(t *testing.T) { roundTripFromV1(t, f) })
		t.Run(fmt.Sprintf("from v1alpha1 seed %d", seed), func(t *testing.T) { roundTripFromV1alpha1(t, f) })
	}
}

func FuzzRoundTripFromV1(f *testing.F) {
	f.Add([]byte("sluice"))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTripFromV1(t, randfill.NewFromGoFuzz(data).NilChance(0.3).Funcs(fillFuncs()...))
	})
}

func FuzzRoundTripFromV1alpha1(f *testing.F) {
	f.Add([]byte("sluice"))
	f.Add([]byte{255, 254, 253, 252, 251, 250, 249, 248})
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTripFromV1alpha1(t, randfill.NewFromGoFuzz(data).NilChance(0.3).Funcs(fillFuncs()...))
	})
}

func TestConvertExamples(t *testing.T) {
	t.Run("ebpfDataplane cilium is networkDataplane cilium", func(t *testing.T) {
		hub := &v1.DataplaneConfig{}
		if err := ConvertToV1(&DataplaneConfig{Spec: DataplaneConfigSpec{EBPFDataplane: EBPFDataplaneCilium, PodCidr: "10.0.0.0/8"}}, hub); err != nil {
			t.Fatal(err)
		}
		if hub.Spec.NetworkDataplane != v1.NetworkDataplaneCilium || hub.Spec.PodCIDR != "10.0.0.0/8" {
			t.Errorf("got %+v", hub.Spec)
		}
	})
	t.Run("networkDataplane cilium is ebpfDataplane cilium with no annotation", func(t *testing.T) {
		spoke := &DataplaneConfig{}
		if err := ConvertFromV1(&v1.DataplaneConfig{Spec: v1.DataplaneConfigSpec{NetworkDataplane: v1.NetworkDataplaneCilium}}, spoke); err != nil {
			t.Fatal(err)
		}
		if spoke.Spec.EBPFDataplane != EBPFDataplaneCilium || spoke.Annotations != nil {
			t.Errorf("got %+v, annotations %v", spoke.Spec, spoke.Annotations)
		}
	})
	t.Run("routing, which v1alpha1 lacks, travels in the annotation", func(t *testing.T) {
		jumbo := int32(9000)
		in := &v1.DataplaneConfig{Spec: v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{
			Mode: v1.RoutingModeTunnel, TunnelProtocol: v1.TunnelProtocolGeneve, UnderlayMTU: &jumbo,
			NonMasqueradeCIDRs: []v1.CIDR{"172.16.0.0/12", "fd00:100::/64"},
		}}}
		spoke := &DataplaneConfig{}
		if err := ConvertFromV1(in, spoke); err != nil {
			t.Fatal(err)
		}
		if !containsAll(spoke.Annotations[V1FieldsAnnotation], `"mode":"Tunnel"`, `"tunnelProtocol":"Geneve"`, `"underlayMTU":9000`,
			`"nonMasqueradeCIDRs":["172.16.0.0/12","fd00:100::/64"]`) {
			t.Errorf("annotation = %q, want the routing settings", spoke.Annotations[V1FieldsAnnotation])
		}
		out := &v1.DataplaneConfig{}
		if err := ConvertToV1(spoke, out); err != nil {
			t.Fatal(err)
		}
		if !apiequality.Semantic.DeepEqual(in.Spec.Routing, out.Spec.Routing) {
			t.Errorf("routing came back as %+v, want %+v", out.Spec.Routing, in.Spec.Routing)
		}
	})
	t.Run("a hand-edited annotation is refused with a message", func(t *testing.T) {
		spoke := &DataplaneConfig{}
		spoke.Annotations = map[string]string{V1FieldsAnnotation: "{not json"}
		err := ConvertToV1(spoke, &v1.DataplaneConfig{})
		if err == nil || !containsAll(err.Error(), V1FieldsAnnotation, "remove the annotation") {
			t.Errorf("got %v", err)
		}
	})
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
