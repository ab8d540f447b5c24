/* SWIM wire codec: one UDP datagram per message, bounded in size, versioned, optionally
 * authenticated with HMAC-SHA-256 over the whole datagram.
 *
 * Layout (big-endian):
 *   u8 version (SWIM_PROTO_VERSION) | u8 type | u8 flags | u8 update count
 *   sender: u32 ip, u16 port, u64 incarnation
 *   u32 seq            probe sequence number (ping, ack, ping-req, nack)
 *   target: u32 ip, u16 port   ping-req: member to probe; ack/nack: member the answer is about
 *   updates, each:
 *     u8 status | u8 uflags (bit0 metadata follows, bit1 suspector follows)
 *     u32 ip, u16 port, u64 incarnation
 *     [u32 ip, u16 port]                 suspector (Lifeguard: independent confirmations)
 *     [u16 length, TLV items: u8 key, u8 len, value]   metadata map
 *   [32 bytes HMAC-SHA-256 of every byte before it]   when flags bit0 is set
 *
 * The core (swim.c) and the codec never touch sockets, clocks or random sources. */
#ifndef LAMINAR_GOSSIP_SWIM_PROTO_H
#define LAMINAR_GOSSIP_SWIM_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SWIM_PROTO_VERSION       1
#define SWIM_PACKET_SIZE_DEFAULT 1400
#define SWIM_PACKET_SIZE_MIN     256
#define SWIM_PACKET_SIZE_MAX     65000
#define SWIM_HMAC_BYTES          32
#define SWIM_HEADER_BYTES        28
#define SWIM_UPDATES_MAX         255

/* Metadata string capacities, NUL included. */
#define SWIM_META_ADDR_MAX 64
#define SWIM_META_RACK_MAX 32

/* Metadata map keys on the wire; unknown keys are skipped so newer members can add keys. */
enum swim_meta_key {
    SWIM_META_NODE_ID = 1,
    SWIM_META_KAFKA_LISTENER = 2,
    SWIM_META_RAFT_ADDR = 3,
    SWIM_META_RACK = 4,
};

enum swim_msg_type {
    SWIM_MSG_PING = 1,
    SWIM_MSG_ACK = 2,
    SWIM_MSG_PING_REQ = 3,
    SWIM_MSG_NACK = 4,
    SWIM_MSG_SYNC = 5, /* full-state push; SWIM_FLAG_SYNC_REPLY asks for the peer's state */
};
#define SWIM_MSG_TYPE_MAX SWIM_MSG_SYNC

#define SWIM_FLAG_HMAC       0x01
#define SWIM_FLAG_SYNC_REPLY 0x02
#define SWIM_FLAGS_KNOWN     (SWIM_FLAG_HMAC | SWIM_FLAG_SYNC_REPLY)

/* Member states, ordered by precedence at equal incarnation (SWIM paper §4.2). */
enum swim_status {
    SWIM_ALIVE = 0,
    SWIM_SUSPECT = 1,
    SWIM_DEAD = 2,
    SWIM_LEFT = 3,
};
#define SWIM_STATUS_MAX SWIM_LEFT

/* An IPv4 address and UDP port, host byte order. It is the member's identity. */
struct swim_addr {
    uint32_t ip;
    uint16_t port;
};

/* Per-member metadata, versioned with the member's incarnation. */
struct swim_meta {
    int32_t node_id;
    char kafka_listener[SWIM_META_ADDR_MAX];
    char raft_addr[SWIM_META_ADDR_MAX];
    char rack[SWIM_META_RACK_MAX];
};

/* One piggybacked membership update. */
struct swim_update {
    uint8_t status;
    bool has_meta;
    bool has_from;
    struct swim_addr addr;
    uint64_t incarnation;
    struct swim_addr from; /* suspector, when has_from */
    struct swim_meta meta; /* when has_meta */
};

/* A decoded message header. */
struct swim_msg {
    uint8_t type;
    uint8_t flags;
    struct swim_addr sender;
    uint64_t sender_incarnation;
    uint32_t seq;
    struct swim_addr target;
};

/* An encoder writing one datagram into a caller buffer. */
struct swim_enc {
    uint8_t *buf;
    size_t cap; /* usable bytes, HMAC trailer excluded */
    size_t len;
    uint8_t count;
    bool hmac;
};

/* swim_addr_eq compares two addresses. */
static inline bool swim_addr_eq(const struct swim_addr *a, const struct swim_addr *b)
{
    return a->ip == b->ip && a->port == b->port;
}

/* swim_enc_begin starts a datagram in buf (cap bytes, at least SWIM_PACKET_SIZE_MIN) with the
 * header msg; reserves room for the HMAC when hmac is set. Returns 0 or LM_E_INVALID. */
int swim_enc_begin(struct swim_enc *e, uint8_t *buf, size_t cap, const struct swim_msg *msg,
                   bool hmac);
/* swim_enc_update_size is the number of bytes u takes on the wire. */
size_t swim_enc_update_size(const struct swim_update *u);
/* swim_enc_update appends u; LM_E_FULL when it does not fit (the datagram is unchanged). */
int swim_enc_update(struct swim_enc *e, const struct swim_update *u);
/* swim_enc_finish writes the count and, when enabled, the HMAC with key (key_len bytes).
 * Returns the datagram length (> 0) or a negative LM_E_*. */
int swim_enc_finish(struct swim_enc *e, const uint8_t *key, size_t key_len);

/* swim_decode checks and parses one datagram of len bytes. With a key (key_len > 0) the HMAC
 * must be present and correct, without one it must be absent: LM_E_CRC otherwise. Fills msg and
 * up to updates_cap updates (LM_E_TOO_LARGE beyond). Every length is checked before use; any
 * malformed input returns a negative LM_E_* and never reads outside buf. */
int swim_decode(const uint8_t *buf, size_t len, const uint8_t *key, size_t key_len,
                struct swim_msg *msg, struct swim_update *updates, size_t updates_cap,
                size_t *n_updates);

#endif
