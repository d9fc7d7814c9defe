/*
 * What the C benchmarks measure the same way on both sides, libmode and libmosquitto, so a
 * difference in a table is the libraries' and never the harness's: the clock, the process's
 * counters in /proc, the fleet's devices from mode-sim's CSV, and how a run gives up.
 * Each program defines PROGRAM (its name, for messages) before including this.
 */
#ifndef BENCH_MEASURE_H
#define BENCH_MEASURE_H

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

#ifdef BENCH_FLEET
static void die(const char *what, const char *why) {
    fprintf(stderr, PROGRAM ": %s: %s\n", what, why);
    exit(1);
}

static long status_kib(int pid, const char *field) { /* a "Field:   123 kB" line of /proc/PID/status */
    char path[64];
    if (pid) snprintf(path, sizeof path, "/proc/%d/status", pid);
    else snprintf(path, sizeof path, "/proc/self/status");
    FILE *f = fopen(path, "r");
    char line[256];
    long value = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') value = strtol(line + n + 1, NULL, 10);
    if (f) fclose(f);
    return value;
}

static int open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n - 1; /* the directory's own fd */
}

/* A fleet device's login. */
struct credentials {
    char id[24], key[120];
};

/* The logins of `n` devices into devs[i].who (`who` a struct credentials member): the first n
 * rows of mode-sim's --devices-csv (a header line, then device_id,api_key,...), or without a
 * CSV ids 1..n with any key (a plain mosquitto broker takes any). Lowers *n to what the CSV
 * holds, saying so. */
#define LOAD_DEVICES(csv, devs, n)                                                        \
    do {                                                                                  \
        struct credentials *who_ = load_credentials((csv), (n));                          \
        for (int i_ = 0; i_ < *(n); i_++) (devs)[i_].who = who_[i_];                      \
        free(who_);                                                                       \
    } while (0)

static struct credentials *load_credentials(const char *csv, int *n) {
    struct credentials *who = calloc((size_t)*n, sizeof *who);
    if (!who) die("calloc", strerror(errno));
    if (!csv) {
        for (int i = 0; i < *n; i++) snprintf(who[i].id, sizeof who[i].id, "%d", i + 1), strcpy(who[i].key, "k");
        return who;
    }
    FILE *f = fopen(csv, "r");
    if (!f) die(csv, strerror(errno));
    char line[512];
    int i = 0;
    if (!fgets(line, sizeof line, f)) die(csv, "empty (a header line, then device_id,api_key,...)");
    while (i < *n && fgets(line, sizeof line, f)) {
        char *id = strtok(line, ",\r\n"), *key = strtok(NULL, ",\r\n");
        if (!id || !key) continue;
        snprintf(who[i].id, sizeof who[i].id, "%s", id);
        snprintf(who[i].key, sizeof who[i].key, "%s", key);
        i++;
    }
    fclose(f);
    if (i < *n) {
        fprintf(stderr, PROGRAM ": %s holds %d devices, using %d\n", csv, i, i);
        *n = i;
    }
    return who;
}
#endif /* BENCH_FLEET */

#endif /* BENCH_MEASURE_H */
