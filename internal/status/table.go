package status

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	v1 "github.com/sluice-dev/sluice/api/v1"
)

// maxProblemLines bounds the problems the table lists: an exhausted pool
// on a large cluster makes one problem per waiting node, and the first
// lines say what is wrong. -o json lists them all.
const maxProblemLines = 20

// WriteTable prints r for a person: one section per part of the dataplane,
// then the problems and a last line that is "Status: OK" or counts them.
func WriteTable(w io.Writer, r *Report) error {
	// Each table gets its own tabwriter: columns align within a table,
	// not across sections.
	var rows [][]string
	table := func(cells ...string) { rows = append(rows, cells) }
	flush := func() {
		var buf bytes.Buffer
		tw := tabwriter.NewWriter(&buf, 0, 4, 2, ' ', 0)
		for _, row := range rows {
			fmt.Fprintln(tw, "  "+strings.Join(row, "\t"))
		}
		_ = tw.Flush()
		// An empty last cell leaves the padding of the one before it.
		for l := range strings.Lines(buf.String()) {
			fmt.Fprintln(w, strings.TrimRight(l, " \n"))
		}
		rows = nil
	}
	line := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }

	if dpc := r.DataplaneConfig; dpc == nil {
		line("DataplaneConfig: none")
	} else {
		line("DataplaneConfig %s: dataplane %s, policy %s, plugin %s, routing %s, kube-proxy replacement %s",
			dpc.Name, orDash(dpc.NetworkDataplane), orDash(dpc.NetworkPolicy), plugin(dpc), routing(dpc), onOff(dpc.KubeProxyReplacement))
		if dpc.PodCIDR != "" || len(dpc.IPAMPools) > 0 {
			// No pool named means every pool serves the cluster.
			pools := "all"
			if len(dpc.IPAMPools) > 0 {
				pools = strings.Join(dpc.IPAMPools, ", ")
			}
			line("  pod CIDR %s, IPAM pools %s", orDash(dpc.PodCIDR), pools)
		}
		line("  generation %d, observed %d, agent image %s", dpc.Generation, dpc.ObservedGeneration, orDash(dpc.AgentImage))
		for _, c := range dpc.Conditions {
			table(c.Type, c.Status, c.Reason, c.Message)
		}
		flush()
	}

	a := r.Agents
	line("\nAgents (DaemonSet %s): desired %d, ready %d, updated %d", a.DaemonSet, a.Desired, a.Ready, a.Updated)
	if len(a.Nodes) == 0 {
		line("  no DataplaneNode reports")
	} else {
		table("NODE", "READY", "ENDPOINTS", "ROUTES", "LAST REPORT", "VERSION", "REASON")
		for _, n := range a.Nodes {
			reason := n.Reason
			if !n.Ready && n.Message != "" {
				reason += ": " + n.Message
			}
			table(n.Name, yesNo(n.Ready), fmt.Sprint(n.Endpoints), nodeRoutes(n.Routing), age(n.LastReportTime, r), orDash(n.AgentVersion), reason)
		}
		flush()
		writeRouteProblems(line, table, flush, a.Nodes)
	}

	if len(r.Pools) == 0 {
		line("\nIPAM pools: none")
	} else {
		line("\nIPAM pools:")
		table("NAME", "MODE", "ALLOCATED/CAPACITY", "FREE", "NODES", "WAITING", "STATE")
		for _, pool := range r.Pools {
			table(pool.Name, pool.Mode, fmt.Sprintf("%d/%d", pool.Allocated, pool.Capacity), fmt.Sprint(pool.Free),
				fmt.Sprint(pool.Nodes), fmt.Sprint(len(pool.WaitingNodes)), poolState(pool))
		}
		flush()
	}
	if len(r.UnallocatedNodeNetworks) > 0 {
		line("\nNodeNetworks not Allocated:")
		table("NODE", "POOL", "REASON")
		for _, nn := range r.UnallocatedNodeNetworks {
			table(nn.Name, orDash(nn.Pool), nn.Reason)
		}
		flush()
	}

	line("")
	if r.Healthy {
		_, err := fmt.Fprintln(w, "Status: OK")
		return err
	}
	line("Problems:")
	for i, q := range r.Problems {
		if i == maxProblemLines {
			line("  ... and %d more (-o json lists them all)", len(r.Problems)-i)
			break
		}
		line("  %s: %s: %s", q.Object, q.Reason, q.Message)
	}
	_, err := fmt.Fprintf(w, "Status: %d %s\n", len(r.Problems), plural(len(r.Problems), "problem", "problems"))
	return err
}

