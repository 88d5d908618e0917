package plugin

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/sluice-dev/sluice/internal/cni"
)

func TestPodRef(t *testing.T) {
	for _, tc := range []struct {
		args, ns, name string
		ok             bool
	}{
		{"IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc;K8S_POD_UID=u", "prod", "web-0", true},
		{"K8S_POD_NAME=web;K8S_POD_NAMESPACE=default", "default", "web", true},
		{"K8S_POD_NAMESPACE=prod", "", "", false},
		{"K8S_POD_NAMESPACE=;K8S_POD_NAME=web", "", "", false},
		{"", "", "", false},
		{"garbage;;=", "", "", false},
	} {
		ns, name, err := podRef(&skel.CmdArgs{Args: tc.args})
		if tc.ok {
			if err != nil || ns != tc.ns || name != tc.name {
				t.Errorf("%q: %q/%q, %v", tc.args, ns, name, err)
			}
			continue
		}
		var cniErr *types.Error
		if !errors.As(err, &cniErr) || cniErr.Code != types.ErrInvalidEnvironmentVariables || !strings.Contains(cniErr.Msg, "K8S_POD_NAME") {
			t.Errorf("%q: want code 4 naming the arguments, got %v", tc.args, err)
		}
	}
}

// fakeAgent serves canned answers on a unix socket.
func fakeAgent(t *testing.T, h http.HandlerFunc) *cni.Config {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return &cni.Config{AgentSocket: sock}
}

func TestAgentCalls(t *testing.T) {
	answer := func(status int, body any) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(body)
		}
	}
	enforced := cni.EndpointStatus{ContainerID: "c 1/x", Attached: true, Enforced: true}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		check   string // part of CHECK's error, "" for success
		status  string // part of STATUS's error, "" for success
	}{
		{"enforced", func(w http.ResponseWriter, r *http.Request) {
			// The container ID is escaped in the path.
			if r.URL.EscapedPath() != "/v1/endpoints/c%201%2Fx" && r.URL.Path != "/v1/status" {
				w.WriteHeader(http.StatusTeapot)
				return
			}
			_ = json.NewEncoder(w).Encode(enforced)
		}, "", ""},
		{"not attached", answer(http.StatusOK, cni.EndpointStatus{Enforced: true}), "does not enforce", ""},
		{"unknown", answer(http.StatusNotFound, cni.AgentErrorBody{Message: "no endpoint"}), "has no endpoint for container", "404"},
		{"starting", answer(http.StatusServiceUnavailable, cni.AgentErrorBody{Message: "the agent is starting"}), "the agent is starting", "the agent is starting"},
		{"not JSON", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte("proxy says no\n"))
		}, "proxy says no", "proxy says no"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := fakeAgent(t, tc.handler)
			err := checkEndpoint(conf, "c 1/x")
			if (err == nil) != (tc.check == "") || (err != nil && !strings.Contains(err.Error(), tc.check)) {
				t.Errorf("CHECK: %v, want %q", err, tc.check)
			}
			err = agentStatus(conf)
			var cniErr *types.Error
			if tc.status == "" {
				if err != nil {
					t.Errorf("STATUS: %v", err)
				}
			} else if !errors.As(err, &cniErr) || cniErr.Code != types.ErrPluginNotAvailable || !strings.Contains(cniErr.Msg, tc.status) {
				t.Errorf("STATUS: %v, want code 50 with %q", err, tc.status)
			}
		})
	}
}

func TestAgentUnreachable(t *testing.T) {
	conf := &cni.Config{AgentSocket: filepath.Join(t.TempDir(), "none.sock")}
	var cniErr *types.Error
	if err := checkEndpoint(conf, "c1"); !errors.As(err, &cniErr) || cniErr.Code != types.ErrTryAgainLater ||
		!strings.HasPrefix(cniErr.Msg, "node agent not reachable at "+conf.AgentSocket+": ") {
		t.Errorf("CHECK: %v", err)
	}
	if err := agentStatus(conf); !errors.As(err, &cniErr) || cniErr.Code != types.ErrPluginNotAvailable {
		t.Errorf("STATUS: %v", err)
	}
	unregisterEndpoint(conf, "c1") // errors ignored: no panic, no hang
	msg := agentErrorMessage(&cni.AgentUnreachableError{Socket: "/s", Err: errors.New("connection refused")})
	if msg != "node agent not reachable at /s: connection refused" {
		t.Errorf("message %q", msg)
	}
	msg = agentErrorMessage(&cni.AgentRefusedError{Socket: "/s", Status: 409, Message: "pod x is scheduled on node y"})
	if !strings.HasPrefix(msg, "node agent refused the endpoint: ") || !strings.Contains(msg, "409 Conflict: pod x is scheduled on node y") {
		t.Errorf("message %q", msg)
	}
}
