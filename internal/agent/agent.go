package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/sluice-dev/sluice/internal/agent/endpoint"
	"github.com/sluice-dev/sluice/internal/agent/masquerade"
	"github.com/sluice-dev/sluice/internal/agent/policysync"
	"github.com/sluice-dev/sluice/internal/agent/routesync"
	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/nodeipam"
	"github.com/sluice-dev/sluice/internal/scheme"
)

// Defaults of Options.
const (
	DefaultSocket           = cni.DefaultAgentSocket
	DefaultStateFile        = "/var/run/sluice/agent-state.json"
	DefaultHealthAddr       = "127.0.0.1:9879"
	DefaultMetricsAddr      = "127.0.0.1:9880"
	DefaultIPAMSyncInterval = 5 * time.Second
	DefaultGCInterval       = 30 * time.Second
	// DefaultRegisterTimeout is the plugin's wait for a PUT less
	// RegisterMargin.
	DefaultRegisterTimeout = cni.AgentRegisterTimeout - RegisterMargin
)

// RegisterMargin is how much sooner than the plugin the agent gives up on
// a registration. The agent's answer says why an ADD failed, and the
// registration it forgets must be gone before the plugin, seeing the
// failure, releases the address and deletes the veth; an agent that
// timed out after the plugin would answer no one and leave that to its
// sweep. 5 s covers the answer's trip and the detach.
const RegisterMargin = 5 * time.Second

// Options configure an Agent, grouped by the part each group configures.
type Options struct {
	// NodeName is this node's name (required).
	NodeName string
	// RESTConfig reaches the API server (required).
	RESTConfig *rest.Config

	// Datapath sizes the maps; Datapath.PinDir is where they are pinned
	// (datapath.DefaultPinDir in production; empty pins nothing, and the
	// programs are detached when the agent stops).
	Datapath datapath.Options
	// Endpoints configure the endpoint registry and its socket.
	Endpoints EndpointOptions
	// Serving configures the health and metrics servers.
	Serving ServingOptions
	// Node is what the agent does to its node besides the datapath.
	Node NodeOptions
	// IPAM configures the node side of IPAM.
	IPAM IPAMOptions
	// Routing configures how pod traffic reaches other nodes.
	Routing RoutingOptions
	// Masquerade configures how pod traffic leaves the cluster.
	Masquerade MasqueradeOptions

	// Logger (ctrl.Log.WithName("agent") when zero).
	Logger logr.Logger
}

// EndpointOptions configure the endpoint registry.
type EndpointOptions struct {
	// SocketPath is the endpoint API's unix socket (DefaultSocket).
	SocketPath string
	// StateFile holds the registrations and endpoint IDs across restarts
	// (DefaultStateFile).
	StateFile string
	// RegisterTimeout bounds how long a PUT waits for its policy
	// (DefaultRegisterTimeout); it must leave the plugin RegisterMargin
	// of its cni.AgentRegisterTimeout.
	RegisterTimeout time.Duration
	// GCInterval is how often registrations whose veth is gone are
	// forgotten (DefaultGCInterval).
	GCInterval time.Duration
}

// ServingOptions configure the agent's HTTP servers.
type ServingOptions struct {
	// HealthAddr serves /healthz and /readyz (DefaultHealthAddr); "0"
	// disables it.
	HealthAddr string
	// MetricsAddr serves /metrics (DefaultMetricsAddr); "0" disables it.
	MetricsAddr string
	// Registry receives the agent's metrics and is what /metrics serves;
	// nil is controller-runtime's registry.
	Registry ctrlmetrics.RegistererGatherer
}

// NodeOptions say where the node is and what the agent sets up on it.
type NodeOptions struct {
	// NetNS is the node's network namespace, where the host veths are;
	// nil is the agent's own (production). Tests pass a lab's.
	NetNS ns.NetNS
	// ProcSysNet is a directory laid out as /proc/sys/net through which
	// the agent turns IP forwarding on in NetNS before it gets ready:
	// DefaultProcSysNet, or the node's /proc/sys/net mounted into the
	// container (a container's own /proc/sys is read-only). Empty leaves
	// forwarding alone (development).
	ProcSysNet string
	// CNIInstall, when set, installs the CNI plugin and its conflist on
	// the node once the endpoint API is serving (nil: the node's CNI files
	// are someone else's, as in tests and the demo).
	CNIInstall *CNIInstall
}

