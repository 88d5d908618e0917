// Command sluice-cni is Sluice's CNI plugin. The container runtime execs it
// with CNI_COMMAND set to ADD, DEL, CHECK, STATUS, GC or VERSION and the
// sluice-cni entry of /etc/cni/net.d/10-sluice.conflist on stdin; it gives
// each pod one address per family from the node's allocation
// (/run/sluice/allocation.json) and wires a veth to the host. See package
// internal/cni/plugin for what it builds and why.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/sluice-dev/sluice/internal/cni/plugin"
)

func main() {
	skel.PluginMainFuncs(plugin.Funcs(), plugin.VersionInfo(), "CNI plugin sluice-cni")
}
