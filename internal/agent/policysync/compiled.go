package policysync

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/policy"
)

// compiled is the compiler and what the worker knows of what it holds.
// Only the worker touches it.
type compiled struct {
	log    logr.Logger
	node   string
	reader client.Reader

	comp    *policy.Compiler
	cpods   map[string][]policy.Pod // compiler pods by API pod (namespace/name)
	nsKnown map[string]bool         // namespaces the compiler holds
	podErrs map[string]string       // why the compiler refused a pod, by namespace/name
}

func newCompiled(cfg Config, comp *policy.Compiler) *compiled {
	return &compiled{
		log: cfg.Log, node: cfg.Node, reader: cfg.Reader, comp: comp,
		cpods: map[string][]policy.Pod{}, nsKnown: map[string]bool{}, podErrs: map[string]string{},
	}
}

// process feeds the compiler the current state of the keys' objects and
// returns the keys to retry later (an object the compiler refused for now:
// an address another pod still holds, a namespace with pods left).
// Namespaces come first and go last, pods that leave before pods that
// come (their addresses may be the new pods').
func (c *compiled) process(ctx context.Context, keys map[objKey]struct{}, regIPs map[string][]netip.Addr) []objKey {
	byKind := map[kind][]objKey{}
	for k := range keys {
		byKind[k.kind] = append(byKind[k.kind], k)
	}
	for _, ks := range byKind {
		slices.SortFunc(ks, func(a, b objKey) int {
			return cmp.Or(cmp.Compare(a.namespace, b.namespace), cmp.Compare(a.name, b.name))
		})
	}
	retry, goneNS := c.processNamespaces(ctx, byKind[kindNamespace])
	retry = append(retry, c.processNodes(ctx, byKind[kindNode])...)
	retry = append(retry, c.processPolicies(ctx, byKind[kindPolicy])...)
	retry = append(retry, c.processPods(ctx, byKind[kindPod], regIPs)...)
	for _, k := range goneNS {
		if err := c.comp.DeleteNamespace(k.name); err != nil {
			retry = append(retry, k)
			continue
		}
		delete(c.nsKnown, k.name)
	}
	return retry
}

// processNamespaces sets the namespaces that exist and returns those to
// retry and those gone (deleted after their pods).
func (c *compiled) processNamespaces(ctx context.Context, keys []objKey) (retry, gone []objKey) {
	for _, k := range keys {
		var ns corev1.Namespace
		found, err := c.get(ctx, k, &ns)
		switch {
		case err != nil:
			retry = append(retry, k)
		case !found:
			gone = append(gone, k)
		default:
			c.setNamespace(&ns)
		}
	}
	return retry, gone
}

func (c *compiled) processNodes(ctx context.Context, keys []objKey) (retry []objKey) {
	for _, k := range keys {
		var n corev1.Node
		found, err := c.get(ctx, k, &n)
		switch {
		case err != nil:
			retry = append(retry, k)
		case !found:
			c.comp.DeleteNode(k.name)
		default:
			if err := c.comp.SetNode(compilerNode(&n)); err != nil {
				c.log.Error(err, "Node refused by the policy compiler; retrying", "node", k.name)
				retry = append(retry, k)
			}
		}
	}
	return retry
}

func (c *compiled) processPolicies(ctx context.Context, keys []objKey) (retry []objKey) {
	for _, k := range keys {
		var np networkingv1.NetworkPolicy
		found, err := c.get(ctx, k, &np)
		switch {
		case err != nil:
			retry = append(retry, k)
		case !found:
			c.comp.DeletePolicy(k.namespace, k.name)
		default:
			if err := c.comp.SetPolicy(&np); err != nil {
				c.log.Error(err, "NetworkPolicy refused by the policy compiler; its pods are isolated without its rules", "policy", k.namespace+"/"+k.name)
				if err := c.comp.SetPolicy(policy.FailClosed(&np)); err != nil {
					c.log.Error(err, "NetworkPolicy's selector refused too; its previous version stays", "policy", k.namespace+"/"+k.name)
				}
			}
		}
	}
	return retry
}

func (c *compiled) processPods(ctx context.Context, keys []objKey, regIPs map[string][]netip.Addr) (retry []objKey) {
	type podWant struct {
		key  objKey
		want []policy.Pod
	}
	var sets []podWant
	for _, k := range keys {
		var pod corev1.Pod
		found, err := c.get(ctx, k, &pod)
		if err != nil {
			retry = append(retry, k)
			continue
		}
		var want []policy.Pod
		if found {
			want = compilerPods(&pod, regIPs[k.namespace+"/"+k.name], c.node)
		}
		if len(want) == 0 {
			c.setPod(ctx, k, nil)
			continue
		}
		sets = append(sets, podWant{k, want})
	}
	for _, s := range sets {
		if !c.setPod(ctx, s.key, s.want) {
			retry = append(retry, s.key)
		}
	}
	return retry
}

// get reads an object from the cache: found false when it is gone.
func (c *compiled) get(ctx context.Context, k objKey, obj client.Object) (bool, error) {
	err := c.reader.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: k.name}, obj)
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		c.log.Error(err, "Reading from the cache failed", "object", k.String())
		return false, err
	}
	return true, nil
}

func (c *compiled) setNamespace(ns *corev1.Namespace) {
	if err := c.comp.SetNamespace(compilerNamespace(ns)); err != nil {
		c.log.Error(err, "Namespace refused by the policy compiler", "namespace", ns.Name)
		return
	}
	c.nsKnown[ns.Name] = true
}

// setPod makes the compiler hold want for the pod (nothing: remove it)
// and says whether all of it was taken.
func (c *compiled) setPod(ctx context.Context, k objKey, want []policy.Pod) bool {
	key := k.namespace + "/" + k.name
	have := c.cpods[key]
	for _, p := range have {
		if !slices.ContainsFunc(want, func(w policy.Pod) bool { return w.Name == p.Name }) {
			c.comp.DeletePod(p.Namespace, p.Name)
		}
	}
	if len(want) > 0 && !c.nsKnown[k.namespace] {
		// The pod's namespace event may not have come yet.
		var ns corev1.Namespace
		if found, err := c.get(ctx, objKey{kind: kindNamespace, name: k.namespace}, &ns); err == nil && found {
			c.setNamespace(&ns)
		}
	}
	var kept []policy.Pod
	var errs []string
	for _, p := range want {
		if err := c.comp.SetPod(p); err != nil {
			errs = append(errs, err.Error())
			// On error the compiler keeps the old version, if any.
			if i := slices.IndexFunc(have, func(h policy.Pod) bool { return h.Name == p.Name }); i >= 0 {
				kept = append(kept, have[i])
			}
			continue
		}
		kept = append(kept, p)
	}
	if len(kept) == 0 {
		delete(c.cpods, key)
	} else {
		c.cpods[key] = kept
	}
	if len(errs) > 0 {
		c.podErrs[key] = fmt.Sprint(errs)
		c.log.Info("Pod refused by the policy compiler; retrying", "pod", key, "errors", errs)
		return false
	}
	delete(c.podErrs, key)
	return true
}

// localEndpoints are the addresses of this node's pods in the compiler,
// with their pod (namespace/name).
func (c *compiled) localEndpoints() map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for key, ps := range c.cpods {
		for _, p := range ps {
			if p.Node == c.node {
				out[p.IP] = key
			}
		}
	}
	return out
}