// nodeRoutes is a node's ROUTES cell: its routing mode, the routes it
// keeps and how many it can't install, e.g. "Native 4 (1 not routed)";
// "-" when the agent doesn't route.
func nodeRoutes(r *NodeRouting) string {
	if r == nil {
		return "-"
	}
	cell := fmt.Sprintf("%s %d", r.Mode, r.Routes)
	if n := len(r.Problems) + int(r.ProblemsOmitted); n > 0 {
		cell += fmt.Sprintf(" (%d not routed)", n)
	}
	return cell
}

// writeRouteProblems lists the pod ranges nodes can't route, at most
// maxProblemLines of them.
func writeRouteProblems(line func(string, ...any), table func(...string), flush func(), nodes []AgentNode) {
	var rows [][]string
	omitted := 0
	for _, n := range nodes {
		if n.Routing == nil {
			continue
		}
		omitted += int(n.Routing.ProblemsOmitted)
		for _, q := range n.Routing.Problems {
			rows = append(rows, []string{n.Name, q.Destination, orDash(q.Node), q.Reason, q.Message})
		}
	}
	if len(rows)+omitted == 0 {
		return
	}
	line("\nRoutes not installed:")
	table("NODE", "DESTINATION", "OWNER", "REASON", "MESSAGE")
	for i, row := range rows {
		if i == maxProblemLines {
			omitted += len(rows) - i
			break
		}
		table(row...)
	}
	flush()
	if omitted > 0 {
		line("  ... and %d more (-o json lists them; the DataplaneNodes count the rest)", omitted)
	}
}

func plugin(dpc *DataplaneConfig) string {
	if dpc.NetworkPluginMode == "" {
		return orDash(dpc.NetworkPlugin)
	}
	return fmt.Sprintf("%s (%s)", dpc.NetworkPlugin, dpc.NetworkPluginMode)
}

// routing is the routing mode in force with what a user checks next: the
// tunnel's protocol and the MTU pods get, e.g. "Tunnel (VXLAN, pod MTU 1450)".
func routing(dpc *DataplaneConfig) string {
	switch {
	case dpc.RoutingMode == "":
		// An operator that predates routing wrote no mode.
		return "-"
	case dpc.TunnelProtocol != "":
		return fmt.Sprintf("%s (%s, pod MTU %d)", dpc.RoutingMode, dpc.TunnelProtocol, dpc.PodMTU)
	default:
		return fmt.Sprintf("%s (pod MTU %d)", dpc.RoutingMode, dpc.PodMTU)
	}
}

// poolState is the pool's conditions that are not in their healthy
// state, or "Ready".
func poolState(pool Pool) string {
	var bad []string
	for _, c := range pool.Conditions {
		// Ready is healthy when True; Exhausted and Degraded when False.
		healthy := (c.Type == v1.ConditionReady) == (c.Status == string(metav1.ConditionTrue))
		if !healthy {
			bad = append(bad, fmt.Sprintf("%s=%s (%s)", c.Type, c.Status, c.Reason))
		}
	}
	if len(bad) > 0 {
		return strings.Join(bad, ", ")
	}
	if len(pool.Conditions) == 0 {
		return "no status yet"
	}
	return "Ready"
}

// age is how long before the report t was, as kubectl prints ages.
func age(t *time.Time, r *Report) string {
	if t == nil {
		return "-"
	}
	return duration.HumanDuration(r.Time.Sub(*t)) + " ago"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
