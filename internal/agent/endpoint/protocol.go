package endpoint

import (
	"strings"

	"github.com/sluice-dev/sluice/internal/cni"
)

// Kind is why the registry refused a request; the socket API maps each
// to an HTTP status.
type Kind uint8

const (
	// Internal means the agent failed (500).
	Internal Kind = iota
	// Invalid means the request is wrong, and will be when retried (400).
	Invalid
	// NotFound means there is no such registration (404).
	NotFound
	// Conflict means the request contradicts the cluster's state: the pod is
	// on another node, on the host network, or its address is another
	// pod's (409).
	Conflict
	// Unavailable means the agent can't enforce the pod's policy now (not
	// ready, not in time, the datapath refused); a retry may succeed (503).
	Unavailable
)

// Error is a refused request. Its message is what the plugin reports.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// validContainerID checks a container ID, the last element of the API's
// paths.
func validContainerID(id string) error {
	if id == "" || len(id) > 256 || strings.ContainsAny(id, "/\x00") {
		return errorf(Invalid, "invalid container ID %q", id)
	}
	return nil
}

// validate checks a registration before anything changes.
func validate(id string, ep *cni.Endpoint) error {
	if err := validContainerID(id); err != nil {
		return err
	}
	switch {
	case ep.Namespace == "" || ep.Name == "" || strings.Contains(ep.Namespace+ep.Name, "/"):
		return errorf(Invalid, "endpoint needs the pod's namespace and name (got %q/%q)", ep.Namespace, ep.Name)
	case ep.IfName == "":
		return errorf(Invalid, "endpoint needs ifName")
	case len(ep.IPs) == 0:
		return errorf(Invalid, "endpoint needs at least one IP")
	case ep.HostIfName == "" || ep.HostIfIndex <= 0:
		return errorf(Invalid, "endpoint needs hostIfName and a positive hostIfIndex (got %q, %d)", ep.HostIfName, ep.HostIfIndex)
	}
	for _, ip := range ep.IPs {
		if !ip.IsValid() || ip.Zone() != "" || ip.IsUnspecified() {
			return errorf(Invalid, "endpoint IP %q is not a pod address", ip)
		}
	}
	return nil
}
