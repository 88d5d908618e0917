package agent

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/cni"
)

// TestPutEndpoint: the socket API's PUT, through the plugin's client, on
// the agent's parts with fakes. Each case starts from fresh parts.
func TestPutEndpoint(t *testing.T) {
	web := map[string]string{"app": "web"}
	baseObjs := func() []client.Object {
		return []client.Object{
			prod(),
			pod("web", testNode, web),
			pod("far", "node-b", web, "10.1.1.9"),
			pod("holder", "node-b", web, "10.1.0.7"),
			pod("host", testNode, nil),
		}
	}
	for _, tc := range []struct {
		name      string
		id        string
		ep        cni.Endpoint
		attachErr error
		edit      func([]client.Object)
		status    int    // 0: success
		msg       string // part of the error message
	}{{
		name: "a pod of this node",
		id:   "c1",
		ep:   cniEndpoint("prod", "web", "10.1.0.5", "slc1", 11),
	}, {
		name: "dual stack",
		id:   "c1",
		ep: cni.Endpoint{Namespace: "prod", Name: "web", IfName: "eth0", HostIfName: "slc1", HostIfIndex: 11,
			IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5"), netip.MustParseAddr("fd00::5")}},
	}, {
		name: "no namespace", id: "c1", ep: cniEndpoint("", "web", "10.1.0.5", "slc1", 11),
		status: http.StatusBadRequest, msg: "namespace and name",
	}, {
		name: "no IPs", id: "c1",
		ep:     cni.Endpoint{Namespace: "prod", Name: "web", IfName: "eth0", HostIfName: "slc1", HostIfIndex: 11},
		status: http.StatusBadRequest, msg: "at least one IP",
	}, {
		name: "unspecified IP", id: "c1", ep: cniEndpoint("prod", "web", "0.0.0.0", "slc1", 11),
		status: http.StatusBadRequest, msg: "not a pod address",
	}, {
		name: "no ifindex", id: "c1", ep: cniEndpoint("prod", "web", "10.1.0.5", "slc1", 0),
		status: http.StatusBadRequest, msg: "hostIfIndex",
	}, {
		name: "no ifName", id: "c1",
		ep: cni.Endpoint{Namespace: "prod", Name: "web", HostIfName: "slc1", HostIfIndex: 11,
			IPs: []netip.Addr{netip.MustParseAddr("10.1.0.5")}},
		status: http.StatusBadRequest, msg: "ifName",
	}, {
		name: "host veth missing", id: "c1", ep: cniEndpoint("prod", "web", "10.1.0.5", "slc9", 99),
		status: http.StatusBadRequest, msg: "does not exist",
	}, {
		name: "host veth renamed", id: "c1", ep: cniEndpoint("prod", "web", "10.1.0.5", "slcx", 11),
		status: http.StatusBadRequest, msg: "does not exist",
	}, {
		name: "pod on another node", id: "c1", ep: cniEndpoint("prod", "far", "10.1.0.5", "slc1", 11),
		status: http.StatusConflict, msg: "scheduled on node node-b",
	}, {
		name: "pod unknown", id: "c1", ep: cniEndpoint("prod", "ghost", "10.1.0.5", "slc1", 11),
		status: http.StatusServiceUnavailable, msg: "not found",
	}, {
		name: "host-network pod", id: "c1", ep: cniEndpoint("prod", "host", "10.1.0.5", "slc1", 11),
		edit: func(objs []client.Object) {
			objs[4].(*corev1.Pod).Spec.HostNetwork = true
		},
		status: http.StatusConflict, msg: "host network",
	}, {
		name: "address held by another pod", id: "c1", ep: cniEndpoint("prod", "web", "10.1.0.7", "slc1", 11),
		status: http.StatusConflict, msg: "already belongs to pod prod/holder",
	}, {
		name: "attach fails", id: "c1", ep: cniEndpoint("prod", "web", "10.1.0.5", "slc1", 11),
		attachErr: errors.New("tcx says no"),
		status:    http.StatusInternalServerError, msg: "tcx says no",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := baseObjs()
			if tc.edit != nil {
				tc.edit(objs)
			}
			att := newFakeAttacher(map[int]string{11: "slc1"})
			att.attachErr = tc.attachErr
			r := newRig(t, att, objs, func(c *partsConfig) {
				if tc.status == http.StatusServiceUnavailable || tc.msg == "host network" {
					c.registerTimeout = 300 * time.Millisecond
				}
			})
			st, err := r.client.PutEndpoint(context.Background(), tc.id, tc.ep)
			if tc.status != 0 {
				var refused *cni.AgentRefusedError
				if !errors.As(err, &refused) || refused.Status != tc.status || !strings.Contains(refused.Message, tc.msg) {
					t.Fatalf("PUT: %v; want %d with %q", err, tc.status, tc.msg)
				}
				if _, err := r.client.GetEndpoint(context.Background(), tc.id); !cni.IsAgentNotFound(err) {
					t.Errorf("a refused endpoint is still registered: %v", err)
				}
				if att.live(11) != 0 {
					t.Error("a refused endpoint is attached")
				}
				return
			}
			if err != nil {
				t.Fatalf("PUT: %v", err)
			}
			if !st.Attached || !st.Enforced || len(st.DatapathIDs) != len(tc.ep.IPs) {
				t.Fatalf("status %+v", st)
			}
			for i, ip := range tc.ep.IPs {
				ep, ok := endpointIn(r.dp.last(), ip.String())
				if !ok || ep.ID != st.DatapathIDs[i] || ep.ID == 0 {
					t.Errorf("%s: in datapath %v (%+v), status IDs %v", ip, ok, ep, st.DatapathIDs)
				}
			}
			if att.live(11) != 1 {
				t.Errorf("%d attachments, want 1", att.live(11))
			}
			// The other node's pods are peers, not endpoints.
			if _, ok := endpointIn(r.dp.last(), "10.1.1.9"); ok {
				t.Error("another node's pod is an endpoint here")
			}
		})
	}
}

