// Package noderestriction installs the admission policy that lets a node
// agent write only its own node's NodeNetwork and DataplaneNode
// (config/admission/node_restriction.yaml), in the lab and in envtest, and
// waits until the API server enforces it.
//
// The API server loads a ValidatingAdmissionPolicy asynchronously: for a
// moment after it is created, requests pass unchecked. A test that starts
// then would test nothing, so Install returns only once a probe request is
// refused. The probe is a dry-run create made as an agent-shaped identity
// that exists for the probe alone, with RBAC granted for the probe and
// removed after it: the trade-off is two extra RBAC objects for a second,
// in exchange for an install that never returns before the policy holds.
package noderestriction
