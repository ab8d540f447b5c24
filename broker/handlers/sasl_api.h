/* SASL authentication on the client listeners (sasl_api.c): SaslHandshake v0-1 and
 * SaslAuthenticate v0-2 with PLAIN and SCRAM-SHA-256/512, configured by Kafka's keys. */
#ifndef LAMINAR_BROKER_HANDLERS_SASL_API_H
#define LAMINAR_BROKER_HANDLERS_SASL_API_H

#include "broker/runtime.h"

struct handlers_ctx;
struct sasl_node;

/* Reads the SASL listeners' mechanisms and JAAS configs, writes laminar.scram.credentials'
 * users (single node), registers the two APIs and the connection state's free hook.
 * Returns 0, LM_E_CONFIG / LM_E_UNSUPPORTED (logged) or LM_E_NOMEM. h->sasl is set even on
 * failure (freed with handlers_sasl_free). */
int handlers_sasl_setup(struct broker_dispatch *d, struct handlers_ctx *h);
void handlers_sasl_free(struct sasl_node *n);

#endif
