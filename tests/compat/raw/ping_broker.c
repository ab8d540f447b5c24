/* TEST-ONLY broker binary: the real runtime (lm_broker_rt) with three tiny handlers so the raw
 * socket tests can exercise requests before the real Kafka handlers exist. It is never
 * installed or run as `laminar`.
 *   18  (ApiVersions) a fixed v0-shaped body listing the keys served here, as a liveness probe
 *   100 "xshard echo": body = i32 target shard, i32 delay ms, payload. Runs a closure on the
 *       target shard, waits delay ms on the origin, answers i32 shard it ran on, i32 origin,
 *       payload. Exercises cross-shard calls, timers and in-order responses.
 *   101 "blob": body = i32 size; answers size bytes of 0x5a (for clients that never read).
 *   102 "file parts": body = i32 size; answers "head" + size bytes of a temporary file (byte i
 *       = (i * 7 + 3) & 255, sent from file offset 100 as two file parts) + "tail", through
 *       broker_req_respond_parts (sendfile / splice). Test-only: it writes the file on the
 *       shard thread.
 *   103 "forward": body = i32 port, i32 request timeout ms, i32 connect timeout ms, i32 count,
 *       i16 api key, i16 api version, i8 flexible, payload. Opens an outbound connection
 *       (broker_peer) to 127.0.0.1:port, sends count requests (api key/version, body =
 *       payload + i32 index) with at most 4 in flight, and answers i16 status of the first
 *       (0 or the LM_E_* code), i32 its sys errno, i32 accepted, i32 refused with LM_E_AGAIN,
 *       i32 completed ok, i32 ok whose response ends with the request's own index (api 100
 *       echoes its payload), then the first response's body.
 *   104 "udp ports": i32 n, then each shard's UDP echo port (i16). Each shard binds a UDP
 *       socket on 127.0.0.1 at start; a datagram to it comes back to its sender prefixed with
 *       i32 the shard id.
 *   105 "internal ping": answers "internal". Served only by the INTERNAL listener's table
 *       when the broker has a listener named INTERNAL (which also serves 18, 103 and 106, and
 *       not 100-102).
 *   106 "whoami" (flexible from v0: response header v1): i8 listener index, i16 length +
 *       the advertised host of that listener, i32 its advertised port.
 *   107 "timer then xshard": body = i32 target shard, i32 delay ms. Waits delay ms on the
 *       origin, then, from the timer, runs a closure on the target shard and answers i32 shard
 *       it ran on, i32 origin as soon as it returns: the path of a parked Fetch whose
 *       max_wait_ms timer runs the final pass on another shard's partitions (the runtime must
 *       wake the target before the origin waits again). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <netinet/in.h>
#include <stdatomic.h>

#include "broker/runtime.h"
#include "common/lm_err.h"

enum { FWD_CALLS_MAX = 16, FWD_INFLIGHT = 4 };

/* UDP echo port of each shard, for 104 (written by each shard at start). */
static _Atomic uint16_t g_udp_ports[128];

struct ping_shard {
    struct broker_udp *udp;
};

struct echo_state {
    struct broker_xcall call;
    struct broker_timer timer;
    struct broker_req *req;
    uint32_t ran_on;
    int32_t delay_ms;
};

static int32_t rd_i32(const uint8_t *p)
{
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
                     p[3]);
}

static void wr_i32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void wr_i16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void api_versions(struct broker_req *req)
{
    static const int16_t keys[] = {18, 100, 101};
    uint8_t *b = kafka_arena_alloc(&req->arena, 2 + 4 + 6 * 3, 16);
    if (b == NULL) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    wr_i16(b, 0);
    wr_i32(b + 2, 3);
    for (int i = 0; i < 3; i++) {
        wr_i16(b + 6 + 6 * i, (uint16_t)keys[i]);
        wr_i16(b + 8 + 6 * i, 0);
        wr_i16(b + 10 + 6 * i, 0);
    }
    broker_req_respond(req, b, 2 + 4 + 6 * 3);
}

static void echo_finish(struct broker_shard *s, struct broker_timer *t)
{
    struct echo_state *e = t->arg;
    struct broker_req *req = e->req;
    size_t payload = req->body_len - 8;
    uint8_t *b = kafka_arena_alloc(&req->arena, 8 + payload, 16);
    if (b == NULL) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    wr_i32(b, e->ran_on);
    wr_i32(b + 4, broker_shard_id(s));
    memcpy(b + 8, req->body + 8, payload);
    broker_req_respond(req, b, 8 + payload);
}

