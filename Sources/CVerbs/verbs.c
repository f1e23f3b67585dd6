#define _GNU_SOURCE
// In the static build the rxe and mlx5 providers are linked in and registered here; a dynamic
// build finds them as plugins (defining this there would fail the link).
#ifdef DECOS_STATIC_VERBS
#define RDMA_STATIC_PROVIDERS rxe, mlx5
#endif
#include "CVerbs.h"

#include <errno.h>
#include <infiniband/verbs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct dv_context {
    struct ibv_context *ctx;
    struct ibv_pd *pd;
    struct ibv_comp_channel *channel;
    struct ibv_cq *cq;
    struct ibv_port_attr port;
    union ibv_gid gid;
    int rd_atomic;  // READs one queue pair may have outstanding: the device's limit, at most 16
};
struct dv_mr { struct ibv_mr *mr; };
struct dv_mw { struct ibv_mw *mw; };
struct dv_qp { dv_context *owner; struct ibv_qp *qp; uint32_t psn; };

#define FAIL(...) do { snprintf(err, errlen, __VA_ARGS__); goto fail; } while (0)

int dv_device_names(char *names, int max, char *err, size_t errlen) {
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    if (!list) { snprintf(err, errlen, "ibv_get_device_list: %s", strerror(errno)); return -1; }
    int count = 0;
    for (int i = 0; i < n && count < max; i++) snprintf(names + 64 * count++, 64, "%s", ibv_get_device_name(list[i]));
    ibv_free_device_list(list);
    return count;
}

dv_context *dv_open(const char *name, int wait_ms, char *err, size_t errlen) {
    dv_context *c = calloc(1, sizeof *c);
    int n = 0;
    struct ibv_device **list = ibv_get_device_list(&n);
    struct ibv_device *dev = NULL;
    for (int i = 0; list && i < n; i++) if (strcmp(ibv_get_device_name(list[i]), name) == 0) dev = list[i];
    if (!dev) FAIL("no RDMA device %s (libibverbs sees %d)", name, n);
    if (!(c->ctx = ibv_open_device(dev))) FAIL("ibv_open_device %s: %s", name, strerror(errno));
    if (!(c->pd = ibv_alloc_pd(c->ctx))) FAIL("ibv_alloc_pd: %s", strerror(errno));
    if (!(c->channel = ibv_create_comp_channel(c->ctx))) FAIL("ibv_create_comp_channel: %s", strerror(errno));
    struct ibv_device_attr attr;
    if (ibv_query_device(c->ctx, &attr)) FAIL("ibv_query_device %s: %s", name, strerror(errno));
    c->rd_atomic = attr.max_qp_rd_atom < 1 ? 1 : attr.max_qp_rd_atom > 16 ? 16 : attr.max_qp_rd_atom;
    // One CQ for every queue pair of the device: room for each one's whole send queue many times over.
    int cqe = attr.max_cqe < DV_CQ_ENTRIES ? attr.max_cqe : DV_CQ_ENTRIES;
    if (!(c->cq = ibv_create_cq(c->ctx, cqe, NULL, c->channel, 0))) FAIL("ibv_create_cq: %s", strerror(errno));
    if (ibv_req_notify_cq(c->cq, 0)) FAIL("ibv_req_notify_cq: %s", strerror(errno));
    // The port becomes ACTIVE and its IPv4-mapped GID (index 1) appears once the netdev has an address.
    for (int waited = 0;; waited += 20) {
        if (ibv_query_port(c->ctx, 1, &c->port)) FAIL("ibv_query_port: %s", strerror(errno));
        int have_gid = ibv_query_gid(c->ctx, 1, 1, &c->gid) == 0 && c->gid.global.interface_id != 0;
        if (c->port.state == IBV_PORT_ACTIVE && have_gid) break;
        if (waited >= wait_ms) FAIL("port 1 of %s is %s%s after %d ms", name, ibv_port_state_str(c->port.state),
                                    have_gid ? "" : " with no RoCEv2 GID at index 1", waited);
        usleep(20000);
    }
    ibv_free_device_list(list);
    return c;
fail:
    if (list) ibv_free_device_list(list);
    dv_close(c);
    return NULL;
}

void dv_close(dv_context *c) {
    if (!c) return;
    if (c->cq) ibv_destroy_cq(c->cq);
    if (c->channel) ibv_destroy_comp_channel(c->channel);
    if (c->pd) ibv_dealloc_pd(c->pd);
    if (c->ctx) ibv_close_device(c->ctx);
    free(c);
}

void dv_port(dv_context *c, char *state, size_t statelen, int *mtu) {
    snprintf(state, statelen, "%s", ibv_port_state_str(c->port.state));
    *mtu = 128 << c->port.active_mtu;
}

