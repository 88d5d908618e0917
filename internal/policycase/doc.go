// Package policycase reads the policy test case files that `sluicectl
// policy verdicts` takes, and computes their verdicts with an engine: the
// Go evaluator over the compiled entries (model) or the real BPF programs
// run on crafted packets (bpf).
//
// The case format is an interface people test against, so it is strict:
// unknown fields, a probe naming a pod that doesn't exist or a protocol
// other than TCP, UDP and SCTP are errors that say what and where, never a
// guess. Verdicts never depend on a probe's expect field; it is only
// compared with --check.
package policycase
