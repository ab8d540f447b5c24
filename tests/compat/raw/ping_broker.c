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
 *       shard thread. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/runtime.h"
#include "common/lm_err.h"

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

static void blob(struct broker_req *req)
{
    int32_t size = req->body_len >= 4 ? rd_i32(req->body) : -1;
    uint8_t *b = size >= 0 && size <= (64 << 20) ? kafka_arena_alloc(&req->arena, (size_t)size, 16)
                                                 : NULL;
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
    parts[2] = (struct broker_resp_part){.fd = fd2, .offset = 100 + half,
                                         .len = (size_t)size - half};
    parts[3] = (struct broker_resp_part){.mem = "tail", .fd = -1, .len = 4};
    broker_req_respond_parts(req, parts, 4);
}

static int setup(struct broker_dispatch *d, struct broker_config *cfg)
{
    (void)cfg;
    int rc = broker_dispatch_register(d, 18, api_versions, 3);
    if (rc == 0)
        rc = broker_dispatch_register(d, 100, xshard_echo, -1);
    if (rc == 0)
        rc = broker_dispatch_register(d, 101, blob, -1);
    if (rc == 0)
        rc = broker_dispatch_register(d, 102, file_parts, -1);
    return rc;
}

int main(int argc, char **argv)
{
    return broker_serve_main(argc, argv, setup);
}
