// Package controllers holds the reconcilers of the Sluice operator, one file
// pair per kind: <kind>_controller.go reconciles, <kind>_status.go computes
// status and conditions as pure functions with table tests. SetupAll
// registers them all, with the webhooks, as cmd/manager and the envtest
// suite both run them.
//
// Who writes what. Every object, and every half of one, has one writer, so
// no two processes fight over a field:
//
//   - DataplaneConfig and IPAMPool spec: the user (or GitOps). The operator
//     never writes spec; defaults and effective values go to status.
//   - DataplaneConfig status, IPAMPool status: the operator.
//   - The agent ConfigMap and DaemonSet: the operator, owned by the
//     DataplaneConfig.
//   - IPAMBlock: the operator. A block is claimed by creating its IPAMBlock
//     before any node is told about it, and released by deleting it after
//     the node's status stops listing it.
//   - NodeNetwork: created by the operator (owned by its Node); spec is
//     written by the node agent (IPs in use, batches it gives back), status
//     by the operator (what the node holds, the pool's settings in force).
//   - DataplaneNode: the node agent, which creates its own and writes its
//     status.
//
// Why no server-side apply. Each writer owns whole objects or whole halves
// (spec or status) of one, which field managers would add nothing to, and
// an apply is a write even when nothing changed, while a settled reconcile
// must make none (apply.go reads, compares and writes only a difference).
// Writes that race another writer use optimistic concurrency instead: a
// stale write fails with a conflict and the reconcile runs again.
//
// The price: each reconciler compares before it writes, which is code SSA
// would not need, and a defaulted field the API server fills in must be
// compared with care (DeepDerivative plus a generation check for the
// DaemonSet).
package controllers
