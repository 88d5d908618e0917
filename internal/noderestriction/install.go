package noderestriction

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// NodeNameExtra is the user-info extra that bound service-account tokens of
// pods carry: the name of the node the pod runs on.
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// AgentServiceAccount is the agent's service account name the policy
// recognises (in any namespace).
const AgentServiceAccount = "sluice-agent"

// AgentUser is the user name of the agent's service account in namespace.
func AgentUser(namespace string) string {
	return "system:serviceaccount:" + namespace + ":" + AgentServiceAccount
}

// AgentImpersonation is how a test or the lab acts as the agent of node:
// the service account's user and groups, and the node-name claim its
// bound token would carry (none when node is empty).
func AgentImpersonation(namespace, node string) rest.ImpersonationConfig {
	imp := rest.ImpersonationConfig{
		UserName: AgentUser(namespace),
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"},
	}
	if node != "" {
		imp.Extra = map[string][]string{NodeNameExtra: {node}}
	}
	return imp
}

// Policy is the policy and its binding, as read from the manifest.
type Policy struct {
	Policy  *admissionregistrationv1.ValidatingAdmissionPolicy
	Binding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// Read reads the policy and its binding from file
// (config/admission/node_restriction.yaml).
func Read(file string) (*Policy, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the node restriction policy: %w", err)
	}
	var p Policy
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			return nil, fmt.Errorf("decode %s: %w", file, err)
		}
		switch meta.Kind {
		case "":
			continue // a document of comments only
		case "ValidatingAdmissionPolicy":
			p.Policy = &admissionregistrationv1.ValidatingAdmissionPolicy{}
			err = yaml.UnmarshalStrict(doc, p.Policy)
		case "ValidatingAdmissionPolicyBinding":
			p.Binding = &admissionregistrationv1.ValidatingAdmissionPolicyBinding{}
			err = yaml.UnmarshalStrict(doc, p.Binding)
		default:
			err = fmt.Errorf("unexpected kind %q", meta.Kind)
		}
		if err != nil {
			return nil, fmt.Errorf("decode %s: %w", file, err)
		}
	}
	if p.Policy == nil || p.Binding == nil {
		return nil, fmt.Errorf("%s must hold a ValidatingAdmissionPolicy and its binding", file)
	}
	if p.Binding.Spec.PolicyName != p.Policy.Name {
		return nil, fmt.Errorf("%s: the binding names policy %q, the policy is %q", file, p.Binding.Spec.PolicyName, p.Policy.Name)
	}
	return &p, nil
}

// Install creates (or updates) the policy and its binding and returns once
// the API server refuses a request the policy forbids.
func Install(ctx context.Context, cfg *rest.Config, c client.Client, p *Policy) error {
	for _, obj := range []client.Object{p.Policy.DeepCopy(), p.Binding.DeepCopy()} {
		if err := createOrUpdate(ctx, c, obj); err != nil {
			return err
		}
	}
	return waitEnforced(ctx, cfg, c)
}

func createOrUpdate(ctx context.Context, c client.Client, obj client.Object) error {
	err := c.Create(ctx, obj)
	if apierrors.IsAlreadyExists(err) {
		cur := obj.DeepCopyObject().(client.Object)
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), cur); err != nil {
			return fmt.Errorf("read %T %s: %w", obj, obj.GetName(), err)
		}
		obj.SetResourceVersion(cur.GetResourceVersion())
		err = c.Update(ctx, obj)
	}
	if err != nil {
		return fmt.Errorf("install %T %s: %w", obj, obj.GetName(), err)
	}
	return nil
}

// probeNamespace names the identity of the probe; no such namespace needs
// to exist (a service account's user name is only a name to RBAC).
const probeNamespace = "sluice-admission-probe"

// waitEnforced grants a probe identity shaped like the agent the right to
// create DataplaneNodes, then dry-runs a create of another node's
// DataplaneNode as that identity until the policy refuses it.
func waitEnforced(ctx context.Context, cfg *rest.Config, c client.Client) error {
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "sluice-admission-probe"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{v1.GroupVersion.Group}, Resources: []string{"dataplanenodes"}, Verbs: []string{"create"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "sluice-admission-probe"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: AgentUser(probeNamespace)}},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := createOrUpdate(ctx, c, obj); err != nil {
			return err
		}
	}
	defer func() {
		// Best effort: a leftover probe role grants only dry-run-able
		// creates that the policy refuses anyway.
		_ = c.Delete(context.WithoutCancel(ctx), binding)
		_ = c.Delete(context.WithoutCancel(ctx), role)
	}()

	probeCfg := rest.CopyConfig(cfg)
	probeCfg.Impersonate = AgentImpersonation(probeNamespace, "probe-node-a")
	probe, err := client.New(probeCfg, client.Options{Scheme: c.Scheme()})
	if err != nil {
		return fmt.Errorf("client for the admission probe: %w", err)
	}
	var last error
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		dn := &v1.DataplaneNode{ObjectMeta: metav1.ObjectMeta{Name: "probe-node-b"}}
		last = probe.Create(ctx, dn, client.DryRunAll)
		switch {
		case last == nil, apierrors.IsForbidden(last) && !strings.Contains(last.Error(), "may write only its own node"):
			// Admitted (policy not loaded yet) or refused by RBAC
			// (the probe's binding not in the authorizer's cache yet).
			return false, nil
		case apierrors.IsForbidden(last):
			return true, nil
		default:
			return false, last
		}
	})
	if err != nil {
		return fmt.Errorf("wait for the node restriction policy to be enforced (last probe: %v): %w", last, err)
	}
	return nil
}
