package policysync

import (
	"net/netip"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/sluice-dev/sluice/internal/agent/endpoint"
	"github.com/sluice-dev/sluice/internal/policy"
)

// compilerPodName names the compiler pod of a pod's i-th address. The
// compiler holds one address per pod, so a dual-stack pod is two compiler
// pods with the same namespace, labels, ports and node: every selector
// picks both, and each address is an endpoint of its own. No API name
// contains "/", so the names can't collide.
func compilerPodName(name string, i int) string {
	if i == 0 {
		return name
	}
	return name + "/" + strconv.Itoa(i)
}

// podIPs are the pod's addresses: those of its registration when the node's
// CNI handed them out (the API's status lags behind ADD), else the API's.
func podIPs(pod *corev1.Pod, reg []netip.Addr) []netip.Addr {
	if len(reg) > 0 {
		return endpoint.OnePerFamily(reg)
	}
	var all []netip.Addr
	for _, ip := range pod.Status.PodIPs {
		if a, err := netip.ParseAddr(ip.IP); err == nil {
			all = append(all, a.Unmap())
		}
	}
	if len(all) == 0 && pod.Status.PodIP != "" {
		if a, err := netip.ParseAddr(pod.Status.PodIP); err == nil {
			all = append(all, a.Unmap())
		}
	}
	return endpoint.OnePerFamily(all)
}

// compilerPods is what the compiler should hold for a pod: nothing for a
// pod without addresses, on the host network (its address is its node's),
// or finished (its address may already be another pod's); registered
// pods are on this node whatever the API says.
func compilerPods(pod *corev1.Pod, reg []netip.Addr, thisNode string) []policy.Pod {
	if pod == nil || pod.Spec.HostNetwork {
		return nil
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	ips := podIPs(pod, reg)
	node := pod.Spec.NodeName
	if len(reg) > 0 {
		node = thisNode
	}
	var ports []policy.NamedPort
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == "" {
				continue // only named ports matter to the compiler
			}
			ports = append(ports, policy.NamedPort{Name: p.Name, Port: p.ContainerPort, Protocol: p.Protocol})
		}
	}
	out := make([]policy.Pod, 0, len(ips))
	for i, ip := range ips {
		out = append(out, policy.Pod{
			Namespace: pod.Namespace, Name: compilerPodName(pod.Name, i),
			Labels: pod.Labels, IP: ip, Node: node, Ports: ports,
		})
	}
	return out
}

// compilerNode is a node with its internal and external addresses.
func compilerNode(n *corev1.Node) policy.Node {
	out := policy.Node{Name: n.Name}
	seen := map[netip.Addr]bool{}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		ip, err := netip.ParseAddr(a.Address)
		if err != nil || ip.Zone() != "" || seen[ip.Unmap()] {
			continue
		}
		seen[ip.Unmap()] = true
		out.IPs = append(out.IPs, ip.Unmap())
	}
	return out
}

func compilerNamespace(ns *corev1.Namespace) policy.Namespace {
	return policy.Namespace{Name: ns.Name, Labels: ns.Labels}
}

// trimPod keeps only what the agent reads of a pod, so that a cache of
// every pod in the cluster stays small.
func trimPod(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		TypeMeta: pod.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID,
			ResourceVersion: pod.ResourceVersion, Labels: pod.Labels,
			DeletionTimestamp: pod.DeletionTimestamp,
		},
		Spec: corev1.PodSpec{NodeName: pod.Spec.NodeName, HostNetwork: pod.Spec.HostNetwork},
		Status: corev1.PodStatus{
			Phase: pod.Status.Phase, PodIP: pod.Status.PodIP, PodIPs: pod.Status.PodIPs,
		},
	}
	for _, c := range pod.Spec.Containers {
		var ports []corev1.ContainerPort
		for _, p := range c.Ports {
			if p.Name != "" {
				ports = append(ports, corev1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort, Protocol: p.Protocol})
			}
		}
		if len(ports) > 0 {
			out.Spec.Containers = append(out.Spec.Containers, corev1.Container{Name: c.Name, Ports: ports})
		}
	}
	return out, nil
}

// trimNode keeps a node's name and addresses.
func trimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	return &corev1.Node{
		TypeMeta: n.TypeMeta,
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels,
		},
		Status: corev1.NodeStatus{Addresses: n.Status.Addresses},
	}, nil
}

// stripManaged drops managed fields (namespaces, policies).
func stripManaged(obj any) (any, error) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		o.ManagedFields = nil
	case *networkingv1.NetworkPolicy:
		o.ManagedFields = nil
	}
	return obj, nil
}
