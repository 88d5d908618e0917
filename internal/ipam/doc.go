// Package ipam is the operator's pure IP address allocator: it carves
// aligned blocks of one fixed prefix length per IP family out of a pool's
// CIDRs. It talks to no API server and touches no kernel state.
//
// Both pool modes use it. In Overlay mode a node gets one block per family
// (IPv4 /24, IPv6 /120 by default) out of a private pod CIDR; in Subnet mode
// a node gets as many aligned batches of 2^k addresses (default 16, a /28)
// out of the shared pod subnet as BatchesWanted says, and gives whole
// batches back. The caller computes the prefix length (BatchLen for Subnet
// mode) and hands it to NewSpace.
//
// What the package owns: the arithmetic of blocks (which blocks exist, the
// lowest free one, whether one is taken), the IPAMBlock object name of a
// block (BlockName, ParseBlockName), the addresses inside a block a node
// must not hand to a pod (ExcludedAddresses), and the Subnet-mode batch
// sizing rule (BatchesWanted). The allocation state itself is owned by the
// API: every block in use has an IPAMBlock claim object, and a restarted
// operator rebuilds a Space by calling Claim once per object. A Space is a
// cache of those objects, never the source of truth.
//
// # Data structure
//
// Each CIDR of a Space numbers its blocks 0..2^(blockLen-cidrLen)-1 and
// keeps a 64-ary hierarchical bitmap over them: level 0 has one bit per
// block (set = in use), and a bit of level k+1 is set when the 64-bit word
// below it at level k is full. The top level is a single word. Finding the
// lowest free block descends from the top, one TrailingZeros64 per level;
// Claim and Release touch one word per level and stop as soon as a word's
// fullness doesn't change. With at most 2^62 blocks per CIDR there are at
// most 11 levels, so Allocate, Claim and Release are O(log64 n) (O(1) for
// practical purposes: 2 levels for a /8 of /24s, 3 for a /11 of /28s).
//
// Each level is stored densely (a []uint64, 8 bytes per 64 blocks) when it
// has at most 2^16 words, and sparsely (a map holding only its non-zero
// words) otherwise. Dense IPv4 spaces are therefore plain bitmaps (a /8 of
// /24 blocks takes 8 KiB, a /11 of /28 batches 16 KiB), while an IPv6 space
// whose block count is astronomical (a /64 of /120 blocks has 2^56) costs
// memory in proportion to the blocks in use, not to its size. The sparse
// levels need no separate next-free cursor: the fullness bits of the levels
// above lead straight to the lowest free block, even after releases. The
// trade-off is a few word reads per operation instead of one, and map
// lookups (slower than slice indexing) only where a flat bitmap would not
// fit in memory.
//
// # Policy
//
// Allocate returns the lowest free block, CIDRs in the order given, so
// allocations stay packed at the low end of the pool and the result is
// deterministic: the same claims always lead to the same next block, which
// makes rebuilt state and tests reproducible. Release returns a block to
// the pool at once; the allocator keeps no quarantine. Reuse is safe
// because the caller deletes a block's claim object only after the node
// has stopped using it, and creates the claim object of a newly allocated
// block before handing it out (a create that loses a race is answered by
// Release and another Allocate).
//
// A Space is safe for concurrent use by multiple goroutines.
package ipam
