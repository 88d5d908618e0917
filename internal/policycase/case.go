package policycase

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/sluice-dev/sluice/internal/policy"
)

// Case is one case file.
type Case struct {
	Name       string                       `json:"name"`
	Namespaces map[string]Namespace         `json:"namespaces"`
	Pods       []Pod                        `json:"pods"`
	Nodes      []Node                       `json:"nodes,omitempty"`
	Policies   []networkingv1.NetworkPolicy `json:"policies"`
	Probes     []Probe                      `json:"probes"`

	// Free text for the case's author; ignored.
	Source json.RawMessage `json:"source,omitempty"`
	Tags   json.RawMessage `json:"tags,omitempty"`
	Notes  json.RawMessage `json:"notes,omitempty"`
}

// Namespace of a case.
type Namespace struct {
	Labels map[string]string `json:"labels"`
}

// Pod of a case.
type Pod struct {
	Namespace string            `json:"namespace"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels"`
	IP        string            `json:"ip"`
	Ports     []Port            `json:"ports,omitempty"`
}

// Port is a container port a named port in a policy can resolve to.
type Port struct {
	Name     string `json:"name"`
	Port     int32  `json:"port"`
	Protocol string `json:"protocol,omitempty"`
}

// Node of a case.
type Node struct {
	Name string `json:"name"`
	IP   string `json:"ip"`
}

// Probe asks whether a flow is allowed.
type Probe struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	// Expect is compared only with --check: "allow" or "deny".
	Expect string `json:"expect,omitempty"`
}

// Verdict is one line of the output, in probe order.
type Verdict struct {
	From     string `json:"from"`
	To       string `json:"to"`
	Port     int    `json:"port"`
	Protocol string `json:"protocol"`
	Verdict  string `json:"verdict"`
	// Expect is set in --check output only.
	Expect string `json:"expect,omitempty"`
}

// Verdicts.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Read decodes a case strictly: unknown fields anywhere are errors.
func Read(r io.Reader) (*Case, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read case: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	c := &Case{}
	if err := dec.Decode(c); err != nil {
		return nil, fmt.Errorf("decode case: %w", err)
	}
	if dec.More() {
		return nil, errors.New("decode case: more than one JSON value in the file")
	}
	return c, nil
}

// Flow is a probe resolved to addresses.
type Flow struct {
	Src, Dst netip.Addr
	Proto    uint8
	Port     uint16
}

// Resolve checks the case and turns it into the compiler's input and one
// flow per probe.
func (c *Case) Resolve() (*policy.Cluster, []Flow, error) {
	cluster := &policy.Cluster{}
	for _, name := range sortedKeys(c.Namespaces) {
		cluster.Namespaces = append(cluster.Namespaces, policy.Namespace{Name: name, Labels: c.Namespaces[name].Labels})
	}
	pods := map[string]netip.Addr{}
	for i, p := range c.Pods {
		where := fmt.Sprintf("pods[%d] (%s/%s)", i, p.Namespace, p.Name)
		if _, ok := c.Namespaces[p.Namespace]; !ok {
			return nil, nil, fmt.Errorf("%s: namespace %q is not in namespaces", where, p.Namespace)
		}
		ip, err := netip.ParseAddr(p.IP)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: ip: %w", where, err)
		}
		key := p.Namespace + "/" + p.Name
		if _, dup := pods[key]; dup {
			return nil, nil, fmt.Errorf("%s: a second pod with this name", where)
		}
		pods[key] = ip
		pod := policy.Pod{Namespace: p.Namespace, Name: p.Name, Labels: p.Labels, IP: ip}
		for j, port := range p.Ports {
			proto, err := protocol(port.Protocol, "TCP")
			if err != nil {
				return nil, nil, fmt.Errorf("%s: ports[%d]: %w", where, j, err)
			}
			pod.Ports = append(pod.Ports, policy.NamedPort{Name: port.Name, Port: port.Port, Protocol: proto})
		}
		cluster.Pods = append(cluster.Pods, pod)
	}
	for i, n := range c.Nodes {
		ip, err := netip.ParseAddr(n.IP)
		if err != nil {
			return nil, nil, fmt.Errorf("nodes[%d] (%s): ip: %w", i, n.Name, err)
		}
		cluster.Nodes = append(cluster.Nodes, policy.Node{Name: n.Name, IPs: []netip.Addr{ip}})
	}
	for i := range c.Policies {
		p := c.Policies[i].DeepCopy()
		policy.Default(p)
		cluster.Policies = append(cluster.Policies, *p)
	}

	flows := make([]Flow, 0, len(c.Probes))
	for i, probe := range c.Probes {
		flow, err := resolveProbe(probe, pods)
		if err != nil {
			return nil, nil, fmt.Errorf("probes[%d] (%s -> %s): %w", i, probe.From, probe.To, err)
		}
		flows = append(flows, flow)
	}
	return cluster, flows, nil
}

func resolveProbe(p Probe, pods map[string]netip.Addr) (Flow, error) {
	var f Flow
	var err error
	if f.Src, err = endpoint(p.From, pods); err != nil {
		return f, fmt.Errorf("from: %w", err)
	}
	if f.Dst, err = endpoint(p.To, pods); err != nil {
		return f, fmt.Errorf("to: %w", err)
	}
	proto, err := protocol(p.Protocol, "")
	if err != nil {
		return f, err
	}
	f.Proto = protoNumber[proto]
	if p.Port < 1 || p.Port > 65535 {
		return f, fmt.Errorf("port %d: want 1 to 65535", p.Port)
	}
	f.Port = uint16(p.Port)
	switch p.Expect {
	case "", Allow, Deny:
	default:
		return f, fmt.Errorf("expect %q: want %q or %q", p.Expect, Allow, Deny)
	}
	return f, nil
}

// endpoint is a probe end: "namespace/pod" or a bare IP.
func endpoint(s string, pods map[string]netip.Addr) (netip.Addr, error) {
	if strings.Contains(s, "/") {
		ip, ok := pods[s]
		if !ok {
			return netip.Addr{}, fmt.Errorf("no pod %q in the case", s)
		}
		return ip, nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%q is neither namespace/pod nor an IP address", s)
	}
	return ip, nil
}

var protoNumber = map[corev1.Protocol]uint8{
	corev1.ProtocolTCP: policy.ProtoTCP, corev1.ProtocolUDP: policy.ProtoUDP, corev1.ProtocolSCTP: policy.ProtoSCTP,
}

func protocol(s, def string) (corev1.Protocol, error) {
	if s == "" {
		s = def
	}
	p := corev1.Protocol(s)
	if _, ok := protoNumber[p]; !ok {
		return "", fmt.Errorf("protocol %q: want TCP, UDP or SCTP", s)
	}
	return p, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
