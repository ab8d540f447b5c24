/* Assertions on invariants that stay on in release builds (TigerBeetle style, DESIGN.md §7).
 * An invariant that fails means the program's state is wrong: abort with the location, never
 * continue. Use LM_ASSERT for invariants, never for validating input from the network or disk:
 * bad input is an error code. */
#ifndef LAMINAR_COMMON_LM_ASSERT_H
#define LAMINAR_COMMON_LM_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#define LM_ASSERT(cond)                                                                            \
    do {                                                                                           \
        if (__builtin_expect(!(cond), 0)) {                                                        \
            fprintf(stderr, "laminar: assertion failed: %s at %s:%d (%s)\n", #cond, __FILE__,      \
                    __LINE__, __func__);                                                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define LM_UNREACHABLE() LM_ASSERT(0 && "unreachable")
#define LM_ARRAY_LEN(a)  (sizeof(a) / sizeof((a)[0]))

#endif
