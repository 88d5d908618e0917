// Command manager is the Sluice operator: it reconciles DataplaneConfig into
// the node agent DaemonSet, carves IPAM pools into per-node allocations
// (IPAMPool, NodeNetwork, IPAMBlock), and serves the admission and
// conversion webhooks. It compiles no NetworkPolicy: each node agent does
// that for its own node. The reconcilers are registered by
// controllers.SetupAll; this command parses flags and manages the webhook
// certificate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/sluice-dev/sluice/controllers"
	"github.com/sluice-dev/sluice/internal/agentmanifest"
	"github.com/sluice-dev/sluice/internal/certs"
	sluicescheme "github.com/sluice-dev/sluice/internal/scheme"
)

// Names of the objects config/ installs; the self-managed certificate is
// patched into them.
const (
	validatingWebhookConfiguration = "sluice-validating-webhook-configuration"
	dataplaneConfigCRD             = "dataplaneconfigs.dataplane.sluice.dev"
)

type options struct {
	metricsAddr, probeAddr string
	leaderElect            bool
	namespace              string

	webhookHost, webhookCertDir string
	webhookPort                 int
	webhookService              string
	webhookExtraIPs             stringList
	certManagement              string

	agentImage, agentName string
}

func main() {
	opts := options{}
	flag.StringVar(&opts.metricsAddr, "metrics-bind-address", ":8443", "Address the metrics endpoint binds to (served over HTTPS with authn/authz); \"0\" disables it.")
	flag.StringVar(&opts.probeAddr, "health-probe-bind-address", ":8081", "Address the /healthz and /readyz endpoints bind to.")
	flag.BoolVar(&opts.leaderElect, "leader-elect", false, "Elect a leader so only one replica reconciles.")
	flag.StringVar(&opts.namespace, "namespace", envOr("POD_NAMESPACE", "sluice-system"), "Namespace of the operator and the node agent.")
	flag.StringVar(&opts.webhookHost, "webhook-host", "", "Address the webhook server binds to (empty: all).")
	flag.IntVar(&opts.webhookPort, "webhook-port", 9443, "Port of the webhook server.")
	flag.StringVar(&opts.webhookCertDir, "webhook-cert-dir", filepath.Join(os.TempDir(), "sluice-webhook-certs"), "Directory with tls.crt and tls.key for the webhook server.")
	flag.StringVar(&opts.webhookService, "webhook-service", "sluice-webhook-service", "Service in front of the webhook server; its DNS names go into the self-managed certificate.")
	flag.Var(&opts.webhookExtraIPs, "webhook-cert-ip", "Extra IP address for the self-managed webhook certificate (repeatable), e.g. 127.0.0.1 for a local control plane.")
	flag.StringVar(&opts.certManagement, "cert-management", "self", "\"self\": create, rotate and inject the webhook certificate; \"external\": cert-manager (or you) provides it in --webhook-cert-dir.")
	flag.StringVar(&opts.agentImage, "agent-image", "sluice/agent:dev", "Node agent image used when spec.agent.image is unset.")
	flag.StringVar(&opts.agentName, "agent-name", "sluice-agent", "Name of the agent DaemonSet, ConfigMap and ServiceAccount.")
	zapOpts := zap.Options{}
	zapOpts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&zapOpts)))

	if err := run(ctrl.SetupSignalHandler(), opts); err != nil {
		ctrl.Log.Error(err, "Manager stopped")
		os.Exit(1)
	}
}

func run(ctx context.Context, opts options) error {
	log := ctrl.Log.WithName("setup")
	scheme := sluicescheme.New()

	restConfig, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("load kubeconfig: %w", err)
	}

	certOpts := certs.Options{
		Namespace:                       opts.namespace,
		SecretName:                      "sluice-webhook-server-cert",
		ServiceName:                     opts.webhookService,
		IPAddresses:                     opts.webhookExtraIPs.ips(),
		CertDir:                         opts.webhookCertDir,
		ValidatingWebhookConfigurations: []string{validatingWebhookConfiguration},
		CRDs:                            []string{dataplaneConfigCRD},
	}
	// Certificates go through an uncached client: a cached one would list
	// and watch every Secret in the cluster.
	direct, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("create client: %w", err)
	}
	if opts.certManagement == "self" {
		// The webhook server reads its certificate when it starts, so the
		// first one must exist before the manager does.
		if err := certs.Ensure(ctx, direct, certOpts); err != nil {
			return fmt.Errorf("set up the webhook certificate: %w", err)
		}
	} else if opts.certManagement != "external" {
		return fmt.Errorf("--cert-management=%q: want self or external", opts.certManagement)
	}

	mgr, err := ctrl.NewManager(restConfig, ctrl.Options{
		Scheme: scheme,
		Metrics: metricsserver.Options{
			BindAddress:   opts.metricsAddr,
			SecureServing: true,
			// Only callers that RBAC allows to GET /metrics may scrape.
			FilterProvider: filters.WithAuthenticationAndAuthorization,
		},
		HealthProbeBindAddress: opts.probeAddr,
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: opts.webhookHost, Port: opts.webhookPort, CertDir: opts.webhookCertDir,
		}),
		LeaderElection:          opts.leaderElect,
		LeaderElectionID:        "sluice-operator.sluice.dev",
		LeaderElectionNamespace: opts.namespace,
		Cache:                   controllers.CacheOptions(opts.namespace),
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}

	if opts.certManagement == "self" {
		if err := mgr.Add(&certs.Rotator{Client: direct, Options: certOpts, Interval: time.Hour}); err != nil {
			return fmt.Errorf("add certificate rotator: %w", err)
		}
	}
	if err := controllers.SetupAll(ctx, mgr, controllers.Options{
		Agent: agentmanifest.Params{
			Namespace: opts.namespace, Name: opts.agentName, ServiceAccountName: opts.agentName,
		},
		AgentImage: opts.agentImage,
	}); err != nil {
		return err
	}

	if err := errors.Join(
		mgr.AddHealthzCheck("healthz", healthz.Ping),
		mgr.AddReadyzCheck("readyz", mgr.GetWebhookServer().StartedChecker()),
	); err != nil {
		return fmt.Errorf("add health checks: %w", err)
	}

	log.Info("Starting manager", "namespace", opts.namespace, "certManagement", opts.certManagement)
	return mgr.Start(ctx)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return fmt.Sprint(*s) }

func (s *stringList) Set(v string) error {
	if net.ParseIP(v) == nil {
		return fmt.Errorf("%q is not an IP address", v)
	}
	*s = append(*s, v)
	return nil
}

func (s stringList) ips() []net.IP {
	out := make([]net.IP, 0, len(s))
	for _, v := range s {
		out = append(out, net.ParseIP(v))
	}
	return out
}
