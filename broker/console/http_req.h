/* Parsing of an HTTP/1.x request head for the broker's HTTP listener (RFC 9112): the request
 * line, the query string and the Authorization header. Pure functions over a caller buffer: no
 * I/O, no allocation, every length bounded, so hostile input ends in an error code (the caller
 * answers 4xx) and never reads past the buffer. */
#ifndef LAMINAR_BROKER_CONSOLE_HTTP_REQ_H
#define LAMINAR_BROKER_CONSOLE_HTTP_REQ_H

#include <stdbool.h>
#include <stddef.h>

enum {
    HTTP_METHOD_BYTES = 8,
    HTTP_PATH_BYTES = 512, /* after percent-decoding, NUL included */
    HTTP_QUERY_BYTES = 1024,
    HTTP_AUTH_BYTES = 512,
};

struct http_request {
    char method[HTTP_METHOD_BYTES];
    char path[HTTP_PATH_BYTES];          /* percent-decoded; never contains NUL bytes */
    char query[HTTP_QUERY_BYTES];        /* raw, without the '?' */
    char authorization[HTTP_AUTH_BYTES]; /* the Authorization header's value, or "" */
};

/* The status an error maps to: a malformed head is 400, a target too long 414, a header too
 * long 431. */
enum http_parse_err {
    HTTP_OK = 0,
    HTTP_BAD_REQUEST = 400,
    HTTP_URI_TOO_LONG = 414,
    HTTP_HEADER_TOO_LARGE = 431,
};

/* Parses head[0..len) (the request line and headers, up to and including the blank line). */
enum http_parse_err http_parse_request(const char *head, size_t len, struct http_request *out);

/* Percent-decodes s[0..len) ('+' is a space) into out (cap bytes, NUL-terminated). Fails
 * (false) on a bad escape, an encoded NUL, or when it does not fit. */
bool http_percent_decode(const char *s, size_t len, char *out, size_t cap);

/* The decoded value of the first parameter `name` in query into out. Returns 1 when found, 0
 * when absent, -1 when it is malformed or does not fit. */
int http_query_get(const char *query, const char *name, char *out, size_t cap);

/* An integer parameter: 1 when found and in [min, max], 0 when absent, -1 otherwise. */
int http_query_int(const char *query, const char *name, long long min, long long max,
                   long long *out);

/* Splits "Basic <base64(user:password)>" into user and password (NUL-terminated). False for
 * another scheme, bad base64, no colon or fields that do not fit. */
bool http_basic_parse(const char *authorization, char *user, size_t user_cap, char *password,
                      size_t password_cap);

#endif