// IPAMOptions configure the sync of this node's NodeNetwork with the CNI
// plugin's files.
type IPAMOptions struct {
	// AllocationFile and CNIStateDir are the CNI plugin's allocationFile
	// and stateDir (both empty: no IPAM sync).
	AllocationFile string
	CNIStateDir    string
	// SyncInterval is how often the NodeNetwork is synced
	// (DefaultIPAMSyncInterval).
	SyncInterval time.Duration
}

// RoutingModeNative routes pod traffic between nodes unencapsulated: the
// agent keeps a kernel route per other node's pod range via its
// InternalIP (package routesync).
const RoutingModeNative = "Native"

// RoutingOptions configure routes to other nodes' pods.
type RoutingOptions struct {
	// Mode is RoutingModeNative, or empty: the agent leaves the node's
	// routes alone (someone else routes pod ranges, or there is one node).
	Mode string
}

// Masquerade settings of MasqueradeOptions.Mode.
const (
	// MasqueradeAuto is on with native routing, off otherwise: pod
	// addresses a native-routed cluster doesn't announce would get no
	// replies from outside.
	MasqueradeAuto = ""
	MasqueradeOn   = "On"
	MasqueradeOff  = "Off"
)

// MasqueradeOptions configure egress masquerade (package masquerade):
// pod traffic to destinations outside every pod range, every node's
// InternalIPs and NonMasquerade leaves with the node's address.
type MasqueradeOptions struct {
	// Mode is MasqueradeAuto, MasqueradeOn or MasqueradeOff.
	Mode string
	// NonMasquerade are further destinations pods reach with their own
	// address (a peered network that routes pod ranges, on-premises).
	NonMasquerade []netip.Prefix
}

// masquerading says whether masquerade is on under the routing mode.
func (o *Options) masquerading() bool {
	switch o.Masquerade.Mode {
	case MasqueradeOn:
		return true
	case MasqueradeOff:
		return false
	}
	return o.Routing.Mode == RoutingModeNative
}

// Defaults fills in the zero fields.
func (o *Options) Defaults() {
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&o.Endpoints.SocketPath, DefaultSocket)
	def(&o.Endpoints.StateFile, DefaultStateFile)
	def(&o.Serving.HealthAddr, DefaultHealthAddr)
	def(&o.Serving.MetricsAddr, DefaultMetricsAddr)
	if o.IPAM.SyncInterval <= 0 {
		o.IPAM.SyncInterval = DefaultIPAMSyncInterval
	}
	if o.Endpoints.GCInterval <= 0 {
		o.Endpoints.GCInterval = DefaultGCInterval
	}
	if o.Endpoints.RegisterTimeout <= 0 {
		o.Endpoints.RegisterTimeout = DefaultRegisterTimeout
	}
	if o.Serving.Registry == nil {
		o.Serving.Registry = ctrlmetrics.Registry
	}
	if o.Logger.GetSink() == nil {
		o.Logger = ctrl.Log.WithName("agent")
	}
}

// Validate checks defaulted options.
func (o *Options) Validate() error {
	if o.NodeName == "" {
		return errors.New("agent: no node name (set --node-name or NODE_NAME)")
	}
	if o.RESTConfig == nil {
		return errors.New("agent: no API server configuration")
	}
	for _, p := range []struct{ name, path string }{{"socket", o.Endpoints.SocketPath}, {"state file", o.Endpoints.StateFile}} {
		if !filepath.IsAbs(p.path) {
			return fmt.Errorf("agent: %s %q must be an absolute path", p.name, p.path)
		}
	}
	if o.Node.ProcSysNet != "" && !filepath.IsAbs(o.Node.ProcSysNet) {
		return fmt.Errorf("agent: /proc/sys/net directory %q must be an absolute path", o.Node.ProcSysNet)
	}
	if (o.IPAM.AllocationFile == "") != (o.IPAM.CNIStateDir == "") {
		return errors.New("agent: set both AllocationFile and CNIStateDir, or neither")
	}
	if m := o.Routing.Mode; m != "" && m != RoutingModeNative {
		return fmt.Errorf("agent: routing mode %q: want %q or empty", m, RoutingModeNative)
	}
	switch o.Masquerade.Mode {
	case MasqueradeAuto, MasqueradeOn, MasqueradeOff:
	default:
		return fmt.Errorf("agent: masquerade %q: want %q, %q or empty", o.Masquerade.Mode, MasqueradeOn, MasqueradeOff)
	}
	for _, p := range o.Masquerade.NonMasquerade {
		if !p.IsValid() {
			return errors.New("agent: an invalid non-masquerade CIDR")
		}
	}
	if o.Endpoints.RegisterTimeout > cni.AgentRegisterTimeout-RegisterMargin {
		return fmt.Errorf("agent: register timeout %v must leave the CNI plugin's %v a margin of %v", o.Endpoints.RegisterTimeout, cni.AgentRegisterTimeout, RegisterMargin)
	}
	return nil
}

