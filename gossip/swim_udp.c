/* UDP shell around the SWIM core: sockets and the poll loop live here, never in swim.c. */
#include "gossip/swim_udp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "gossip/swim_clock.h"

#define RECV_BATCH_MAX 64 /* datagrams per loop turn, so ticks are never starved */

struct swim_udp {
    int fd;
    struct swim *swim;
    struct swim_rng rng;
    void (*on_event)(void *ctx, const struct swim_event *ev);
    void *ctx;
    uint8_t buf[SWIM_PACKET_SIZE_MAX];
};

int swim_addr_parse(const char *text, struct swim_addr *out)
{
    char host[64];
    const char *colon = strrchr(text, ':');
    if (colon == NULL || (size_t)(colon - text) >= sizeof(host))
        return LM_E_INVALID;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    struct in_addr ia;
    if (inet_pton(AF_INET, host, &ia) != 1)
        return LM_E_INVALID;
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (end == colon + 1 || *end != 0 || port <= 0 || port > 65535)
        return LM_E_INVALID;
    out->ip = ntohl(ia.s_addr);
    out->port = (uint16_t)port;
    return 0;
}

char *swim_addr_format(const struct swim_addr *a, char *buf, size_t cap)
{
    snprintf(buf, cap, "%u.%u.%u.%u:%u", a->ip >> 24, (a->ip >> 16) & 255, (a->ip >> 8) & 255,
             a->ip & 255, a->port);
    return buf;
}

static void to_sockaddr(const struct swim_addr *a, struct sockaddr_in *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(a->ip);
    sa->sin_port = htons(a->port);
}

static void udp_send(void *ctx, const struct swim_addr *to, const uint8_t *buf, size_t len)
{
    struct swim_udp *u = ctx;
    /* UDP is lossy anyway: a failed send is a lost datagram, which SWIM tolerates. */
    (void)swim_udp_send_raw(u, to, buf, len);
}

static uint64_t udp_random(void *ctx)
{
    struct swim_udp *u = ctx;
    return swim_rng_next(&u->rng);
}

static void udp_event(void *ctx, const struct swim_event *ev)
{
    struct swim_udp *u = ctx;
    if (u->on_event != NULL)
        u->on_event(u->ctx, ev);
}

int swim_udp_send_raw(struct swim_udp *u, const struct swim_addr *to, const uint8_t *buf,
                      size_t len)
{
    struct sockaddr_in sa;
    to_sockaddr(to, &sa);
    ssize_t n = sendto(u->fd, buf, len, 0, (struct sockaddr *)&sa, sizeof(sa));
    return n == (ssize_t)len ? 0 : LM_E_IO;
}

int swim_udp_new(const struct swim_config *cfg,
                 void (*on_event)(void *ctx, const struct swim_event *ev), void *ctx,
                 struct swim_udp **out)
{
    *out = NULL;
    struct swim_udp *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return LM_E_NOMEM;
    u->on_event = on_event;
    u->ctx = ctx;
    int rc = swim_rng_seed(&u->rng);
    if (rc != 0) {
        free(u);
        return rc;
    }
    u->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (u->fd < 0) {
        free(u);
        return LM_E_IO;
    }
    struct sockaddr_in sa;
    to_sockaddr(&cfg->self, &sa);
    if (bind(u->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(u->fd);
        free(u);
        return LM_E_IO;
    }
    struct swim_io io = {.ctx = u, .send = udp_send, .event = udp_event, .random = udp_random};
    rc = swim_new(cfg, &io, &u->swim);
    if (rc != 0) {
        close(u->fd);
        free(u);
        return rc;
    }
    *out = u;
    return 0;
}

void swim_udp_free(struct swim_udp *u)
{
    if (u == NULL)
        return;
    swim_free(u->swim);
    close(u->fd);
    free(u);
}

struct swim *swim_udp_swim(struct swim_udp *u)
{
    return u->swim;
}

int swim_udp_run(struct swim_udp *u, int max_wait_ms)
{
    LM_ASSERT(u != NULL && u->swim != NULL);
    uint64_t now = swim_clock_now_ms();
    uint64_t due = swim_next_deadline_ms(u->swim);
    int wait = max_wait_ms;
    if (due <= now)
        wait = 0;
    else if (due - now < (uint64_t)max_wait_ms)
        wait = (int)(due - now);
    struct pollfd pfd = {.fd = u->fd, .events = POLLIN};
    int n = poll(&pfd, 1, wait);
    if (n < 0 && errno != EINTR)
        return LM_E_IO;
    for (int i = 0; n > 0 && i < RECV_BATCH_MAX; i++) {
        ssize_t len = recv(u->fd, u->buf, sizeof(u->buf), 0);
        if (len < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            return LM_E_IO;
        }
        /* a bad datagram is dropped and counted by the core; nothing else to do here */
        (void)swim_recv(u->swim, swim_clock_now_ms(), u->buf, (size_t)len);
    }
    return swim_tick(u->swim, swim_clock_now_ms());
}
