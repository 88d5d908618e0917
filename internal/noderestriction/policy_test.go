package noderestriction_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/noderestriction"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// clusterRole reads a ClusterRole shipped in config/rbac.
func clusterRole(t *testing.T, file string) *rbacv1.ClusterRole {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "config", "rbac", file))
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(data, role); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return role
}

// grant binds a shipped ClusterRole to a user, as config/rbac does for the
// service accounts.
func grant(t *testing.T, c client.Client, role *rbacv1.ClusterRole, user string) {
	t.Helper()
	ctx := context.Background()
	if err := c.Create(ctx, role); err != nil {
		t.Fatal(err)
	}
	b := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}},
	}
	if err := c.Create(ctx, b); err != nil {
		t.Fatal(err)
	}
}

func as(t *testing.T, cfg *rest.Config, c client.Client, imp rest.ImpersonationConfig) client.Client {
	t.Helper()
	ic := rest.CopyConfig(cfg)
	ic.Impersonate = imp
	out, err := client.New(ic, client.Options{Scheme: c.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// refused fails unless err is the policy's refusal and its message holds
// every one of want.
func refused(t *testing.T, what string, err error, want ...string) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Fatalf("%s: got %v, want the node restriction's refusal", what, err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: message %q doesn't say %q", what, err.Error(), w)
		}
	}
}

func TestAgentWritesOnlyItsOwnNode(t *testing.T) {
	cfg, scheme := testenv.StartFor(t)
	ctx := context.Background()
	admin, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	const agentNS = "sluice-system"
	grant(t, admin, clusterRole(t, "agent_role.yaml"), noderestriction.AgentUser(agentNS))
	const operatorUser = "system:serviceaccount:" + agentNS + ":sluice-controller-manager"
	grant(t, admin, clusterRole(t, "role.yaml"), operatorUser)

	for _, name := range []string{"a", "b"} {
		if err := admin.Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
		if err := admin.Create(ctx, &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := admin.Create(ctx, &v1.DataplaneNode{ObjectMeta: metav1.ObjectMeta{Name: "b"}}); err != nil {
		t.Fatal(err)
	}

	agentA := as(t, cfg, admin, noderestriction.AgentImpersonation(agentNS, "a"))
	usage := func(n int32) client.Patch {
		return client.RawPatch("application/merge-patch+json", fmt.Appendf(nil, `{"spec":{"ipsInUse":%d}}`, n))
	}

	t.Run("own NodeNetwork spec", func(t *testing.T) {
		if err := agentA.Patch(ctx, &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, usage(3)); err != nil {
			t.Fatalf("agent of a patching NodeNetwork a: %v", err)
		}
		var got v1.NodeNetwork
		if err := admin.Get(ctx, client.ObjectKey{Name: "a"}, &got); err != nil || got.Spec.IPsInUse != 3 {
			t.Fatalf("NodeNetwork a ipsInUse = %d, %v; want 3", got.Spec.IPsInUse, err)
		}
	})
	t.Run("another node's NodeNetwork spec", func(t *testing.T) {
		err := agentA.Patch(ctx, &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, usage(7))
		refused(t, "agent of a patching NodeNetwork b", err, "node a may write only its own node's nodenetworks", "nodenetworks b")
		var got v1.NodeNetwork
		if err := admin.Get(ctx, client.ObjectKey{Name: "b"}, &got); err != nil || got.Spec.IPsInUse != 0 {
			t.Fatalf("NodeNetwork b ipsInUse = %d, %v; want it untouched", got.Spec.IPsInUse, err)
		}
	})
	t.Run("own DataplaneNode and its status", func(t *testing.T) {
		dn := &v1.DataplaneNode{ObjectMeta: metav1.ObjectMeta{Name: "a"}}
		if err := agentA.Create(ctx, dn); err != nil {
			t.Fatalf("agent of a creating DataplaneNode a: %v", err)
		}
		dn.Status.Ready = true
		dn.Status.Endpoints = 4
		if err := agentA.Status().Update(ctx, dn); err != nil {
			t.Fatalf("agent of a updating DataplaneNode a's status: %v", err)
		}
	})
	t.Run("another node's DataplaneNode", func(t *testing.T) {
		err := agentA.Create(ctx, &v1.DataplaneNode{ObjectMeta: metav1.ObjectMeta{Name: "c"}})
		refused(t, "agent of a creating DataplaneNode c", err, "node a may write only its own node's dataplanenodes")
		var b v1.DataplaneNode
		if err := admin.Get(ctx, client.ObjectKey{Name: "b"}, &b); err != nil {
			t.Fatal(err)
		}
		b.Status.Ready = true
		refused(t, "agent of a updating DataplaneNode b's status", agentA.Status().Update(ctx, &b), "dataplanenodes b")
	})
	t.Run("no node claim", func(t *testing.T) {
		noClaim := as(t, cfg, admin, noderestriction.AgentImpersonation(agentNS, ""))
		err := noClaim.Patch(ctx, &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, usage(1))
		refused(t, "agent without a claim patching NodeNetwork a", err, "carries no node name")
		err = noClaim.Create(ctx, &v1.DataplaneNode{ObjectMeta: metav1.ObjectMeta{Name: "d"}})
		refused(t, "agent without a claim creating DataplaneNode d", err, "carries no node name")
	})
	t.Run("the agent's account in another namespace", func(t *testing.T) {
		grant(t, admin, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "other-agent"},
			Rules:      clusterRole(t, "agent_role.yaml").Rules,
		}, noderestriction.AgentUser("kube-system"))
		other := as(t, cfg, admin, noderestriction.AgentImpersonation("kube-system", "a"))
		err := other.Patch(ctx, &v1.NodeNetwork{ObjectMeta: metav1.ObjectMeta{Name: "b"}}, usage(2))
		refused(t, "agent in kube-system of a patching NodeNetwork b", err, "node a may write only")
	})
	t.Run("the operator writes any node's status", func(t *testing.T) {
		// The operator runs in a pod too, so its token carries a node
		// name; the policy must not apply to it.
		imp := noderestriction.AgentImpersonation(agentNS, "a")
		imp.UserName = operatorUser
		operator := as(t, cfg, admin, imp)
		var b v1.NodeNetwork
		if err := admin.Get(ctx, client.ObjectKey{Name: "b"}, &b); err != nil {
			t.Fatal(err)
		}
		b.Status.Pool = "default"
		b.Status.MaxPods = 30
		if err := operator.Status().Update(ctx, &b); err != nil {
			t.Fatalf("operator on node a writing NodeNetwork b's status: %v", err)
		}
	})
}
