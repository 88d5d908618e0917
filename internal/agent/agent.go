package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/cni"
	"github.com/sluice-dev/sluice/internal/datapath"
	"github.com/sluice-dev/sluice/internal/nodeipam"
)

// Defaults of Options.
const (
	DefaultSocket      = cni.DefaultAgentSocket
	DefaultStateFile   = "/var/run/sluice/agent-state.json"
	DefaultHealthAddr  = "127.0.0.1:9879"
	DefaultMetricsAddr = "127.0.0.1:9880"
)

// Options configure an Agent.
type Options struct {
	// NodeName is this node's name (required).
	NodeName string
	// RESTConfig reaches the API server (required).
	RESTConfig *rest.Config

	// Datapath sizes the maps; Datapath.PinDir is where they are pinned
	// (datapath.DefaultPinDir in production; empty pins nothing, and the
	// programs are detached when the agent stops).
	Datapath datapath.Options

	// SocketPath is the endpoint API's unix socket (DefaultSocket).
	SocketPath string
	// StateFile holds the registrations and endpoint IDs across restarts
	// (DefaultStateFile).
	StateFile string
	// HealthAddr serves /healthz and /readyz (DefaultHealthAddr); "0"
	// disables it.
	HealthAddr string
	// MetricsAddr serves /metrics (DefaultMetricsAddr); "0" disables it.
	MetricsAddr string
	// Registry receives the agent's metrics and is what /metrics serves;
	// nil is controller-runtime's registry.
	Registry ctrlmetrics.RegistererGatherer

	// CNIInstall, when set, installs the CNI plugin and its conflist on
	// the node once the endpoint API is serving (nil: the node's CNI files
	// are someone else's, as in tests and the demo).
	CNIInstall *CNIInstall

	// AllocationFile and CNIStateDir are the CNI plugin's allocationFile
	// and stateDir, for the IPAM sync of this node's NodeNetwork (both
	// empty: no IPAM sync).
	AllocationFile string
	CNIStateDir    string
	// IPAMSyncInterval is how often the NodeNetwork is synced (5 s).
	IPAMSyncInterval time.Duration

	// NetNS is the node's network namespace, where the host veths are;
	// nil is the agent's own (production). Tests pass a lab's.
	NetNS ns.NetNS
	// ProcSysNet is a directory laid out as /proc/sys/net through which
	// the agent turns IP forwarding on in NetNS before it gets ready:
	// DefaultProcSysNet, or the node's /proc/sys/net mounted into the
	// container (a container's own /proc/sys is read-only). Empty leaves
	// forwarding alone (development).
	ProcSysNet string
	// GCInterval is how often registrations whose veth is gone are
	// forgotten (30 s).
	GCInterval time.Duration
	// RegisterTimeout bounds how long a PUT waits for its policy (25 s).
	RegisterTimeout time.Duration

	// Logger (ctrl.Log.WithName("agent") when zero).
	Logger logr.Logger
}

// Agent is the node agent: it compiles the cluster's NetworkPolicies for
// this node's pods into the datapath, takes endpoints from the CNI plugin,
// and keeps the node's pod addresses in sync with IPAM. See doc.go.
type Agent struct {
	opts Options

	mu         sync.Mutex
	eng        *engine
	healthAddr net.Addr
}

// New checks the options and fills in the defaults.
func New(opts Options) (*Agent, error) {
	if opts.NodeName == "" {
		return nil, errors.New("agent: no node name (set --node-name or NODE_NAME)")
	}
	if opts.RESTConfig == nil {
		return nil, errors.New("agent: no API server configuration")
	}
	def := func(s *string, d string) {
		if *s == "" {
			*s = d
		}
	}
	def(&opts.SocketPath, DefaultSocket)
	def(&opts.StateFile, DefaultStateFile)
	def(&opts.HealthAddr, DefaultHealthAddr)
	def(&opts.MetricsAddr, DefaultMetricsAddr)
	for _, p := range []struct{ name, path string }{{"socket", opts.SocketPath}, {"state file", opts.StateFile}} {
		if !filepath.IsAbs(p.path) {
			return nil, fmt.Errorf("agent: %s %q must be an absolute path", p.name, p.path)
		}
	}
	if opts.ProcSysNet != "" && !filepath.IsAbs(opts.ProcSysNet) {
		return nil, fmt.Errorf("agent: /proc/sys/net directory %q must be an absolute path", opts.ProcSysNet)
	}
	if (opts.AllocationFile == "") != (opts.CNIStateDir == "") {
		return nil, errors.New("agent: set both AllocationFile and CNIStateDir, or neither")
	}
	if opts.IPAMSyncInterval <= 0 {
		opts.IPAMSyncInterval = 5 * time.Second
	}
	if opts.GCInterval <= 0 {
		opts.GCInterval = 30 * time.Second
	}
	if opts.RegisterTimeout <= 0 {
		opts.RegisterTimeout = 25 * time.Second
	}
	if opts.Registry == nil {
		opts.Registry = ctrlmetrics.Registry
	}
	if opts.Logger.GetSink() == nil {
		opts.Logger = ctrl.Log.WithName("agent")
	}
	return &Agent{opts: opts}, nil
}

