#include "CNUMA.h"

#include <numa.h>
#include <numaif.h>

int cnuma_nodes(void) {
    if (numa_available() < 0) return 1;
    return numa_max_node() + 1;
}

int cnuma_prefer(void *addr, size_t len, int node) {
    if (numa_available() < 0 || node < 0 || node > numa_max_node()) return -1;
    struct bitmask *mask = numa_allocate_nodemask();
    numa_bitmask_setbit(mask, (unsigned)node);
    long r = mbind(addr, len, MPOL_PREFERRED, mask->maskp, mask->size + 1, 0);
    numa_bitmask_free(mask);
    return r == 0 ? 0 : -1;
}

int cnuma_node_of(void *addr) {
    if (numa_available() < 0) return -1;
    int node = -1;
    if (get_mempolicy(&node, NULL, 0, addr, MPOL_F_NODE | MPOL_F_ADDR) != 0) return -1;
    return node;
}
