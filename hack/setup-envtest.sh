#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver, etcd) and kubectl from
# source through the Go module proxy, because envtest's usual download of
# prebuilt binaries can't reach its bucket from here.
#
# Each binary is built from a wrapper module under hack/envtest/ whose go.mod
# pins the upstream module and replaces what upstream's own go.mod points at
# local ./staging paths (go install refuses modules with replace directives;
# a wrapper module is the way around that).
#
# Usage: hack/setup-envtest.sh [DIR]   (default bin/k8s/$KUBE_VERSION)
# Prints the directory holding the binaries on its last line of stdout, so
#   KUBEBUILDER_ASSETS=$(hack/setup-envtest.sh | tail -1)
# works. A binary that is already there is not built again.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.37.0}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${1:-$root/bin/k8s/$KUBE_VERSION}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

log() { echo "setup-envtest: $*" >&2; }

# The version the API server reports; unstamped it says v0.0.0-master and
# clients that gate features on the server version misbehave.
kube_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION \
 -X k8s.io/component-base/version.gitMajor=${KUBE_VERSION%%.*} \
 -X k8s.io/component-base/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2) \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=v$KUBE_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=${KUBE_VERSION%%.*} \
 -X k8s.io/client-go/pkg/version.gitMinor=$(echo "$KUBE_VERSION" | cut -d. -f2)"

# build NAME WRAPPER PACKAGE LDFLAGS
build() {
  local name=$1 wrapper=$2 pkg=$3 ldflags=$4
  if [ -x "$dest/$name" ]; then
    log "$name already built in $dest"
    return
  fi
  log "building $name from $pkg (cold, this takes many minutes on 2 cores; later runs reuse the Go build cache)"
  local start=$SECONDS
  # Build to a temporary name and rename, so an interrupted build never
  # leaves a half-written binary that a later run would take as done.
  if ! (cd "$root/hack/envtest/$wrapper" &&
        CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$dest/.$name.tmp" "$pkg"); then
    rm -f "$dest/.$name.tmp"
    log "ERROR: building $name failed (see the go build output above)."
    log "It needs the Go module proxy to be reachable and about 3 GiB of free disk in the Go cache."
    exit 1
  fi
  mv "$dest/.$name.tmp" "$dest/$name"
  log "built $name in $((SECONDS - start))s"
}

build etcd etcd go.etcd.io/etcd/server/v3 "-s -w -X go.etcd.io/etcd/api/v3/version.Version=$ETCD_VERSION"
build kube-apiserver kube k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build kubectl kube k8s.io/kubernetes/cmd/kubectl "$kube_ldflags"

echo "$dest"
