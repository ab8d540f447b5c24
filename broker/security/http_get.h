/* A small blocking HTTP(S) GET for the broker's own background fetches (the JWKS of an OAuth
 * issuer): HTTP/1.0, so the body ends with the connection (no chunked transfer coding), a
 * status of 200 only, a bounded body. HTTPS verifies the server's certificate chain against the
 * system's CA paths or a PEM file, and its name against the URL's host. Never called on a
 * shard: it blocks for up to its timeout. */
#ifndef LAMINAR_BROKER_SECURITY_HTTP_GET_H
#define LAMINAR_BROKER_SECURITY_HTTP_GET_H

#include <stddef.h>

/* Fetches url (http://host[:port]/path or https://...). ca_file: PEM CA certificates for
 * https (NULL or "": the system's). Returns 0 with the body in *body (malloc'd, NUL-terminated,
 * *len bytes without the NUL); LM_E_INVALID for a bad URL, LM_E_IO for a failed connection,
 * TLS handshake, a status other than 200 or a body over max_bytes, LM_E_NOMEM; the reason in
 * err. */
int lm_http_get(const char *url, const char *ca_file, int timeout_ms, size_t max_bytes, char **body,
                size_t *len, char *err, size_t err_cap);

#endif
