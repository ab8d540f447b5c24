/* SWIM on the shard runtime (membership.h). */
#include "broker/cluster/membership.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "gossip/swim.h"

#define DOWN_MAX 256 /* node ids SWIM holds down, tracked for the controller */

struct membership {
    struct broker_shard *shard;
    struct broker_udp *udp;
    struct swim *swim;
    int32_t node_id;
    int32_t down[DOWN_MAX]; /* node ids declared dead or left */
    uint32_t n_down;
    uint64_t rnd;
};

/* host (a name or dotted quad) -> IPv4 in host order. */
static int resolve_v4(const char *host, uint32_t *ip)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_DGRAM}, *res = NULL;
    if (getaddrinfo(host[0] ? host : "0.0.0.0", NULL, &hints, &res) != 0 || res == NULL)
        return LM_E_INVALID;
    *ip = ntohl(((const struct sockaddr_in *)res->ai_addr)->sin_addr.s_addr);
    freeaddrinfo(res);
    return 0;
}

static void io_send(void *ctx, const struct swim_addr *to, const uint8_t *buf, size_t len)
{
    struct membership *m = ctx;
    struct sockaddr_in sa = {
        .sin_family = AF_INET, .sin_port = htons(to->port), .sin_addr.s_addr = htonl(to->ip)};
    (void)broker_udp_send(m->udp, buf, len, (const struct sockaddr *)&sa, sizeof(sa));
}

static void down_set(struct membership *m, int32_t id, bool down)
{
    for (uint32_t i = 0; i < m->n_down; i++) {
        if (m->down[i] == id) {
            if (!down)
                m->down[i] = m->down[--m->n_down];
            return;
        }
    }
    if (down && m->n_down < DOWN_MAX)
        m->down[m->n_down++] = id;
}

static void io_event(void *ctx, const struct swim_event *ev)
{
    struct membership *m = ctx;
    int32_t id = ev->meta != NULL ? ev->meta->node_id : -1;
    static const char *const names[] = {"?", "joined", "suspect", "alive", "dead", "left", "meta"};
    if (ev->type != SWIM_EV_META)
        BLOG_INFO("gossip: node %d (%u.%u.%u.%u:%u) %s", id, ev->addr.ip >> 24,
                  (ev->addr.ip >> 16) & 255, (ev->addr.ip >> 8) & 255, ev->addr.ip & 255,
                  ev->addr.port, ev->type < 7 ? names[ev->type] : "?");
    if (id < 0 || id == m->node_id)
        return;
    if (ev->type == SWIM_EV_DEAD || ev->type == SWIM_EV_LEFT)
        down_set(m, id, true);
    else if (ev->type == SWIM_EV_JOINED || ev->type == SWIM_EV_ALIVE)
        down_set(m, id, false);
}

static uint64_t io_random(void *ctx)
{
    struct membership *m = ctx;
    m->rnd ^= m->rnd << 13; /* xorshift64 over a seed from getrandom */
    m->rnd ^= m->rnd >> 7;
    m->rnd ^= m->rnd << 17;
    return m->rnd;
}

static void on_datagram(struct broker_shard *s, struct broker_udp *u, const uint8_t *data,
                        size_t len, const struct sockaddr *from, uint32_t from_len, void *arg)
{
    (void)s;
    (void)u;
    (void)from;
    (void)from_len;
    struct membership *m = arg;
    (void)swim_recv(m->swim, broker_now_ms(), data, len); /* bad ones are counted by swim */
}

