package datapath

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/sluice-dev/sluice/internal/policy"
)

// BenchmarkVerdict measures the kernel's time per packet (BPF_PROG_TEST_RUN
// with a repeat count; the kernel reports the mean per run) as B's ingress
// policy grows: ns/pkt is sluice_to_pod, the hook that looks the policy
// up; ns/verdict adds sluice_from_pod (A's egress, not isolated, which
// only tracks the flow). The packet is allowed by an entry of its exact
// class, so it takes the ipcache lookup, one policy lookup, a conntrack
// lookup and a conntrack refresh. entries=100000 also reports x-of-1k,
// its ns/pkt over that of entries=1000.
func BenchmarkVerdict(b *testing.B) {
	d := newDatapath(b, Options{})
	perPkt := map[int]float64{}
	for _, n := range []int{10, 1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			entries := make([]policy.Entry, 0, n)
			for i := range n {
				c := policy.FirstDynamicClass + policy.Class(i/4)
				switch i % 4 {
				case 0:
					entries = append(entries, entry(c, policy.ProtoTCP, 80, 16))
				case 1:
					entries = append(entries, entry(c, policy.ProtoTCP, 8080, 12))
				case 2:
					entries = append(entries, entry(c, policy.ProtoUDP, 53, 16))
				default:
					entries = append(entries, entry(c, policy.ProtoSCTP, uint16(i), 16))
				}
			}
			// A is in the class of the middle entries.
			classOfA := policy.FirstDynamicClass + policy.Class(n/8)
			snap := &policy.Snapshot{
				IPCache: []policy.IPCacheEntry{
					{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Class: policy.ClassWorld},
					{Prefix: netip.MustParsePrefix("10.0.0.0/16"), Class: classCIDR},
					{Prefix: netip.PrefixFrom(ipA, 32), Class: classOfA},
				},
				Endpoints: []policy.EndpointPolicy{
					{ID: idA, IP: ipA},
					{ID: idB, IP: ipB, IngressIsolated: true, Ingress: entries},
				},
			}
			if err := d.Apply(snap); err != nil {
				b.Fatal(err)
			}
			pkt := tcp(ipA, ipB, 8085)
			if ok, err := d.Verdict(pkt); err != nil || !ok {
				b.Fatalf("probe not allowed: %v %v", ok, err)
			}
			frame, err := pkt.Frame()
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var total float64
			for i, p := range progs(d) {
				ret, per, err := p.Benchmark(frame, b.N, nil)
				if err != nil {
					b.Fatal(err)
				}
				if ret != tcActOK {
					b.Fatalf("%s dropped the probe", p)
				}
				total += float64(per.Nanoseconds())
				if i == 1 {
					perPkt[n] = float64(per.Nanoseconds())
					b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
				}
			}
			b.ReportMetric(total, "ns/verdict")
			if n == 100_000 && perPkt[1_000] > 0 {
				// How the cost grows: ns/pkt at 100,000 over ns/pkt at 1,000.
				b.ReportMetric(perPkt[n]/perPkt[1_000], "x-of-1k")
			}
		})
	}
}
