package policysync

import (
	"context"
	"fmt"
	"reflect"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// CacheByObject is what the loop follows, each trimmed to what it reads,
// so that a cache of every pod in the cluster stays small.
func CacheByObject() map[client.Object]cache.ByObject {
	return map[client.Object]cache.ByObject{
		&corev1.Pod{}:                 {Transform: trimPod},
		&corev1.Node{}:                {Transform: trimNode},
		&corev1.Namespace{}:           {Transform: stripManaged},
		&networkingv1.NetworkPolicy{}: {Transform: stripManaged},
	}
}

// Watch registers the informers' event handlers: every change of a
// followed object that the compiler reads queues its key.
func (s *Sync) Watch(ctx context.Context, informers cache.Informers) error {
	for _, w := range []struct {
		obj      client.Object
		k        kind
		relevant func(o, n any) bool
	}{
		{&corev1.Namespace{}, kindNamespace, labelsChanged},
		{&corev1.Node{}, kindNode, func(o, n any) bool {
			return !reflect.DeepEqual(o.(*corev1.Node).Status.Addresses, n.(*corev1.Node).Status.Addresses)
		}},
		{&networkingv1.NetworkPolicy{}, kindPolicy, func(o, n any) bool {
			return !reflect.DeepEqual(o.(*networkingv1.NetworkPolicy).Spec, n.(*networkingv1.NetworkPolicy).Spec)
		}},
		{&corev1.Pod{}, kindPod, podChanged},
	} {
		inf, err := informers.GetInformer(ctx, w.obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", w.obj, err)
		}
		k, relevant := w.k, w.relevant
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { s.enqueueObj(k, obj) },
			UpdateFunc: func(o, n any) {
				if relevant(o, n) {
					s.enqueueObj(k, n)
				}
			},
			DeleteFunc: func(obj any) { s.enqueueObj(k, obj) },
		})
		if err != nil {
			return fmt.Errorf("event handler for %T: %w", w.obj, err)
		}
	}
	return nil
}

func (s *Sync) enqueueObj(k kind, obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		if t.Obj != nil {
			obj = t.Obj
		} else {
			ns, name, err := toolscache.SplitMetaNamespaceKey(t.Key)
			if err == nil {
				s.queue.add(objKey{kind: k, namespace: ns, name: name})
			}
			return
		}
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	s.queue.add(objKey{kind: k, namespace: m.GetNamespace(), name: m.GetName()})
}

func labelsChanged(o, n any) bool {
	om, err1 := meta.Accessor(o)
	nm, err2 := meta.Accessor(n)
	return err1 != nil || err2 != nil || !reflect.DeepEqual(om.GetLabels(), nm.GetLabels())
}

// podChanged: the cached pods are trimmed to what the loop reads, so any
// difference but the resource version matters.
func podChanged(o, n any) bool {
	op, ok1 := o.(*corev1.Pod)
	np, ok2 := n.(*corev1.Pod)
	if !ok1 || !ok2 {
		return true
	}
	a, b := op.DeepCopy(), np.DeepCopy()
	a.ResourceVersion, b.ResourceVersion = "", ""
	return !reflect.DeepEqual(a, b)
}
