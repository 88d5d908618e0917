package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"
)

// The endpoint handover between the plugin and the node agent: an HTTP API
// on the agent's unix socket (Config.AgentSocket), so that the plugin's
// ADD returns only once the pod's policy is enforced.
//
//	PUT    /v1/endpoints/{containerID}  body Endpoint -> 200 EndpointStatus
//	GET    /v1/endpoints/{containerID}  -> 200 EndpointStatus, 404
//	DELETE /v1/endpoints/{containerID}  -> 200 (also when unknown)
//	GET    /v1/endpoints                -> 200 [EndpointStatus...]
//	GET    /v1/status                   -> 200 when ready, 503 otherwise
//
// Errors carry an AgentErrorBody.
const (
	// DefaultAgentSocket is where the node agent listens.
	DefaultAgentSocket = "/var/run/sluice/agent.sock"
	// AgentRegisterTimeout bounds ADD's wait for the agent. The agent
	// derives its own wait from it (internal/agent's RegisterMargin), so
	// it answers, and undoes a refused registration, before ADD gives up.
	AgentRegisterTimeout = 30 * time.Second
	// AgentQuickTimeout bounds DEL's, CHECK's and STATUS's requests.
	AgentQuickTimeout = 5 * time.Second
)

// Endpoint is what ADD tells the agent about a new pod interface.
type Endpoint struct {
	// Namespace and Name are the pod's (CNI_ARGS K8S_POD_NAMESPACE and
	// K8S_POD_NAME).
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// IfName is the interface inside the pod (CNI_IFNAME).
	IfName string `json:"ifName"`
	// IPs are the addresses ADD gave the pod; the agent uses them for the
	// pod before the API server's pod status has them.
	IPs []netip.Addr `json:"ips"`
	// HostIfName and HostIfIndex name the host side of the veth, in the
	// agent's (the node's) network namespace.
	HostIfName  string `json:"hostIfName"`
	HostIfIndex int    `json:"hostIfIndex"`
}

// EndpointStatus is the agent's view of a registered endpoint.
type EndpointStatus struct {
	ContainerID string `json:"containerID"`
	Endpoint
	// Attached is true while both programs are attached to the host veth.
	Attached bool `json:"attached"`
	// Enforced is true when every address of the endpoint is in the
	// datapath's endpoint map with its policy.
	Enforced bool `json:"enforced"`
	// DatapathIDs are the endpoint numbers in the datapath's maps, one per
	// address, in the order of IPs (0: not in the maps).
	DatapathIDs []uint32 `json:"datapathIDs,omitempty"`
}

// AgentErrorBody is the body of every error response of the agent.
type AgentErrorBody struct {
	Message string `json:"message"`
}

// AgentUnreachableError is a request that never got an answer: no socket,
// nobody listening, or no answer in time.
type AgentUnreachableError struct {
	Socket string
	Err    error
}

func (e *AgentUnreachableError) Error() string {
	return fmt.Sprintf("node agent not reachable at %s: %v", e.Socket, e.Err)
}

func (e *AgentUnreachableError) Unwrap() error { return e.Err }

// AgentRefusedError is an answer other than success.
type AgentRefusedError struct {
	Socket  string
	Status  int
	Message string
}

func (e *AgentRefusedError) Error() string {
	return fmt.Sprintf("node agent at %s answered %d %s: %s", e.Socket, e.Status, http.StatusText(e.Status), e.Message)
}

// IsAgentNotFound says whether err is the agent's 404.
func IsAgentNotFound(err error) bool {
	var r *AgentRefusedError
	return errors.As(err, &r) && r.Status == http.StatusNotFound
}

// AgentClient talks to the node agent over its unix socket.
type AgentClient struct {
	Socket string
	http   *http.Client
}

// NewAgentClient returns a client for the agent at socket.
func NewAgentClient(socket string) *AgentClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		DisableKeepAlives: true,
	}
	return &AgentClient{Socket: socket, http: &http.Client{Transport: tr}}
}

// PutEndpoint registers an endpoint and waits until the agent enforces it.
func (c *AgentClient) PutEndpoint(ctx context.Context, containerID string, ep Endpoint) (*EndpointStatus, error) {
	body, err := json.Marshal(ep)
	if err != nil {
		return nil, err
	}
	var st EndpointStatus
	if err := c.do(ctx, http.MethodPut, endpointPath(containerID), body, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// GetEndpoint returns what the agent knows of an endpoint.
func (c *AgentClient) GetEndpoint(ctx context.Context, containerID string) (*EndpointStatus, error) {
	var st EndpointStatus
	if err := c.do(ctx, http.MethodGet, endpointPath(containerID), nil, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// DeleteEndpoint detaches and forgets an endpoint; unknown ones are fine.
func (c *AgentClient) DeleteEndpoint(ctx context.Context, containerID string) error {
	return c.do(ctx, http.MethodDelete, endpointPath(containerID), nil, nil)
}

// Status says whether the agent is ready to take endpoints.
func (c *AgentClient) Status(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/v1/status", nil, nil)
}

func endpointPath(containerID string) string {
	return "/v1/endpoints/" + url.PathEscape(containerID)
}

func (c *AgentClient) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	// The host is ignored: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://sluice-agent"+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &AgentUnreachableError{Socket: c.Socket, Err: unwrapURLError(err)}
	}
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return &AgentUnreachableError{Socket: c.Socket, Err: fmt.Errorf("read answer: %w", err)}
	}
	if resp.StatusCode != http.StatusOK {
		var e AgentErrorBody
		if json.Unmarshal(data, &e) != nil || e.Message == "" {
			e.Message = string(bytes.TrimSpace(data))
		}
		return &AgentRefusedError{Socket: c.Socket, Status: resp.StatusCode, Message: e.Message}
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("node agent at %s: decode answer: %w", c.Socket, err)
		}
	}
	return nil
}

// unwrapURLError drops net/http's "Put \"http://sluice-agent/...\":"
// wrapper, which names a host that does not exist.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
