package v1

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// The CEL rules that keep a pool's sizes fixed spell out the defaults,
// which CEL can't read from Go: this pins them to the constants.
func TestImmutabilityRulesCompareWithTheDefaults(t *testing.T) {
	// The markers, from which controller-gen writes the CRD.
	crd, err := os.ReadFile("ipampool_types.go")
	if err != nil {
		t.Fatal(err)
	}
	for field, def := range map[string]int32{
		"blockSize": DefaultBlockSize, "ipv6BlockSize": DefaultIPv6BlockSize, "batchSize": DefaultBatchSize,
	} {
		for _, side := range []string{"self", "oldSelf"} {
			want := fmt.Sprintf("(has(%s.%s) ? %s.%s : %d)", side, field, side, field, def)
			if !strings.Contains(string(crd), want) {
				t.Errorf("the IPAMPool markers have no rule with %s; the immutability rule of %s must compare with its default %d", want, field, def)
			}
		}
	}
}
