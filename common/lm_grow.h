/* Growable arrays: the capacity doubles (from an initial size) until it holds what is needed,
 * with overflow checks, through realloc. On failure the array and its capacity are unchanged. */
#ifndef LAMINAR_COMMON_LM_GROW_H
#define LAMINAR_COMMON_LM_GROW_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/lm_err.h"

/* Makes *arr (elem bytes per element, *cap elements, at most max) hold at least need elements.
 * Returns 0, LM_E_TOO_LARGE (need > max or the byte size overflows) or LM_E_NOMEM. */
static inline int lm_grow(void **arr, size_t elem, size_t *cap, size_t need, size_t initial,
                          size_t max)
{
    if (need <= *cap)
        return 0;
    if (need > max)
        return LM_E_TOO_LARGE;
    size_t ncap = *cap > 0 ? *cap : (initial > 0 ? initial : 1);
    while (ncap < need)
        ncap = ncap > max / 2 ? max : ncap * 2;
    if (ncap > max)
        ncap = max;
    if (elem != 0 && ncap > SIZE_MAX / elem)
        return LM_E_TOO_LARGE;
    void *p = realloc(*arr, ncap * elem);
    if (p == NULL)
        return LM_E_NOMEM;
    *arr = p;
    *cap = ncap;
    return 0;
}

/* The largest value an integer lvalue x can hold, as a size_t. */
#define LM_GROW_MAX_OF(x)                                                                          \
    (((__typeof__(x))-1 > (__typeof__(x))0) ? SIZE_MAX >> (8 * (sizeof(size_t) - sizeof(x)))       \
                                            : SIZE_MAX >> (8 * (sizeof(size_t) - sizeof(x)) + 1))

/* LM_GROW(arr, cap, need, initial): lm_grow for an array of *arr's element type and a
 * capacity field of any integer type (bounded by that type). Evaluates to lm_grow's result. */
#define LM_GROW(arr, cap, need, initial)                                                           \
    ({                                                                                             \
        size_t lm_grow_cap_ = (size_t)(cap);                                                       \
        int lm_grow_rc_ = lm_grow((void **)&(arr), sizeof(*(arr)), &lm_grow_cap_, (size_t)(need),  \
                                  (initial), LM_GROW_MAX_OF(cap));                                 \
        if (lm_grow_rc_ == 0)                                                                      \
            (cap) = (__typeof__(cap))lm_grow_cap_;                                                 \
        lm_grow_rc_;                                                                               \
    })

#endif
