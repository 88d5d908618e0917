package policy

import (
	networkingv1 "k8s.io/api/networking/v1"
)

// FailClosed is what stands in for a policy the Compiler refused: the same
// podSelector and (defaulted) policyTypes with no rules. The API server
// validates policies, so a refusal is a compiler limit, not a bad object;
// the stand-in isolates every pod the policy selects, in every direction
// the policy names, and allows them nothing the policy wouldn't. Failing
// open instead would let traffic the policy denies reach the pods it
// selects. np is not modified.
//
// A selector the compiler can't read is refused in the stand-in too; the
// caller then keeps the policy's previous version, if any.
func FailClosed(np *networkingv1.NetworkPolicy) *networkingv1.NetworkPolicy {
	closed := np.DeepCopy()
	// Defaulted before the rules go: policyTypes comes from them when
	// the policy leaves it out (egress rules imply Egress).
	Default(closed)
	closed.Spec.Ingress, closed.Spec.Egress = nil, nil
	return closed
}
