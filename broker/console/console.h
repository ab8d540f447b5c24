/* The web console: one page compiled into the binary (served at /) and the JSON endpoints it
 * polls under /api/. Each call opens a loopback Kafka connection to one of the broker's own
 * listeners (kclient.h) and asks the questions any Kafka tool would (Metadata, ListOffsets,
 * ListGroups, DescribeGroups, OffsetFetch, DescribeConfigs, DescribeLogDirs, Fetch), so every
 * answer comes from the shards through their usual request path and the authorizer sees the
 * console user as the principal it authenticated.
 *
 * Security: with no SASL or SSL listener and no authorizer the console is open and connects as
 * ANONYMOUS over a PLAINTEXT listener. Otherwise every request needs HTTP Basic credentials,
 * which the console presents over a SASL_PLAINTEXT listener (PLAIN, else SCRAM-SHA-512, else
 * SCRAM-SHA-256, as the listener enables them): the broker checks them against its PLAIN and
 * SCRAM users and applies the principal's ACLs (DESCRIBE for topics, groups and configs, READ
 * for records). Without such a listener the console is off (one log line says why). */
#ifndef LAMINAR_BROKER_CONSOLE_CONSOLE_H
#define LAMINAR_BROKER_CONSOLE_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/config.h"
#include "broker/console/http_req.h"
#include "broker/metrics.h"

enum console_auth {
    CONSOLE_OFF = 0,
    CONSOLE_ANONYMOUS, /* security off: no credentials asked */
    CONSOLE_PLAIN,
    CONSOLE_SCRAM_SHA_256,
    CONSOLE_SCRAM_SHA_512,
};

struct console {
    enum console_auth auth;
    char host[256]; /* the listener the console connects to (numeric) */
    uint16_t port;
    int32_t node_id;
    int timeout_ms;
    char why_off[160]; /* CONSOLE_OFF: the reason, for the log and the page */
    /* SWIM's view of the members (broker_dispatch.node_states), or NULL on one node */
    size_t (*node_states)(void *ctx, int32_t *ids, uint8_t *states, size_t cap);
    void *node_states_ctx;
};

/* Picks the listener and authentication from the config (see above). */
void console_setup(struct console *c, const struct broker_config *cfg);

/* A response: status, content type, body (the caller frees body.buf), and whether to ask for
 * credentials (401 with WWW-Authenticate). */
struct console_response {
    int status;
    const char *type;
    struct broker_metrics_out body;
};

/* Serves GET / and /api/... for req. */
void console_serve(const struct console *c, const struct http_request *req,
                   struct console_response *out);

/* Consumer group lag for /metrics (security off only: there are no credentials at scrape
 * time): committed offset, log end offset and lag per group and partition, at most
 * CONSOLE_LAG_GROUPS_MAX groups. */
enum { CONSOLE_LAG_GROUPS_MAX = 200 };
void console_lag_metrics(const struct console *c, struct broker_metrics_out *o);

/* The embedded page (console_page.c, generated from page.html at build time). */
extern const char console_page_html[];
extern const size_t console_page_html_len;

#endif
