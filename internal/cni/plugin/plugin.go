// Package plugin is the sluice-cni plugin: the CNI commands ADD, DEL,
// CHECK, STATUS and GC on top of the node-local allocator of package cni,
// and the veth wiring that gives a pod its addresses. cmd/cni hands Funcs
// to skel, which reads the environment and stdin and prints results and
// errors as the CNI spec says.
//
// Pod addressing: the pod's interface gets one /32 (and one /128 when the
// allocation has IPv6) and reaches everything through a link-local gateway,
// 169.254.1.1 for IPv4 and fe80::1 for IPv6, routed onlink. The gateway is
// the host side of the veth: it carries the fixed MAC ee:ee:ee:ee:ee:ee,
// and the pod has a permanent neighbour entry for the gateway with that
// MAC; the host has a permanent neighbour entry for the pod's address and
// a /32 (/128) route to it through the host veth.
//
// Trade-off: static neighbours rather than proxy_arp. proxy_arp would make
// the host answer ARP for every address on the veth and needs an NDP proxy
// entry per address for IPv6; static entries need no sysctl on the host,
// send no ARP or NDP at all on the veth, work the same for both families,
// and leave the veth as a plain point-to-point pipe for the eBPF datapath.
// The price: a pod that changes its own MAC breaks its own traffic.
//
// Node agent: with agentSocket set, ADD (after wiring) PUTs the endpoint
// (pod namespace and name from CNI_ARGS, addresses, host veth) to the
// agent's unix socket and waits, up to 30 s, for the agent to answer that
// the pod's policy is in the datapath's maps and its programs are attached
// to the host veth. Any other outcome fails the ADD with code 11 after
// undoing the wiring and releasing the address: fail closed, so no pod
// ever has a network its policy does not cover. DEL tells the agent first
// (errors ignored), CHECK and STATUS ask it. Without agentSocket nothing
// of this happens.
//
// Crash safety: ADD persists the reservation before it touches the network
// and releases the lock before wiring, so a plugin killed at any point
// leaves at worst a reservation without (or with a half-built) interface.
// A retried ADD for the same attachment reuses that reservation and
// rebuilds the veth; DEL removes the veth and then releases; GC releases
// every reservation whose attachment the runtime does not list and removes
// host veths whose reservation is gone.
package plugin

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/sluice-dev/sluice/internal/cni"
)

// Gateway addresses and MAC as the pod sees them.
var (
	GatewayIPv4 = net.IPv4(169, 254, 1, 1).To4()
	GatewayIPv6 = net.ParseIP("fe80::1")
	GatewayMAC  = net.HardwareAddr{0xee, 0xee, 0xee, 0xee, 0xee, 0xee}
)

// HangEnv names the test-only hook. When it is "reserve" ADD sleeps until
// killed right after persisting the reservation; when it is "wire", right
// after wiring the veth, before printing the result. It exists only for
// the crash tests (which SIGKILL the plugin there) and costs one getenv per
// ADD.
const HangEnv = "SLUICE_CNI_TEST_HANG_AFTER"

// Hang points of HangEnv.
const (
	HangAfterReserve = "reserve"
	HangAfterWire    = "wire"
)

// VersionInfo lists the CNI spec versions the plugin speaks. CHECK needs
// 0.4.0 or later and STATUS and GC 1.1.0; skel enforces both.
func VersionInfo() version.PluginInfo {
	return version.PluginSupports("0.3.1", "0.4.0", "1.0.0", "1.1.0")
}

// Funcs are the plugin's commands for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, Status: cmdStatus, GC: cmdGC}
}

// noAllocationMsg is the message of ADD (code 11) and STATUS (code 50)
// before the node side has written the allocation file.
func noAllocationMsg(conf *cni.Config, err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("no allocation for this node yet (allocation file %s missing: the node agent has not received this node's addresses)", conf.AllocationFile)
	}
	if err != nil {
		return fmt.Sprintf("no allocation for this node yet (allocation file %s unreadable: %v)", conf.AllocationFile, err)
	}
	return fmt.Sprintf("no allocation for this node yet (allocation file %s has no CIDRs)", conf.AllocationFile)
}

// readAllocation returns the allocation or, when there is none usable, the
// error ADD reports: code 11, since the node side will write it soon.
func readAllocation(conf *cni.Config) (cni.Allocation, error) {
	a, err := cni.ReadAllocation(conf.AllocationFile)
	if err != nil || len(a.CIDRs) == 0 {
		return cni.Allocation{}, types.NewError(types.ErrTryAgainLater, noAllocationMsg(conf, err), "")
	}
	return a, nil
}

func cmdStatus(args *skel.CmdArgs) error {
	conf, err := cni.ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	a, err := cni.ReadAllocation(conf.AllocationFile)
	if err != nil || len(a.CIDRs) == 0 {
		return types.NewError(types.ErrPluginNotAvailable, noAllocationMsg(conf, err), "")
	}
	if conf.AgentSocket != "" {
		return agentStatus(conf)
	}
	return nil
}

// storeError maps an allocator error to its CNI code: 11 for a lock held
// too long or an exhausted pool (both pass), 5 for the rest (I/O).
func storeError(what string, err error) error {
	var exhausted *cni.ExhaustedError
	var locked *cni.LockTimeoutError
	if errors.As(err, &exhausted) || errors.As(err, &locked) {
		return types.NewError(types.ErrTryAgainLater, err.Error(), "")
	}
	return types.NewError(types.ErrIOFailure, what+": "+err.Error(), "")
}

// withStore runs fn under the allocator's lock and saves the state when fn
// reports a change.
func withStore(conf *cni.Config, what string, fn func(*cni.Store) (changed bool, err error)) error {
	s, err := cni.OpenStore(conf.StateDir)
	if err != nil {
		return storeError(what, err)
	}
	defer func() { _ = s.Close() }()
	changed, err := fn(s)
	if err != nil {
		return err
	}
	if changed {
		if err := s.Save(); err != nil {
			return storeError(what, err)
		}
	}
	return nil
}

// hangIfTesting implements HangEnv.
func hangIfTesting(hang, point string) {
	if hang != point {
		return
	}
	fmt.Fprintf(os.Stderr, "sluice-cni: %s=%s: hanging until killed\n", HangEnv, point)
	for {
		time.Sleep(time.Hour)
	}
}
