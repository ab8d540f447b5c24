/* A streaming JSON writer onto a growable text buffer (struct broker_metrics_out).
 *
 * The writer tracks nesting and commas itself: callers emit keys and values in order and the
 * output is well-formed JSON whatever the input bytes are. Strings are escaped per RFC 8259
 * (quote, backslash, control characters as \u00XX); bytes that are not valid UTF-8 are written as
 * U+FFFD, so a record key or a topic name read off the wire can never break the document. */
#ifndef LAMINAR_BROKER_CONSOLE_JSON_H
#define LAMINAR_BROKER_CONSOLE_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/metrics.h"

enum { LM_JSON_DEPTH_MAX = 16 };

struct lm_json {
    struct broker_metrics_out *o;
    uint32_t depth;
    bool need_comma[LM_JSON_DEPTH_MAX + 1];
    bool after_key; /* a key was written: the next value follows it without a comma */
    bool failed;    /* nesting beyond LM_JSON_DEPTH_MAX or an unbalanced end */
};

void lm_json_init(struct lm_json *j, struct broker_metrics_out *o);
void lm_json_obj_begin(struct lm_json *j);
void lm_json_obj_end(struct lm_json *j);
void lm_json_arr_begin(struct lm_json *j);
void lm_json_arr_end(struct lm_json *j);
/* An object member's name (NUL-terminated); the next call writes its value. */
void lm_json_key(struct lm_json *j, const char *name);
/* A string value of len bytes (len < 0: null). */
void lm_json_strn(struct lm_json *j, const char *s, int64_t len);
void lm_json_str(struct lm_json *j, const char *s); /* NULL: null */
void lm_json_int(struct lm_json *j, int64_t v);
void lm_json_bool(struct lm_json *j, bool v);
void lm_json_null(struct lm_json *j);
/* Bytes as a base64 string (len < 0: null). */
void lm_json_base64(struct lm_json *j, const uint8_t *p, int64_t len);
/* True when the document is complete and nothing failed (balanced, no allocation failure). */
bool lm_json_ok(const struct lm_json *j);

/* Escapes s[0..len) into o as the body of a JSON string (without the quotes). */
void lm_json_escape(struct broker_metrics_out *o, const char *s, size_t len);

#endif
