#include "common/lm_err.h"

const char *lm_strerror(int err)
{
    switch (err) {
#define LM_ERR_MSG(name, value, message)                                                           \
    case value:                                                                                    \
        return message;
        LM_ERRORS(LM_ERR_MSG)
#undef LM_ERR_MSG
    }
    return "unknown error";
}

const char *lm_errname(int err)
{
    switch (err) {
#define LM_ERR_NAME(name, value, message)                                                          \
    case value:                                                                                    \
        return #name;
        LM_ERRORS(LM_ERR_NAME)
#undef LM_ERR_NAME
    }
    return "LM_E_UNKNOWN";
}
