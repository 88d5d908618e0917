package plugin

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/sluice-dev/sluice/internal/cni"
)

// cmdAdd: lock, reserve (or reuse the attachment's reservation), persist,
// unlock, wire the veth, hand the endpoint to the node agent (when
// agentSocket is set), print the result.
func cmdAdd(args *skel.CmdArgs) error {
	hang := os.Getenv(HangEnv)
	conf, err := cni.ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	var podNamespace, podName string
	if conf.AgentSocket != "" {
		if podNamespace, podName, err = podRef(args); err != nil {
			return err
		}
	}
	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS %q is not a network namespace: %v", args.Netns, err), "")
	}
	defer func() { _ = podNS.Close() }()
	alloc, err := readAllocation(conf)
	if err != nil {
		return err
	}

	var ips []netip.Addr
	var reused bool
	err = withStore(conf, "reserve an address", func(s *cni.Store) (bool, error) {
		var err error
		ips, reused, err = s.Reserve(alloc, args.ContainerID, args.IfName)
		if err != nil {
			return false, storeError("reserve an address", err)
		}
		return !reused, nil
	})
	if err != nil {
		return err
	}
	hangIfTesting(hang, HangAfterReserve)

	// Leave nothing behind on failure: the runtime may never send the DEL.
	cleanup := func() {
		_ = unwire(conf, args)
		_ = withStore(conf, "release", func(s *cni.Store) (bool, error) {
			return len(s.Release(args.ContainerID, args.IfName)) > 0, nil
		})
	}
	result, err := wire(conf, args, podNS, ips, reused)
	if err != nil {
		cleanup()
		return err
	}
	hangIfTesting(hang, HangAfterWire)
	if conf.AgentSocket != "" {
		hostName := cni.HostVethName(conf.HostVethPrefix, args.ContainerID, args.IfName)
		if err := registerEndpoint(conf, args, podNamespace, podName, hostName, ips); err != nil {
			// Fail closed. The agent may have attached before it failed
			// (or before our timeout): tell it to let go first.
			unregisterEndpoint(conf, args.ContainerID)
			cleanup()
			return err
		}
	}
	return types.PrintResult(result, conf.PluginConf.CNIVersion)
}

// cmdDel removes the veth first and then releases the reservation, so a
// plugin killed in between leaves a reservation the next DEL or GC
// releases, never an address in use that is free to hand out. Everything
// already gone (netns, veth, reservation) is success.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := cni.ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if conf.AgentSocket != "" {
		// Before the veth goes: the agent detaches and unpins its links.
		unregisterEndpoint(conf, args.ContainerID)
	}
	if err := unwire(conf, args); err != nil {
		return err
	}
	return withStore(conf, "release", func(s *cni.Store) (bool, error) {
		return len(s.Release(args.ContainerID, args.IfName)) > 0, nil
	})
}

// cmdCheck verifies what ADD built: the reservation, the addresses of the
// prevResult, the pod's interface, addresses, routes and neighbour, the
// host veth and its routes, and, with an agent, that the agent enforces
// the endpoint.
func cmdCheck(args *skel.CmdArgs) error {
	conf, err := cni.ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	all, err := cni.Reservations(conf.StateDir)
	if err != nil {
		return types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	var held []netip.Addr
	for _, r := range all {
		if r.ContainerID == args.ContainerID && r.IfName == args.IfName {
			held = append(held, r.IP)
		}
	}
	if len(held) == 0 {
		return types.NewError(types.ErrUnknownContainer, fmt.Sprintf("unknown container: no address is reserved for container %s interface %s in %s", args.ContainerID, args.IfName, conf.StateDir), "")
	}
	if err := checkPrevResult(&conf.PluginConf, held); err != nil {
		return err
	}
	podNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS %q is not a network namespace: %v", args.Netns, err), "")
	}
	defer func() { _ = podNS.Close() }()
	err = podNS.Do(func(ns.NetNS) error {
		if err := checkPod(args.IfName, held); err != nil {
			return fmt.Errorf("in netns %s: %w", args.Netns, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := checkHost(cni.HostVethName(conf.HostVethPrefix, args.ContainerID, args.IfName), held); err != nil {
		return err
	}
	if conf.AgentSocket != "" {
		return checkEndpoint(conf, args.ContainerID)
	}
	return nil
}

// checkPrevResult compares the addresses of ADD's result, which the
// runtime passes as prevResult, with the reservation.
func checkPrevResult(conf *types.PluginConf, held []netip.Addr) error {
	if err := version.ParsePrevResult(conf); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs the prevResult of ADD and got none", "")
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("prevResult: %v", err), "")
	}
	var got []netip.Addr
	for _, c := range prev.IPs {
		if ip, ok := netip.AddrFromSlice(c.Address.IP); ok {
			got = append(got, ip.Unmap())
		}
	}
	slices.SortFunc(got, netip.Addr.Compare)
	if !slices.Equal(got, held) {
		return fmt.Errorf("prevResult has addresses %v but the allocator holds %v for this attachment", got, held)
	}
	return nil
}

// cmdStatus is in plugin.go.

// cmdGC releases every reservation whose attachment is not in
// cni.dev/valid-attachments and removes host veths (links of type veth
// named <prefix><11 hex digits>) whose reservation is gone. It keeps the
// lock while it removes links, so an ADD cannot reserve and wire in
// between; an ADD that reserved earlier keeps its veth, because its
// reservation is either valid or released here along with its link.
func cmdGC(args *skel.CmdArgs) error {
	conf, err := cni.ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	valid := make(map[cni.Attachment]bool, len(conf.PluginConf.ValidAttachments))
	for _, a := range conf.PluginConf.ValidAttachments {
		valid[cni.Attachment{ContainerID: a.ContainerID, IfName: a.IfName}] = true
	}
	var linkErrs []error
	err = withStore(conf, "garbage-collect", func(s *cni.Store) (bool, error) {
		dropped := s.ReleaseExcept(valid)
		if len(dropped) > 0 {
			if err := s.Save(); err != nil {
				return false, storeError("garbage-collect", err)
			}
		}
		keep := map[string]bool{}
		for _, r := range s.Reservations() {
			keep[cni.HostVethName(conf.HostVethPrefix, r.ContainerID, r.IfName)] = true
		}
		linkErrs = removeStaleVeths(conf.HostVethPrefix, keep)
		return false, nil
	})
	if err != nil {
		return err
	}
	if len(linkErrs) > 0 {
		return types.NewError(types.ErrIOFailure, "garbage-collect host veths: "+errors.Join(linkErrs...).Error(), "")
	}
	return nil
}

// isHostVethName says whether name has the shape of HostVethName.
func isHostVethName(prefix, name string) bool {
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok || len(rest) != 11 {
		return false
	}
	return strings.Trim(rest, "0123456789abcdef") == ""
}
