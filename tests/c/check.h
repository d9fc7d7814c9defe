/*
 * What every C test counts its checks with: CHECK (a condition; a failure prints file, line and
 * the condition, and the run goes on), CHECK_STATUS, last_error() (this thread's
 * mode_last_error text) and checks_done() (the counts, and the exit status). tests/c/check.c
 * holds the counters, one pair for a test program of several files; the counts are atomic, so
 * checks may run on any thread. C11 and C++17 alike.
 */
#ifndef TESTS_C_CHECK_H
#define TESTS_C_CHECK_H

#include "mode_core.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

extern int checks_passed, checks_failed;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (cond) {                                                                          \
            __atomic_fetch_add(&checks_passed, 1, __ATOMIC_RELAXED);                         \
        } else {                                                                             \
            __atomic_fetch_add(&checks_failed, 1, __ATOMIC_RELAXED);                         \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);         \
        }                                                                                    \
    } while (0)

#define CHECK_STATUS(expr, want) CHECK((expr) == (want))

/* This thread's last error text (mode_last_error), in a buffer of this thread's. */
const char *last_error(void);

/* Prints "NAME: P passed, F failed"; returns the process's exit status (0: none failed). */
int checks_done(const char *name);

#ifdef __cplusplus
}
#endif

#endif /* TESTS_C_CHECK_H */
