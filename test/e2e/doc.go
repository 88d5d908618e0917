// Package e2e holds the end-to-end test: it starts a local control plane
// (internal/lab), builds and runs the real operator binary against it, and
// drives it with the real kubectl the way a user would. It needs
// KUBEBUILDER_ASSETS pointing at kube-apiserver, etcd and kubectl
// (`make setup-envtest`):
//
//	KUBEBUILDER_ASSETS=$PWD/bin/k8s/1.37.0 go test ./test/e2e/ -count=1 -v
package e2e