// Ready says whether the agent is ready: caches synced, datapath loaded,
// first snapshot applied, registered endpoints recovered.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	e := a.eng
	a.mu.Unlock()
	return e != nil && e.notReady() == ""
}

// HealthAddr is the address /healthz and /readyz are served on, once Run
// listens (nil before, or when disabled).
func (a *Agent) HealthAddr() net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.healthAddr
}

// Scheme is what the agent reads.
func Scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(v1.AddToScheme(s))
	return s
}

// Run runs the agent until ctx ends. The datapath's pinned maps and links
// stay when it returns (with a PinDir): enforcement continues until the
// next run adopts them.
func (a *Agent) Run(ctx context.Context) error {
	o := a.opts
	log := o.Logger.WithValues("node", o.NodeName)
	ctx = logr.NewContext(ctx, log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	release, err := lockState(o.StateFile)
	if err != nil {
		return err
	}
	defer release()
	st, err := readState(o.StateFile)
	if err != nil {
		return err
	}

	dp, err := datapath.New(o.Datapath)
	if err != nil {
		return fmt.Errorf("load the datapath: %w", err)
	}
	defer func() {
		if cerr := dp.Close(); cerr != nil {
			log.Error(cerr, "Closing the datapath failed")
		}
	}()
	log.Info("Datapath loaded", "pinDir", o.Datapath.PinDir, "endpointsRegistered", len(st.Endpoints))
	if err := a.setUpForwarding(log); err != nil {
		return err
	}

	c, err := newCache(o.RESTConfig)
	if err != nil {
		return err
	}
	rec := &applyRecorder{dataplane: dp}
	eng := newEngine(log, o.NodeName, c, rec, &datapathAttacher{dp: dp, netns: o.NetNS, pinDir: o.Datapath.PinDir}, o.StateFile)
	eng.registerTimeout = o.RegisterTimeout
	eng.loadState(st)
	undo, err := eng.metrics.register(o.Registry)
	if err != nil {
		return err
	}
	defer undo()
	a.mu.Lock()
	a.eng = eng
	a.mu.Unlock()
	if err := eng.watch(ctx, c); err != nil {
		return err
	}

	g := &group{ctx: ctx, cancel: cancel}
	defer g.wg.Wait()
	defer cancel()
	stop, err := a.serve(ctx, g, eng)
	if err != nil {
		return err
	}
	defer stop()
	if o.CNIInstall != nil {
		if err := o.CNIInstall.Install(); err != nil {
			return err
		}
		log.Info("Installed the CNI plugin and configuration", "binDir", o.CNIInstall.BinDir, "confDir", o.CNIInstall.ConfDir)
	}
	if err := a.background(ctx, g, eng, c); err != nil {
		return err
	}
	if err := a.report(ctx, g, eng, rec); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("Stopping")
	return g.err()
}

// newCache is the cache of everything the agent follows, trimmed.
func newCache(cfg *rest.Config) (cache.Cache, error) {
	c, err := cache.New(cfg, cache.Options{
		Scheme: Scheme(),
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}:                 {Transform: trimPod},
			&corev1.Node{}:                {Transform: trimNode},
			&corev1.Namespace{}:           {Transform: stripManaged},
			&networkingv1.NetworkPolicy{}: {Transform: stripManaged},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("create the cache: %w", err)
	}
	return c, nil
}

// group runs the agent's goroutines; the first failure stops them all.
type group struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	first  error
}

func (g *group) run(name string, fn func() error) {
	g.wg.Go(func() {
		if err := fn(); err != nil && g.ctx.Err() == nil {
			g.mu.Lock()
			if g.first == nil {
				g.first = fmt.Errorf("%s: %w", name, err)
			}
			g.mu.Unlock()
			g.cancel()
		}
	})
}

func (g *group) err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.first
}

