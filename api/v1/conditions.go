package v1

// Condition types of DataplaneConfig.
const (
	// ConditionReady is True when the effective configuration is in force on
	// every node that should run the agent.
	ConditionReady = "Ready"
	// ConditionProgressing is True while the agent rolls out a new
	// configuration.
	ConditionProgressing = "Progressing"
	// ConditionDegraded is True when the operator can't put the
	// configuration in force, or agents are unavailable.
	ConditionDegraded = "Degraded"
)

// Condition reasons of DataplaneConfig.
const (
	// ReasonAgentAvailable: every desired node runs an up-to-date, ready agent.
	ReasonAgentAvailable = "AgentAvailable"
	// ReasonAgentRollingOut: the DaemonSet has not yet updated every node.
	ReasonAgentRollingOut = "AgentRollingOut"
	// ReasonAgentUnavailable: some nodes have no ready agent.
	ReasonAgentUnavailable = "AgentUnavailable"
	// ReasonAgentPending: the DaemonSet controller has not yet observed the
	// latest DaemonSet spec.
	ReasonAgentPending = "AgentPending"
	// ReasonNoNodes: no node matches the agent DaemonSet yet.
	ReasonNoNodes = "NoNodes"
	// ReasonApplyFailed: the operator could not write the agent objects.
	ReasonApplyFailed = "ApplyFailed"
	// ReasonAsExpected: nothing is wrong (the reason of a False Degraded or
	// Progressing condition).
	ReasonAsExpected = "AsExpected"
)

// IPAM condition of DataplaneConfig.
const (
	// ConditionIPAMReady is True when the IPAM pools the DataplaneConfig
	// uses exist, are valid and have room for every node.
	ConditionIPAMReady = "IPAMReady"
	// ReasonPoolsReady: every pool in use is ready and not exhausted.
	ReasonPoolsReady = "PoolsReady"
	// ReasonPoolNotReady: a pool in use is not ready (invalid ranges).
	ReasonPoolNotReady = "PoolNotReady"
	// ReasonNoPools: Sluice's CNI plugin is in use but no IPAMPool exists.
	ReasonNoPools = "NoPools"
	// ReasonExternalIPAM: pod addresses belong to a CNI the user brings.
	ReasonExternalIPAM = "ExternalIPAM"
)