static void echo_run(struct broker_shard *target, struct broker_xcall *c)
{
    struct echo_state *e = c->arg;
    e->ran_on = broker_shard_id(target);
    broker_xcall_return(target, c);
}

static void echo_done(struct broker_shard *origin, struct broker_xcall *c)
{
    struct echo_state *e = c->arg;
    e->timer.heap_index_ = UINT32_MAX;
    if (broker_timer_start(origin, &e->timer, (uint64_t)e->delay_ms, echo_finish, e) != 0)
        echo_finish(origin, &e->timer);
}

static void xshard_echo(struct broker_req *req)
{
    struct echo_state *e = kafka_arena_alloc(&req->arena, sizeof(*e), 16);
    if (req->body_len < 8 || e == NULL) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    memset(e, 0, sizeof(*e));
    e->req = req;
    int32_t target = rd_i32(req->body);
    e->delay_ms = rd_i32(req->body + 4);
    if (e->delay_ms < 0)
        e->delay_ms = 0;
    uint32_t n = broker_shard_count(req->shard);
    e->call.run = echo_run;
    e->call.done = echo_done;
    e->call.arg = e;
    broker_shard_call(req->shard, (uint32_t)target % n, &e->call);
}

static void timer_xshard_done(struct broker_shard *origin, struct broker_xcall *c)
{
    struct echo_state *e = c->arg;
    struct broker_req *req = e->req;
    uint8_t *b = kafka_arena_alloc(&req->arena, 8, 16);
    if (b == NULL) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    wr_i32(b, e->ran_on);
    wr_i32(b + 4, broker_shard_id(origin));
    broker_req_respond(req, b, 8);
}

static void timer_xshard_fire(struct broker_shard *s, struct broker_timer *t)
{
    struct echo_state *e = t->arg;
    int32_t target = rd_i32(e->req->body);
    broker_shard_call(s, (uint32_t)target % broker_shard_count(s), &e->call);
}

static void timer_xshard(struct broker_req *req)
{
    struct echo_state *e = kafka_arena_alloc(&req->arena, sizeof(*e), 16);
    if (req->body_len < 8 || e == NULL) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    memset(e, 0, sizeof(*e));
    e->req = req;
    e->delay_ms = rd_i32(req->body + 4);
    if (e->delay_ms < 0)
        e->delay_ms = 0;
    e->call.run = echo_run;
    e->call.done = timer_xshard_done;
    e->call.arg = e;
    e->timer.heap_index_ = UINT32_MAX;
    if (broker_timer_start(req->shard, &e->timer, (uint64_t)e->delay_ms, timer_xshard_fire, e) !=
        0) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
    }
}

static void blob(struct broker_req *req)
{
    int32_t size = req->body_len >= 4 ? rd_i32(req->body) : -1;
    uint8_t *b =
        size >= 0 && size <= (64 << 20) ? kafka_arena_alloc(&req->arena, (size_t)size, 16) : NULL;
    if (b == NULL) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    memset(b, 0x5a, (size_t)size);
    broker_req_respond(req, b, (size_t)size);
}