// serve listens on the socket and the health and metrics addresses and
// returns what shuts the servers down.
func (a *Agent) serve(ctx context.Context, g *group, eng *engine) (stop func(), err error) {
	o := a.opts
	var listeners []net.Listener
	defer func() {
		if err != nil {
			for _, l := range listeners {
				_ = l.Close()
			}
		}
	}()
	sock, err := listenSocket(o.SocketPath)
	if err != nil {
		return nil, err
	}
	listeners = append(listeners, sock)
	handlers := []http.Handler{eng.socketHandler()}
	if o.HealthAddr != "0" {
		l, err := net.Listen("tcp", o.HealthAddr)
		if err != nil {
			return nil, fmt.Errorf("listen for health probes: %w", err)
		}
		a.mu.Lock()
		a.healthAddr = l.Addr()
		a.mu.Unlock()
		listeners = append(listeners, l)
		handlers = append(handlers, eng.healthHandler())
	}
	if o.MetricsAddr != "0" {
		l, err := net.Listen("tcp", o.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("listen for metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{}))
		listeners = append(listeners, l)
		handlers = append(handlers, mux)
	}
	servers := make([]*http.Server, len(listeners))
	for i, l := range listeners {
		srv := &http.Server{
			Handler:           handlers[i],
			ReadHeaderTimeout: 10 * time.Second,
			// Requests end with the agent: a PUT in flight fails (and
			// the plugin cleans up) rather than outlive it.
			BaseContext: func(net.Listener) context.Context { return ctx },
		}
		servers[i] = srv
		g.run("serve "+l.Addr().String(), func() error {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	return func() {
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		for _, srv := range servers {
			_ = srv.Shutdown(sctx)
		}
	}, nil
}

// background starts the cache, the policy worker, the endpoint sweep and
// the IPAM sync.
func (a *Agent) background(ctx context.Context, g *group, eng *engine, c cache.Cache) error {
	o := a.opts
	log := logr.FromContextOrDiscard(ctx)
	g.run("cache", func() error { return c.Start(ctx) })
	g.run("policy", func() error {
		if !c.WaitForCacheSync(ctx) {
			if ctx.Err() != nil {
				return nil
			}
			return errors.New("informer caches did not sync")
		}
		eng.setSynced()
		log.Info("Caches synced")
		eng.runWorker(ctx)
		return nil
	})
	g.run("endpoint sweep", func() error {
		t := time.NewTicker(o.GCInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				if eng.notReady() == "" {
					eng.gc()
				}
			}
		}
	})
	if o.AllocationFile != "" {
		direct, err := client.New(o.RESTConfig, client.Options{Scheme: Scheme()})
		if err != nil {
			return fmt.Errorf("create client: %w", err)
		}
		syncer := &nodeipam.Syncer{Client: direct, NodeName: o.NodeName, AllocationFile: o.AllocationFile, StateDir: o.CNIStateDir}
		g.run("ipam", func() error { return syncer.Run(ctx, o.IPAMSyncInterval) })
	}
	return nil
}

// listenSocket listens on the endpoint API's socket, replacing a stale
// one (the state lock says no other agent runs), readable by root only.
func listenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return l, nil
}

// healthHandler serves /healthz (the process answers) and /readyz (Ready,
// with one check per condition, as controller-runtime's probes do).
func (e *engine) healthHandler() http.Handler {
	cond := func(ok func() bool, msg string) healthz.Checker {
		return func(*http.Request) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			if !ok() {
				return errors.New(msg)
			}
			return nil
		}
	}
	ready := map[string]healthz.Checker{
		"informers-synced": cond(func() bool { return e.synced }, "informer caches not synced"),
		// The engine exists only once the datapath is loaded.
		"datapath-loaded": healthz.Ping,
		"policy-applied":  cond(func() bool { return e.applied }, "first policy snapshot not applied"),
		"endpoints-recovered": cond(func() bool { return e.ready },
			"endpoints registered before the restart not re-attached"),
	}
	mux := http.NewServeMux()
	mux.Handle("/healthz", http.StripPrefix("/healthz", &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}))
	mux.Handle("/healthz/", http.StripPrefix("/healthz", &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}))
	mux.Handle("/readyz", http.StripPrefix("/readyz", &healthz.Handler{Checks: ready}))
	mux.Handle("/readyz/", http.StripPrefix("/readyz", &healthz.Handler{Checks: ready}))
	return mux
}

// watch registers the informers' event handlers: every change of a
// followed object queues its key.
func (e *engine) watch(ctx context.Context, c cache.Cache) error {
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
		inf, err := c.GetInformer(ctx, w.obj)
		if err != nil {
			return fmt.Errorf("informer for %T: %w", w.obj, err)
		}
		k, relevant := w.k, w.relevant
		_, err = inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: func(obj any) { e.enqueueObj(k, obj) },
			UpdateFunc: func(o, n any) {
				if relevant(o, n) {
					e.enqueueObj(k, n)
				}
			},
			DeleteFunc: func(obj any) { e.enqueueObj(k, obj) },
		})
		if err != nil {
			return fmt.Errorf("event handler for %T: %w", w.obj, err)
		}
	}
	return nil
}

func (e *engine) enqueueObj(k kind, obj any) {
	if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		if t.Obj != nil {
			obj = t.Obj
		} else {
			ns, name, err := toolscache.SplitMetaNamespaceKey(t.Key)
			if err == nil {
				e.enqueue(objKey{kind: k, namespace: ns, name: name})
			}
			return
		}
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return
	}
	e.enqueue(objKey{kind: k, namespace: m.GetNamespace(), name: m.GetName()})
}

func labelsChanged(o, n any) bool {
	om, err1 := meta.Accessor(o)
	nm, err2 := meta.Accessor(n)
	return err1 != nil || err2 != nil || !reflect.DeepEqual(om.GetLabels(), nm.GetLabels())
}

// podChanged: the cached pods are trimmed to what the agent reads, so any
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