// Agent is the node agent: it compiles the cluster's NetworkPolicies for
// this node's pods into the datapath, takes endpoints from the CNI plugin,
// and keeps the node's pod addresses in sync with IPAM. See doc.go.
type Agent struct {
	opts Options

	mu         sync.Mutex
	endpoints  *endpoint.Registry // nil until Run has loaded the datapath
	healthAddr net.Addr
}

// New checks the options and fills in the defaults.
func New(opts Options) (*Agent, error) {
	opts.Defaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Agent{opts: opts}, nil
}

// Ready says whether the agent is ready: caches synced, datapath loaded,
// first snapshot applied, registered endpoints recovered.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	reg := a.endpoints
	a.mu.Unlock()
	return reg != nil && reg.NotReady() == ""
}

// HealthAddr is the address /healthz and /readyz are served on, once Run
// listens (nil before, or when disabled).
func (a *Agent) HealthAddr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.healthAddr
}

// Run runs the agent until ctx ends. The datapath's pinned maps and links
// stay when it returns (with a PinDir): enforcement continues until the
// next run adopts them.
func (a *Agent) Run(ctx context.Context) error {
	o := a.opts
	log := o.Logger.WithValues("node", o.NodeName)
	ctx = logr.NewContext(ctx, log)

	release, err := endpoint.LockState(o.Endpoints.StateFile)
	if err != nil {
		return err
	}
	defer release()
	dp, err := datapath.New(o.Datapath)
	if err != nil {
		return fmt.Errorf("load the datapath: %w", err)
	}
	defer func() {
		if cerr := dp.Close(); cerr != nil {
			log.Error(cerr, "Closing the datapath failed")
		}
	}()
	if err := a.setUpForwarding(log); err != nil {
		return err
	}
	c, err := cache.New(o.RESTConfig, cache.Options{Scheme: scheme.New(), ByObject: policysync.CacheByObject()})
	if err != nil {
		return fmt.Errorf("create the cache: %w", err)
	}
	p, err := assemble(partsConfig{
		log: log, node: o.NodeName, reader: c, dp: dp,
		attacher:  &endpoint.DatapathAttacher{DP: dp, NetNS: o.Node.NetNS},
		statePath: o.Endpoints.StateFile, registerTimeout: o.Endpoints.RegisterTimeout,
	})
	if err != nil {
		return err
	}
	log.Info("Datapath loaded", "pinDir", o.Datapath.PinDir, "endpointsRegistered", p.endpoints.Len())
	undo, err := p.metrics.register(o.Serving.Registry)
	if err != nil {
		return err
	}
	defer undo()
	if err := p.policy.Watch(ctx, c); err != nil {
		return err
	}
	routes, undoRoutes, err := a.routeSync(ctx, log, c)
	if err != nil {
		return err
	}
	defer undoRoutes()
	masq, err := a.masqueradeSync(ctx, log, c)
	if err != nil {
		return err
	}
	srv, err := a.listen(p)
	if err != nil {
		return err
	}
	rep, err := a.reporter(log, p, routes)
	if err != nil {
		srv.close()
		return err
	}
	ipam, err := a.ipamSyncer()
	if err != nil {
		srv.close()
		return err
	}
	a.mu.Lock()
	a.endpoints = p.endpoints
	a.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	goNamed := func(name string, fn func() error) {
		g.Go(func() error {
			// After the first failure, the others' errors are its echo.
			if err := fn(); err != nil && gctx.Err() == nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	srv.serve(gctx, goNamed)
	goNamed("cache", func() error { return c.Start(gctx) })
	goNamed("policy", func() error { return p.policy.Run(gctx, c.WaitForCacheSync) })
	goNamed("applier", func() error { p.applier.Run(gctx); return nil })
	goNamed("endpoints", func() error { p.endpoints.Run(gctx, o.Endpoints.GCInterval); return nil })
	goNamed("status", func() error { rep.run(gctx); return nil })
	if routes != nil {
		goNamed("routes", func() error { return routes.Run(gctx, c.WaitForCacheSync) })
	}
	if masq != nil {
		goNamed("masquerade", func() error { return masq.Run(gctx, c.WaitForCacheSync) })
	}
	if ipam != nil {
		goNamed("ipam", func() error { return ipam.Run(gctx, o.IPAM.SyncInterval) })
	}
	if err := a.installCNI(log); err != nil {
		cancel()
		srv.shutdown()
		_ = g.Wait()
		return err
	}
	<-gctx.Done()
	log.Info("Stopping")
	srv.shutdown()
	return g.Wait()
}

// installCNI installs the CNI plugin and its conflist, once the endpoint
// API is serving.
func (a *Agent) installCNI(log logr.Logger) error {
	in := a.opts.Node.CNIInstall
	if in == nil {
		return nil
	}
	if err := in.Install(); err != nil {
		return err
	}
	log.Info("Installed the CNI plugin and configuration", "binDir", in.BinDir, "confDir", in.ConfDir)
	return nil
}

// ipamSyncer syncs this node's NodeNetwork into the plugin's allocation
// file (nil when the options name none).
func (a *Agent) ipamSyncer() (*nodeipam.Syncer, error) {
	o := a.opts
	if o.IPAM.AllocationFile == "" {
		return nil, nil
	}
	direct, err := client.New(o.RESTConfig, client.Options{Scheme: scheme.New()})
	if err != nil {
		return nil, fmt.Errorf("create client: %w", err)
	}
	return &nodeipam.Syncer{Client: direct, NodeName: o.NodeName, AllocationFile: o.IPAM.AllocationFile, StateDir: o.IPAM.CNIStateDir}, nil
}

// routeSync is the native routing part, writing routes in the node's
// namespace, with its metrics registered and its informers watched (nil
// unless the routing mode is native). The func unregisters the metrics
// and stops recording Events.
func (a *Agent) routeSync(ctx context.Context, log logr.Logger, c cache.Cache) (*routesync.Sync, func(), error) {
	if a.opts.Routing.Mode != RoutingModeNative {
		return nil, func() {}, nil
	}
	log.Info("Native routing: keeping routes to other nodes' pod ranges", "protocol", int(routesync.Protocol))
	cs, err := kubernetes.NewForConfig(a.opts.RESTConfig)
	if err != nil {
		return nil, nil, fmt.Errorf("create clientset: %w", err)
	}
	// Route conflicts go to the Node as Events: they need someone on the
	// node, and Events are where people look first.
	bc := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	if err := bc.StartRecordingToSinkWithContext(ctx); err != nil {
		return nil, nil, fmt.Errorf("start recording events: %w", err)
	}
	rs := routesync.New(routesync.Config{
		Log: log.WithName("routes"), Node: a.opts.NodeName, Reader: c,
		Kernel: &routesync.Kernel{NetNS: a.opts.Node.NetNS},
		Events: bc.NewRecorder(scheme.New(), "sluice-agent"),
	})
	unregister, err := registerAll(a.opts.Serving.Registry, rs.Collectors())
	if err != nil {
		bc.Shutdown()
		return nil, nil, err
	}
	undo := func() { unregister(); bc.Shutdown() }
	if err := rs.Watch(ctx, c); err != nil {
		undo()
		return nil, nil, err
	}
	return rs, undo, nil
}

// masqueradeSync is the egress masquerade part, writing the node's
// nftables table, with its informer watched (nil when masquerade is off).
func (a *Agent) masqueradeSync(ctx context.Context, log logr.Logger, c cache.Cache) (*masquerade.Sync, error) {
	if !a.opts.masquerading() {
		return nil, nil
	}
	log.Info("Egress masquerade: pod traffic leaving the pod ranges takes the node's address",
		"table", "inet "+masquerade.TableName, "nonMasquerade", a.opts.Masquerade.NonMasquerade)
	ms := masquerade.New(masquerade.Config{
		Log: log.WithName("masquerade"), Node: a.opts.NodeName, Reader: c,
		Kernel: &masquerade.Table{NetNS: a.opts.Node.NetNS}, NonMasquerade: a.opts.Masquerade.NonMasquerade,
	})
	if err := ms.Watch(ctx, c); err != nil {
		return nil, err
	}
	return ms, nil
}
