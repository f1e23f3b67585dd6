#define _GNU_SOURCE
#include "CXDP.h"

#include <errno.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef AF_XDP
#define AF_XDP 44
#endif
#ifndef SOL_XDP
#define SOL_XDP 283
#endif

struct dx_filter { int map; int prog; int link; int native; };

static int bpf(int cmd, union bpf_attr *attr) { return (int)syscall(__NR_bpf, cmd, attr, sizeof *attr); }

#define INSN(c, d, s, o, i) ((struct bpf_insn){ .code = (c), .dst_reg = (d), .src_reg = (s), .off = (o), .imm = (i) })

dx_filter *dx_filter_attach(int ifindex, uint16_t ethertype, int queues, char *err, size_t errlen) {
    dx_filter *f = calloc(1, sizeof *f);
    f->map = f->prog = f->link = -1;
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_type = BPF_MAP_TYPE_XSKMAP;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = (uint32_t)queues;
    if ((f->map = bpf(BPF_MAP_CREATE, &a)) < 0) { snprintf(err, errlen, "creating the XSK map: %s", strerror(errno)); goto fail; }
    // The EtherType as a little-endian load of its two bytes on the wire reads it.
    int32_t wire = (int32_t)(((ethertype & 0xff) << 8) | (ethertype >> 8));
    struct bpf_insn prog[] = {
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0),            // r6 = ctx (struct xdp_md *)
        INSN(BPF_LDX | BPF_W | BPF_MEM, 2, 6, 0, 0),              // r2 = ctx->data
        INSN(BPF_LDX | BPF_W | BPF_MEM, 3, 6, 4, 0),              // r3 = ctx->data_end
        INSN(BPF_ALU64 | BPF_MOV | BPF_X, 4, 2, 0, 0),            // r4 = data + 14 (an Ethernet header)
        INSN(BPF_ALU64 | BPF_ADD | BPF_K, 4, 0, 0, 14),
        INSN(BPF_JMP | BPF_JGT | BPF_X, 4, 3, 8, 0),              // shorter: pass
        INSN(BPF_LDX | BPF_H | BPF_MEM, 5, 2, 12, 0),             // r5 = the EtherType
        INSN(BPF_JMP | BPF_JNE | BPF_K, 5, 0, 6, wire),           // not ours: pass
        INSN(BPF_LDX | BPF_W | BPF_MEM, 2, 6, 16, 0),             // r2 = ctx->rx_queue_index
        INSN(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, f->map),  // r1 = the XSK map
        INSN(0, 0, 0, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS),     // no socket on that queue: pass
        INSN(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_redirect_map),
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        INSN(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, XDP_PASS),     // pass: r0 = XDP_PASS
        INSN(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    char log[4096] = {0};
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_XDP;
    a.insns = (uintptr_t)prog;
    a.insn_cnt = sizeof prog / sizeof prog[0];
    a.license = (uintptr_t)"GPL";
    a.log_buf = (uintptr_t)log;
    a.log_size = sizeof log;
    a.log_level = 1;
    if ((f->prog = bpf(BPF_PROG_LOAD, &a)) < 0) {
        snprintf(err, errlen, "loading the XDP program: %s%s%.300s", strerror(errno), log[0] ? "; verifier: " : "", log);
        goto fail;
    }
    // Native first; a driver without XDP support gets the generic hook.
    for (int native = 1; native >= 0; native--) {
        memset(&a, 0, sizeof a);
        a.link_create.prog_fd = (uint32_t)f->prog;
        a.link_create.target_ifindex = (uint32_t)ifindex;
        a.link_create.attach_type = BPF_XDP;
        a.link_create.flags = native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE;
        if ((f->link = bpf(BPF_LINK_CREATE, &a)) >= 0) { f->native = native; return f; }
    }
    snprintf(err, errlen, "attaching the XDP program to interface %d: %s", ifindex, strerror(errno));
fail:
    dx_filter_detach(f);
    return NULL;
}

void dx_filter_detach(dx_filter *f) {
    if (!f) return;
    if (f->link >= 0) close(f->link);
    if (f->prog >= 0) close(f->prog);
    if (f->map >= 0) close(f->map);
    free(f);
}

const char *dx_filter_mode(dx_filter *f) { return f->native ? "native" : "generic"; }

/// One of the four rings an AF_XDP socket shares with the kernel.
typedef struct {
    uint32_t *producer, *consumer, *flags;
    void *entries;
    uint32_t mask;
    void *map;
    size_t maplen;
} ring;

struct dx_socket { int fd; int zerocopy; ring rx, tx, fill, done; };

static int map_ring(int fd, ring *r, uint32_t n, size_t entry, struct xdp_ring_offset *o, off_t pgoff) {
    r->maplen = o->desc + n * entry;
    r->map = mmap(NULL, r->maplen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, pgoff);
    if (r->map == MAP_FAILED) { r->map = NULL; return -1; }
    r->producer = (uint32_t *)((char *)r->map + o->producer);
    r->consumer = (uint32_t *)((char *)r->map + o->consumer);
    r->flags = (uint32_t *)((char *)r->map + o->flags);
    r->entries = (char *)r->map + o->desc;
    r->mask = n - 1;
    return 0;
}

static dx_socket *open_socket(dx_filter *f, int ifindex, int queue, void *umem, uint64_t umem_size, uint32_t frame_size,
                              uint32_t n, int zerocopy, char *err, size_t errlen);

dx_socket *dx_socket_open(dx_filter *f, int ifindex, int queue, void *umem, uint64_t umem_size, uint32_t frame_size,
                          uint32_t n, char *err, size_t errlen) {
    // Zero-copy where the driver has it (the NIC reads and writes the UMEM itself); copy mode
    // where it does not (veth, most virtio): a fresh socket, as a failed bind may leave state behind.
    dx_socket *s = open_socket(f, ifindex, queue, umem, umem_size, frame_size, n, 1, err, errlen);
    return s ? s : open_socket(f, ifindex, queue, umem, umem_size, frame_size, n, 0, err, errlen);
}

int dx_socket_zerocopy(dx_socket *s) { return s->zerocopy; }

static dx_socket *open_socket(dx_filter *f, int ifindex, int queue, void *umem, uint64_t umem_size, uint32_t frame_size,
                              uint32_t n, int zerocopy, char *err, size_t errlen) {
    dx_socket *s = calloc(1, sizeof *s);
    s->zerocopy = zerocopy;
    if ((s->fd = socket(AF_XDP, SOCK_RAW | SOCK_CLOEXEC, 0)) < 0) { snprintf(err, errlen, "AF_XDP socket: %s", strerror(errno)); goto fail; }
    struct xdp_umem_reg reg = { .addr = (uintptr_t)umem, .len = umem_size, .chunk_size = frame_size, .headroom = 0 };
    if (setsockopt(s->fd, SOL_XDP, XDP_UMEM_REG, &reg, sizeof reg)) { snprintf(err, errlen, "registering the UMEM: %s", strerror(errno)); goto fail; }
    if (setsockopt(s->fd, SOL_XDP, XDP_UMEM_FILL_RING, &n, sizeof n) || setsockopt(s->fd, SOL_XDP, XDP_UMEM_COMPLETION_RING, &n, sizeof n) ||
        setsockopt(s->fd, SOL_XDP, XDP_RX_RING, &n, sizeof n) || setsockopt(s->fd, SOL_XDP, XDP_TX_RING, &n, sizeof n)) {
        snprintf(err, errlen, "sizing the rings to %u: %s", n, strerror(errno));
        goto fail;
    }
    struct xdp_mmap_offsets off;
    socklen_t len = sizeof off;
    if (getsockopt(s->fd, SOL_XDP, XDP_MMAP_OFFSETS, &off, &len)) { snprintf(err, errlen, "ring offsets: %s", strerror(errno)); goto fail; }
    if (map_ring(s->fd, &s->rx, n, sizeof(struct xdp_desc), &off.rx, XDP_PGOFF_RX_RING) ||
        map_ring(s->fd, &s->tx, n, sizeof(struct xdp_desc), &off.tx, XDP_PGOFF_TX_RING) ||
        map_ring(s->fd, &s->fill, n, sizeof(uint64_t), &off.fr, XDP_UMEM_PGOFF_FILL_RING) ||
        map_ring(s->fd, &s->done, n, sizeof(uint64_t), &off.cr, XDP_UMEM_PGOFF_COMPLETION_RING)) {
        snprintf(err, errlen, "mapping the rings: %s", strerror(errno));
        goto fail;
    }
    struct sockaddr_xdp sa = { .sxdp_family = AF_XDP, .sxdp_flags = zerocopy ? XDP_ZEROCOPY : XDP_COPY,
                               .sxdp_ifindex = (uint32_t)ifindex, .sxdp_queue_id = (uint32_t)queue };
    if (bind(s->fd, (struct sockaddr *)&sa, sizeof sa)) { snprintf(err, errlen, "binding to queue %d of interface %d: %s", queue, ifindex, strerror(errno)); goto fail; }
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    uint32_t key = (uint32_t)queue;
    uint32_t value = (uint32_t)s->fd;
    a.map_fd = (uint32_t)f->map;
    a.key = (uintptr_t)&key;
    a.value = (uintptr_t)&value;
    if (bpf(BPF_MAP_UPDATE_ELEM, &a)) { snprintf(err, errlen, "steering queue %d to the socket: %s", queue, strerror(errno)); goto fail; }
    return s;
fail:
    dx_socket_close(s);
    return NULL;
}

void dx_socket_close(dx_socket *s) {
    if (!s) return;
    ring *rings[] = { &s->rx, &s->tx, &s->fill, &s->done };
    for (int i = 0; i < 4; i++) if (rings[i]->map) munmap(rings[i]->map, rings[i]->maplen);
    if (s->fd >= 0) close(s->fd);
    free(s);
}

// Producer and consumer indices are shared with the kernel: read the other side's with acquire,
// publish ours with release, so entries are seen whole.
static uint32_t load(uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static void store(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

int dx_rx(dx_socket *s, uint64_t *addrs, uint32_t *lens, int max) {
    uint32_t cons = *s->rx.consumer, avail = load(s->rx.producer) - cons;
    int n = (int)(avail < (uint32_t)max ? avail : (uint32_t)max);
    struct xdp_desc *d = s->rx.entries;
    for (int i = 0; i < n; i++) {
        addrs[i] = d[(cons + i) & s->rx.mask].addr;
        lens[i] = d[(cons + i) & s->rx.mask].len;
    }
    store(s->rx.consumer, cons + n);
    return n;
}

int dx_fill(dx_socket *s, const uint64_t *addrs, int n) {
    uint32_t prod = *s->fill.producer, room = s->fill.mask + 1 - (prod - load(s->fill.consumer));
    int k = (int)(room < (uint32_t)n ? room : (uint32_t)n);
    uint64_t *e = s->fill.entries;
    for (int i = 0; i < k; i++) e[(prod + i) & s->fill.mask] = addrs[i];
    store(s->fill.producer, prod + k);
    return k;
}

int dx_tx(dx_socket *s, const uint64_t *addrs, const uint32_t *lens, int n) {
    uint32_t prod = *s->tx.producer, room = s->tx.mask + 1 - (prod - load(s->tx.consumer));
    int k = (int)(room < (uint32_t)n ? room : (uint32_t)n);
    struct xdp_desc *d = s->tx.entries;
    for (int i = 0; i < k; i++) d[(prod + i) & s->tx.mask] = (struct xdp_desc){ .addr = addrs[i], .len = lens[i] };
    store(s->tx.producer, prod + k);
    dx_kick(s);
    return k;
}

int dx_kick(dx_socket *s) {
    // Copy mode sends on a syscall, at most 32 frames per call (the kernel's TX_BATCH_SIZE):
    // call again until the kernel has taken the whole ring. EAGAIN means "more to do";
    // EBUSY or ENOBUFS that the kernel has no room now: the ring keeps the rest for next time.
    for (int i = 0; i <= (int)s->tx.mask / 32 + 1; i++) {
        if (load(s->tx.consumer) == *s->tx.producer) return 0;
        if (sendto(s->fd, NULL, 0, MSG_DONTWAIT, NULL, 0) < 0 && errno != EAGAIN) return errno == EBUSY || errno == ENOBUFS ? 0 : -1;
    }
    return 0;
}

int dx_completed(dx_socket *s, uint64_t *addrs, int max) {
    uint32_t cons = *s->done.consumer, avail = load(s->done.producer) - cons;
    int n = (int)(avail < (uint32_t)max ? avail : (uint32_t)max);
    uint64_t *e = s->done.entries;
    for (int i = 0; i < n; i++) addrs[i] = e[(cons + i) & s->done.mask];
    store(s->done.consumer, cons + n);
    return n;
}

int dx_wait(dx_socket *s, int wake_fd, int timeout_ms) {
    struct pollfd p[2] = { { .fd = s->fd, .events = POLLIN }, { .fd = wake_fd, .events = POLLIN } };
    int r = poll(p, wake_fd >= 0 ? 2 : 1, timeout_ms);
    if (r < 0) return errno == EINTR ? 0 : -1;
    // An eventfd's count is read to zero, so the next wait sleeps until the next wake.
    uint64_t count;
    if (wake_fd >= 0 && (p[1].revents & POLLIN) && read(wake_fd, &count, sizeof count) < 0) { /* nothing to drain */ }
    return (p[0].revents & POLLIN) != 0;
}

int dx_wake_open(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

void dx_wake(int fd) {
    uint64_t one = 1;
    // A full counter (2^64 - 2 wakes unread) is still a wake: EAGAIN is fine.
    if (write(fd, &one, sizeof one) < 0) { /* already awake */ }
}

int dx_stats(dx_socket *s, uint64_t out[4]) {
    struct xdp_statistics st;
    socklen_t len = sizeof st;
    if (getsockopt(s->fd, SOL_XDP, XDP_STATISTICS, &st, &len)) return -1;
    out[0] = st.rx_dropped;
    out[1] = st.rx_ring_full;
    out[2] = st.rx_fill_ring_empty_descs;
    out[3] = st.rx_invalid_descs + st.tx_invalid_descs;
    return 0;
}
