/* A blocking Kafka client for the broker's HTTP thread: the console reads the cluster the way
 * any client does, over a loopback connection to one of the broker's own listeners. Every
 * answer is produced by the shards through their usual request handling (metadata snapshot,
 * mailboxes to owning shards, authorizer); the HTTP thread blocks only on its own socket, so a
 * slow or hostile console user can never stall a shard. Requests and responses live in a
 * caller arena, which bounds the memory of one console call. */
#ifndef LAMINAR_BROKER_CONSOLE_KCLIENT_H
#define LAMINAR_BROKER_CONSOLE_KCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/kafka_api.h"
#include "protocol/kafka_messages.h"
#include "protocol/kafka_rt.h"

struct kclient {
    int fd;
    int32_t next_correlation_id;
    int timeout_ms; /* per read or write */
};

/* Connects to host:port (numeric). Returns 0 or LM_E_IO. */
int kclient_open(struct kclient *c, const char *host, uint16_t port, int timeout_ms);
void kclient_close(struct kclient *c);

/* The broker answered a SASL exchange with an error (unknown user, wrong password, mechanism
 * not enabled): the credentials are refused, which is not an I/O failure. */
enum { KCLIENT_REFUSED = 1 };

/* SASL PLAIN (SaslHandshake v1, SaslAuthenticate v2). Returns 0, KCLIENT_REFUSED, or an
 * LM_E_*. */
int kclient_sasl_plain(struct kclient *c, const char *user, const char *password,
                       struct kafka_arena *a);
/* SASL SCRAM-SHA-256 or -512 (RFC 5802, RFC 7677) with the same return values. */
int kclient_sasl_scram(struct kclient *c, const char *mechanism, const char *user,
                       const char *password, struct kafka_arena *a);

/* Sends one request (body encoded by the caller) and reads its response into memory from a;
 * *body is the response body after the response header. */
int kclient_roundtrip(struct kclient *c, int16_t key, int16_t version, const uint8_t *req,
                      size_t req_len, struct kafka_arena *a, struct kafka_reader *body);

#define KCLIENT_DECLARE(name)                                                                      \
    int kclient_##name(struct kclient *c, int16_t v, const struct kafka_##name##_request *req,     \
                       struct kafka_##name##_response *resp, struct kafka_arena *a)
KCLIENT_DECLARE(metadata);
KCLIENT_DECLARE(list_offsets);
KCLIENT_DECLARE(list_groups);
KCLIENT_DECLARE(describe_groups);
KCLIENT_DECLARE(offset_fetch);
KCLIENT_DECLARE(describe_configs);
KCLIENT_DECLARE(describe_log_dirs);
KCLIENT_DECLARE(describe_cluster);
KCLIENT_DECLARE(fetch);

#endif
