/* SWIM wire codec (layout in swim_proto.h). Pure: no I/O; HMAC from OpenSSL's libcrypto. */
#include "gossip/swim_proto.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_endian.h"

#define UFLAG_META         0x01
#define UFLAG_FROM         0x02
#define UPDATE_FIXED_BYTES 16 /* status, uflags, ip, port, incarnation */
#define UPDATE_FROM_BYTES  6

static size_t meta_str_len(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    LM_ASSERT(n < cap); /* callers keep the strings terminated */
    return n;
}

/* Bytes of the TLV items (without the u16 length). Zero/empty fields are left out. */
static size_t meta_size(const struct swim_meta *m)
{
    size_t n = 0;
    if (m->node_id != 0)
        n += 2 + 4;
    size_t l = meta_str_len(m->kafka_listener, sizeof(m->kafka_listener));
    n += l ? 2 + l : 0;
    l = meta_str_len(m->raft_addr, sizeof(m->raft_addr));
    n += l ? 2 + l : 0;
    l = meta_str_len(m->rack, sizeof(m->rack));
    n += l ? 2 + l : 0;
    return n;
}

size_t swim_enc_update_size(const struct swim_update *u)
{
    size_t n = UPDATE_FIXED_BYTES;
    if (u->has_from)
        n += UPDATE_FROM_BYTES;
    if (u->has_meta)
        n += 2 + meta_size(&u->meta);
    return n;
}

static void put_addr(uint8_t *p, const struct swim_addr *a)
{
    lm_put_be32(p, a->ip);
    lm_put_be16(p + 4, a->port);
}

static void get_addr(const uint8_t *p, struct swim_addr *a)
{
    a->ip = lm_get_be32(p);
    a->port = lm_get_be16(p + 4);
}

int swim_enc_begin(struct swim_enc *e, uint8_t *buf, size_t cap, const struct swim_msg *msg,
                   bool hmac)
{
    LM_ASSERT(e != NULL && buf != NULL && msg != NULL);
    if (cap < SWIM_PACKET_SIZE_MIN || cap > SWIM_PACKET_SIZE_MAX)
        return LM_E_INVALID;
    if (msg->type < SWIM_MSG_PING || msg->type > SWIM_MSG_TYPE_MAX)
        return LM_E_INVALID;
    if ((msg->flags & ~SWIM_FLAGS_KNOWN) != 0)
        return LM_E_INVALID;
    e->buf = buf;
    e->cap = hmac ? cap - SWIM_HMAC_BYTES : cap;
    e->hmac = hmac;
    e->count = 0;
    uint8_t *p = buf;
    p[0] = SWIM_PROTO_VERSION;
    p[1] = msg->type;
    p[2] = (uint8_t)((msg->flags & ~SWIM_FLAG_HMAC) | (hmac ? SWIM_FLAG_HMAC : 0));
    p[3] = 0;
    put_addr(p + 4, &msg->sender);
    lm_put_be64(p + 10, msg->sender_incarnation);
    lm_put_be32(p + 18, msg->seq);
    put_addr(p + 22, &msg->target);
    e->len = SWIM_HEADER_BYTES;
    LM_ASSERT(e->len <= e->cap);
    return 0;
}

static uint8_t *put_meta_str(uint8_t *p, uint8_t key, const char *s, size_t cap)
{
    size_t l = meta_str_len(s, cap);
    if (l == 0)
        return p;
    p[0] = key;
    p[1] = (uint8_t)l;
    memcpy(p + 2, s, l);
    return p + 2 + l;
}

