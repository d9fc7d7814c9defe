/*
 * What the C benchmarks measure the same way on both sides, libmode and libmosquitto, so a
 * difference in a table is the libraries' and never the harness's: the clock, the process's
 * counters in /proc, the fleet's devices from mode-sim's CSV, room for a socket per device,
 * the events programs' arguments and their count of acknowledged events, and how a run gives up
 * (a libmode program: check, for every call's status).
 * Each program defines PROGRAM (its name, for messages) before including this, and BENCH_FLEET
 * or BENCH_EVENTS for the parts of its kind; a libmode program includes mode.h first.
 */
#ifndef BENCH_MEASURE_H
#define BENCH_MEASURE_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

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

/* The options both fleet programs take (their top comments say what each means), with their
 * defaults; and one of the program's own: an option with a number (`extra`, e.g. "--io-threads",
 * its default in extra_value) or a flag (`flag`, e.g. "--shared-ctx", then flag_set). */
struct fleet_options {
    const char *host, *csv, *ca;
    int port, broker_pid, devices, event_devices, events, window;
    const char *extra;
    int extra_value;
    const char *flag;
    bool flag_set;
};

static void parse_fleet_options(int argc, char **argv, struct fleet_options *o) {
    o->host = "127.0.0.1", o->port = 1883, o->devices = 1000, o->event_devices = 1000, o->events = 50;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (o->flag && !strcmp(a, o->flag)) { o->flag_set = true; continue; }
        if (!v) die(a, "needs a value (see the comment at the top of " PROGRAM ".c)");
        i++;
        if (!strcmp(a, "--host")) o->host = v;
        else if (!strcmp(a, "--port")) o->port = atoi(v);
        else if (!strcmp(a, "--devices")) o->devices = atoi(v);
        else if (!strcmp(a, "--csv")) o->csv = v;
        else if (!strcmp(a, "--ca")) o->ca = v;
        else if (!strcmp(a, "--event-devices")) o->event_devices = atoi(v);
        else if (!strcmp(a, "--events")) o->events = atoi(v);
        else if (!strcmp(a, "--window")) o->window = atoi(v);
        else if (!strcmp(a, "--broker-pid")) o->broker_pid = atoi(v);
        else if (o->extra && !strcmp(a, o->extra)) o->extra_value = atoi(v);
        else die(a, "unknown option");
    }
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

/* devs: a new zeroed array of *n struct device (each with a `who` member), their logins
 * loaded as LOAD_DEVICES says. */
#define NEW_DEVICES(csv, devs, n)                                                         \
    do {                                                                                  \
        (devs) = calloc((size_t)*(n), sizeof *(devs));                                    \
        if (!(devs)) die("calloc", strerror(errno));                                      \
        LOAD_DEVICES(csv, devs, n);                                                       \
    } while (0)

/* One socket per device (libmosquitto adds a socketpair per client): the soft fd limit raised to
 * the hard one, and 8 fds kept back from the clients so that at the limit the measurement can
 * still open files (/proc); give_back_fds() hands them over before it does. */
static int kept_fds[8];

static void make_room_for_sockets(void) {
    struct rlimit lim;
    getrlimit(RLIMIT_NOFILE, &lim);
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    for (int i = 0; i < 8; i++) kept_fds[i] = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void give_back_fds(void) {
    for (int i = 0; i < 8; i++) close(kept_fds[i]);
}
#endif /* BENCH_FLEET */

#ifdef BENCH_EVENTS
#include <semaphore.h>
#include <stdatomic.h>

/* What both events programs count the same way: the events acknowledged (libmode's delivery
 * callback, libmosquitto's on_publish: QoS 1 the PUBACK, QoS 0 the write), the time of the last
 * one, and a semaphore posted at the COUNTth, so the main thread sleeps once. */
static atomic_ulong acked;
static unsigned long expected;
static struct timespec last_ack; /* written before the count */
static sem_t all_acked;

/* One more event acknowledged (on the library's thread). */
static void count_ack(void) {
    clock_gettime(CLOCK_MONOTONIC, &last_ack);
    if (atomic_fetch_add(&acked, 1) + 1 == expected) sem_post(&all_acked);
}

static double last_ack_s(void) { return (double)last_ack.tv_sec + (double)last_ack.tv_nsec / 1e9; }

/* HOST PORT DEVICE_ID API_KEY QOS COUNT, and up to `extra` more arguments (`usage` names them
 * all); exits 2 with the usage otherwise. Sets up the count of acknowledged events. */
struct events_args {
    const char *host, *device, *key;
    int port, qos;
    unsigned long count;
};

static struct events_args events_args(int argc, char **argv, int extra, const char *usage) {
    if (argc < 7 || argc > 7 + extra) {
        fprintf(stderr, "usage: %s %s\n", argv[0], usage);
        exit(2);
    }
    struct events_args a = {argv[1], argv[3], argv[4], atoi(argv[2]), atoi(argv[5]), strtoul(argv[6], NULL, 10)};
    expected = a.count;
    sem_init(&all_acked, 0, 0);
    return a;
}
#endif /* BENCH_EVENTS */

#ifdef MODE_H /* a libmode program (mode.h included first) */
/* Ends the run on an error, with its status and mode_last_error's text. */
static void check(const char *what, mode_status_t status) {
    if (status == MODE_OK) return;
    char why[512] = "";
    mode_last_error(why, sizeof why, NULL);
    fprintf(stderr, PROGRAM ": %s: %s (%s)\n", what, mode_status_str(status), why);
    exit(1);
}
#endif /* MODE_H */

#endif /* BENCH_MEASURE_H */
