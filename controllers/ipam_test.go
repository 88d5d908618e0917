package controllers

import (
	"context"
	"net/netip"
	"slices"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/testenv"
)

// Each IPAM spec labels its nodes with its own pool label value, so pools
// of different specs never select the same node.
const poolLabel = "test.sluice.dev/pool"

func pool(name string, mode v1.IPAMMode, cidrs ...v1.CIDR) *v1.IPAMPool {
	return &v1.IPAMPool{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1.IPAMPoolSpec{
			Mode: mode, CIDRs: cidrs,
			NodeSelector: &metav1.LabelSelector{MatchLabels: map[string]string{poolLabel: name}},
		},
	}
}

func node(name, poolName string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{poolLabel: poolName}}}
}

func nodeNetwork(ctx context.Context, g Gomega, name string) *v1.NodeNetwork {
	nn := &v1.NodeNetwork{}
	g.Expect(k8s.Get(ctx, client.ObjectKey{Name: name}, nn)).To(Succeed())
	return nn
}

func expectAllocated(ctx context.Context, name string, blocks int) *v1.NodeNetwork {
	var nn *v1.NodeNetwork
	EventuallyWithOffset(1, func(g Gomega) {
		nn = nodeNetwork(ctx, g, name)
		c := meta.FindStatusCondition(nn.Status.Conditions, v1.ConditionAllocated)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionTrue), c.Message)
		g.Expect(nn.Status.CIDRs).To(HaveLen(blocks))
	}).Should(Succeed())
	return nn
}

// deleteNode deletes a node and, standing in for the node lifecycle and
// garbage collector that envtest lacks, nothing else: the operator itself
// must release the node's addresses.
func deleteNode(ctx context.Context, name string) {
	ExpectWithOffset(1, client.IgnoreNotFound(k8s.Delete(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}))).To(Succeed())
}

func claimsOfPool(ctx context.Context, g Gomega, poolName string) []v1.IPAMBlock {
	var blocks v1.IPAMBlockList
	g.Expect(k8s.List(ctx, &blocks, client.MatchingLabels{v1.LabelPool: poolName})).To(Succeed())
	return blocks.Items
}

// cleanupPool removes a spec's nodes, waits for their addresses to be
// released, then removes the pool.
func cleanupPool(ctx context.Context, p *v1.IPAMPool, nodes ...string) {
	for _, n := range nodes {
		deleteNode(ctx, n)
	}
	Eventually(func(g Gomega) {
		g.Expect(claimsOfPool(ctx, g, p.Name)).To(BeEmpty())
		for _, n := range nodes {
			g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: n}, &v1.NodeNetwork{}))).To(BeTrue(), "NodeNetwork %s", n)
		}
	}).Should(Succeed())
	Expect(client.IgnoreNotFound(k8s.Delete(ctx, p))).To(Succeed())
}

