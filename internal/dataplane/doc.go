// Package dataplane turns a DataplaneConfig spec into the configuration in
// force (status.effective) and says what a user must be warned about when a
// spec changes. It needs no API server: the reconciler and the admission
// webhook both call it, so what the webhook promises is what the reconciler
// does.
//
// Trade-off: defaults live here, in Go, and never in the CRD schema. Schema
// defaults would be written into spec by the API server, where GitOps tools
// that own spec see them as drift; and a default that exists in only one API
// version breaks lossless conversion. The price is that `kubectl get -o yaml`
// shows the defaults under status.effective rather than in spec.
package dataplane
