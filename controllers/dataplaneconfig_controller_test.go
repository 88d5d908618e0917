package controllers

import (
	"context"
	"sync"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gstruct"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/testenv"
)

func dataplaneConfig(spec v1.DataplaneConfigSpec) *v1.DataplaneConfig {
	return &v1.DataplaneConfig{ObjectMeta: metav1.ObjectMeta{Name: v1.DataplaneConfigName}, Spec: spec}
}

func key(obj client.Object) client.ObjectKey { return client.ObjectKeyFromObject(obj) }

var agentKey = client.ObjectKey{Namespace: agentNamespace, Name: "sluice-agent"}

// deleteAll removes the DataplaneConfig and, standing in for the garbage
// collector that envtest doesn't run, the agent objects it owned.
func deleteAll(ctx context.Context) {
	dpc := dataplaneConfig(v1.DataplaneConfigSpec{})
	Expect(client.IgnoreNotFound(k8s.Delete(ctx, dpc))).To(Succeed())
	Eventually(func() bool { return apierrors.IsNotFound(k8s.Get(ctx, key(dpc), dpc)) }).Should(BeTrue())
	for _, obj := range []client.Object{
		&appsv1.DaemonSet{ObjectMeta: metav1.ObjectMeta{Namespace: agentNamespace, Name: agent.Name}},
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: agentNamespace, Name: agent.Name}},
	} {
		Expect(client.IgnoreNotFound(k8s.Delete(ctx, obj))).To(Succeed())
	}
}

// warningCollector keeps the admission warnings the API server returns,
// which kubectl would print.
type warningCollector struct {
	mu       sync.Mutex
	warnings []string
}

func (w *warningCollector) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.warnings = append(w.warnings, text)
}

func (w *warningCollector) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.warnings...)
}

func clientWithWarnings() (client.Client, *warningCollector) {
	collector := &warningCollector{}
	cfg := rest.CopyConfig(restCfg)
	cfg.WarningHandler = collector
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return c, collector
}

