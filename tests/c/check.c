/*
 * The counters of tests/c/check.h and its two functions, linked into every C test program
 * (tests/c/run.sh, tests/c/core.sh). Compiles as C11 and as C++17.
 */
#include "check.h"

#ifdef __cplusplus
#define THREAD_LOCAL thread_local
#else
#define THREAD_LOCAL _Thread_local
#endif

int checks_passed, checks_failed;

const char *last_error(void) {
    static THREAD_LOCAL char buf[1024];
    size_t len = 0;
    if (mode_last_error(buf, sizeof buf, &len) != MODE_OK) return "(mode_last_error failed)";
    return buf;
}

int checks_done(const char *name) {
    int failed = __atomic_load_n(&checks_failed, __ATOMIC_SEQ_CST);
    printf("%s: %d passed, %d failed\n", name, __atomic_load_n(&checks_passed, __ATOMIC_SEQ_CST), failed);
    return failed == 0 ? 0 : 1;
}
