package e2e

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	overlaySample = "config/samples/dataplane_v1_ipampool_overlay.yaml"
	subnetSample  = "config/samples/dataplane_v1_ipampool_subnet.yaml"
	demoNodes     = "hack/demo-nodes.yaml"
)

// TestIPAMWithKubectl drives IPAM the way hack/demo.sh does: the two pool
// samples, the four nodes of hack/demo-nodes.yaml (API objects only: there
// is no kubelet), the node side asking for more addresses, a refused
// overlapping pool and a node leaving.
func TestIPAMWithKubectl(t *testing.T) {
	t.Parallel()
	env := startOperator(t, 2*time.Minute)
	k := env.k

	// Pool -> the nodes it selects, the range it carves and the prefix
	// length of what a node receives.
	type poolWant struct {
		nodes []string
		cidr  netip.Prefix
		bits  int
	}
	pools := map[string]poolWant{
		"overlay-system": {[]string{"aks-system-0", "aks-system-1"}, netip.MustParsePrefix("192.168.0.0/16"), 24},
		"subnet-user":    {[]string{"aks-user-0", "aks-user-1"}, netip.MustParsePrefix("10.225.0.0/16"), 28},
	}
	nodeIPs := map[string]string{
		"aks-system-0": "10.224.0.4", "aks-system-1": "10.224.0.5",
		"aks-user-0": "10.224.0.6", "aks-user-1": "10.224.0.7",
	}
	nodes := []string{"aks-system-0", "aks-system-1", "aks-user-0", "aks-user-1"}

	// 1. Two pools and four nodes.
	out := k.mustRun("apply", "-f", overlaySample, "-f", subnetSample)
	wantContains(t, out, "ipampool.dataplane.sluice.dev/overlay-system created")
	wantContains(t, out, "ipampool.dataplane.sluice.dev/subnet-user created")
	k.mustRun("apply", "-f", demoNodes)
	for _, n := range nodes {
		k.mustRun("patch", "node", n, "--subresource=status", "--type=merge", "-p",
			fmt.Sprintf(`{"status":{"addresses":[{"type":"InternalIP","address":%q}]}}`, nodeIPs[n]))
	}
	// kubectl wait --for=create waits for one named object only (given
	// several, it fails at once on those not created yet).
	waitArgs := []string{"wait", "--for=condition=Allocated", "--timeout=60s"}
	for _, n := range nodes {
		k.mustRun("wait", "--for=create", "nodenetwork/"+n, "--timeout=60s")
		waitArgs = append(waitArgs, "nodenetwork/"+n)
	}
	k.mustRun(waitArgs...)

	// Every node holds one block of its own pool, none held twice.
	var list struct {
		Items []nodeNetwork `json:"items"`
	}
	k.mustJSON(&list, "get", "nodenetworks", "-o", "json")
	byNode := map[string]nodeNetwork{}
	for _, nn := range list.Items {
		byNode[nn.Metadata.Name] = nn
	}
	var all []netip.Prefix
	for poolName, want := range pools {
		for _, n := range want.nodes {
			nn, ok := byNode[n]
			if !ok {
				t.Errorf("no NodeNetwork %s", n)
				continue
			}
			wantEqual(t, "NodeNetwork "+n+" status.pool", nn.Status.Pool, poolName)
			if len(nn.Status.CIDRs) != 1 {
				t.Errorf("NodeNetwork %s holds %v; want one block", n, nn.Status.CIDRs)
				continue
			}
			block := netip.MustParsePrefix(nn.Status.CIDRs[0])
			if block.Bits() != want.bits || !want.cidr.Contains(block.Addr()) {
				t.Errorf("NodeNetwork %s holds %s; want a /%d of %s", n, block, want.bits, want.cidr)
			}
			all = append(all, block)
		}
	}
	slices.SortFunc(all, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	if len(slices.Compact(slices.Clone(all))) != len(nodes) {
		t.Errorf("blocks are not distinct: %v", all)
	}

	// The pools count what their nodes hold.
	k.mustRun("wait", "ipampool/overlay-system", "ipampool/subnet-user",
		"--for=jsonpath={.status.allocatedNodes}=2", "--timeout=30s")
	table := parseTable(t, k.mustRun("get", "ipampools"))
	wantRow(t, table, "overlay-system", map[string]string{
		"MODE": "Overlay", "CAPACITY": "65536", "ALLOCATED": "512", "FREE": "65024", "NODES": "2", "READY": "True", "EXHAUSTED": "False",
	})
	wantRow(t, table, "subnet-user", map[string]string{
		"MODE": "Subnet", "CAPACITY": "65536", "ALLOCATED": "32", "FREE": "65504", "NODES": "2", "READY": "True", "EXHAUSTED": "False",
	})

	// 2. The node side reports 20 pod IPs in use: 20 + minFreeIPs 8 needs
	// a second batch of 16.
	k.mustRun("patch", "nodenetwork", "aks-user-0", "--type=merge", "-p", `{"spec":{"ipsInUse":20}}`)
	gen := k.mustRun("get", "nodenetwork", "aks-user-0", "-o", "jsonpath={.metadata.generation}")
	k.mustRun("wait", "nodenetwork/aks-user-0", "--for=jsonpath={.status.observedGeneration}="+gen, "--timeout=30s")
	cidrs := strings.Fields(k.mustRun("get", "nodenetwork", "aks-user-0", "-o", "jsonpath={.status.cidrs[*]}"))
	if len(cidrs) != 2 || !slices.Contains(cidrs, byNode["aks-user-0"].Status.CIDRs[0]) {
		t.Errorf("aks-user-0 holds %v after ipsInUse 20; want its first batch %s and a second", cidrs, byNode["aks-user-0"].Status.CIDRs[0])
	}
	for _, c := range cidrs {
		if p := netip.MustParsePrefix(c); p.Bits() != 28 || slices.ContainsFunc(all, func(o netip.Prefix) bool { return o != p && o.Overlaps(p) }) {
			t.Errorf("aks-user-0 batch %s is not a /28 of its own", c)
		}
	}
	k.mustRun("wait", "ipampool/subnet-user", "--for=jsonpath={.status.allocated}=48", "--timeout=30s")

	// 3. A pool overlapping another is refused.
	bad := `apiVersion: dataplane.sluice.dev/v1
kind: IPAMPool
metadata:
  name: overlay-gpu
spec:
  mode: Overlay
  cidrs: [192.168.128.0/17]
  nodeSelector:
    matchLabels:
      kubernetes.azure.com/agentpool: gpu
`
	combined, err := k.runStdin(bad, "apply", "-f", "-")
	if err == nil {
		t.Errorf("kubectl apply of a pool overlapping overlay-system succeeded; want it refused")
	}
	wantContains(t, combined, "overlaps")
	wantContains(t, combined, "overlaps 192.168.0.0/16 of IPAMPool overlay-system")
	if out, err := k.run("get", "ipampool", "overlay-gpu"); err == nil {
		t.Errorf("the refused pool exists:\n%s", out)
	}

	// 4. A node leaves: its NodeNetwork goes and its block returns to the pool.
	block := k.mustRun("get", "ipamblocks", "-l", "sluice.dev/node=aks-system-1", "-o", "name")
	if block == "" || strings.Contains(block, "\n") {
		t.Fatalf("aks-system-1 holds IPAMBlocks %q; want exactly one", block)
	}
	wantEqual(t, "spec.cidr of "+block,
		k.mustRun("get", block, "-o", "jsonpath={.spec.cidr}"), byNode["aks-system-1"].Status.CIDRs[0])
	k.mustRun("delete", "node", "aks-system-1")
	k.mustRun("wait", "--for=delete", "nodenetwork/aks-system-1", block, "--timeout=30s")
	wantEqual(t, "IPAMBlocks of aks-system-1",
		k.mustRun("get", "ipamblocks", "-l", "sluice.dev/node=aks-system-1", "-o", "name"), "")
	k.mustRun("wait", "ipampool/overlay-system", "--for=jsonpath={.status.allocatedNodes}=1", "--timeout=30s")
	table = parseTable(t, k.mustRun("get", "ipampools"))
	wantRow(t, table, "overlay-system", map[string]string{"ALLOCATED": "256", "FREE": "65280", "NODES": "1"})
	wantContains(t, k.mustRun("get", "ipamblocks"), byNode["aks-system-0"].Status.CIDRs[0])

	t.Logf("done %s after start", time.Since(env.start).Round(time.Millisecond))
}

// nodeNetwork is the part of a NodeNetwork the test reads, decoded from
// kubectl's JSON (the test drives the operator like a user, without the
// API package).
type nodeNetwork struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Status struct {
		Pool  string   `json:"pool"`
		CIDRs []string `json:"cidrs"`
	} `json:"status"`
}