var _ = Describe("DataplaneConfig", func() {
	AfterEach(func(ctx SpecContext) { deleteAll(ctx) })

	Context("conversion between v1alpha1 and v1", func() {
		It("reads a v1alpha1 ebpfDataplane: cilium object as v1 networkDataplane: cilium", func(ctx SpecContext) {
			old := &v1alpha1.DataplaneConfig{
				ObjectMeta: metav1.ObjectMeta{Name: v1.DataplaneConfigName},
				Spec: v1alpha1.DataplaneConfigSpec{
					EBPFDataplane: v1alpha1.EBPFDataplaneCilium, NetworkPlugin: "azure",
					NetworkPluginMode: "overlay", PodCidr: "192.168.0.0/16", NetworkPolicy: "cilium",
				},
			}
			Expect(k8s.Create(ctx, old)).To(Succeed())

			got := &v1.DataplaneConfig{}
			Expect(k8s.Get(ctx, key(old), got)).To(Succeed())
			Expect(got.Spec.NetworkDataplane).To(Equal(v1.NetworkDataplaneCilium))
			Expect(got.Spec.PodCIDR).To(Equal("192.168.0.0/16"))
			Expect(got.Spec.NetworkPluginMode).To(Equal(v1.NetworkPluginModeOverlay))
			Expect(got.Annotations).NotTo(HaveKey(v1alpha1.V1FieldsAnnotation))
		})

		It("reads a v1 object as v1alpha1 and keeps v1-only fields through a v1alpha1 update", func(ctx SpecContext) {
			dpc := dataplaneConfig(v1.DataplaneConfigSpec{
				NetworkDataplane: v1.NetworkDataplaneCilium, NetworkPolicy: v1.NetworkPolicyCilium,
				NodePoolLabel: "example.com/pool",
				Agent:         &v1.AgentSettings{LogLevel: v1.LogLevelDebug, MaxUnavailable: ptr.To(intstr.FromString("20%"))},
			})
			Expect(k8s.Create(ctx, dpc)).To(Succeed())

			old := &v1alpha1.DataplaneConfig{}
			Expect(k8s.Get(ctx, key(dpc), old)).To(Succeed())
			Expect(old.Spec.EBPFDataplane).To(Equal(v1alpha1.EBPFDataplaneCilium))
			Expect(old.Annotations).To(HaveKey(v1alpha1.V1FieldsAnnotation))

			// A client that only knows v1alpha1 changes a field it knows.
			Expect(update(ctx, k8s, old, func() {
				old.Spec.NetworkPluginMode = "overlay"
				old.Spec.PodCidr = "10.244.0.0/16"
			})).To(Succeed())

			got := &v1.DataplaneConfig{}
			Expect(k8s.Get(ctx, key(dpc), got)).To(Succeed())
			Expect(got.Spec.PodCIDR).To(Equal("10.244.0.0/16"))
			Expect(got.Spec.NodePoolLabel).To(Equal("example.com/pool"))
			Expect(got.Spec.Agent).NotTo(BeNil())
			Expect(got.Spec.Agent.LogLevel).To(Equal(v1.LogLevelDebug))
			Expect(got.Spec.Agent.MaxUnavailable).To(Equal(ptr.To(intstr.FromString("20%"))))
			Expect(got.Annotations).NotTo(HaveKey(v1alpha1.V1FieldsAnnotation))
		})
	})

	Context("admission", func() {
		DescribeTable("refuses a bad spec with a message that says what is wrong",
			func(ctx SpecContext, name string, spec v1.DataplaneConfigSpec, message string) {
				dpc := dataplaneConfig(spec)
				dpc.Name = name
				err := k8s.Create(ctx, dpc)
				Expect(err).To(HaveOccurred())
				Expect(apierrors.IsInvalid(err)).To(BeTrue(), "want Invalid, got %v", err)
				Expect(err.Error()).To(ContainSubstring(message))
			},
			Entry("a second DataplaneConfig", "other", v1.DataplaneConfigSpec{},
				"DataplaneConfig is a cluster singleton: its name must be 'default'"),
			Entry("a podCIDR that doesn't parse", "default", v1.DataplaneConfigSpec{PodCIDR: "192.168.0.0"},
				"podCIDR must be in CIDR notation"),
			Entry("a podCIDR with host bits", "default", v1.DataplaneConfigSpec{PodCIDR: "192.168.1.0/16"},
				"podCIDR 192.168.1.0/16 has host bits set: use the network address of its range"),
			Entry("overlay without podCIDR", "default",
				v1.DataplaneConfigSpec{NetworkPluginMode: v1.NetworkPluginModeOverlay},
				"networkPluginMode: overlay needs podCIDR"),
			Entry("overlay with a bring-your-own CNI", "default",
				v1.DataplaneConfigSpec{NetworkPlugin: v1.NetworkPluginNone, NetworkPluginMode: v1.NetworkPluginModeOverlay, PodCIDR: "192.168.0.0/16"},
				"networkPluginMode: overlay needs networkPlugin: azure"),
			Entry("the eBPF dataplane with a bring-your-own CNI", "default",
				v1.DataplaneConfigSpec{NetworkPlugin: v1.NetworkPluginNone, NetworkDataplane: v1.NetworkDataplaneCilium},
				"networkDataplane: cilium needs networkPlugin: azure"),
			Entry("cilium policy on the legacy dataplane", "default",
				v1.DataplaneConfigSpec{NetworkPolicy: v1.NetworkPolicyCilium},
				"networkPolicy: cilium needs networkDataplane: cilium"),
			Entry("an unknown dataplane", "default",
				v1.DataplaneConfigSpec{NetworkDataplane: "ebpf"},
				`Unsupported value: "ebpf": supported values: "azure", "cilium"`),
			Entry("maxUnavailable 0", "default",
				v1.DataplaneConfigSpec{Agent: &v1.AgentSettings{MaxUnavailable: ptr.To(intstr.FromInt32(0))}},
				"spec.agent.maxUnavailable: Invalid value: 0: must be a whole number of at least 1 or a percentage from 1% to 100%"),
			Entry("maxUnavailable 0%", "default",
				v1.DataplaneConfigSpec{Agent: &v1.AgentSettings{MaxUnavailable: ptr.To(intstr.FromString("0%"))}},
				"spec.agent.maxUnavailable: Invalid value: \"0%\": must be a whole number of at least 1 or a percentage from 1% to 100%"),
			Entry("a negative CPU request", "default",
				v1.DataplaneConfigSpec{Agent: &v1.AgentSettings{CPURequest: ptr.To(resource.MustParse("-100m"))}},
				`spec.agent.cpuRequest: Invalid value: "-100m": must not be negative; use zero or more`),
			Entry("a negative memory request", "default",
				v1.DataplaneConfigSpec{Agent: &v1.AgentSettings{MemoryRequest: ptr.To(resource.MustParse("-256Mi"))}},
				`spec.agent.memoryRequest: Invalid value: "-256Mi": must not be negative; use zero or more`),
			Entry("a policy map too small to be useful", "default",
				v1.DataplaneConfigSpec{Agent: &v1.AgentSettings{BPFMaps: &v1.BPFMapSizes{PolicyEntries: ptr.To[int32](10)}}},
				"spec.agent.bpfMaps.policyEntries: Invalid value: 10: spec.agent.bpfMaps.policyEntries in body should be greater than or equal to 1024"),
			Entry("a podCIDR that overlaps the service CIDR", "default",
				v1.DataplaneConfigSpec{PodCIDR: "10.0.0.0/8"},
				"overlaps the service CIDR"),
			Entry("a tunnel protocol with native routing", "default",
				v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{Mode: v1.RoutingModeNative, TunnelProtocol: v1.TunnelProtocolVXLAN}},
				"tunnelProtocol applies to mode Tunnel only: Native routing doesn't encapsulate"),
			Entry("a tunnel protocol without a mode, which is native", "default",
				v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{TunnelProtocol: v1.TunnelProtocolGeneve}},
				"tunnelProtocol applies to mode Tunnel only"),
			Entry("routing with a bring-your-own CNI", "default",
				v1.DataplaneConfigSpec{NetworkPlugin: v1.NetworkPluginNone, Routing: &v1.RoutingSettings{Mode: v1.RoutingModeTunnel}},
				"routing needs networkPlugin: azure (or unset)"),
			Entry("an unknown routing mode", "default",
				v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{Mode: "Overlay"}},
				`Unsupported value: "Overlay": supported values: "Native", "Tunnel"`),
			Entry("an underlay MTU below IPv6's minimum", "default",
				v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{UnderlayMTU: ptr.To[int32](1000)}},
				"spec.routing.underlayMTU: Invalid value: 1000: spec.routing.underlayMTU in body should be greater than or equal to 1280"),
		)

		It("keeps the routing mode in force, whether written out or not", func(ctx SpecContext) {
			dpc := dataplaneConfig(v1.DataplaneConfigSpec{})
			Expect(k8s.Create(ctx, dpc)).To(Succeed())
			const modeMessage = "routing.mode can't change on a running cluster"

			Expect(update(ctx, k8s, dpc, func() { dpc.Spec.Routing = &v1.RoutingSettings{Mode: v1.RoutingModeTunnel} })).
				To(MatchError(ContainSubstring(modeMessage)))
			Expect(update(ctx, k8s, dpc, func() {
				dpc.Spec.Routing = &v1.RoutingSettings{Mode: v1.RoutingModeNative, UnderlayMTU: ptr.To[int32](9000)}
			})).To(Succeed(), "writing out the mode in force, Native, changes nothing; the underlay MTU may change")
			Expect(update(ctx, k8s, dpc, func() { dpc.Spec.Routing = nil })).To(Succeed())

			// Tunnel-to-Native and protocol changes are refused by the same
			// rule (internal/webhook's table test covers them); no cluster
			// can be in Tunnel mode until the agents carry it.
		})

		It("refuses the tunnel until the agents carry it", func(ctx SpecContext) {
			for _, r := range []*v1.RoutingSettings{
				{Mode: v1.RoutingModeTunnel},
				{Mode: v1.RoutingModeTunnel, TunnelProtocol: v1.TunnelProtocolGeneve},
			} {
				err := k8s.Create(ctx, dataplaneConfig(v1.DataplaneConfigSpec{Routing: r}))
				Expect(err).To(MatchError(ContainSubstring("mode Tunnel isn't available yet")), "routing %+v", *r)
				Expect(err).To(MatchError(ContainSubstring("use mode: Native")))
			}
		})

		It("refuses a podCIDR that holds a node's address", func(ctx SpecContext) {
			node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-podcidr"}}
			Expect(k8s.Create(ctx, node)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(k8s.Delete(ctx, node)).To(Succeed()) })
			node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "172.16.4.7"}}
			Expect(k8s.Status().Update(ctx, node)).To(Succeed())

			err := k8s.Create(ctx, dataplaneConfig(v1.DataplaneConfigSpec{PodCIDR: "172.16.0.0/12"}))
			Expect(err).To(MatchError(ContainSubstring("contains 172.16.4.7, the address of node node-podcidr")))
		})

		It("refuses to turn the eBPF dataplane off, in either version", func(ctx SpecContext) {
			dpc := dataplaneConfig(v1.DataplaneConfigSpec{NetworkDataplane: v1.NetworkDataplaneCilium})
			Expect(k8s.Create(ctx, dpc)).To(Succeed())
			const message = "the eBPF dataplane can't be disabled once enabled; create a new cluster to use another dataplane"

			Expect(update(ctx, k8s, dpc, func() { dpc.Spec.NetworkDataplane = v1.NetworkDataplaneAzure })).
				To(MatchError(ContainSubstring(message)))
			Expect(update(ctx, k8s, dpc, func() { dpc.Spec.NetworkDataplane = "" })).
				To(MatchError(ContainSubstring(message)), "removing the field is turning it off too")

			old := &v1alpha1.DataplaneConfig{ObjectMeta: metav1.ObjectMeta{Name: v1.DataplaneConfigName}}
			Expect(update(ctx, k8s, old, func() { old.Spec.EBPFDataplane = "" })).
				To(MatchError(ContainSubstring(message)))
			Expect(dpcFromServer(ctx).Spec.NetworkDataplane).To(Equal(v1.NetworkDataplaneCilium))
		})

		It("allows the migration from azure to cilium and warns that the old engine goes", func(ctx SpecContext) {
			c, warnings := clientWithWarnings()
			dpc := dataplaneConfig(v1.DataplaneConfigSpec{NetworkPolicy: v1.NetworkPolicyCalico})
			Expect(c.Create(ctx, dpc)).To(Succeed())
			Expect(warnings.all()).To(BeEmpty())

			Expect(update(ctx, c, dpc, func() { dpc.Spec.NetworkDataplane = v1.NetworkDataplaneCilium })).To(Succeed())
			Expect(warnings.all()).To(ContainElements(
				ContainSubstring("calico engine will be uninstalled"),
				ContainSubstring("every node pool is migrated to the eBPF dataplane"),
			))

			Eventually(func(g Gomega) {
				got := &v1.DataplaneConfig{}
				g.Expect(k8s.Get(ctx, key(dpc), got)).To(Succeed())
				g.Expect(got.Status.Effective).NotTo(BeNil())
				g.Expect(got.Status.Effective.NetworkPolicy).To(Equal(v1.NetworkPolicyCilium))
				g.Expect(got.Spec.NetworkPolicy).To(Equal(v1.NetworkPolicyCalico), "the operator never writes spec")
			}).Should(Succeed())
		})
	})

	Context("the agent", func() {
		It("shows the routing in force and gives pods the underlay's MTU", func(ctx SpecContext) {
			dpc := dataplaneConfig(v1.DataplaneConfigSpec{Routing: &v1.RoutingSettings{UnderlayMTU: ptr.To[int32](9000)}})
			Expect(k8s.Create(ctx, dpc)).To(Succeed())

			Eventually(func(g Gomega) {
				got := dpcFromServer(ctx)
				g.Expect(got.Status.Effective).NotTo(BeNil())
				g.Expect(got.Status.Effective.Routing).To(Equal(&v1.EffectiveRouting{
					Mode: v1.RoutingModeNative, UnderlayMTU: 9000, PodMTU: 9000,
				}))
				g.Expect(got.Spec.Routing.Mode).To(BeEmpty(), "the operator never writes spec")
			}).Should(Succeed())
			Eventually(func(g Gomega) {
				cm := &corev1.ConfigMap{}
				g.Expect(k8s.Get(ctx, agentKey, cm)).To(Succeed())
				g.Expect(cm.Data["config.yaml"]).To(ContainSubstring("routing:\n  mode: Native\n"))
				g.Expect(cm.Data["10-sluice.conflist"]).To(ContainSubstring(`"mtu": 9000`))
			}).Should(Succeed())
		})

		It("renders the DaemonSet and ConfigMap from the effective configuration", func(ctx SpecContext) {
			dpc := dataplaneConfig(v1.DataplaneConfigSpec{
				NetworkDataplane: v1.NetworkDataplaneCilium,
				Agent: &v1.AgentSettings{
					MaxUnavailable: ptr.To(intstr.FromString("10%")),
					MemoryRequest:  ptr.To(resource.MustParse("512Mi")),
				},
			})
			Expect(k8s.Create(ctx, dpc)).To(Succeed())

			ds := ownedAgentDaemonSet(ctx)
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, agentKey, ds)).To(Succeed())
				g.Expect(ds.Spec.Template.Spec.Containers[0].Resources.Requests.Memory().String()).To(Equal("512Mi"))
			}).Should(Succeed())

			pod := ds.Spec.Template.Spec
			Expect(pod.NodeSelector).To(HaveKeyWithValue("kubernetes.io/os", "linux"))
			Expect(pod.Tolerations).To(ContainElement(corev1.Toleration{Operator: corev1.TolerationOpExists}))
			Expect(pod.PriorityClassName).To(Equal("system-node-critical"))
			Expect(pod.HostNetwork).To(BeTrue())
			Expect(pod.Containers).To(HaveLen(1))
			container := pod.Containers[0]
			Expect(container.Image).To(Equal(agentImage))
			Expect(container.Resources.Limits).To(BeEmpty(), "no CPU or memory limit on the component that enforces policy")
			Expect(container.Resources.Requests.Memory().String()).To(Equal("512Mi"))
			Expect(container.SecurityContext.Privileged).To(Or(BeNil(), HaveValue(BeFalse())))
			Expect(container.SecurityContext.Capabilities.Add).To(ConsistOf(
				corev1.Capability("BPF"), corev1.Capability("NET_ADMIN"),
				corev1.Capability("PERFMON"), corev1.Capability("SYS_RESOURCE")))
			Expect(container.SecurityContext.Capabilities.Drop).To(ConsistOf(corev1.Capability("ALL")))
			Expect(hostPaths(pod.Volumes)).To(ContainElements("/sys/fs/bpf", "/sys/fs/cgroup"))
			Expect(ds.Spec.UpdateStrategy.Type).To(Equal(appsv1.RollingUpdateDaemonSetStrategyType))
			Expect(ds.Spec.UpdateStrategy.RollingUpdate.MaxUnavailable).To(Equal(ptr.To(intstr.FromString("10%"))))

			cm := &corev1.ConfigMap{}
			Expect(k8s.Get(ctx, agentKey, cm)).To(Succeed())
			Expect(cm.Data["config.yaml"]).To(ContainSubstring("networkDataplane: cilium"))
			Expect(cm.Data["config.yaml"]).To(ContainSubstring("kubeProxyReplacement: true"))
		})

		It("rolls the agent when the configuration changes and follows its rollout in conditions", func(ctx SpecContext) {
			dpc := dataplaneConfig(v1.DataplaneConfigSpec{})
			Expect(k8s.Create(ctx, dpc)).To(Succeed())
			ds := ownedAgentDaemonSet(ctx)
			firstHash := ds.Spec.Template.Annotations["sluice.dev/config-hash"]
			Expect(firstHash).NotTo(BeEmpty())

			// envtest runs no DaemonSet controller: until something observes
			// the DaemonSet, the rollout is pending.
			expectCondition(ctx, v1.ConditionReady, metav1.ConditionFalse, v1.ReasonAgentPending)
			expectCondition(ctx, v1.ConditionProgressing, metav1.ConditionTrue, v1.ReasonAgentPending)

			By("standing in for the DaemonSet controller: 3 nodes, 1 updated")
			setDaemonSetStatus(ctx, 3, 1, 1)
			expectCondition(ctx, v1.ConditionReady, metav1.ConditionFalse, v1.ReasonAgentRollingOut)
			expectCondition(ctx, v1.ConditionProgressing, metav1.ConditionTrue, v1.ReasonAgentRollingOut)

			By("all updated, one not ready")
			setDaemonSetStatus(ctx, 3, 3, 2)
			expectCondition(ctx, v1.ConditionReady, metav1.ConditionFalse, v1.ReasonAgentUnavailable)
			expectCondition(ctx, v1.ConditionDegraded, metav1.ConditionTrue, v1.ReasonAgentUnavailable)

			By("all ready")
			setDaemonSetStatus(ctx, 3, 3, 3)
			expectCondition(ctx, v1.ConditionReady, metav1.ConditionTrue, v1.ReasonAgentAvailable)
			expectCondition(ctx, v1.ConditionProgressing, metav1.ConditionFalse, v1.ReasonAsExpected)
			expectCondition(ctx, v1.ConditionDegraded, metav1.ConditionFalse, v1.ReasonAsExpected)
			got := dpcFromServer(ctx)
			Expect(got.Status.Agent).To(HaveValue(gstruct.MatchFields(gstruct.IgnoreExtras, gstruct.Fields{"DesiredNodes": BeEquivalentTo(3), "UpdatedNodes": BeEquivalentTo(3), "AvailableNodes": BeEquivalentTo(3)})))
			Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))

			By("changing the log level rolls the agent")
			Expect(update(ctx, k8s, got, func() { got.Spec.Agent = &v1.AgentSettings{LogLevel: v1.LogLevelDebug} })).To(Succeed())
			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, agentKey, ds)).To(Succeed())
				g.Expect(ds.Spec.Template.Annotations["sluice.dev/config-hash"]).NotTo(Equal(firstHash))
			}).Should(Succeed())
			expectCondition(ctx, v1.ConditionProgressing, metav1.ConditionTrue, v1.ReasonAgentPending)
		})

		It("repairs an agent DaemonSet someone edited", func(ctx SpecContext) {
			Expect(k8s.Create(ctx, dataplaneConfig(v1.DataplaneConfigSpec{}))).To(Succeed())
			ds := ownedAgentDaemonSet(ctx)

			Expect(update(ctx, k8s, ds, func() {
				ds.Spec.Template.Spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")}
			})).To(Succeed())

			Eventually(func(g Gomega) {
				g.Expect(k8s.Get(ctx, agentKey, ds)).To(Succeed())
				g.Expect(ds.Spec.Template.Spec.Containers[0].Resources.Limits).To(BeEmpty())
			}).Should(Succeed())
		})

		It("makes no API writes when it reconciles a settled object", func(ctx SpecContext) {
			dpc := dataplaneConfig(v1.DataplaneConfigSpec{
				NetworkDataplane: v1.NetworkDataplaneCilium, NetworkPolicy: v1.NetworkPolicyAzure,
				Agent: &v1.AgentSettings{CPURequest: ptr.To(resource.MustParse("0.25"))},
			})
			Expect(k8s.Create(ctx, dpc)).To(Succeed())
			Eventually(func(g Gomega) {
				got := dpcFromServer(ctx)
				g.Expect(got.Status.ObservedGeneration).To(Equal(got.Generation))
				g.Expect(meta.FindStatusCondition(got.Status.Conditions, v1.ConditionReady)).NotTo(BeNil())
			}).Should(Succeed())

			var writes testenv.WriteCounter
			base, err := client.NewWithWatch(restCfg, client.Options{Scheme: scheme})
			Expect(err).NotTo(HaveOccurred())
			counting := writes.Wrap(base)
			recorder := events.NewFakeRecorder(10)
			r := &DataplaneConfigReconciler{Client: counting, Recorder: recorder, Agent: agent, AgentImage: agentImage}

			for range 2 {
				_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: key(dpc)})
				Expect(err).NotTo(HaveOccurred())
			}
			Expect(writes.Count()).To(BeZero(), "a reconcile of a settled object must not write")
			Expect(recorder.Events).To(BeEmpty(), "nor emit events")
		})
	})
})