var _ = Describe("IPAM", func() {
	Context("overlay", func() {
		It("gives every node its own block and releases it when the node goes", func(ctx SpecContext) {
			p := pool("overlay-basic", v1.IPAMModeOverlay, "10.100.0.0/16")
			Expect(k8s.Create(ctx, p)).To(Succeed())
			names := []string{"ov-a", "ov-b", "ov-c"}
			DeferCleanup(func(ctx SpecContext) { cleanupPool(ctx, p, names...) })
			for _, n := range names {
				Expect(k8s.Create(ctx, node(n, p.Name))).To(Succeed())
			}

			var blocks []v1.CIDR
			for _, n := range names {
				nn := expectAllocated(ctx, n, 1)
				Expect(nn.Status.Pool).To(Equal(p.Name))
				Expect(nn.Status.Mode).To(Equal(v1.IPAMModeOverlay))
				Expect(nn.Status.MaxPods).To(BeEquivalentTo(250))
				block := netip.MustParsePrefix(string(nn.Status.CIDRs[0]))
				Expect(block.Bits()).To(Equal(24))
				Expect(netip.MustParsePrefix("10.100.0.0/16").Contains(block.Addr())).To(BeTrue())
				Expect(nn.Status.ExcludeIPs).To(ConsistOf(block.Addr().String(), lastAddr(block).String()))
				Expect(nn.Spec).To(Equal(v1.NodeNetworkSpec{}), "the operator never writes the node's half")
				blocks = append(blocks, nn.Status.CIDRs[0])
			}
			Expect(slices.Compact(slices.Sorted(slices.Values(blocks)))).To(HaveLen(3), "blocks are distinct")

			Eventually(func(g Gomega) {
				got := &v1.IPAMPool{}
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
				g.Expect(got.Status.Capacity).To(BeEquivalentTo(65536))
				g.Expect(got.Status.Allocated).To(BeEquivalentTo(3 * 256))
				g.Expect(got.Status.Free).To(BeEquivalentTo(65536 - 3*256))
				g.Expect(got.Status.AllocatedNodes).To(BeEquivalentTo(3))
				g.Expect(got.Status.Nodes).To(Equal(names))
				g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1.ConditionReady)).To(BeTrue())
				g.Expect(meta.IsStatusConditionFalse(got.Status.Conditions, v1.ConditionExhausted)).To(BeTrue())
			}).Should(Succeed())

			By("deleting a node")
			deleteNode(ctx, "ov-b")
			Eventually(func(g Gomega) {
				g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: "ov-b"}, &v1.NodeNetwork{}))).To(BeTrue())
				g.Expect(claimsOfPool(ctx, g, p.Name)).To(HaveLen(2))
			}).Should(Succeed())

			By("a node that returns gets a block again, nothing stale")
			Expect(k8s.Create(ctx, node("ov-b", p.Name))).To(Succeed())
			nn := expectAllocated(ctx, "ov-b", 1)
			Expect(nn.Status.CIDRs).To(HaveLen(1))
			Eventually(func(g Gomega) { g.Expect(claimsOfPool(ctx, g, p.Name)).To(HaveLen(3)) }).Should(Succeed())
		})

		It("reports exhaustion and recovers by itself when a range is added", func(ctx SpecContext) {
			p := pool("overlay-small", v1.IPAMModeOverlay, "10.101.0.0/23")
			Expect(k8s.Create(ctx, p)).To(Succeed())
			names := []string{"ex-a", "ex-b", "ex-c"}
			DeferCleanup(func(ctx SpecContext) { cleanupPool(ctx, p, names...) })
			for _, n := range names {
				Expect(k8s.Create(ctx, node(n, p.Name))).To(Succeed())
			}

			var waiting string
			Eventually(func(g Gomega) {
				got := &v1.IPAMPool{}
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
				g.Expect(got.Status.Free).To(BeZero())
				g.Expect(got.Status.WaitingNodes).To(HaveLen(1))
				waiting = got.Status.WaitingNodes[0]
				c := meta.FindStatusCondition(got.Status.Conditions, v1.ConditionExhausted)
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Status).To(Equal(metav1.ConditionTrue))
				g.Expect(c.Message).To(ContainSubstring(waiting))
			}).Should(Succeed())
			nn := &v1.NodeNetwork{}
			Expect(k8s.Get(ctx, client.ObjectKey{Name: waiting}, nn)).To(Succeed())
			Expect(meta.FindStatusCondition(nn.Status.Conditions, v1.ConditionAllocated).Reason).To(Equal(v1.ReasonPoolExhausted))

			By("the DataplaneConfig shows the pool's health")
			Expect(k8s.Create(ctx, dataplaneConfig(v1.DataplaneConfigSpec{IPAMPools: []v1.IPAMPoolReference{{Name: p.Name}}}))).To(Succeed())
			DeferCleanup(deleteAll)
			expectCondition(ctx, v1.ConditionIPAMReady, metav1.ConditionFalse, v1.ReasonPoolExhausted)

			By("adding a range")
			Expect(update(ctx, k8s, p, func() { p.Spec.CIDRs = append(p.Spec.CIDRs, "10.101.4.0/24") })).To(Succeed())
			expectAllocated(ctx, waiting, 1)
			Eventually(func(g Gomega) {
				got := &v1.IPAMPool{}
				g.Expect(k8s.Get(ctx, client.ObjectKeyFromObject(p), got)).To(Succeed())
				g.Expect(got.Status.WaitingNodes).To(BeEmpty())
				g.Expect(meta.IsStatusConditionFalse(got.Status.Conditions, v1.ConditionExhausted)).To(BeTrue())
			}).Should(Succeed())
			expectCondition(ctx, v1.ConditionIPAMReady, metav1.ConditionTrue, v1.ReasonPoolsReady)
		})
	})

	Context("order of events", func() {
		It("serves nodes that came before their pool, and lets the pool go once they have", func(ctx SpecContext) {
			Expect(k8s.Create(ctx, node("early-a", "late-pool"))).To(Succeed())
			Eventually(func(g Gomega) {
				c := meta.FindStatusCondition(nodeNetwork(ctx, g, "early-a").Status.Conditions, v1.ConditionAllocated)
				g.Expect(c).NotTo(BeNil())
				g.Expect(c.Reason).To(Equal(v1.ReasonNoPool))
			}).Should(Succeed())

			p := pool("late-pool", v1.IPAMModeOverlay, "10.103.0.0/16")
			Expect(k8s.Create(ctx, p)).To(Succeed())
			expectAllocated(ctx, "early-a", 1)

			By("the node goes, then the pool")
			deleteNode(ctx, "early-a")
			Eventually(func(g Gomega) { g.Expect(claimsOfPool(ctx, g, p.Name)).To(BeEmpty()) }).Should(Succeed())
			Expect(k8s.Delete(ctx, p)).To(Succeed())
		})

		It("moves an idle node to the pool its new labels select", func(ctx SpecContext) {
			from := pool("move-from", v1.IPAMModeOverlay, "10.104.0.0/16")
			to := pool("move-to", v1.IPAMModeOverlay, "10.105.0.0/16")
			Expect(k8s.Create(ctx, from)).To(Succeed())
			Expect(k8s.Create(ctx, to)).To(Succeed())
			Expect(k8s.Create(ctx, node("mover", from.Name))).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { cleanupPool(ctx, from, "mover"); cleanupPool(ctx, to) })
			nn := expectAllocated(ctx, "mover", 1)
			Expect(string(nn.Status.CIDRs[0])).To(HavePrefix("10.104."))

			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "mover"}}
			Expect(update(ctx, k8s, n, func() { n.Labels[poolLabel] = to.Name })).To(Succeed())
			Eventually(func(g Gomega) {
				got := nodeNetwork(ctx, g, "mover")
				g.Expect(got.Status.Pool).To(Equal(to.Name))
				g.Expect(got.Status.CIDRs).To(HaveLen(1))
				g.Expect(string(got.Status.CIDRs[0])).To(HavePrefix("10.105."))
				g.Expect(claimsOfPool(ctx, g, from.Name)).To(BeEmpty())
			}).Should(Succeed())
		})
	})

	Context("dual stack", func() {
		It("gives a node one block of each family", func(ctx SpecContext) {
			p := pool("dual", v1.IPAMModeOverlay, "10.106.0.0/16", "fd00:106::/112")
			Expect(k8s.Create(ctx, p)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { cleanupPool(ctx, p, "dual-a") })
			Expect(k8s.Create(ctx, node("dual-a", p.Name))).To(Succeed())
			nn := expectAllocated(ctx, "dual-a", 2)
			Expect(nn.Status.CIDRs).To(ConsistOf(v1.CIDR("10.106.0.0/24"), v1.CIDR("fd00:106::/120")))
			// IPv6 has no broadcast address: only the block's first is kept back.
			Expect(nn.Status.ExcludeIPs).To(ConsistOf("10.106.0.0", "10.106.0.255", "fd00:106::"))
		})
	})

	Context("pod subnet", func() {
		It("hands out batches as the node needs them and takes back what it releases", func(ctx SpecContext) {
			p := pool("subnet", v1.IPAMModeSubnet, "10.102.0.0/20")
			Expect(k8s.Create(ctx, p)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { cleanupPool(ctx, p, "sub-a") })
			Expect(k8s.Create(ctx, node("sub-a", p.Name))).To(Succeed())

			nn := expectAllocated(ctx, "sub-a", 1)
			first := netip.MustParsePrefix(string(nn.Status.CIDRs[0]))
			Expect(first.Bits()).To(Equal(28), "a batch of 16")
			// The subnet's network address and the three the cloud keeps
			// are never handed to a pod.
			Expect(nn.Status.ExcludeIPs).To(ConsistOf("10.102.0.0", "10.102.0.1", "10.102.0.2", "10.102.0.3"))

			By("the node uses 20 addresses: 20 + 8 free needs 2 batches")
			Expect(update(ctx, k8s, nn, func() { nn.Spec.IPsInUse = 20 })).To(Succeed())
			nn = expectAllocated(ctx, "sub-a", 2)

			By("the node gives one batch back")
			second := nn.Status.CIDRs[1]
			Expect(update(ctx, k8s, nn, func() {
				nn.Spec.IPsInUse = 3
				nn.Spec.ReleaseCIDRs = []v1.CIDR{second}
			})).To(Succeed())
			Eventually(func(g Gomega) {
				got := nodeNetwork(ctx, g, "sub-a")
				g.Expect(got.Status.CIDRs).To(Equal([]v1.CIDR{v1.CIDR(first.String())}))
				g.Expect(claimsOfPool(ctx, g, p.Name)).To(HaveLen(1))
			}).Should(Succeed())
		})
	})

	Context("a settled node", func() {
		It("costs no API writes and no events to reconcile again", func(ctx SpecContext) {
			p := pool("settled", v1.IPAMModeSubnet, "10.109.0.0/22")
			Expect(k8s.Create(ctx, p)).To(Succeed())
			Expect(k8s.Create(ctx, node("settled-a", p.Name))).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { cleanupPool(ctx, p, "settled-a") })
			expectAllocated(ctx, "settled-a", 1)
			Eventually(func(g Gomega) {
				nn := nodeNetwork(ctx, g, "settled-a")
				g.Expect(nn.Status.ObservedGeneration).To(Equal(nn.Generation))
			}).Should(Succeed())

			var writes testenv.WriteCounter
			base, err := client.NewWithWatch(restCfg, client.Options{Scheme: scheme})
			Expect(err).NotTo(HaveOccurred())
			counting := writes.Wrap(base)
			recorder := events.NewFakeRecorder(10)
			r := &NodeNetworkReconciler{Client: counting, APIReader: counting, Recorder: recorder, spaces: newPoolSpaces()}
			for range 2 {
				_, err := r.Reconcile(ctx, ctrl.Request{NamespacedName: client.ObjectKey{Name: "settled-a"}})
				Expect(err).NotTo(HaveOccurred())
			}
			Expect(writes.Count()).To(BeZero(), "a reconcile of a settled node must not write")
			Expect(recorder.Events).To(BeEmpty(), "nor emit events")
		})
	})

	Context("watermarks", func() {
		It("publishes the pool's watermarks in force to its nodes and follows their changes", func(ctx SpecContext) {
			p := pool("wm", v1.IPAMModeSubnet, "10.107.0.0/22")
			p.Spec.BatchSize = ptr.To[int32](8)
			Expect(k8s.Create(ctx, p)).To(Succeed())
			Expect(k8s.Create(ctx, node("wm-a", p.Name))).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { cleanupPool(ctx, p, "wm-a") })

			By("defaults: half a batch and two batches")
			Eventually(func(g Gomega) {
				st := nodeNetwork(ctx, g, "wm-a").Status
				g.Expect(st.MinFreeIPs).To(HaveValue(BeEquivalentTo(4)))
				g.Expect(st.MaxFreeIPs).To(HaveValue(BeEquivalentTo(16)))
			}).Should(Succeed())

			By("the pool sets its own")
			Expect(update(ctx, k8s, p, func() {
				p.Spec.MinFreeIPs, p.Spec.MaxFreeIPs = ptr.To[int32](2), ptr.To[int32](30)
			})).To(Succeed())
			Eventually(func(g Gomega) {
				st := nodeNetwork(ctx, g, "wm-a").Status
				g.Expect(st.MinFreeIPs).To(HaveValue(BeEquivalentTo(2)))
				g.Expect(st.MaxFreeIPs).To(HaveValue(BeEquivalentTo(30)))
			}).Should(Succeed())
		})

		It("publishes none for an overlay pool", func(ctx SpecContext) {
			p := pool("wm-overlay", v1.IPAMModeOverlay, "10.108.0.0/16")
			Expect(k8s.Create(ctx, p)).To(Succeed())
			Expect(k8s.Create(ctx, node("wm-o", p.Name))).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { cleanupPool(ctx, p, "wm-o") })
			nn := expectAllocated(ctx, "wm-o", 1)
			Expect(nn.Status.MinFreeIPs).To(BeNil())
			Expect(nn.Status.MaxFreeIPs).To(BeNil())
		})
	})

	Context("admission", func() {
		It("refuses pools that would hand out addresses twice or strand them", func(ctx SpecContext) {
			p := pool("adm-a", v1.IPAMModeOverlay, "10.110.0.0/16")
			Expect(k8s.Create(ctx, p)).To(Succeed())
			Expect(k8s.Create(ctx, node("adm-node", p.Name))).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { cleanupPool(ctx, p, "adm-node") })
			expectAllocated(ctx, "adm-node", 1)

			overlapping := pool("adm-b", v1.IPAMModeOverlay, "10.110.128.0/17")
			Expect(k8s.Create(ctx, overlapping)).To(MatchError(ContainSubstring("overlaps 10.110.0.0/16 of IPAMPool adm-a")))

			sameNode := pool("adm-c", v1.IPAMModeOverlay, "10.111.0.0/16")
			sameNode.Spec.NodeSelector = nil
			Expect(k8s.Create(ctx, sameNode)).To(MatchError(ContainSubstring("selects node adm-node, which IPAMPool adm-a already selects")))

			services := pool("adm-d", v1.IPAMModeOverlay, "10.0.0.0/16")
			Expect(k8s.Create(ctx, services)).To(MatchError(ContainSubstring("overlaps the service CIDR")))

			small := pool("adm-e", v1.IPAMModeOverlay, "10.112.0.0/16")
			small.Spec.BlockSize = ptr.To[int32](26)
			Expect(k8s.Create(ctx, small)).To(MatchError(ContainSubstring("blockSize 26 gives a node 62 usable addresses, fewer than maxPodsPerNode 250; use blockSize 24")))

			selfOverlap := pool("adm-f", v1.IPAMModeOverlay, "10.113.0.0/16", "10.113.4.0/24")
			Expect(k8s.Create(ctx, selfOverlap)).To(MatchError(ContainSubstring("cidrs 10.113.0.0/16 and 10.113.4.0/24 overlap")))

			hostBits := pool("adm-g", v1.IPAMModeOverlay, "10.114.1.0/16")
			Expect(k8s.Create(ctx, hostBits)).To(MatchError(ContainSubstring("10.114.1.0/16 has host bits set")))

			v6only := pool("adm-h", v1.IPAMModeOverlay, "fd00:10::/56")
			Expect(k8s.Create(ctx, v6only)).To(MatchError(ContainSubstring("cidrs need at least one IPv4 range")))

			watermarks := pool("adm-i", v1.IPAMModeSubnet, "10.115.0.0/16")
			watermarks.Spec.MinFreeIPs, watermarks.Spec.MaxFreeIPs = ptr.To[int32](10), ptr.To[int32](20)
			Expect(k8s.Create(ctx, watermarks)).To(MatchError(ContainSubstring("maxFreeIPs 20 must be at least minFreeIPs 10 plus batchSize 16")))

			By("shrinking or removing a range that nodes hold addresses from")
			Expect(update(ctx, k8s, p, func() { p.Spec.CIDRs = []v1.CIDR{"10.120.0.0/16"} })).
				To(MatchError(ContainSubstring("removes or shrinks a range that nodes hold addresses from")))

			By("changing the mode")
			Expect(update(ctx, k8s, p, func() { p.Spec.Mode = v1.IPAMModeSubnet })).To(MatchError(ContainSubstring("mode can't change")))

			By("deleting a pool that nodes hold addresses from")
			Expect(k8s.Delete(ctx, p)).To(MatchError(ContainSubstring("nodes adm-node still hold addresses from this pool")))
		})

		It("keeps a pool's sizes at the values in force, whether the fields are set or not", func(ctx SpecContext) {
			overlay := pool("adm-sizes", v1.IPAMModeOverlay, "10.116.0.0/16")
			Expect(k8s.Create(ctx, overlay)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, overlay))).To(Succeed()) })

			By("blockSize: unset means 24")
			Expect(update(ctx, k8s, overlay, func() { overlay.Spec.BlockSize = ptr.To[int32](23) })).
				To(MatchError(ContainSubstring("blockSize can't change: nodes hold blocks of the size in force (24 while blockSize is unset)")))
			Expect(update(ctx, k8s, overlay, func() { overlay.Spec.BlockSize = ptr.To[int32](24) })).To(Succeed(), "naming the default changes nothing")
			Expect(update(ctx, k8s, overlay, func() { overlay.Spec.BlockSize = nil })).To(Succeed(), "nor does unsetting it")
			Expect(update(ctx, k8s, overlay, func() { overlay.Spec.BlockSize = ptr.To[int32](22) })).
				To(MatchError(ContainSubstring("blockSize can't change")))

			By("ipv6BlockSize: free until the pool has an IPv6 range, then fixed; unset means 120")
			Expect(update(ctx, k8s, overlay, func() { overlay.Spec.IPv6BlockSize = ptr.To[int32](112) })).To(Succeed())
			Expect(update(ctx, k8s, overlay, func() { overlay.Spec.IPv6BlockSize = nil })).To(Succeed())
			Expect(update(ctx, k8s, overlay, func() { overlay.Spec.CIDRs = append(overlay.Spec.CIDRs, "fd00:116::/104") })).To(Succeed())
			Expect(update(ctx, k8s, overlay, func() { overlay.Spec.IPv6BlockSize = ptr.To[int32](112) })).
				To(MatchError(ContainSubstring("ipv6BlockSize can't change while the pool has an IPv6 range: nodes hold blocks of the size in force (120 while ipv6BlockSize is unset)")))
			Expect(update(ctx, k8s, overlay, func() { overlay.Spec.IPv6BlockSize = ptr.To[int32](120) })).To(Succeed())

			By("batchSize: unset means 16")
			subnet := pool("adm-batches", v1.IPAMModeSubnet, "10.117.0.0/16")
			Expect(k8s.Create(ctx, subnet)).To(Succeed())
			DeferCleanup(func(ctx SpecContext) { Expect(client.IgnoreNotFound(k8s.Delete(ctx, subnet))).To(Succeed()) })
			Expect(update(ctx, k8s, subnet, func() { subnet.Spec.BatchSize = ptr.To[int32](32) })).
				To(MatchError(ContainSubstring("batchSize can't change: nodes hold batches of the size in force (16 while batchSize is unset)")))
			Expect(update(ctx, k8s, subnet, func() { subnet.Spec.BatchSize = ptr.To[int32](16) })).To(Succeed())
			Expect(update(ctx, k8s, subnet, func() { subnet.Spec.BatchSize = nil })).To(Succeed())
		})
	})
})

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	hostBits := 32 - p.Bits()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= (1 << hostBits) - 1
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}
