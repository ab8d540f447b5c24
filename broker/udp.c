/* UDP sockets of a shard (runtime.h "UDP"): bound, received by the backend (io_uring multishot
 * recvmsg on provided buffers, epoll a recvfrom loop) and handed to their owner's callback on
 * the shard; sent with one non-blocking sendmsg per datagram. A datagram is never queued: UDP
 * may drop it anyway, SWIM (gossip/) is built for that, and not holding datagrams keeps the
 * shard's memory bounded without a second budget. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/log.h"
#include "broker/shard_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

static void udp_free(struct broker_shard *s, struct broker_udp *u)
{
    LM_ASSERT(s->udp[u->index] == u && s->udp_open > 0);
    s->udp[u->index] = NULL;
    s->udp_open--;
    close(u->fd);
    free(u);
}

int broker_udp_open(struct broker_shard *s, const char *host, uint16_t port,
                    broker_udp_recv_fn recv, void *arg, struct broker_udp **out)
{
    LM_ASSERT(recv != NULL && out != NULL);
    if (s->conns_closed || s->loop_done)
        return LM_E_STATE;
    uint32_t index = 0;
    while (index < BROKER_UDP_PER_SHARD_MAX && s->udp[index] != NULL)
        index++;
    if (index == BROKER_UDP_PER_SHARD_MAX)
        return LM_E_FULL;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_DGRAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port_text[8];
    snprintf(port_text, sizeof(port_text), "%u", port);
    if (getaddrinfo(host != NULL && host[0] ? host : NULL, port_text, &hints, &res) != 0 ||
        res == NULL)
        return LM_E_INVALID;
    int fd = socket(res->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, res->ai_addr, res->ai_addrlen) != 0) {
        BLOG_ERROR("udp %s:%u: %s", host ? host : "", port, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return LM_E_IO;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    struct broker_udp *u = calloc(1, sizeof(*u));
    if (u == NULL || getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        close(fd);
        free(u);
        return u == NULL ? LM_E_NOMEM : LM_E_IO;
    }
    u->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)(void *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)(void *)&ss)->sin_port);
    u->shard = s;
    u->fd = fd;
    u->index = index;
    u->gen = ++s->udp_gen;
    u->recv = recv;
    u->arg = arg;
    s->udp[index] = u;
    s->udp_open++;
    int rc = s->io->udp_open(s, u);
    if (rc != 0) {
        udp_free(s, u);
        return rc;
    }
    BLOG_DEBUG("udp %u bound on port %u", index, u->port);
    *out = u;
    return 0;
}

uint16_t broker_udp_port(const struct broker_udp *u)
{
    return u->port;
}

int broker_udp_send(struct broker_udp *u, const void *data, size_t len, const struct sockaddr *to,
                    uint32_t to_len)
{
    LM_ASSERT(!u->closing && (data != NULL || len == 0));
    if (len > BROKER_UDP_DATAGRAM_MAX)
        return LM_E_TOO_LARGE;
    ssize_t n = sendto(u->fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL, to, (socklen_t)to_len);
    if (n == (ssize_t)len)
        return 0;
    if (n >= 0)
        return LM_E_IO; /* a datagram goes whole or not at all */
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
        return LM_E_AGAIN;
    return LM_E_IO;
}

void broker_udp_close(struct broker_udp *u)
{
    struct broker_shard *s = u->shard;
    LM_ASSERT(!u->closing);
    u->closing = true;
    if (s->loop_done || s->io->udp_close(s, u) == 1)
        udp_free(s, u);
}

struct broker_udp *broker_core_udp(struct broker_shard *s, uint32_t index, uint32_t gen)
{
    if (index >= BROKER_UDP_PER_SHARD_MAX)
        return NULL;
    struct broker_udp *u = s->udp[index];
    return u != NULL && u->gen == gen ? u : NULL;
}

void broker_core_on_udp(struct broker_shard *s, struct broker_udp *u, const uint8_t *data,
                        size_t len, const struct sockaddr *from, socklen_t from_len)
{
    if (u->closing)
        return;
    u->recv(s, u, data, len, from, (uint32_t)from_len, u->arg);
}

void broker_core_on_udp_closed(struct broker_shard *s, struct broker_udp *u)
{
    LM_ASSERT(u->closing);
    udp_free(s, u);
}

void broker_core_udp_free_all(struct broker_shard *s)
{
    for (uint32_t i = 0; i < BROKER_UDP_PER_SHARD_MAX; i++)
        if (s->udp[i] != NULL)
            udp_free(s, s->udp[i]);
}