dv_mr *dv_register(dv_context *c, void *addr, size_t length, char *err, size_t errlen) {
    dv_mr *m = calloc(1, sizeof *m);
    m->mr = ibv_reg_mr(c->pd, addr, length, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_MW_BIND);
    if (!m->mr) { snprintf(err, errlen, "ibv_reg_mr of %zu bytes: %s", length, strerror(errno)); free(m); return NULL; }
    return m;
}

uint32_t dv_mr_rkey(dv_mr *m) { return m->mr->rkey; }
void dv_deregister(dv_mr *m) { if (m) { ibv_dereg_mr(m->mr); free(m); } }

dv_qp *dv_qp_create(dv_context *c, dv_endpoint *local, char *err, size_t errlen) {
    dv_qp *q = calloc(1, sizeof *q);
    q->owner = c;
    struct ibv_qp_init_attr init = {
        .send_cq = c->cq, .recv_cq = c->cq, .qp_type = IBV_QPT_RC, .sq_sig_all = 0,
        .cap = { .max_send_wr = DV_SEND_QUEUE, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1 },
    };
    if (!(q->qp = ibv_create_qp(c->pd, &init))) FAIL("ibv_create_qp: %s", strerror(errno));
    struct ibv_qp_attr a = { .qp_state = IBV_QPS_INIT, .pkey_index = 0, .port_num = 1,
                             .qp_access_flags = IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE };
    if (ibv_modify_qp(q->qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
        FAIL("QP to INIT: %s", strerror(errno));
    local->qpn = q->qp->qp_num;
    local->psn = q->psn = (uint32_t)(random() & 0xffffff);
    memcpy(local->gid, c->gid.raw, 16);
    return q;
fail:
    dv_qp_destroy(q);
    return NULL;
}

int dv_qp_connect(dv_qp *q, const dv_endpoint *remote, char *err, size_t errlen) {
    struct ibv_qp_attr a;
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTR;
    a.path_mtu = q->owner->port.active_mtu;
    a.dest_qp_num = remote->qpn;
    a.rq_psn = remote->psn;
    a.max_dest_rd_atomic = q->owner->rd_atomic;
    a.min_rnr_timer = 12;
    a.ah_attr.is_global = 1;
    memcpy(a.ah_attr.grh.dgid.raw, remote->gid, 16);
    a.ah_attr.grh.sgid_index = 1;  // the IPv4-mapped RoCEv2 GID; index 0 (link-local) makes RTR time out
    a.ah_attr.grh.hop_limit = 64;
    a.ah_attr.port_num = 1;
    if (ibv_modify_qp(q->qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                                     IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER)) {
        snprintf(err, errlen, "QP to RTR: %s", strerror(errno));
        return -1;
    }
    memset(&a, 0, sizeof a);
    a.qp_state = IBV_QPS_RTS;
    a.timeout = 14;  // ~67 ms; larger stalls for seconds on a lost packet
    a.retry_cnt = 7;
    a.rnr_retry = 7;
    a.sq_psn = q->psn;  // what the peer took from our endpoint as its rq_psn
    a.max_rd_atomic = q->owner->rd_atomic;
    if (ibv_modify_qp(q->qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN |
                                     IBV_QP_MAX_QP_RD_ATOMIC)) {
        snprintf(err, errlen, "QP to RTS: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int dv_qp_fail(dv_qp *q) {
    struct ibv_qp_attr a = { .qp_state = IBV_QPS_ERR };
    return ibv_modify_qp(q->qp, &a, IBV_QP_STATE);
}

void dv_qp_destroy(dv_qp *q) {
    if (!q) return;
    if (q->qp) ibv_destroy_qp(q->qp);
    free(q);
}

int dv_post_read(dv_qp *q, dv_mr *m, void *local, uint64_t remote_addr, uint32_t rkey, uint32_t length,
                 uint64_t wr_id, char *err, size_t errlen) {
    struct ibv_sge sge = { .addr = (uintptr_t)local, .length = length, .lkey = m->mr->lkey };
    struct ibv_send_wr wr = { .wr_id = wr_id, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_READ,
                              .send_flags = IBV_SEND_SIGNALED,
                              .wr.rdma = { .remote_addr = remote_addr, .rkey = rkey } };
    struct ibv_send_wr *bad = NULL;
    int rc = ibv_post_send(q->qp, &wr, &bad);
    if (rc) { snprintf(err, errlen, "ibv_post_send: %s", strerror(rc)); return -1; }
    return 0;
}

dv_mw *dv_mw_alloc(dv_context *c, char *err, size_t errlen) {
    dv_mw *w = calloc(1, sizeof *w);
    if (!(w->mw = ibv_alloc_mw(c->pd, IBV_MW_TYPE_2))) {
        snprintf(err, errlen, "ibv_alloc_mw (type 2): %s", strerror(errno));
        free(w);
        return NULL;
    }
    return w;
}

void dv_mw_free(dv_mw *w) { if (w) { ibv_dealloc_mw(w->mw); free(w); } }

int dv_mw_bind(dv_qp *q, dv_mw *w, dv_mr *m, void *addr, uint64_t length, uint64_t wr_id, uint32_t *rkey,
               char *err, size_t errlen) {
    uint32_t next = ibv_inc_rkey(w->mw->rkey);  // a new key each bind: an old one stays dead
    struct ibv_send_wr wr = { .wr_id = wr_id, .opcode = IBV_WR_BIND_MW, .send_flags = IBV_SEND_SIGNALED };
    wr.bind_mw.mw = w->mw;
    wr.bind_mw.rkey = next;
    wr.bind_mw.bind_info.mr = m->mr;
    wr.bind_mw.bind_info.addr = (uintptr_t)addr;
    wr.bind_mw.bind_info.length = length;
    wr.bind_mw.bind_info.mw_access_flags = IBV_ACCESS_REMOTE_READ;
    struct ibv_send_wr *bad = NULL;
    int rc = ibv_post_send(q->qp, &wr, &bad);
    if (rc) { snprintf(err, errlen, "bind memory window: %s", strerror(rc)); return -1; }
    w->mw->rkey = next;
    *rkey = next;
    return 0;
}

int dv_mw_invalidate(dv_qp *q, uint32_t rkey, uint64_t wr_id, char *err, size_t errlen) {
    struct ibv_send_wr wr = { .wr_id = wr_id, .opcode = IBV_WR_LOCAL_INV, .send_flags = IBV_SEND_SIGNALED };
    wr.invalidate_rkey = rkey;
    struct ibv_send_wr *bad = NULL;
    int rc = ibv_post_send(q->qp, &wr, &bad);
    if (rc) { snprintf(err, errlen, "invalidate memory window: %s", strerror(rc)); return -1; }
    return 0;
}

int dv_wait(dv_context *c, int timeout_ms, uint64_t *wr_id, char *err, size_t errlen) {
    for (;;) {
        struct ibv_wc wc;
        int n = ibv_poll_cq(c->cq, 1, &wc);
        if (n < 0) { snprintf(err, errlen, "ibv_poll_cq failed"); return -1; }
        if (n == 1) {
            if (wc.status != IBV_WC_SUCCESS) {
                snprintf(err, errlen, "work request %llu: %s", (unsigned long long)wc.wr_id, ibv_wc_status_str(wc.status));
                return -1;
            }
            *wr_id = wc.wr_id;
            return 0;
        }
        struct pollfd p = { .fd = c->channel->fd, .events = POLLIN };
        int r = poll(&p, 1, timeout_ms);
        if (r == 0) { snprintf(err, errlen, "no completion within %d ms", timeout_ms); return -1; }
        if (r < 0) { if (errno == EINTR) continue; snprintf(err, errlen, "poll: %s", strerror(errno)); return -1; }
        struct ibv_cq *cq; void *ctx;
        if (ibv_get_cq_event(c->channel, &cq, &ctx)) { snprintf(err, errlen, "ibv_get_cq_event: %s", strerror(errno)); return -1; }
        ibv_ack_cq_events(cq, 1);
        if (ibv_req_notify_cq(cq, 0)) { snprintf(err, errlen, "ibv_req_notify_cq: %s", strerror(errno)); return -1; }
    }
}

int dv_poll(dv_context *c, dv_completion *out, int max, int timeout_ms, char *err, size_t errlen) {
    for (int waited = 0;;) {
        struct ibv_wc wc[32];
        int n = ibv_poll_cq(c->cq, max < 32 ? max : 32, wc);
        if (n < 0) { snprintf(err, errlen, "ibv_poll_cq failed"); return -1; }
        if (n > 0) {
            for (int i = 0; i < n; i++) {
                out[i].wr_id = wc[i].wr_id;
                out[i].status = wc[i].status;
                out[i].status_name = ibv_wc_status_str(wc[i].status);
            }
            return n;
        }
        if (waited) return 0;
        // Nothing there: sleep on the channel until the CQ signals (the notification was asked
        // for after the last event), then poll again once.
        struct pollfd p = { .fd = c->channel->fd, .events = POLLIN };
        int r = poll(&p, 1, timeout_ms);
        if (r == 0) return 0;
        if (r < 0) { if (errno == EINTR) continue; snprintf(err, errlen, "poll: %s", strerror(errno)); return -1; }
        struct ibv_cq *cq; void *ctx;
        if (ibv_get_cq_event(c->channel, &cq, &ctx)) { snprintf(err, errlen, "ibv_get_cq_event: %s", strerror(errno)); return -1; }
        ibv_ack_cq_events(cq, 1);
        if (ibv_req_notify_cq(cq, 0)) { snprintf(err, errlen, "ibv_req_notify_cq: %s", strerror(errno)); return -1; }
        waited = 1;
    }
}
