package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/sluice-dev/sluice/internal/scheme"
	"github.com/sluice-dev/sluice/internal/status"
)

const statusLong = `Shows the cluster's dataplane at a glance, and what is wrong with it:

  DataplaneConfig  the dataplane and policy engine in force (status.effective)
                   and the Ready, Progressing, Degraded and IPAMReady conditions
  Agents           the agent DaemonSet's rollout (desired, ready, updated) and
                   every node agent's report (DataplaneNode): ready or not, its
                   endpoints, its last apply error, when it last changed
  IPAM pools       mode, allocated/capacity, free, nodes waiting, and any
                   Exhausted or Degraded condition with its reason
  NodeNetworks     those whose addresses are not Allocated, with the reason
  Problems         each unhealthy thing with its reason and message, then
                   "Status: OK" or the number of problems

-o json and -o yaml print the same report as a document whose field names are
stable (internal/status.Report):
  {"time": ..., "dataplaneConfig": {"networkDataplane": ..., "conditions": [...]},
   "agents": {"daemonSet": "ns/name", "desired": 3, "updated": 3, "ready": 3,
              "nodes": [{"name": ..., "ready": true, "endpoints": 12, ...}]},
   "pools": [...], "unallocatedNodeNetworks": [...],
   "problems": [{"object": "IPAMPool user", "reason": "NodesWaiting", "message": ...}],
   "healthy": false}

The agent DaemonSet is looked up in -n (default sluice-system, the operator's
namespace; the kubeconfig context's namespace is not used) under --agent-name.

Exit status: 0 healthy (no problems), 1 something is not healthy (a rollout in
progress included) or the API server can't be reached, 2 a usage error.`

func newStatusCmd() *cobra.Command {
	var (
		cluster   clusterFlags
		agentName string
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the cluster's dataplane at a glance; exit 1 when it is not healthy",
		Long:  statusLong,
		Example: `  sluicectl status
  sluicectl status -o json | jq '.problems'
  until sluicectl status >/dev/null; do sleep 5; done   # wait for a healthy dataplane`,
		Args: noArgs,
	}
	cluster.bind(cmd.Flags())
	cmd.Flags().StringVar(&agentName, "agent-name", status.DefaultAgentName, "Name of the agent DaemonSet (the operator's --agent-name).")
	output := bindOutput(cmd, outputTable, outputTable, outputJSON, outputYAML)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := output.validate(cmd); err != nil {
			return err
		}
		cfg, err := cluster.restConfig()
		if err != nil {
			return failure(cmd, fmt.Errorf("load the kubeconfig: %w", err))
		}
		c, err := client.New(cfg, client.Options{Scheme: scheme.New()})
		if err != nil {
			return failure(cmd, err)
		}
		agent := client.ObjectKey{Namespace: cluster.namespace(status.DefaultAgentNamespace), Name: agentName}
		obs, err := status.Gather(cmd.Context(), c, agent)
		if err != nil {
			return failure(cmd, fmt.Errorf("the API server at %s: %w", cfg.Host, err))
		}
		report := status.Build(obs, time.Now())
		if output.format == outputTable {
			err = status.WriteTable(cmd.OutOrStdout(), report)
		} else {
			err = writeDocument(cmd.OutOrStdout(), output.format, report)
		}
		if err != nil {
			return failure(cmd, fmt.Errorf("write the report: %w", err))
		}
		if !report.Healthy {
			return exitWith(exitFailure)
		}
		return nil
	}
	return cmd
}
