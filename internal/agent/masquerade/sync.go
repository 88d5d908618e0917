package masquerade

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/agent/resync"
)

// DefaultResync is how often Sync rewrites the table without a change:
// a table someone deleted comes back within it.
const DefaultResync = 30 * time.Second

// Writer is what Sync needs of the kernel (Table in production).
type Writer interface {
	Write(Rules) error
}

// Config configures a Sync.
type Config struct {
	Log logr.Logger
	// Node is this node's name: its NodeNetwork's ranges are the sources.
	Node string
	// Reader lists NodeNetworks and Nodes (the agent's cache).
	Reader client.Reader
	Kernel Writer
	// NonMasquerade are destinations besides the pod ranges and the
	// nodes' InternalIPs that pods reach with their own address (a peered
	// network, on-premises ranges).
	NonMasquerade []netip.Prefix
	// Resync is DefaultResync when zero.
	Resync time.Duration
}

// Sync keeps the node's table in step with the cluster's pod ranges.
type Sync struct {
	cfg  Config
	loop *resync.Loop
	last *Rules // the last rules written, to log changes only
}

// New makes a Sync; Watch then Run start it.
func New(cfg Config) *Sync {
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	return &Sync{cfg: cfg, loop: resync.New(cfg.Resync)}
}

// Watch makes a change of any NodeNetwork's ranges or any Node's
// addresses trigger a rewrite.
func (s *Sync) Watch(ctx context.Context, informers cache.Informers) error {
	for _, w := range []struct {
		obj     client.Object
		changed func(o, n any) bool
	}{
		{&v1.NodeNetwork{}, func(o, n any) bool {
			return !slices.Equal(o.(*v1.NodeNetwork).Status.CIDRs, n.(*v1.NodeNetwork).Status.CIDRs)
		}},
		{&corev1.Node{}, func(o, n any) bool {
			return !reflect.DeepEqual(o.(*corev1.Node).Status.Addresses, n.(*corev1.Node).Status.Addresses)
		}},
	} {
		inf, err := informers.GetInformer(ctx, w.obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", w.obj, err)
		}
		changed := w.changed
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { s.loop.Poke() },
			UpdateFunc: func(o, n any) {
				if changed(o, n) {
					s.loop.Poke()
				}
			},
			DeleteFunc: func(any) { s.loop.Poke() },
		})
		if err != nil {
			return fmt.Errorf("watch %T: %w", w.obj, err)
		}
	}
	return nil
}

// Run waits for the caches (a plan from an empty cache would masquerade
// traffic to other nodes' pods and addresses), then writes on every trigger and every
// Resync until ctx ends. A failed write is retried at the next one.
func (s *Sync) Run(ctx context.Context, waitForCacheSync func(context.Context) bool) error {
	return s.loop.Run(ctx, waitForCacheSync, s.SyncOnce, func(err error) {
		s.cfg.Log.Error(err, "Writing the egress masquerade rules failed; retrying")
	})
}

// SyncOnce plans from the reader and writes the plan.
func (s *Sync) SyncOnce(ctx context.Context) error {
	var networks v1.NodeNetworkList
	if err := s.cfg.Reader.List(ctx, &networks); err != nil {
		return fmt.Errorf("list nodenetworks: %w", err)
	}
	var nodes corev1.NodeList
	if err := s.cfg.Reader.List(ctx, &nodes); err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var local, all []netip.Prefix
	for _, nn := range networks.Items {
		for _, c := range nn.Status.CIDRs {
			p, err := netip.ParsePrefix(string(c))
			if err != nil {
				continue // the API validates CIDRs; an old object may not
			}
			all = append(all, p)
			if nn.Name == s.cfg.Node {
				local = append(local, p)
			}
		}
	}
	r := Plan(Inputs{
		Local: local, ClusterRanges: all,
		NodeAddresses: NodeAddresses(nodes.Items), NonMasquerade: s.cfg.NonMasquerade,
	})
	if err := s.cfg.Kernel.Write(r); err != nil {
		return err
	}
	if s.last == nil || !reflect.DeepEqual(*s.last, r) {
		s.cfg.Log.Info("Egress masquerade rules written", "sources", r.Sources, "exempt", r.Exempt)
		s.last = &r
	}
	return nil
}
