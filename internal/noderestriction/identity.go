package noderestriction

import (
	"context"
	"fmt"
	"os"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// GrantAgentRole installs the agent's ClusterRole as shipped (roleFile:
// config/rbac/agent_role.yaml) and binds it to the agent's service account
// in namespace, as `make deploy` does. The lab and the agent's tests run the
// agent under it, so a verb the agent uses and the role lacks fails there
// first.
func GrantAgentRole(ctx context.Context, c client.Client, roleFile, namespace string) error {
	data, err := os.ReadFile(roleFile)
	if err != nil {
		return fmt.Errorf("read the agent's role: %w", err)
	}
	role := &rbacv1.ClusterRole{}
	if err := yaml.UnmarshalStrict(data, role); err != nil {
		return fmt.Errorf("decode %s: %w", roleFile, err)
	}
	// kustomize's namePrefix, so the names are those of a deployed Sluice.
	role.Name = "sluice-" + role.Name
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: role.Name + "binding", Labels: role.Labels},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: AgentServiceAccount, Namespace: namespace}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := createOrUpdate(ctx, c, obj); err != nil {
			return err
		}
	}
	return nil
}

// AgentKubeconfig turns a kubeconfig (the lab's admin one) into one that
// acts as the agent of node: every request impersonates the agent's
// service account in namespace with the node-name claim a bound token
// would carry. The lab has no kubelet to mount such a token into an agent
// pod; impersonation gives the API server the same user info, so the
// agent's RBAC and the node restriction apply to the lab's agents as they
// do on a real cluster.
func AgentKubeconfig(kubeconfig []byte, namespace, node string) ([]byte, error) {
	cfg, err := clientcmd.Load(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("read kubeconfig: %w", err)
	}
	ctx, ok := cfg.Contexts[cfg.CurrentContext]
	if !ok || cfg.AuthInfos[ctx.AuthInfo] == nil {
		return nil, fmt.Errorf("kubeconfig: current context %q has no user", cfg.CurrentContext)
	}
	imp := AgentImpersonation(namespace, node)
	user := cfg.AuthInfos[ctx.AuthInfo]
	user.Impersonate = imp.UserName
	user.ImpersonateGroups = imp.Groups
	user.ImpersonateUserExtra = imp.Extra
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	return out, nil
}
