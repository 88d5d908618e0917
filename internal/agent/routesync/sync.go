package routesync

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/agent/resync"
)

// DefaultResync is how often Sync replans without a change: a route
// someone deleted comes back within it.
const DefaultResync = 30 * time.Second

// Writer is what Sync needs of the kernel (Kernel in production).
type Writer interface {
	Sync(want []Route) (Outcome, error)
}

// Config configures a Sync.
type Config struct {
	Log logr.Logger
	// Node is this node's name: its own ranges get no route.
	Node string
	// Reader lists Nodes and NodeNetworks (the agent's cache).
	Reader client.Reader
	Kernel Writer
	// Resync is DefaultResync when zero.
	Resync time.Duration
	// Events, when set, records a Warning Event on the node's Node for
	// each conflict, once while it lasts.
	Events events.EventRecorder
}

// Status is the outcome of the latest sync, what the agent reports on its
// DataplaneNode.
type Status struct {
	// Synced is false until the first sync has run.
	Synced bool
	// Routes counts the owned routes in the kernel.
	Routes int
	// Problems are the plan's problems, then the conflicts.
	Problems []Problem
	// Err is the latest sync's error, empty when it wrote everything.
	Err string
}

// Sync is the route loop: replan on every relevant change and every
// Resync, write the result through Kernel.
type Sync struct {
	cfg  Config
	loop *resync.Loop
	// The metrics, and the last problems and conflicts logged, so that a
	// steady state logs once.
	routes, conflicts prometheus.Gauge
	errors            prometheus.Counter
	lastReport        []Problem
	// announced are the conflicts an Event was recorded for, by
	// message: one Event per conflict while it lasts, a new one if it
	// comes back.
	announced map[string]bool

	mu     sync.Mutex
	status Status
}

// New makes a Sync; Watch then Run start it.
func New(cfg Config) *Sync {
	if cfg.Resync <= 0 {
		cfg.Resync = DefaultResync
	}
	return &Sync{
		cfg: cfg, loop: resync.New(cfg.Resync), announced: map[string]bool{},
		routes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_agent_routes",
			Help: "Kernel routes the agent keeps to other nodes' pod ranges (native routing).",
		}),
		conflicts: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_agent_route_conflicts",
			Help: "Routes to other nodes' pod ranges the agent can't install because a route it doesn't own has the destination (the log names them).",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_agent_route_sync_errors_total",
			Help: "Route syncs that failed to write a route (they are retried).",
		}),
	}
}

// Collectors are the loop's metrics.
func (s *Sync) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.routes, s.conflicts, s.errors}
}

// Watch registers the informers' event handlers: a Node's addresses and a
// NodeNetwork's ranges trigger a replan, heartbeats don't.
func (s *Sync) Watch(ctx context.Context, informers cache.Informers) error {
	for _, w := range []struct {
		obj     client.Object
		changed func(o, n any) bool
	}{
		{&corev1.Node{}, func(o, n any) bool {
			return !reflect.DeepEqual(o.(*corev1.Node).Status.Addresses, n.(*corev1.Node).Status.Addresses)
		}},
		{&v1.NodeNetwork{}, func(o, n any) bool {
			on, nn := o.(*v1.NodeNetwork), n.(*v1.NodeNetwork)
			return !slices.Equal(on.Status.CIDRs, nn.Status.CIDRs) || (on.DeletionTimestamp == nil) != (nn.DeletionTimestamp == nil)
		}},
	} {
		inf, err := informers.GetInformer(ctx, w.obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", w.obj, err)
		}
		changed := w.changed
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(any) { s.loop.Poke() },
			UpdateFunc: func(o, n any) {
				if changed(o, n) {
					s.loop.Poke()
				}
			},
			DeleteFunc: func(any) { s.loop.Poke() },
		}); err != nil {
			return fmt.Errorf("watch %T: %w", w.obj, err)
		}
	}
	return nil
}

// Run waits for the caches (planning from a cache that hasn't synced would
// remove every route), then syncs on every trigger and every Resync until
// ctx ends. A failed sync is retried at the next one; it doesn't stop Run.
func (s *Sync) Run(ctx context.Context, waitForCacheSync func(context.Context) bool) error {
	return s.loop.Run(ctx, waitForCacheSync, s.SyncOnce, func(err error) {
		s.errors.Inc()
		s.cfg.Log.Error(err, "Syncing routes to other nodes' pods failed; retrying")
	})
}

// Status is the outcome of the latest sync. Its Problems are the caller's
// to keep: a sync makes a new slice.
func (s *Sync) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Sync) setStatus(st Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = st
}

// SyncOnce plans from the reader and writes the plan.
func (s *Sync) SyncOnce(ctx context.Context) error {
	err := s.syncOnce(ctx)
	if err != nil {
		// The routes and problems of the last sync that got as far as
		// the kernel stay: a failed read changed nothing there.
		st := s.Status()
		st.Synced, st.Err = true, err.Error()
		s.setStatus(st)
	}
	return err
}

func (s *Sync) syncOnce(ctx context.Context) error {
	var nodes corev1.NodeList
	if err := s.cfg.Reader.List(ctx, &nodes); err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	var networks v1.NodeNetworkList
	if err := s.cfg.Reader.List(ctx, &networks); err != nil {
		return fmt.Errorf("list nodenetworks: %w", err)
	}
	want, problems := Plan(s.cfg.Node, nodes.Items, networks.Items)
	out, err := s.cfg.Kernel.Sync(want)
	report := slices.Clone(problems)
	for _, c := range out.Conflicts {
		report = append(report, c.Problem())
	}
	st := Status{Synced: true, Routes: out.Installed, Problems: report}
	if err != nil {
		st.Err = err.Error()
	}
	s.setStatus(st)
	s.announce(self(s.cfg.Node, nodes.Items), out.Conflicts)
	s.routes.Set(float64(out.Installed))
	s.conflicts.Set(float64(len(out.Conflicts)))
	for _, r := range out.Added {
		s.cfg.Log.Info("Route added", "dst", r.Dst, "via", r.Via, "node", r.Node)
	}
	for _, dst := range out.Removed {
		s.cfg.Log.Info("Route removed", "dst", dst)
	}
	if !slices.Equal(report, s.lastReport) {
		for _, p := range report {
			s.cfg.Log.Error(errors.New(p.Message), "A pod range of another node is not routed")
		}
		s.lastReport = report
	}
	return err
}

// announce records an Event for each conflict not announced yet, and
// forgets the ones that are gone.
func (s *Sync) announce(node *corev1.Node, conflicts []Conflict) {
	if s.cfg.Events == nil {
		return
	}
	now := make(map[string]bool, len(conflicts))
	for _, c := range conflicts {
		msg := c.String()
		now[msg] = true
		if !s.announced[msg] {
			s.cfg.Events.Eventf(node, nil, corev1.EventTypeWarning, v1.ReasonRouteConflict, EventActionInstallRoute, "%s", msg)
		}
	}
	s.announced = now
}

// EventActionInstallRoute is the action of the agent's route Events.
const EventActionInstallRoute = "InstallRoute"

// self is the node's Node from the list, for the Events' reference (with
// its UID); a reference by name when the cache doesn't have it.
func self(name string, nodes []corev1.Node) *corev1.Node {
	for i := range nodes {
		if nodes[i].Name == name {
			return &nodes[i]
		}
	}
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
}
