// Package ipampool turns an IPAMPool spec into the parameters the allocator
// works with (block lengths, batch size, watermarks, max pods) and checks
// the rules about one pool that CEL can't express cheaply: ranges that
// overlap each other, a block too small for maxPodsPerNode, watermarks
// that would make nodes release and request the same batch forever.
//
// The webhook and the reconciler both read pools through this package, so
// what admission accepts is exactly what the allocator is given.
package ipampool
