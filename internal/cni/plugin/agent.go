package plugin

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/netlinksafe"

	"github.com/sluice-dev/sluice/internal/cni"
)

// The handover to the node agent, when the configuration names its socket
// (agentSocket). ADD fails closed: a pod whose endpoint the agent has not
// confirmed gets no network, so it is never up without its policy.

// podRef reads the pod's namespace and name from CNI_ARGS
// (K8S_POD_NAMESPACE=...;K8S_POD_NAME=...), as the kubelet's runtime sets
// them. Missing ones are code 4.
func podRef(args *skel.CmdArgs) (namespace, name string, err error) {
	for _, kv := range strings.Split(args.Args, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "K8S_POD_NAMESPACE":
			namespace = strings.TrimSpace(v)
		case "K8S_POD_NAME":
			name = strings.TrimSpace(v)
		}
	}
	if namespace == "" || name == "" {
		return "", "", types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_ARGS %q lacks K8S_POD_NAMESPACE or K8S_POD_NAME, which the node agent needs to enforce the pod's policy (agentSocket is set)", args.Args), "")
	}
	return namespace, name, nil
}

// registerEndpoint hands the wired endpoint to the agent and waits for its
// answer. Any failure is code 11: the agent is down, starting or does not
// know the pod yet, all of which a retry of the sandbox can outlive.
func registerEndpoint(conf *cni.Config, args *skel.CmdArgs, namespace, name, hostName string, ips []netip.Addr) error {
	host, err := netlinksafe.LinkByName(hostName)
	if err != nil {
		return fmt.Errorf("find host veth %s: %w", hostName, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cni.AgentRegisterTimeout)
	defer cancel()
	_, err = cni.NewAgentClient(conf.AgentSocket).PutEndpoint(ctx, args.ContainerID, cni.Endpoint{
		Namespace: namespace, Name: name, IfName: args.IfName, IPs: ips,
		HostIfName: hostName, HostIfIndex: host.Attrs().Index,
	})
	if err != nil {
		return types.NewError(types.ErrTryAgainLater, agentErrorMessage(err), "")
	}
	return nil
}

// agentErrorMessage is the message ADD reports for a failed handover.
func agentErrorMessage(err error) string {
	var unreachable *cni.AgentUnreachableError
	if errors.As(err, &unreachable) {
		return unreachable.Error()
	}
	return "node agent refused the endpoint: " + err.Error()
}

// unregisterEndpoint tells the agent the endpoint is gone. Errors are
// ignored: the agent forgets endpoints whose veth disappeared by itself,
// and DEL must succeed.
func unregisterEndpoint(conf *cni.Config, containerID string) {
	ctx, cancel := context.WithTimeout(context.Background(), cni.AgentQuickTimeout)
	defer cancel()
	_ = cni.NewAgentClient(conf.AgentSocket).DeleteEndpoint(ctx, containerID)
}

// checkEndpoint asks the agent whether it enforces the endpoint.
func checkEndpoint(conf *cni.Config, containerID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cni.AgentQuickTimeout)
	defer cancel()
	st, err := cni.NewAgentClient(conf.AgentSocket).GetEndpoint(ctx, containerID)
	var unreachable *cni.AgentUnreachableError
	switch {
	case errors.As(err, &unreachable):
		return types.NewError(types.ErrTryAgainLater, unreachable.Error(), "")
	case cni.IsAgentNotFound(err):
		return fmt.Errorf("the node agent at %s has no endpoint for container %s", conf.AgentSocket, containerID)
	case err != nil:
		return err
	case !st.Attached || !st.Enforced:
		return fmt.Errorf("the node agent at %s does not enforce container %s's endpoint (attached=%v, enforced=%v)", conf.AgentSocket, containerID, st.Attached, st.Enforced)
	}
	return nil
}

// agentStatus is STATUS's question to the agent: without it no ADD can
// succeed.
func agentStatus(conf *cni.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), cni.AgentQuickTimeout)
	defer cancel()
	if err := cni.NewAgentClient(conf.AgentSocket).Status(ctx); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "node agent not ready: "+err.Error(), "")
	}
	return nil
}