static void file_parts(struct broker_req *req)
{
    int32_t size = req->body_len >= 4 ? rd_i32(req->body) : -1;
    struct broker_resp_part *parts = kafka_arena_alloc(&req->arena, 4 * sizeof(*parts), 16);
    uint8_t *buf = size >= 0 && size <= (64 << 20) ? malloc((size_t)size + 100) : NULL;
    int fd = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    int fd2 = fd >= 0 ? fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    bool ok = parts != NULL && buf != NULL && fd2 >= 0;
    if (ok) {
        memset(buf, 0xee, 100);
        for (int32_t i = 0; i < size; i++)
            buf[100 + i] = (uint8_t)(i * 7 + 3);
        ok = pwrite(fd, buf, (size_t)size + 100, 0) == (ssize_t)size + 100;
    }
    free(buf);
    if (!ok) {
        if (fd >= 0)
            close(fd);
        if (fd2 >= 0)
            close(fd2);
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    size_t half = (size_t)size / 2;
    parts[0] = (struct broker_resp_part){.mem = "head", .fd = -1, .len = 4};
    parts[1] = (struct broker_resp_part){.fd = fd, .offset = 100, .len = half};
    parts[2] =
        (struct broker_resp_part){.fd = fd2, .offset = 100 + half, .len = (size_t)size - half};
    parts[3] = (struct broker_resp_part){.mem = "tail", .fd = -1, .len = 4};
    broker_req_respond_parts(req, parts, 4);
}

/* ---- 103 forward: outbound connections ---------------------------------------------------- */

struct fwd_state {
    struct broker_req *req;
    struct broker_peer *peer;
    struct broker_call calls[FWD_CALLS_MAX];
    struct broker_resp_part parts[FWD_CALLS_MAX][2];
    uint8_t index_be[FWD_CALLS_MAX][4];
    int32_t count, sent, again, ok, matched, done;
    int first_rc, first_errno;
    uint8_t *first_resp;
    size_t first_len;
};

static void fwd_finish(struct broker_shard *s, struct fwd_state *f)
{
    (void)s;
    broker_peer_close(f->peer);
    struct broker_req *req = f->req;
    size_t n = 2 + 4 * 5 + f->first_len;
    uint8_t *b = kafka_arena_alloc(&req->arena, n, 16);
    if (b == NULL) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    wr_i16(b, (uint16_t)(int16_t)-f->first_rc);
    wr_i32(b + 2, (uint32_t)f->first_errno);
    wr_i32(b + 6, (uint32_t)f->sent);
    wr_i32(b + 10, (uint32_t)f->again);
    wr_i32(b + 14, (uint32_t)f->ok);
    wr_i32(b + 18, (uint32_t)f->matched);
    if (f->first_len > 0)
        memcpy(b + 22, f->first_resp, f->first_len);
    broker_req_respond(req, b, n);
}

static void fwd_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    struct fwd_state *f = call->arg;
    int32_t i = (int32_t)(call - f->calls);
    if (i == 0) {
        f->first_rc = rc;
        f->first_errno = call->sys_errno;
        if (rc == 0 && call->resp_len > 0 &&
            (f->first_resp = kafka_arena_alloc(&f->req->arena, call->resp_len, 16)) != NULL) {
            memcpy(f->first_resp, call->resp, call->resp_len);
            f->first_len = call->resp_len;
        }
    }
    if (rc == 0) {
        f->ok++;
        if (call->resp_len >= 4 && rd_i32(call->resp + call->resp_len - 4) == i)
            f->matched++;
    }
    if (++f->done == f->sent)
        fwd_finish(s, f);
}

static void forward(struct broker_req *req)
{
    struct fwd_state *f = kafka_arena_alloc(&req->arena, sizeof(*f), 16);
    if (f == NULL || req->body_len < 21) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    memset(f, 0, sizeof(*f));
    f->req = req;
    const uint8_t *b = req->body;
    int32_t port = rd_i32(b);
    struct broker_peer_opts o = {.request_timeout_ms = (uint32_t)rd_i32(b + 4),
                                 .connect_timeout_ms = (uint32_t)rd_i32(b + 8),
                                 .inflight_max = FWD_INFLIGHT,
                                 .client_id = "ping-forward"};
    f->count = rd_i32(b + 12);
    int16_t api_key = (int16_t)((b[16] << 8) | b[17]);
    int16_t api_version = (int16_t)((b[18] << 8) | b[19]);
    bool flexible = b[20] != 0;
    if (f->count < 1 || f->count > FWD_CALLS_MAX || port <= 0 || port > 65535) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    int rc = broker_peer_open(req->shard, "127.0.0.1", (uint16_t)port, &o, &f->peer);
    if (rc != 0) {
        /* no peer at all: answer at once with the open's error */
        f->first_rc = rc;
        uint8_t *r = kafka_arena_alloc(&req->arena, 22, 16);
        if (r == NULL) {
            broker_req_respond_none(req);
            return;
        }
        memset(r, 0, 22);
        wr_i16(r, (uint16_t)(int16_t)-rc);
        broker_req_respond(req, r, 22);
        return;
    }
    for (int32_t i = 0; i < f->count; i++) {
        struct broker_call *c = &f->calls[f->sent];
        wr_i32(f->index_be[f->sent], (uint32_t)f->sent);
        f->parts[f->sent][0] =
            (struct broker_resp_part){.mem = b + 21, .fd = -1, .len = req->body_len - 21};
        f->parts[f->sent][1] =
            (struct broker_resp_part){.mem = f->index_be[f->sent], .fd = -1, .len = 4};
        c->api_key = api_key;
        c->api_version = api_version;
        c->flexible = flexible;
        c->parts = f->parts[f->sent];
        c->nparts = 2;
        c->done = fwd_done;
        c->arg = f;
        rc = broker_peer_send(f->peer, c);
        if (rc == LM_E_AGAIN) {
            f->again++;
            continue;
        }
        if (rc != 0)
            abort(); /* broker_peer_send fails only with LM_E_AGAIN here */
        f->sent++;
    }
}