func TestEndpointLifecycle(t *testing.T) {
	att := newFakeAttacher(map[int]string{11: "slc1", 12: "slc2"})
	r := newRig(t, att, []client.Object{prod(), pod("web", testNode, nil)})
	ctx := context.Background()

	if err := r.client.DeleteEndpoint(ctx, "unknown"); err != nil {
		t.Fatalf("DELETE of an unknown endpoint: %v", err)
	}
	if _, err := r.client.PutEndpoint(ctx, "c1", cniEndpoint("prod", "web", "10.1.0.5", "slc1", 11)); err != nil {
		t.Fatal(err)
	}
	// Again, same veth: nothing changes.
	if _, err := r.client.PutEndpoint(ctx, "c1", cniEndpoint("prod", "web", "10.1.0.5", "slc1", 11)); err != nil {
		t.Fatal(err)
	}
	if att.live(11) != 1 || att.attaches != 1 {
		t.Fatalf("after a repeated PUT: %d live, %d attaches", att.live(11), att.attaches)
	}
	// A retried ADD rebuilt the veth: the attachment moves.
	st, err := r.client.PutEndpoint(ctx, "c1", cniEndpoint("prod", "web", "10.1.0.6", "slc2", 12))
	if err != nil {
		t.Fatal(err)
	}
	if att.live(11) != 0 || att.live(12) != 1 {
		t.Fatalf("attachment did not move: %v", att.attached)
	}
	if _, ok := endpointIn(r.dp.last(), "10.1.0.5"); ok {
		t.Error("the old address is still an endpoint")
	}
	if _, ok := endpointIn(r.dp.last(), "10.1.0.6"); !ok || !st.Enforced {
		t.Error("the new address is no endpoint")
	}
	if list := r.p.endpoints.List(); len(list) != 1 || list[0].ContainerID != "c1" {
		t.Fatalf("list: %v", list)
	}

	if err := r.client.DeleteEndpoint(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if att.live(12) != 0 {
		t.Error("DELETE did not detach")
	}
	if _, err := r.client.GetEndpoint(ctx, "c1"); !cni.IsAgentNotFound(err) {
		t.Errorf("GET after DELETE: %v", err)
	}
	if err := r.client.DeleteEndpoint(ctx, "c1"); err != nil {
		t.Fatalf("second DELETE: %v", err)
	}
}

// TestSocketErrors: malformed requests get JSON errors.
func TestSocketErrors(t *testing.T) {
	r := newRig(t, newFakeAttacher(nil), nil)
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{http.MethodPut, "/v1/endpoints/c1", "{not json", http.StatusBadRequest},
		{http.MethodPost, "/v1/endpoints/c1", "{}", http.StatusMethodNotAllowed},
		{http.MethodPost, "/v1/endpoints", "{}", http.StatusMethodNotAllowed},
		{http.MethodGet, "/v1/endpoints/nope", "", http.StatusNotFound},
		{http.MethodGet, "/v2/other", "", http.StatusNotFound},
		{http.MethodGet, "/v1/status", "", http.StatusOK},
		{http.MethodGet, "/v1/endpoints", "", http.StatusOK},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, "http://agent"+tc.path, bytes.NewBufferString(tc.body))
			rec := &recorder{header: http.Header{}}
			r.p.endpoints.Handler().ServeHTTP(rec, req)
			if rec.status != tc.status {
				t.Fatalf("status %d, want %d: %s", rec.status, tc.status, rec.body.String())
			}
			if ct := rec.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if tc.status != http.StatusOK && !strings.Contains(rec.body.String(), `"message"`) {
				t.Errorf("no JSON message: %s", rec.body.String())
			}
		})
	}
}

type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) WriteHeader(s int) { r.status = s }

// TestUnreachableAgent: the client's error for a socket nobody serves.
func TestUnreachableAgent(t *testing.T) {
	sock := t.TempDir() + "/none.sock"
	_, err := cni.NewAgentClient(sock).PutEndpoint(context.Background(), "c1", cniEndpoint("a", "b", "10.0.0.1", "x", 1))
	var u *cni.AgentUnreachableError
	if !errors.As(err, &u) || !strings.HasPrefix(err.Error(), "node agent not reachable at "+sock+": ") {
		t.Fatalf("error %v", err)
	}
	var ne *net.OpError
	if !errors.As(err, &ne) {
		t.Errorf("the dial error is not kept: %v", err)
	}
}