// update reads obj afresh, applies mutate and writes it, retrying when the
// operator's own status writes got in between.
func update(ctx context.Context, c client.Client, obj client.Object, mutate func()) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Get(ctx, key(obj), obj); err != nil {
			return err
		}
		mutate()
		return c.Update(ctx, obj)
	})
}

// ownedAgentDaemonSet waits for the agent DaemonSet controlled by the
// current DataplaneConfig. envtest runs no garbage collector, so a late
// reconcile of the previous spec's object can leave a DaemonSet behind;
// the operator adopts and rewrites it first.
func ownedAgentDaemonSet(ctx context.Context) *appsv1.DaemonSet {
	ds := &appsv1.DaemonSet{}
	EventuallyWithOffset(1, func(g Gomega) {
		g.Expect(k8s.Get(ctx, agentKey, ds)).To(Succeed())
		owner := &v1.DataplaneConfig{}
		g.Expect(k8s.Get(ctx, client.ObjectKey{Name: v1.DataplaneConfigName}, owner)).To(Succeed())
		g.Expect(metav1.IsControlledBy(ds, owner)).To(BeTrue())
		g.Expect(owner.Status.Agent).NotTo(BeNil())
		g.Expect(ds.Generation).To(Equal(owner.Status.Agent.DaemonSetGeneration), "the operator has finished with it")
	}).Should(Succeed())
	return ds
}

