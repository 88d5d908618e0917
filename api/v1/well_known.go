package v1

// Labels and finalizers the operator puts on the objects it manages.
const (
	// LabelPool on an IPAMBlock or NodeNetwork names the IPAMPool.
	LabelPool = "sluice.dev/pool"
	// LabelNode on an IPAMBlock names the node that holds it.
	LabelNode = "sluice.dev/node"
	// FinalizerReleaseAddresses keeps a NodeNetwork until the blocks its
	// node held are released back to the pool.
	FinalizerReleaseAddresses = "dataplane.sluice.dev/release-addresses"
)

// IPAM defaults for fields an IPAMPool may leave unset.
const (
	DefaultBlockSize      int32 = 24
	DefaultIPv6BlockSize  int32 = 120
	DefaultBatchSize      int32 = 16
	DefaultMaxPodsPerNode int32 = 250
)

// Condition types and reasons of IPAMPool and NodeNetwork.
const (
	// ConditionExhausted is True on an IPAMPool when nodes wait for
	// addresses it doesn't have.
	ConditionExhausted = "Exhausted"
	// ConditionAllocated is True on a NodeNetwork when the node holds the
	// addresses it needs.
	ConditionAllocated = "Allocated"

	// ReasonPoolReady: the pool's ranges are valid and in use.
	ReasonPoolReady = "PoolReady"
	// ReasonInvalidRanges: the pool's ranges can't be carved into blocks.
	ReasonInvalidRanges = "InvalidRanges"
	// ReasonNodesWaiting: nodes need addresses the pool doesn't have.
	ReasonNodesWaiting = "NodesWaiting"
	// ReasonSpaceAvailable: no node waits for addresses.
	ReasonSpaceAvailable = "SpaceAvailable"
	// ReasonAllocated: the node holds what it needs.
	ReasonAllocated = "Allocated"
	// ReasonPoolExhausted: the node's pool has no free block.
	ReasonPoolExhausted = "PoolExhausted"
	// ReasonNoPool: no IPAMPool selects the node.
	ReasonNoPool = "NoPool"
	// ReasonPoolConflict: more than one IPAMPool selects the node.
	ReasonPoolConflict = "PoolConflict"
	// ReasonPoolChanged: the node now matches another pool but still holds
	// addresses of the old one.
	ReasonPoolChanged = "PoolChanged"
	// ReasonPoolMissing: a DataplaneConfig names a pool that doesn't exist.
	ReasonPoolMissing = "PoolMissing"
)
