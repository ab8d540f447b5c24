#include "protocol/kafka_errors.h"

/* Plain switches: the compiler turns them into jump tables, and a duplicate code in the
 * table is a compile error (duplicate case value). */

const char *kafka_error_name(int16_t code)
{
    switch (code) {
#define KAFKA_ERROR_NAME(name, value, retriable, message)                                          \
    case value:                                                                                    \
        return #name;
        KAFKA_ERRORS(KAFKA_ERROR_NAME)
#undef KAFKA_ERROR_NAME
    }
    return "UNKNOWN_ERROR_CODE";
}

const char *kafka_error_message(int16_t code)
{
    switch (code) {
#define KAFKA_ERROR_MSG(name, value, retriable, message)                                           \
    case value:                                                                                    \
        return message;
        KAFKA_ERRORS(KAFKA_ERROR_MSG)
#undef KAFKA_ERROR_MSG
    }
    return "unknown Kafka error code";
}

bool kafka_error_retriable(int16_t code)
{
    switch (code) {
#define KAFKA_ERROR_RETRIABLE(name, value, retriable, message)                                     \
    case value:                                                                                    \
        return retriable;
        KAFKA_ERRORS(KAFKA_ERROR_RETRIABLE)
#undef KAFKA_ERROR_RETRIABLE
    }
    return false;
}

bool kafka_error_known(int16_t code)
{
    switch (code) {
#define KAFKA_ERROR_KNOWN(name, value, retriable, message)                                         \
    case value:                                                                                    \
        return true;
        KAFKA_ERRORS(KAFKA_ERROR_KNOWN)
#undef KAFKA_ERROR_KNOWN
    }
    return false;
}
