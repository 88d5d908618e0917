package controllers

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "github.com/sluice-dev/sluice/api/v1"
	"github.com/sluice-dev/sluice/internal/ipampool"
)

var _ = Describe("IPAM under churn", func() {
	It("never gives a block twice or loses one across random node churn and operator restarts", func(ctx SpecContext) {
		rng := rand.New(rand.NewPCG(uint64(GinkgoRandomSeed()), 7))
		GinkgoWriter.Printf("churn seed %d\n", GinkgoRandomSeed())

		overlay := pool("churn-overlay", v1.IPAMModeOverlay, "10.130.0.0/20") // 16 blocks
		subnet := pool("churn-subnet", v1.IPAMModeSubnet, "10.131.0.0/22")    // 64 batches of 16
		pools := []*v1.IPAMPool{overlay, subnet}
		for _, p := range pools {
			Expect(k8s.Create(ctx, p)).To(Succeed())
		}
		live := map[string]string{} // node -> pool
		var names []string
		DeferCleanup(func(ctx SpecContext) {
			for _, p := range pools {
				var ns []string
				for n, pn := range live {
					if pn == p.Name {
						ns = append(ns, n)
					}
				}
				cleanupPool(ctx, p, ns...)
			}
		})

		const operations = 120
		restarts := 0
		for i := range operations {
			switch op := rng.IntN(20); {
			case op < 9 && len(live) < 24:
				p := pools[rng.IntN(2)]
				if p == overlay && countIn(live, overlay.Name) >= 14 {
					p = subnet
				}
				name := fmt.Sprintf("churn-%d", i)
				Expect(k8s.Create(ctx, node(name, p.Name))).To(Succeed())
				live[name] = p.Name
				names = append(names, name)
			case op < 14 && len(live) > 0:
				name := pickLive(rng, live, names)
				deleteNode(ctx, name)
				delete(live, name)
			case op < 18 && len(live) > 0:
				// The node side reports a new number of pod IPs in use.
				name := pickLive(rng, live, names)
				nn := &v1.NodeNetwork{}
				if err := k8s.Get(ctx, client.ObjectKey{Name: name}, nn); err == nil && live[name] == subnet.Name {
					inUse := int32(rng.IntN(60))
					Expect(client.IgnoreNotFound(update(ctx, k8s, nn, func() { nn.Spec.IPsInUse = inUse }))).To(Succeed())
				}
			default:
				restartManager()
				restarts++
			}
		}
		GinkgoWriter.Printf("churn: %d operations, %d restarts, %d nodes live\n", operations, restarts, len(live))

		subnetParams, err := ipampool.FromSpec(&subnet.Spec)
		Expect(err).NotTo(HaveOccurred())
		Eventually(func(g Gomega) {
			held := map[v1.CIDR]string{}
			for name, poolName := range live {
				nn := nodeNetwork(ctx, g, name)
				c := meta.FindStatusCondition(nn.Status.Conditions, v1.ConditionAllocated)
				g.Expect(c).NotTo(BeNil(), "node %s", name)
				g.Expect(c.Status).To(Equal(metav1.ConditionTrue), "node %s: %s", name, c.Message)
				g.Expect(nn.Status.Pool).To(Equal(poolName))
				if poolName == overlay.Name {
					g.Expect(nn.Status.CIDRs).To(HaveLen(1), "node %s", name)
				} else {
					usable := 0
					for _, c := range nn.Status.CIDRs {
						usable += subnetParams.Usable(netip.MustParsePrefix(string(c)))
					}
					g.Expect(subnetParams.Enough(len(nn.Status.CIDRs), usable, int(nn.Spec.IPsInUse))).To(BeTrue(),
						"node %s holds %d usable addresses in %d batches for %d in use", name, usable, len(nn.Status.CIDRs), nn.Spec.IPsInUse)
				}
				for _, cidr := range nn.Status.CIDRs {
					g.Expect(held).NotTo(HaveKey(cidr), "%s held by %s and %s", cidr, held[cidr], name)
					held[cidr] = name
				}
			}
			// Every claim belongs to a live node and is in its status: nothing
			// leaked, nothing claimed twice.
			var claims v1.IPAMBlockList
			g.Expect(k8s.List(ctx, &claims)).To(Succeed())
			claimed := map[v1.CIDR]string{}
			for _, c := range claims.Items {
				if c.Spec.Pool != overlay.Name && c.Spec.Pool != subnet.Name {
					continue
				}
				g.Expect(live).To(HaveKey(c.Spec.Node), "claim %s of a deleted node", c.Name)
				claimed[c.Spec.CIDR] = c.Spec.Node
			}
			g.Expect(claimed).To(Equal(held))
			assertDisjoint(g, held)

			// Deleted nodes have no NodeNetwork left.
			for _, name := range names {
				if _, ok := live[name]; !ok {
					g.Expect(apierrors.IsNotFound(k8s.Get(ctx, client.ObjectKey{Name: name}, &v1.NodeNetwork{}))).To(BeTrue(), "NodeNetwork of deleted node %s", name)
				}
			}
		}).WithTimeout(time.Minute).Should(Succeed())
	})
})

func countIn(live map[string]string, poolName string) int {
	n := 0
	for _, p := range live {
		if p == poolName {
			n++
		}
	}
	return n
}

// pickLive picks a random live node, deterministically for a seed.
func pickLive(rng *rand.Rand, live map[string]string, names []string) string {
	var candidates []string
	for _, n := range names {
		if _, ok := live[n]; ok {
			candidates = append(candidates, n)
		}
	}
	return candidates[rng.IntN(len(candidates))]
}

// assertDisjoint checks that no two held CIDRs overlap.
func assertDisjoint(g Gomega, held map[v1.CIDR]string) {
	var prefixes []netip.Prefix
	for c := range held {
		prefixes = append(prefixes, netip.MustParsePrefix(string(c)))
	}
	slices.SortFunc(prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	for i := 1; i < len(prefixes); i++ {
		g.Expect(prefixes[i-1].Overlaps(prefixes[i])).To(BeFalse(), "%s and %s overlap", prefixes[i-1], prefixes[i])
	}
}
