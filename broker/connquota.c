#include "broker/connquota.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

int broker_connquota_init(struct broker_connquota *q, const struct broker_config *cfg)
{
    memset(q, 0, sizeof(*q));
    q->cfg = cfg;
    q->max_total = cfg->max_connections;
    q->max_per_ip = cfg->max_connections_per_ip;
    q->rate_per_s = cfg->max_connection_creation_rate;
    q->per_ip = q->max_per_ip < INT32_MAX || cfg->ip_overrides_count > 0;
    if (pthread_mutex_init(&q->lock, NULL) != 0)
        return LM_E_NOMEM;
    if (q->per_ip) {
        q->ips = calloc(BROKER_CONNQUOTA_IPS_MAX, sizeof(*q->ips));
        if (q->ips == NULL) {
            pthread_mutex_destroy(&q->lock);
            return LM_E_NOMEM;
        }
    }
    return 0;
}

void broker_connquota_deinit(struct broker_connquota *q)
{
    free(q->ips);
    q->ips = NULL;
    pthread_mutex_destroy(&q->lock);
}

int64_t broker_connquota_total(struct broker_connquota *q)
{
    return atomic_load(&q->total);
}

/* IPv4 as IPv4-mapped IPv6, so both families share one key space (as an accepted IPv6 socket
 * reports a v4 client). */
static bool addr_key(const struct sockaddr *sa, uint8_t out[16])
{
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        memcpy(out, &in6->sin6_addr, 16);
        return true;
    }
    return false;
}

static uint32_t addr_hash(const uint8_t a[16])
{
    uint64_t h = 14695981039346656037ull; /* FNV-1a */
    for (int i = 0; i < 16; i++) {
        h ^= a[i];
        h *= 1099511628211ull;
    }
    return (uint32_t)(h ^ (h >> 32));
}

static int64_t ip_limit(const struct broker_connquota *q, const uint8_t a[16])
{
    for (uint32_t i = 0; i < q->cfg->ip_overrides_count; i++)
        if (memcmp(q->cfg->ip_overrides[i].addr, a, 16) == 0)
            return q->cfg->ip_overrides[i].count;
    return q->max_per_ip;
}

/* The entry of a (count > 0), or the free entry where it would go; NULL when the table is full.
 * Linear probing; release keeps runs contiguous (backward-shift deletion), so a free entry ends
 * every search. */
static struct broker_connquota_ip *ip_find(struct broker_connquota *q, const uint8_t a[16])
{
    uint32_t mask = BROKER_CONNQUOTA_IPS_MAX - 1;
    uint32_t i = addr_hash(a) & mask;
    for (uint32_t n = 0; n < BROKER_CONNQUOTA_IPS_MAX; n++, i = (i + 1) & mask) {
        struct broker_connquota_ip *e = &q->ips[i];
        if (e->count == 0 || memcmp(e->addr, a, 16) == 0)
            return e;
    }
    return NULL;
}

static void ip_remove(struct broker_connquota *q, struct broker_connquota_ip *e)
{
    uint32_t mask = BROKER_CONNQUOTA_IPS_MAX - 1;
    uint32_t hole = (uint32_t)(e - q->ips);
    e->count = 0;
    q->ips_used--;
    for (uint32_t j = (hole + 1) & mask; q->ips[j].count != 0; j = (j + 1) & mask) {
        uint32_t home = addr_hash(q->ips[j].addr) & mask;
        /* move j into the hole unless its home lies cyclically in (hole, j] */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            q->ips[hole] = q->ips[j];
            q->ips[j].count = 0;
            hole = j;
        }
    }
}

/* Generic cell rate algorithm: one connection every 1/rate s, a burst of up to one second's
 * worth. Returns 0, or the microseconds to wait. */
static uint64_t rate_take(struct broker_connquota *q, uint64_t now_us)
{
    if (q->rate_per_s >= INT32_MAX)
        return 0;
    uint64_t t = 1000000u / (uint64_t)q->rate_per_s;
    if (t == 0)
        t = 1;
    uint64_t burst = (uint64_t)(q->rate_per_s - 1) * t; /* tolerance: rate - 1 early arrivals */
    uint64_t tat = atomic_load(&q->rate_tat_us);
    for (;;) {
        uint64_t base = tat > now_us ? tat : now_us;
        if (base - now_us > burst)
            return base - now_us - burst;
        if (atomic_compare_exchange_weak(&q->rate_tat_us, &tat, base + t))
            return 0;
    }
}

int broker_connquota_acquire(struct broker_connquota *q, const struct sockaddr *peer,
                             uint64_t now_us, struct broker_connquota_slot *slot,
                             uint32_t *retry_ms)
{
    memset(slot, 0, sizeof(*slot));
    *retry_ms = 0;
    if (q->max_total < INT32_MAX) {
        int64_t cur = atomic_load(&q->total);
        do {
            if (cur >= q->max_total) {
                *retry_ms = 10; /* a slot frees when any shard closes a connection */
                return LM_E_AGAIN;
            }
        } while (!atomic_compare_exchange_weak(&q->total, &cur, cur + 1));
    } else {
        atomic_fetch_add(&q->total, 1);
    }
    slot->counted_total = true;
    uint64_t wait_us = rate_take(q, now_us);
    if (wait_us > 0) {
        atomic_fetch_sub(&q->total, 1);
        slot->counted_total = false;
        *retry_ms = (uint32_t)((wait_us + 999) / 1000);
        return LM_E_AGAIN;
    }
    if (!q->per_ip || !addr_key(peer, slot->addr))
        return 0;
    int rc = 0;
    pthread_mutex_lock(&q->lock);
    int64_t limit = ip_limit(q, slot->addr);
    struct broker_connquota_ip *e = ip_find(q, slot->addr);
    if (e == NULL || (e->count == 0 && q->ips_used >= BROKER_CONNQUOTA_IPS_MAX - 1)) {
        rc = LM_E_FULL; /* no room to count it: refuse rather than leave it unlimited */
    } else if ((int64_t)e->count >= limit) {
        rc = LM_E_FULL;
    } else {
        if (e->count == 0) {
            memcpy(e->addr, slot->addr, 16);
            q->ips_used++;
        }
        e->count++;
        slot->counted_ip = true;
    }
    pthread_mutex_unlock(&q->lock);
    if (rc != 0) {
        /* Kafka counts the rejected connection's creation too; give back only the slot. */
        atomic_fetch_sub(&q->total, 1);
        slot->counted_total = false;
    }
    return rc;
}

void broker_connquota_release(struct broker_connquota *q, struct broker_connquota_slot *slot)
{
    if (slot->counted_total) {
        int64_t prev = atomic_fetch_sub(&q->total, 1);
        LM_ASSERT(prev > 0);
        slot->counted_total = false;
    }
    if (slot->counted_ip) {
        pthread_mutex_lock(&q->lock);
        struct broker_connquota_ip *e = ip_find(q, slot->addr);
        LM_ASSERT(e != NULL && e->count > 0);
        if (--e->count == 0) {
            e->count = 1; /* ip_remove clears it and fixes the probe run */
            ip_remove(q, e);
        }
        pthread_mutex_unlock(&q->lock);
        slot->counted_ip = false;
    }
}
