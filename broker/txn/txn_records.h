/* __transaction_state records in Kafka's own formats (transaction-coordinator message schemas
 * TransactionLogKey and TransactionLogValue), so Kafka's tools read a laminar log:
 *   key    i16 version 0, transactional id string
 *   value  i16 version; v0: producer id i64, producer epoch i16, timeout ms i32, status i8,
 *          partitions nullable array of {topic string, partition ids array of i32},
 *          last update timestamp i64, start timestamp i64.
 *          v1: the same fields, flexible (compact strings and arrays, tagged fields: 0 previous
 *          producer id, 1 next producer id, 2 client transaction version).
 * A null value is a tombstone (the id expired: Dead). We write v0 for clients below transaction
 * version 2 and v1 for the others (with the tagged fields that differ from their defaults), as
 * Kafka's TransactionLog does, and read both. */
#ifndef LAMINAR_BROKER_TXN_TXN_RECORDS_H
#define LAMINAR_BROKER_TXN_TXN_RECORDS_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/kafka_rt.h"

struct lm_txn_topic_partition;

struct lm_tr_value {
    int16_t version;
    int64_t producer_id;
    int64_t previous_producer_id; /* v1 tag 0; -1 when absent */
    int64_t next_producer_id;     /* v1 tag 1; -1 when absent */
    int16_t client_tv;            /* v1 tag 2, the client's transaction version; 0 absent */
    int16_t producer_epoch;
    int32_t timeout_ms;
    int8_t status; /* enum lm_txn_state */
    int32_t n_partitions;
    struct lm_txn_topic_partition *partitions; /* decode: arena; encode: borrowed */
    int64_t update_ts_ms;
    int64_t start_ts_ms;
};

/* lm_tr_key_size/lm_tr_key_encode write the key of an id into buf (exactly size bytes). */
size_t lm_tr_key_size(struct kafka_str transactional_id);
int lm_tr_key_encode(struct kafka_str transactional_id, uint8_t *buf, size_t cap, size_t *len);
/* lm_tr_key_decode reads a key; the id borrows buf. LM_E_CORRUPT on a bad or unknown key. */
int lm_tr_key_decode(struct kafka_bytes key, struct kafka_str *transactional_id);

/* lm_tr_value_size/lm_tr_value_encode write a value of v->version (0 or 1); partitions of one topic
 * are grouped in the order they appear. A partition set of 0 is written as null, as Kafka does for
 * Empty. */
size_t lm_tr_value_size(const struct lm_tr_value *v);
int lm_tr_value_encode(const struct lm_tr_value *v, uint8_t *buf, size_t cap, size_t *len);
/* lm_tr_value_decode reads a v0 or v1 value; strings borrow buf, the partition array comes
 * from the arena. LM_E_CORRUPT on bad input, LM_E_NOMEM when the arena is full. */
int lm_tr_value_decode(struct kafka_bytes value, struct kafka_arena *arena, struct lm_tr_value *v);

#endif
