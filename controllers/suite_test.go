package controllers

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/sluice-dev/sluice/internal/agentmanifest"
	sluicescheme "github.com/sluice-dev/sluice/internal/scheme"
	"github.com/sluice-dev/sluice/internal/testenv"
)

const (
	agentNamespace = "sluice-system"
	agentImage     = "sluice/agent:test"
)

var (
	testEnv *envtest.Environment
	scheme  = sluicescheme.New()
	k8s     client.Client // direct, uncached: tests assert on what the API server holds
	restCfg *rest.Config
	agent   = agentmanifest.Params{Namespace: agentNamespace, Name: "sluice-agent", ServiceAccountName: "sluice-agent"}
	stopMgr context.CancelFunc
	mgrDone sync.WaitGroup
)

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	// Generous: CI shares two cores with the control plane and builds.
	SetDefaultEventuallyTimeout(30 * time.Second)
	SetDefaultEventuallyPollingInterval(50 * time.Millisecond)
	RunSpecs(t, "Controllers Suite")
}

var _ = BeforeSuite(func() {
	logf.SetLogger(zap.New(zap.WriteTo(GinkgoWriter), zap.UseDevMode(true)))
	testEnv = testenv.Environment(scheme)
	testEnv.WebhookInstallOptions = envtest.WebhookInstallOptions{
		Paths: []string{filepath.Join(testenv.RepoRoot(), "config", "webhook")},
		// Conversion is registered with a hub-spoke converter rather than
		// Convertible methods on the API types (which keeps
		// controller-runtime out of api/), so tell envtest to wire the
		// CRD's conversion webhook regardless.
		IgnoreSchemeConvertible: true,
	}
	var err error
	restCfg, err = testenv.Start(testEnv)
	Expect(err).NotTo(HaveOccurred())

	k8s, err = client.New(restCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(k8s.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNamespace}})).To(Succeed())

	startManager()
})

var _ = AfterSuite(func() {
	if stopMgr != nil {
		stopMgr()
		mgrDone.Wait()
	}
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// restartManager stops the running manager, waits until it has stopped,
// and starts a new one: what a crashed or rescheduled operator does.
func restartManager() {
	stopMgr()
	mgrDone.Wait()
	startManager()
}

// startManager runs the reconcilers and the webhooks through SetupAll, as
// cmd/manager does, on envtest's webhook host, port and certificates.
func startManager() {
	wh := testEnv.WebhookInstallOptions
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		// The churn test restarts the manager within this process; each
		// new manager registers the same controller names again.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wh.LocalServingHost, Port: wh.LocalServingPort, CertDir: wh.LocalServingCertDir,
		}),
		Cache: CacheOptions(agentNamespace),
	})
	Expect(err).NotTo(HaveOccurred())
	Expect(SetupAll(context.Background(), mgr, Options{Agent: agent, AgentImage: agentImage})).To(Succeed())

	ctx, cancel := context.WithCancel(context.Background())
	stopMgr = cancel
	mgrDone.Add(1)
	go func() {
		defer GinkgoRecover()
		defer mgrDone.Done()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()

	// Admission fails closed, so wait until the webhook server answers TLS.
	addr := net.JoinHostPort(wh.LocalServingHost, fmt.Sprint(wh.LocalServingPort))
	Eventually(func() error {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) // only probing that the server is up
		if err != nil {
			return err
		}
		return conn.Close()
	}).WithTimeout(30 * time.Second).Should(Succeed())
}