int swim_enc_update(struct swim_enc *e, const struct swim_update *u)
{
    LM_ASSERT(e != NULL && u != NULL);
    LM_ASSERT(u->status <= SWIM_STATUS_MAX);
    size_t need = swim_enc_update_size(u);
    if (e->count == SWIM_UPDATES_MAX || e->len + need > e->cap)
        return LM_E_FULL;
    uint8_t *p = e->buf + e->len;
    p[0] = u->status;
    p[1] = (uint8_t)((u->has_meta ? UFLAG_META : 0) | (u->has_from ? UFLAG_FROM : 0));
    put_addr(p + 2, &u->addr);
    lm_put_be64(p + 8, u->incarnation);
    p += UPDATE_FIXED_BYTES;
    if (u->has_from) {
        put_addr(p, &u->from);
        p += UPDATE_FROM_BYTES;
    }
    if (u->has_meta) {
        const struct swim_meta *m = &u->meta;
        uint8_t *lenp = p;
        p += 2;
        if (m->node_id != 0) {
            p[0] = SWIM_META_NODE_ID;
            p[1] = 4;
            lm_put_be32(p + 2, (uint32_t)m->node_id);
            p += 6;
        }
        p = put_meta_str(p, SWIM_META_KAFKA_LISTENER, m->kafka_listener, sizeof(m->kafka_listener));
        p = put_meta_str(p, SWIM_META_RAFT_ADDR, m->raft_addr, sizeof(m->raft_addr));
        p = put_meta_str(p, SWIM_META_RACK, m->rack, sizeof(m->rack));
        lm_put_be16(lenp, (uint16_t)(p - lenp - 2));
    }
    LM_ASSERT((size_t)(p - (e->buf + e->len)) == need);
    e->len += need;
    e->count++;
    return 0;
}

int swim_enc_finish(struct swim_enc *e, const uint8_t *key, size_t key_len)
{
    LM_ASSERT(e != NULL && e->len >= SWIM_HEADER_BYTES && e->len <= e->cap);
    e->buf[3] = e->count;
    if (!e->hmac)
        return (int)e->len;
    if (key == NULL || key_len == 0)
        return LM_E_CONFIG;
    unsigned int out_len = 0;
    if (HMAC(EVP_sha256(), key, (int)key_len, e->buf, e->len, e->buf + e->len, &out_len) == NULL ||
        out_len != SWIM_HMAC_BYTES)
        return LM_E_INVALID;
    return (int)(e->len + SWIM_HMAC_BYTES);
}

/* Copies a metadata string value, rejecting embedded NULs and values too long for dst. */
static int get_meta_str(char *dst, size_t cap, const uint8_t *v, size_t len)
{
    if (len >= cap || memchr(v, 0, len) != NULL)
        return LM_E_INVALID;
    memcpy(dst, v, len);
    dst[len] = 0;
    return 0;
}

static int decode_meta(const uint8_t *p, size_t len, struct swim_meta *m)
{
    memset(m, 0, sizeof(*m));
    size_t i = 0;
    while (i < len) {
        if (len - i < 2)
            return LM_E_TRUNCATED;
        uint8_t key = p[i], vlen = p[i + 1];
        i += 2;
        if (len - i < vlen)
            return LM_E_TRUNCATED;
        const uint8_t *v = p + i;
        int rc = 0;
        switch (key) {
        case SWIM_META_NODE_ID:
            if (vlen != 4)
                return LM_E_INVALID;
            m->node_id = (int32_t)lm_get_be32(v);
            break;
        case SWIM_META_KAFKA_LISTENER:
            rc = get_meta_str(m->kafka_listener, sizeof(m->kafka_listener), v, vlen);
            break;
        case SWIM_META_RAFT_ADDR:
            rc = get_meta_str(m->raft_addr, sizeof(m->raft_addr), v, vlen);
            break;
        case SWIM_META_RACK:
            rc = get_meta_str(m->rack, sizeof(m->rack), v, vlen);
            break;
        default:
            break; /* unknown key from a newer member: skipped */
        }
        if (rc != 0)
            return rc;
        i += vlen;
    }
    LM_ASSERT(i == len);
    return 0;
}

