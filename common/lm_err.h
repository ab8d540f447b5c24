/* laminar internal error codes: one X-macro table for every library.
 *
 * Functions return 0 on success or a negative LM_E_* value. Kafka's wire error codes are a
 * separate enum (protocol/kafka_errors.h), mapped at the handler boundary (DESIGN.md §7).
 * Add new codes at the end of the table; never renumber. */
#ifndef LAMINAR_COMMON_LM_ERR_H
#define LAMINAR_COMMON_LM_ERR_H

#define LM_ERRORS(X)                                                                               \
    X(LM_OK, 0, "success")                                                                         \
    X(LM_E_TRUNCATED, -1, "input ends before the value it announces")                              \
    X(LM_E_INVALID, -2, "invalid value")                                                           \
    X(LM_E_TOO_LARGE, -3, "length or count larger than allowed or than the bytes left")            \
    X(LM_E_NOMEM, -4, "out of memory or arena exhausted")                                          \
    X(LM_E_IO, -5, "I/O error")                                                                    \
    X(LM_E_CRC, -6, "checksum mismatch")                                                           \
    X(LM_E_CORRUPT, -7, "corrupt data")                                                            \
    X(LM_E_UNSUPPORTED, -8, "unsupported version or feature")                                      \
    X(LM_E_NOT_FOUND, -9, "not found")                                                             \
    X(LM_E_EXISTS, -10, "already exists")                                                          \
    X(LM_E_OUT_OF_RANGE, -11, "offset out of range")                                               \
    X(LM_E_FULL, -12, "queue or buffer full")                                                      \
    X(LM_E_AGAIN, -13, "try again later")                                                          \
    X(LM_E_CLOSED, -14, "closed")                                                                  \
    X(LM_E_VARINT, -15, "varint longer than its type allows")                                      \
    X(LM_E_TAG_ORDER, -16, "tagged fields not in strictly ascending order")                        \
    X(LM_E_NULL, -17, "null where the field is not nullable")                                      \
    X(LM_E_MAGIC, -18, "unsupported record batch magic")                                           \
    X(LM_E_COMPRESSION, -19, "compression codec error")                                            \
    X(LM_E_SEQUENCE, -20, "offsets or sequence not continuous")                                    \
    X(LM_E_CONFIG, -21, "bad configuration")                                                       \
    X(LM_E_STATE, -22, "operation not valid in the current state")                                 \
    X(LM_E_TIMEOUT, -23, "timed out")

enum lm_err {
#define LM_ERR_ENUM(name, value, message) name = (value),
    LM_ERRORS(LM_ERR_ENUM)
#undef LM_ERR_ENUM
};

/* Evaluates x (an LM_E_* returning call) and returns its error from the enclosing function. */
#define LM_TRY(x)                                                                                  \
    do {                                                                                           \
        int lm_try_rc_ = (x);                                                                      \
        if (lm_try_rc_ != 0)                                                                       \
            return lm_try_rc_;                                                                     \
    } while (0)

/* lm_strerror returns a static message for an LM_E_* code (or "unknown error"). */
const char *lm_strerror(int err);
/* lm_errname returns the symbolic name ("LM_E_CRC") for an LM_E_* code. */
const char *lm_errname(int err);

#endif
