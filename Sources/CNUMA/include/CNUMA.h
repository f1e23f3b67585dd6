#ifndef CNUMA_H
#define CNUMA_H

#include <stddef.h>

/// NUMA placement of buffer-pool memory through libnuma (static in `make static`).

/// How many NUMA nodes the machine has (1 where the kernel has no NUMA).
int cnuma_nodes(void);
/// Asks that the pages of [addr, addr+len) come from `node` (preferred: another node's memory if
/// it has none left, rather than failing). Call before the pages are touched. 0 or -1 (errno).
int cnuma_prefer(void *addr, size_t len, int node);
/// The node the page at `addr` is on, or -1 (not present, or no NUMA).
int cnuma_node_of(void *addr);

#endif
