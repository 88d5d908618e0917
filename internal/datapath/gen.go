package datapath

// Compiles bpf/sluice.c into sluice_bpfel.o and the Go bindings in
// sluice_bpfel.go (both committed). Clang version and flags are pinned
// here; `make generate-bpf` runs it and `make verify` checks the output is
// current.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror" -target bpfel -type endpoint_info -type ipcache_key -type policy_key -type policy_outer_key -type ct_key -type ct_value -type counters -type iface_info -type direction -type peer_class -type policy_mask -type tcx_action_base sluice ../../bpf/sluice.c -- -I../../bpf/include