// columnGap separates kubectl's table columns (headers such as "IN USE"
// hold single spaces).
var columnGap = regexp.MustCompile(`\S+( \S+)*`)

// parseTable reads kubectl's default table output into rows keyed by the
// first column, each mapping a header to its cell. Cells are cut at the
// headers' offsets, so empty cells stay empty.
func parseTable(t *testing.T, out string) map[string]map[string]string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) < 2 {
		t.Fatalf("kubectl printed no table rows:\n%s", out)
	}
	spans := columnGap.FindAllStringIndex(lines[0], -1)
	rows := map[string]map[string]string{}
	for _, line := range lines[1:] {
		row := map[string]string{}
		for i, span := range spans {
			from, to := span[0], len(line)
			if i+1 < len(spans) {
				to = min(spans[i+1][0], len(line))
			}
			cell := ""
			if from < len(line) {
				cell = strings.TrimSpace(line[from:to])
			}
			row[lines[0][span[0]:span[1]]] = cell
		}
		rows[row["NAME"]] = row
	}
	return rows
}

func wantRow(t *testing.T, table map[string]map[string]string, name string, want map[string]string) {
	t.Helper()
	row, ok := table[name]
	if !ok {
		t.Errorf("no row %s in the table", name)
		return
	}
	for col, v := range want {
		if row[col] != v {
			t.Errorf("%s: %s = %q; want %q", name, col, row[col], v)
		}
	}
}