int swim_decode(const uint8_t *buf, size_t len, const uint8_t *key, size_t key_len,
                struct swim_msg *msg, struct swim_update *updates, size_t updates_cap,
                size_t *n_updates)
{
    LM_ASSERT(msg != NULL && n_updates != NULL);
    LM_ASSERT(updates != NULL || updates_cap == 0);
    *n_updates = 0;
    if (buf == NULL || len < SWIM_HEADER_BYTES)
        return LM_E_TRUNCATED;
    if (len > SWIM_PACKET_SIZE_MAX)
        return LM_E_TOO_LARGE;
    if (buf[0] != SWIM_PROTO_VERSION)
        return LM_E_UNSUPPORTED;
    uint8_t flags = buf[2];
    if ((flags & ~SWIM_FLAGS_KNOWN) != 0)
        return LM_E_INVALID;
    bool has_hmac = (flags & SWIM_FLAG_HMAC) != 0;
    if (has_hmac != (key_len > 0))
        return LM_E_CRC; /* authentication required but missing, or not configured here */
    size_t body = len;
    if (has_hmac) {
        if (len < SWIM_HEADER_BYTES + SWIM_HMAC_BYTES)
            return LM_E_TRUNCATED;
        body = len - SWIM_HMAC_BYTES;
        uint8_t mac[EVP_MAX_MD_SIZE];
        unsigned int mac_len = 0;
        if (HMAC(EVP_sha256(), key, (int)key_len, buf, body, mac, &mac_len) == NULL ||
            mac_len != SWIM_HMAC_BYTES)
            return LM_E_INVALID;
        if (CRYPTO_memcmp(mac, buf + body, SWIM_HMAC_BYTES) != 0)
            return LM_E_CRC;
    }
    msg->type = buf[1];
    if (msg->type < SWIM_MSG_PING || msg->type > SWIM_MSG_TYPE_MAX)
        return LM_E_INVALID;
    msg->flags = flags;
    size_t count = buf[3];
    get_addr(buf + 4, &msg->sender);
    msg->sender_incarnation = lm_get_be64(buf + 10);
    msg->seq = lm_get_be32(buf + 18);
    get_addr(buf + 22, &msg->target);
    if (count > updates_cap)
        return LM_E_TOO_LARGE;
    size_t off = SWIM_HEADER_BYTES;
    for (size_t i = 0; i < count; i++) {
        struct swim_update *u = &updates[i];
        if (body - off < UPDATE_FIXED_BYTES)
            return LM_E_TRUNCATED;
        const uint8_t *p = buf + off;
        if (p[0] > SWIM_STATUS_MAX || (p[1] & ~(UFLAG_META | UFLAG_FROM)) != 0)
            return LM_E_INVALID;
        u->status = p[0];
        u->has_meta = (p[1] & UFLAG_META) != 0;
        u->has_from = (p[1] & UFLAG_FROM) != 0;
        get_addr(p + 2, &u->addr);
        u->incarnation = lm_get_be64(p + 8);
        off += UPDATE_FIXED_BYTES;
        if (u->has_from) {
            if (body - off < UPDATE_FROM_BYTES)
                return LM_E_TRUNCATED;
            get_addr(buf + off, &u->from);
            off += UPDATE_FROM_BYTES;
        } else {
            u->from = (struct swim_addr){0, 0};
        }
        if (u->has_meta) {
            if (body - off < 2)
                return LM_E_TRUNCATED;
            size_t mlen = lm_get_be16(buf + off);
            off += 2;
            if (body - off < mlen)
                return LM_E_TRUNCATED;
            int rc = decode_meta(buf + off, mlen, &u->meta);
            if (rc != 0)
                return rc;
            off += mlen;
        } else {
            memset(&u->meta, 0, sizeof(u->meta));
        }
    }
    if (off != body)
        return LM_E_CORRUPT; /* trailing bytes: the count and the contents disagree */
    *n_updates = count;
    return 0;
}
