package netlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// PodIfName is the pod's interface, as kubelet names it.
const PodIfName = "eth0"

// PodSpec says which pod to add.
type PodSpec struct {
	// Namespace and Name are the pod's; the plugin gets them in CNI_ARGS
	// (K8S_POD_NAMESPACE, K8S_POD_NAME) as kubelet passes them, and the
	// agent looks the pod up by them. Leave both empty to pass no CNI_ARGS
	// (enough for a node without an agent).
	Namespace, Name string
	// ContainerID is the sandbox's ID (CNI_CONTAINERID). Default
	// NetNSPrefix + namespace-name.
	ContainerID string
	// NetNSName names the pod's network namespace; it must start with the
	// node's NetNSPrefix so that RemoveNode finds it. Default
	// NetNSPrefix + namespace-name, or NetNSPrefix + ContainerID for a pod
	// without a name.
	NetNSName string
}

// Pod is a pod wired by CNI ADD. Its fields but NetNS are plain data, so
// a caller can keep a Pod on disk and delete it from another process.
type Pod struct {
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	ContainerID string `json:"containerID"`
	// NetNSName is the pod's network namespace.
	NetNSName string `json:"netns"`
	// IP is the pod's first address (the plugin's result).
	IP netip.Addr `json:"ip,omitzero"`
	// HostIfName and HostIfIndex are the host side of the pod's veth, in
	// the node's host namespace: where the datapath attaches.
	HostIfName  string `json:"hostIf,omitempty"`
	HostIfIndex int    `json:"hostIfIndex,omitempty"`
	// NetNS is an open handle on the pod's namespace, set by AddPod and
	// Open; nil on a Pod read back from disk until Open.
	NetNS ns.NetNS `json:"-"`
}

// Key names the pod in matrices and messages: namespace/name, or the
// container ID for a pod without a name.
func (p *Pod) Key() string {
	if p.Name == "" {
		return p.ContainerID
	}
	return p.Namespace + "/" + p.Name
}

// Do runs fn on a thread locked in the pod's namespace.
func (p *Pod) Do(fn func() error) error {
	if p.NetNS != nil {
		return p.NetNS.Do(func(ns.NetNS) error { return fn() })
	}
	return InNetNS(p.NetNSName, fn)
}

// Open opens the pod's namespace (sets NetNS) unless it is open.
func (p *Pod) Open() error {
	if p.NetNS != nil {
		return nil
	}
	netns, err := ns.GetNS(NetNSPath(p.NetNSName))
	if err != nil {
		return fmt.Errorf("open netns %s of pod %s: %w", p.NetNSName, p.Key(), err)
	}
	p.NetNS = netns
	return nil
}

// Close releases the handle on the pod's namespace; the pod stays.
func (p *Pod) Close() error {
	if p.NetNS == nil {
		return nil
	}
	err := p.NetNS.Close()
	p.NetNS = nil
	return err
}

// NewPod is the pod spec describes on this node, not wired yet.
func (n *Node) NewPod(spec PodSpec) *Pod {
	base := spec.Namespace + "-" + spec.Name
	if spec.Name == "" {
		base = spec.ContainerID
	}
	p := &Pod{Namespace: spec.Namespace, Name: spec.Name, ContainerID: spec.ContainerID, NetNSName: spec.NetNSName}
	if p.ContainerID == "" {
		p.ContainerID = n.opts.NetNSPrefix + base
	}
	if p.NetNSName == "" {
		p.NetNSName = n.opts.NetNSPrefix + base
	}
	return p
}

// AddPod does what a container runtime does for a new pod sandbox: it
// creates the pod's namespace and runs CNI ADD from the host namespace
// with the node's conflist. On failure the namespace is removed again and
// the error wraps the plugin's (a *types.Error for a CNI error).
func (n *Node) AddPod(ctx context.Context, spec PodSpec) (*Pod, error) {
	if spec.Name == "" && spec.ContainerID == "" {
		return nil, errors.New("netlab: a pod needs a name or a container ID")
	}
	p := n.NewPod(spec)
	netns, err := AddNetNS(p.NetNSName)
	if err != nil {
		return nil, err
	}
	p.NetNS = netns
	if err := n.add(ctx, p); err != nil {
		_ = p.Close()
		_ = DelNetNS(p.NetNSName)
		return nil, err
	}
	return p, nil
}

func (n *Node) add(ctx context.Context, p *Pod) error {
	return n.Do(func() error {
		r, err := n.cni.AddNetworkList(ctx, n.list, n.runtimeConf(p))
		if err != nil {
			return fmt.Errorf("CNI ADD %s: %w", p.Key(), err)
		}
		res, err := current.NewResultFromResult(r)
		if err != nil {
			return fmt.Errorf("CNI ADD %s: %w", p.Key(), err)
		}
		if len(res.IPs) == 0 {
			return fmt.Errorf("CNI ADD %s returned no address", p.Key())
		}
		p.IP, _ = netip.AddrFromSlice(res.IPs[0].Address.IP)
		p.IP = p.IP.Unmap()
		for _, i := range res.Interfaces {
			if i.Sandbox == "" {
				p.HostIfName = i.Name
			}
		}
		l, err := netlink.LinkByName(p.HostIfName)
		if err != nil {
			return fmt.Errorf("host veth %q of %s: %w", p.HostIfName, p.Key(), err)
		}
		p.HostIfIndex = l.Attrs().Index
		return nil
	})
}

// CheckPod runs CNI CHECK for the pod.
func (n *Node) CheckPod(ctx context.Context, p *Pod) error {
	return n.Do(func() error { return n.cni.CheckNetworkList(ctx, n.list, n.runtimeConf(p)) })
}

// DelPod runs CNI DEL for the pod and removes its namespace, even when
// DEL fails (the error is returned): the plugin's state is then the
// caller's to inspect, the namespace is gone either way.
func (n *Node) DelPod(ctx context.Context, p *Pod) error {
	var errs []error
	if err := n.Do(func() error { return n.cni.DelNetworkList(ctx, n.list, n.runtimeConf(p)) }); err != nil {
		errs = append(errs, fmt.Errorf("CNI DEL %s: %w", p.Key(), err))
	}
	errs = append(errs, p.Close(), DelNetNS(p.NetNSName))
	return errors.Join(errs...)
}

// runtimeConf is the pod as the runtime describes it to the plugin.
func (n *Node) runtimeConf(p *Pod) *libcni.RuntimeConf {
	rc := &libcni.RuntimeConf{ContainerID: p.ContainerID, NetNS: NetNSPath(p.NetNSName), IfName: PodIfName}
	if p.Name != "" {
		rc.Args = [][2]string{{"K8S_POD_NAMESPACE", p.Namespace}, {"K8S_POD_NAME", p.Name}}
	}
	return rc
}
