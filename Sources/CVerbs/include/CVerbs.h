#ifndef CVERBS_H
#define CVERBS_H

#include <stddef.h>
#include <stdint.h>

/// A thin C layer over libibverbs: the calls Swift cannot make directly (macros, static inline
/// functions, the static-provider registration) and the struct setup that is clearer in C.
/// Every function returns 0 (or a pointer) on success, and on failure fills `err`.

typedef struct dv_context dv_context;
typedef struct dv_mr dv_mr;
typedef struct dv_qp dv_qp;
typedef struct dv_mw dv_mw;

typedef struct {
    uint32_t qpn;
    uint32_t psn;
    uint8_t gid[16];
} dv_endpoint;

/// Completions one device's CQ holds, and work requests one queue pair's send queue holds.
#define DV_CQ_ENTRIES 4096
#define DV_SEND_QUEUE 128

/// One work completion: its request and how it ended (`status` 0 is success; `status_name` is
/// libibverbs' static text for it).
typedef struct {
    uint64_t wr_id;
    int status;
    const char *status_name;
} dv_completion;

/// Names of the RDMA devices libibverbs sees (with the static rxe and mlx5 providers in a static
/// build), each in 64 bytes of `names`, at most `max`.
int dv_device_names(char *names, int max, char *err, size_t errlen);

/// Opens a device: protection domain, completion channel and CQ; port 1 must become ACTIVE with a
/// RoCEv2 IPv4 GID at index 1 within `wait_ms`.
dv_context *dv_open(const char *name, int wait_ms, char *err, size_t errlen);
void dv_close(dv_context *ctx);
/// Port 1's state name and active MTU in bytes.
void dv_port(dv_context *ctx, char *state, size_t statelen, int *mtu);

dv_mr *dv_register(dv_context *ctx, void *addr, size_t length, char *err, size_t errlen);
uint32_t dv_mr_rkey(dv_mr *mr);
void dv_deregister(dv_mr *mr);

/// An RC queue pair in INIT; `local` is what the other side needs to connect to it.
dv_qp *dv_qp_create(dv_context *ctx, dv_endpoint *local, char *err, size_t errlen);
/// INIT → RTR → RTS towards `remote`.
int dv_qp_connect(dv_qp *qp, const dv_endpoint *remote, char *err, size_t errlen);
void dv_qp_destroy(dv_qp *qp);
/// Moves a queue pair to the error state: what it has posted completes at once, flushed.
int dv_qp_fail(dv_qp *qp);

/// Posts a signaled RDMA READ of `length` bytes from (remote_addr, rkey) into local memory of `mr`.
int dv_post_read(dv_qp *qp, dv_mr *mr, void *local, uint64_t remote_addr, uint32_t rkey, uint32_t length,
                 uint64_t wr_id, char *err, size_t errlen);
/// A type-2 memory window: remote access to part of a registered region, granted to the peer of
/// one queue pair by binding the window (a new rkey each time) and taken back by invalidating it.
/// The region itself (registered once, cached) never gives remote access: only windows do.
dv_mw *dv_mw_alloc(dv_context *ctx, char *err, size_t errlen);
void dv_mw_free(dv_mw *mw);
/// Posts a signaled bind of `mw` over [addr, addr+length) of `mr`, readable by the peer of `qp`
/// only; the rkey to give that peer in `rkey`. Complete once `wr_id`'s completion arrives.
int dv_mw_bind(dv_qp *qp, dv_mw *mw, dv_mr *mr, void *addr, uint64_t length, uint64_t wr_id, uint32_t *rkey,
               char *err, size_t errlen);
/// Posts a signaled local invalidation of `rkey` (a window bound on `qp`): from its completion on,
/// a READ with that rkey fails at the peer with a remote access error.
int dv_mw_invalidate(dv_qp *qp, uint32_t rkey, uint64_t wr_id, char *err, size_t errlen);

/// Waits (on the completion channel, not spinning) for one completion; its wr_id in `wr_id`.
int dv_wait(dv_context *ctx, int timeout_ms, uint64_t *wr_id, char *err, size_t errlen);

/// Up to `max` completions (at most 32): those in the CQ now, else, after waiting up to
/// `timeout_ms` on the completion channel, those that woke it. Returns how many, 0 on timeout,
/// -1 on failure. The completion thread of the RDMA plane calls this in a loop.
int dv_poll(dv_context *ctx, dv_completion *out, int max, int timeout_ms, char *err, size_t errlen);

#endif