/* ---- 104 and the UDP echo ---------------------------------------------------------------- */

static void udp_echo(struct broker_shard *s, struct broker_udp *u, const uint8_t *data, size_t len,
                     const struct sockaddr *from, uint32_t from_len, void *arg)
{
    (void)arg;
    uint8_t out[4 + 61440];
    if (len > sizeof(out) - 4)
        return;
    wr_i32(out, broker_shard_id(s));
    memcpy(out + 4, data, len);
    int rc = broker_udp_send(u, out, len + 4, from, from_len);
    (void)rc; /* a full socket buffer drops it: the sender counts what came back */
}

static int shard_start(struct broker_shard *s, void *ctx)
{
    (void)ctx;
    struct ping_shard *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return LM_E_NOMEM;
    int rc = broker_udp_open(s, "127.0.0.1", 0, udp_echo, ps, &ps->udp);
    if (rc != 0) {
        free(ps);
        return rc;
    }
    if (broker_shard_id(s) < 128)
        atomic_store(&g_udp_ports[broker_shard_id(s)], broker_udp_port(ps->udp));
    broker_shard_set_user(s, ps);
    return 0;
}

static void shard_stop(struct broker_shard *s, void *ctx)
{
    (void)ctx;
    struct ping_shard *ps = broker_shard_user(s);
    if (ps == NULL)
        return;
    broker_udp_close(ps->udp);
    free(ps);
    broker_shard_set_user(s, NULL);
}

static void udp_ports(struct broker_req *req)
{
    uint32_t n = broker_shard_count(req->shard);
    uint8_t *b = kafka_arena_alloc(&req->arena, 4 + 2 * n, 16);
    if (b == NULL) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    wr_i32(b, n);
    for (uint32_t i = 0; i < n; i++)
        wr_i16(b + 4 + 2 * i, i < 128 ? atomic_load(&g_udp_ports[i]) : 0);
    broker_req_respond(req, b, 4 + 2 * n);
}

/* ---- 105, 106: per-listener tables ------------------------------------------------------- */

static void internal_ping(struct broker_req *req)
{
    broker_req_respond(req, "internal", 8);
}

static void whoami(struct broker_req *req)
{
    const struct broker_listener *l = broker_req_advertised(req);
    size_t hl = strlen(l->host);
    uint8_t *b = kafka_arena_alloc(&req->arena, 1 + 2 + hl + 4, 16);
    if (b == NULL) {
        broker_req_respond_none(req);
        broker_req_close_after(req);
        return;
    }
    b[0] = req->listener;
    wr_i16(b + 1, (uint16_t)hl);
    memcpy(b + 3, l->host, hl);
    wr_i32(b + 3 + hl, l->port);
    broker_req_respond(req, b, 1 + 2 + hl + 4);
}

static int setup(struct broker_dispatch *d, struct broker_config *cfg)
{
    d->shard_start = shard_start;
    d->shard_stop = shard_stop;
    int rc = broker_dispatch_register(d, 18, api_versions, 3);
    if (rc == 0)
        rc = broker_dispatch_register(d, 100, xshard_echo, -1);
    if (rc == 0)
        rc = broker_dispatch_register(d, 101, blob, -1);
    if (rc == 0)
        rc = broker_dispatch_register(d, 102, file_parts, -1);
    if (rc == 0)
        rc = broker_dispatch_register(d, 103, forward, -1);
    if (rc == 0)
        rc = broker_dispatch_register(d, 104, udp_ports, -1);
    if (rc == 0)
        rc = broker_dispatch_register(d, 106, whoami, 0);
    if (rc == 0)
        rc = broker_dispatch_register(d, 107, timer_xshard, -1);
    bool internal = false;
    for (uint32_t i = 0; i < cfg->listeners_count; i++)
        internal = internal || strcmp(cfg->listeners[i].name, "INTERNAL") == 0;
    if (rc == 0 && internal) {
        struct broker_api_table *t = broker_dispatch_listener_table(d, "INTERNAL");
        if (t == NULL)
            return LM_E_NOMEM;
        rc = broker_api_table_register(t, 18, api_versions, 3);
        if (rc == 0)
            rc = broker_api_table_register(t, 103, forward, -1);
        if (rc == 0)
            rc = broker_api_table_register(t, 105, internal_ping, -1);
        if (rc == 0)
            rc = broker_api_table_register(t, 106, whoami, 0);
    }
    return rc;
}

int main(int argc, char **argv)
{
    return broker_serve_main(argc, argv, setup);
}