func dpcFromServer(ctx context.Context) *v1.DataplaneConfig {
	got := &v1.DataplaneConfig{}
	ExpectWithOffset(1, k8s.Get(ctx, client.ObjectKey{Name: v1.DataplaneConfigName}, got)).To(Succeed())
	return got
}

func expectCondition(ctx context.Context, condType string, status metav1.ConditionStatus, reason string) {
	EventuallyWithOffset(1, func(g Gomega) {
		got := dpcFromServer(ctx)
		c := meta.FindStatusCondition(got.Status.Conditions, condType)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(status), c.Message)
		g.Expect(c.Reason).To(Equal(reason), c.Message)
		g.Expect(c.ObservedGeneration).To(Equal(got.Generation))
	}).Should(Succeed())
}

// setDaemonSetStatus writes the status the DaemonSet controller would.
func setDaemonSetStatus(ctx context.Context, desired, updated, available int32) {
	EventuallyWithOffset(1, func(g Gomega) {
		ds := &appsv1.DaemonSet{}
		g.Expect(k8s.Get(ctx, agentKey, ds)).To(Succeed())
		ds.Status = appsv1.DaemonSetStatus{
			ObservedGeneration:     ds.Generation,
			DesiredNumberScheduled: desired, CurrentNumberScheduled: desired,
			UpdatedNumberScheduled: updated, NumberAvailable: available, NumberReady: available,
			NumberUnavailable: desired - available,
		}
		g.Expect(k8s.Status().Update(ctx, ds)).To(Succeed())
	}).Should(Succeed())
}

func hostPaths(volumes []corev1.Volume) []string {
	var paths []string
	for _, v := range volumes {
		if v.HostPath != nil {
			paths = append(paths, v.HostPath.Path)
		}
	}
	return paths
}