int membership_start(struct broker_shard *s, const struct membership_config *cfg,
                     struct membership **out)
{
    *out = NULL;
    struct membership *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return LM_E_NOMEM;
    m->shard = s;
    m->node_id = cfg->node_id;
    if (getrandom(&m->rnd, sizeof(m->rnd), 0) != sizeof(m->rnd) || m->rnd == 0)
        m->rnd = 0x9e3779b97f4a7c15ull ^ broker_now_ms();
    struct swim_config sc;
    swim_config_default(&sc);
    uint32_t ip = 0;
    int rc = resolve_v4(cfg->host, &ip);
    if (rc != 0) {
        BLOG_ERROR("gossip: %s is not an IPv4 address or name", cfg->host);
        free(m);
        return rc;
    }
    sc.self.ip = ip;
    sc.self.port = cfg->port;
    sc.meta.node_id = cfg->node_id;
    snprintf(sc.meta.kafka_listener, sizeof(sc.meta.kafka_listener), "%s", cfg->kafka_endpoint);
    snprintf(sc.meta.raft_addr, sizeof(sc.meta.raft_addr), "%s", cfg->raft_addr);
    snprintf(sc.meta.rack, sizeof(sc.meta.rack), "%s", cfg->rack ? cfg->rack : "");
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sc.incarnation = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000; /* grows */
    if (cfg->secret != NULL && cfg->secret[0] != 0) {
        sc.secret = (const uint8_t *)cfg->secret;
        sc.secret_len = strlen(cfg->secret);
    }
    struct swim_io io = {.ctx = m, .send = io_send, .event = io_event, .random = io_random};
    rc = swim_new(&sc, &io, &m->swim);
    if (rc != 0) {
        free(m);
        return rc;
    }
    rc = broker_udp_open(s, cfg->host, cfg->port, on_datagram, m, &m->udp);
    if (rc != 0) {
        BLOG_ERROR("gossip: cannot listen on udp %s:%u: %s", cfg->host, cfg->port, lm_strerror(rc));
        swim_free(m->swim);
        free(m);
        return rc;
    }
    struct swim_addr seeds[8];
    size_t n = 0;
    for (uint32_t i = 0; i < cfg->n_seeds && n < 8; i++) {
        uint32_t sip;
        if (resolve_v4(cfg->seeds[i].host, &sip) != 0)
            continue;
        if (sip == ip && cfg->seeds[i].port == cfg->port)
            continue; /* ourselves */
        seeds[n++] = (struct swim_addr){sip, cfg->seeds[i].port};
    }
    if (n > 0)
        (void)swim_join(m->swim, broker_now_ms(), seeds, n);
    BLOG_INFO("gossip: SWIM on udp %s:%u, %zu seed(s)%s", cfg->host, cfg->port, n,
              sc.secret_len ? ", authenticated" : "");
    *out = m;
    return 0;
}

void membership_tick(struct membership *m, uint64_t now_ms)
{
    if (m != NULL && swim_next_deadline_ms(m->swim) <= now_ms)
        (void)swim_tick(m->swim, now_ms);
}

void membership_leave(struct membership *m)
{
    if (m != NULL)
        (void)swim_leave(m->swim, broker_now_ms());
}

void membership_stop(struct membership *m)
{
    if (m == NULL)
        return;
    broker_udp_close(m->udp);
    swim_free(m->swim);
    free(m);
}

bool membership_node_down(const struct membership *m, int32_t node_id)
{
    if (m == NULL)
        return false;
    for (uint32_t i = 0; i < m->n_down; i++)
        if (m->down[i] == node_id)
            return true;
    return false;
}

void membership_counts(const struct membership *m, uint32_t out[4])
{
    for (uint8_t st = 0; st < 4; st++)
        out[st] = m != NULL ? (uint32_t)swim_member_count(m->swim, st) : 0;
}

size_t membership_states(const struct membership *m, int32_t *ids, uint8_t *states, size_t cap)
{
    size_t n = 0;
    size_t size = m != NULL ? swim_table_size(m->swim) : 0;
    for (size_t i = 0; i < size && n < cap; i++) {
        struct swim_member_info info;
        if (swim_member_at(m->swim, i, &info) != 0 || info.meta.node_id < 0)
            continue;
        ids[n] = info.meta.node_id;
        states[n++] = info.status;
    }
    return n;
}

size_t membership_alive_count(const struct membership *m)
{
    return m != NULL ? swim_member_count(m->swim, SWIM_ALIVE) : 0;
}
