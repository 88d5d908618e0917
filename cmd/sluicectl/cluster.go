package main

import (
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/sluice-dev/sluice/internal/status"
)

// clusterFlags are the flags of commands that talk to a cluster, named and
// resolved as kubectl's: --kubeconfig, then $KUBECONFIG, then
// ~/.kube/config, then the in-cluster service account; --context,
// -n/--namespace, --request-timeout and the other overrides.
type clusterFlags struct {
	rules     *clientcmd.ClientConfigLoadingRules
	overrides clientcmd.ConfigOverrides
}

func (f *clusterFlags) bind(fs *pflag.FlagSet) {
	f.rules = clientcmd.NewDefaultClientConfigLoadingRules()
	// Empty: the loading rules fall back to $KUBECONFIG and ~/.kube/config.
	fs.StringVar(&f.rules.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "",
		"Path to the kubeconfig file (default $KUBECONFIG, then ~/.kube/config, then the in-cluster service account).")
	names := clientcmd.RecommendedConfigOverrideFlags("")
	names.ContextOverrideFlags.Namespace.Description = "Namespace of the operator and the agent DaemonSet (default " +
		status.DefaultAgentNamespace + "; the context's namespace is not used)."
	names.Timeout.Description = "How long to wait for each request to the API server, e.g. 5s or 1m (0: " +
		defaultRequestTimeout.String() + ")."
	clientcmd.BindOverrideFlags(&f.overrides, fs, names)
}

func (f *clusterFlags) clientConfig() clientcmd.ClientConfig {
	return clientcmd.NewNonInteractiveDeferredLoadingClientConfig(f.rules, &f.overrides)
}

// restConfig is the client configuration the flags select. Requests that
// set no --request-timeout give up after defaultRequestTimeout: a command
// users run when something is wrong must not hang on a dead API server.
func (f *clusterFlags) restConfig() (*rest.Config, error) {
	cfg, err := f.clientConfig().ClientConfig()
	if err != nil {
		return nil, err
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultRequestTimeout
	}
	return cfg, nil
}

// namespace is -n when given, otherwise def. The context's namespace is
// not used: it names where the user works, not where Sluice runs, and a
// status that looked for the agent in "default" would report it missing.
func (f *clusterFlags) namespace(def string) string {
	if f.overrides.Context.Namespace != "" {
		return f.overrides.Context.Namespace
	}
	return def
}

const defaultRequestTimeout = 15 * time.Second
