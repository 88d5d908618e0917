package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

// servers are the agent's HTTP servers: the endpoint API on the unix
// socket, health probes and metrics. They are plain net/http servers, not
// a controller-runtime manager's: the agent's cache, its readiness and
// its shutdown order (servers last, so a PUT in flight is answered) are
// its own, and a manager would own all three.
type servers struct {
	listeners []net.Listener
	handlers  []http.Handler
	running   []*http.Server
}

// listen listens on the socket and the health and metrics addresses.
func (a *Agent) listen(p *parts) (_ *servers, err error) {
	o := a.opts
	s := &servers{}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	sock, err := listenSocket(o.Endpoints.SocketPath)
	if err != nil {
		return nil, err
	}
	s.add(sock, p.endpoints.Handler())
	if o.Serving.HealthAddr != "0" {
		l, err := net.Listen("tcp", o.Serving.HealthAddr)
		if err != nil {
			return nil, fmt.Errorf("listen for health probes: %w", err)
		}
		a.mu.Lock()
		a.healthAddr = l.Addr()
		a.mu.Unlock()
		s.add(l, p.healthHandler())
	}
	if o.Serving.MetricsAddr != "0" {
		l, err := net.Listen("tcp", o.Serving.MetricsAddr)
		if err != nil {
			return nil, fmt.Errorf("listen for metrics: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(o.Serving.Registry, promhttp.HandlerOpts{}))
		s.add(l, mux)
	}
	return s, nil
}

func (s *servers) add(l net.Listener, h http.Handler) {
	s.listeners = append(s.listeners, l)
	s.handlers = append(s.handlers, h)
}

// serve serves every listener with goNamed until shutdown.
func (s *servers) serve(ctx context.Context, goNamed func(string, func() error)) {
	for i, l := range s.listeners {
		srv := &http.Server{
			Handler:           s.handlers[i],
			ReadHeaderTimeout: 10 * time.Second,
			// Requests end with the agent: a PUT in flight fails (and
			// the plugin cleans up) rather than outlive it.
			BaseContext: func(net.Listener) context.Context { return ctx },
		}
		s.running = append(s.running, srv)
		goNamed("serve "+l.Addr().String(), func() error {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
}

// shutdown stops the servers, letting requests in flight finish.
func (s *servers) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range s.running {
		_ = srv.Shutdown(ctx)
	}
}

// close closes listeners never served.
func (s *servers) close() {
	for _, l := range s.listeners {
		_ = l.Close()
	}
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
func (p *parts) healthHandler() http.Handler {
	cond := func(ok func() bool, msg string) healthz.Checker {
		return func(*http.Request) error {
			if !ok() {
				return errors.New(msg)
			}
			return nil
		}
	}
	ready := map[string]healthz.Checker{
		"informers-synced": cond(p.policy.Synced, "informer caches not synced"),
		// The parts exist only once the datapath is loaded.
		"datapath-loaded": healthz.Ping,
		"policy-applied": cond(func() bool {
			res, _ := p.slot.Result()
			return res.Applies > 0
		}, "first policy snapshot not applied"),
		"endpoints-recovered": cond(p.endpoints.Recovered, "endpoints registered before the restart not re-attached"),
	}
	ping := &healthz.Handler{Checks: map[string]healthz.Checker{"ping": healthz.Ping}}
	mux := http.NewServeMux()
	mux.Handle("/healthz", http.StripPrefix("/healthz", ping))
	mux.Handle("/healthz/", http.StripPrefix("/healthz", ping))
	mux.Handle("/readyz", http.StripPrefix("/readyz", &healthz.Handler{Checks: ready}))
	mux.Handle("/readyz/", http.StripPrefix("/readyz", &healthz.Handler{Checks: ready}))
	return mux
}
