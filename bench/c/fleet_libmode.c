/*
 * The libmode side of issue 15's fleet benchmark: N MODE devices in one process, every client
 * made in ONE runtime (mode_runtime_new: --io-threads IO threads and one callback dispatcher
 * thread for all of them), as a gateway on libmode would. fleet_mosquitto.c is the other side:
 * the same options, the same measurements and the same output line, so compare.py prints both
 * in one table.
 *
 *   fleet_libmode --host H --port P --devices N [--csv FILE] [--ca PEM] [--io-threads T]
 *                 [--event-devices M] [--events K] [--window W] [--broker-pid PID]
 *
 * Each device is a libmode client (MQTT 3.1.1, username = device id, password = API key); it
 * counts as up at its connection callback with connected=true, which libmode calls once the
 * broker acknowledged its subscriptions to /devices/{id}/command and /devices/{id}/kv (what
 * fleet_mosquitto waits for as its SUBACK). Credentials come from a CSV `device_id,api_key,...`
 * with a header line (mode-sim --devices-csv); without one, ids 1..N with key "k" (any broker
 * that lets anyone in). With --ca the connections are TLS, verifying the chain and the host
 * name; the runtime builds one rustls configuration for all its devices by itself (there is no
 * per-client variant to choose, unlike libmosquitto's --shared-ctx).
 *
 * libmode keeps one fd per device (its socket). A connection that fails is retried by libmode
 * itself (its backoff), so a failure does not end the run as it does fleet_mosquitto's: the
 * run waits for every device (300 s at most) and counts the failed attempts (connect_failures=,
 * the one key fleet_mosquitto does not print; each reason on stderr up to 20 of them).
 *
 * One line of key=value pairs per run (scripts/bench and bench/c/compare.py read it):
 *   ramp: devices/s from the first mode_client_start to the last first connection callback,
 *         at most W devices between start and connected at once (default 64, TLS 32: the
 *         windows fleet_mosquitto uses, for the reasons in its main);
 *   idle: VmRSS and heap in use (mallinfo2: uordblks + hblkhd, every arena and mmap'd chunks)
 *         after the runtime is made and before the first client, and with all N connected,
 *         subscribed and idle, per device; threads and fds of the process; with --broker-pid
 *         also the broker's VmRSS growth per device. What the runtime builds once on first use
 *         (the TLS configuration, tokio's lazily made parts) is in the growth, divided by N;
 *   events: min(N, M) devices each send K QoS 1 events of 60 bytes (mode_client_send_event)
 *           all at once; events/s from the first send to the last delivery callback (the
 *           broker's PUBACK), as fleet_mosquitto times its on_publish.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <mode.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "fleet_libmode"
#define BENCH_FLEET
#include "measure.h"

struct device {
    mode_client_t *client;
    struct credentials who;
    atomic_bool up;    /* connected now */
    atomic_bool ready; /* connected once: counted in the ramp */
};

static atomic_int ready, connect_failures, drops_after_ready;
static atomic_bool closing; /* the run is over: the clients' "closed" callbacks are expected */
static atomic_long delivered, delivery_failures;
static long expected_deliveries = -1;
static sem_t progress;  /* posted at each first connection and at the last delivery */
static struct timespec last_delivery; /* written by the dispatcher before the post */




/* The process's threads by name on one line ("fleet_libmode 1, mode-io 1, mode-callbacks 1"),
 * for stderr: which of them the threads= count holds. */
static void threads_by_name(char *out, size_t len) {
    char names[16][16];
    int counts[16] = {0}, kinds = 0;
    DIR *d = opendir("/proc/self/task");
    for (struct dirent *e; d && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[300], name[16] = "?";
        snprintf(path, sizeof path, "/proc/self/task/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (f && fgets(name, sizeof name, f)) name[strcspn(name, "\n")] = 0;
        if (f) fclose(f);
        int k = 0;
        while (k < kinds && strcmp(names[k], name)) k++;
        if (k == kinds && kinds < 16) strcpy(names[kinds++], name);
        if (k < 16) counts[k]++;
    }
    if (d) closedir(d);
    size_t used = 0;
    out[0] = 0;
    for (int k = 0; k < kinds && used < len; k++)
        used += (size_t)snprintf(out + used, len - used, "%s%s %d", k ? ", " : "", names[k], counts[k]);
}

/* Heap in use: small chunks in every arena and the chunks malloc mmap'd on their own (tokio's
 * and rustls's larger buffers would otherwise be missed). */
static double heap_bytes(void) {
    struct mallinfo2 m = mallinfo2();
    return (double)m.uordblks + (double)m.hblkhd;
}

static double mmapped_bytes(void) {
    return (double)mallinfo2().hblkhd;
}

/* On the dispatcher thread, in order per device. */
static void on_connection(void *userdata, bool connected, const char *reason, size_t reason_len, int64_t retry_in_ms) {
    (void)reason_len;
    struct device *d = userdata;
    atomic_store(&d->up, connected);
    if (connected) {
        if (!atomic_exchange(&d->ready, true)) atomic_fetch_add(&ready, 1), sem_post(&progress);
        return;
    }
    if (atomic_load(&closing)) return;
    if (atomic_load(&d->ready)) atomic_fetch_add(&drops_after_ready, 1);
    if (atomic_fetch_add(&connect_failures, 1) < 20)
        fprintf(stderr, "fleet_libmode: device %s: %s (retry in %lld ms)\n", d->who.id, reason, (long long)retry_in_ms);
}

static void on_delivery(void *userdata, uint64_t message_id, mode_status_t status) {
    (void)userdata, (void)message_id;
    if (status != MODE_OK) atomic_fetch_add(&delivery_failures, 1);
    clock_gettime(CLOCK_MONOTONIC, &last_delivery);
    if (atomic_fetch_add(&delivered, 1) + 1 == expected_deliveries) sem_post(&progress);
}

/* Waits for a post of `progress` for up to `ms`; false at the timeout. */
static bool wait_progress(long ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    while (sem_timedwait(&progress, &until))
        if (errno != EINTR) return false;
    return true;
}


static mode_client_t *new_device(const mode_runtime_t *runtime, struct device *d, const char *host, int port, const char *ca) {
    mode_config_t *config = NULL;
    mode_client_t *client = NULL;
    check("config", mode_config_new(strtoull(d->who.id, NULL, 10), d->who.key, &config));
    check("host", mode_config_set_mqtt_host(config, host));
    check("port", mode_config_set_mqtt_port(config, port));
    if (ca) check("ca file", mode_config_set_ca_file(config, ca));
    else check("plain tcp", mode_config_set_plain(config));
    check("keepalive", mode_config_set_keepalive_ms(config, 60000));    /* fleet_mosquitto's 60 s */
    check("in-flight window", mode_config_set_max_inflight(config, 100)); /* as fleet_mosquitto's */
    check("client", mode_client_new_in(runtime, config, &client));
    check("connection cb", mode_client_set_connection_cb(client, on_connection, d, NULL));
    check("delivery cb", mode_client_set_delivery_cb(client, on_delivery, d, NULL));
    check("start", mode_client_start(client));
    return client;
}

int main(int argc, char **argv) {
    struct fleet_options o = {.extra = "--io-threads", .extra_value = 1};
    parse_fleet_options(argc, argv, &o);
    const char *host = o.host, *csv = o.csv, *ca = o.ca;
    int port = o.port, broker_pid = o.broker_pid, n = o.devices, event_devices = o.event_devices, events = o.events;
    int window = o.window, io_threads = o.extra_value;
    if (!window) window = ca ? 32 : 64; /* fleet_mosquitto's windows, for a like-for-like ramp */
    if (n < 1 || window < 1 || io_threads < 1) die("--devices/--window/--io-threads", "must be at least 1");

    /* A socket per device, and 8 fds kept back for the measurement (measure.h). */
    make_room_for_sockets();
    struct device *devs;
    NEW_DEVICES(csv, devs, &n);
    sem_init(&progress, 0, 0);
    mode_runtime_t *runtime = NULL;
    check("runtime", mode_runtime_new((size_t)io_threads, &runtime));
    double heap0 = heap_bytes(), mmapped0 = mmapped_bytes();
    long rss0 = status_kib(0, "VmRSS"), broker0 = broker_pid ? status_kib(broker_pid, "VmRSS") : 0;

    /* Ramp: at most `window` devices between start and their first connection at a time. */
    double t0 = now_s();
    int next = 0;
    while (atomic_load(&ready) < n) {
        while (next < n && next - atomic_load(&ready) < window) {
            devs[next].client = new_device(runtime, &devs[next], host, port, ca);
            next++;
        }
        wait_progress(100);
        while (sem_trywait(&progress) == 0) {} /* several connections may have posted */
        if (now_s() - t0 > 300) die("ramp", "not every device connected and subscribed after 300 s");
    }
    double ramp = now_s() - t0;

    /* Idle: let late packets (mode-sim's DDP reload on the kv subscription) arrive first. */
    sleep(1);
    give_back_fds();
    malloc_trim(0);
    long rss1 = status_kib(0, "VmRSS"), broker1 = broker_pid ? status_kib(broker_pid, "VmRSS") : 0;
    double heap1 = heap_bytes(), mmapped1 = mmapped_bytes();
    long threads = status_kib(0, "Threads");
    int fds = open_fds();
    char thread_names[512];
    threads_by_name(thread_names, sizeof thread_names);
    int idle_failures = atomic_load(&drops_after_ready);

    /* Events: each of the first M devices sends K QoS 1 events at once (the default queue of
     * 10,000 per device holds them: no send meets a full queue). */
    int m = event_devices < n ? event_devices : n;
    long total = (long)m * events;
    expected_deliveries = total; /* before the first send: the dispatcher reads it */
    char data[64];
    double e0 = now_s();
    for (int i = 0; i < m; i++) {
        for (int k = 0; k < events; k++) {
            snprintf(data, sizeof data, "{\"i\":%d,\"v\":21.25}", 10000000 + k);
            check("send", mode_client_send_event(devs[i].client, "reading", data, MODE_QOS_AT_LEAST_ONCE, NULL));
        }
    }
    while (atomic_load(&delivered) < total) {
        wait_progress(100);
        if (now_s() - e0 > 120) die("events", "not every delivery after 120 s");
    }
    double ev_s = (double)last_delivery.tv_sec + (double)last_delivery.tv_nsec / 1e9 - e0;
    if (atomic_load(&delivery_failures)) die("events", "some deliveries failed (not MODE_OK)");

    printf("fleet=libmode tls=%s devices=%d fd_limit_at=%d ramp_s=%.3f ramp_devices_per_s=%.0f rss_kib_per_device=%.2f "
           "heap_kib_per_device=%.2f rss_mib=%.1f threads=%ld fds=%d fds_per_device=%.2f event_devices=%d "
           "events=%ld events_per_s=%.0f broker_rss_kib_per_device=%.2f connect_failures=%d\n",
           ca ? "shared-config" : "none", n, 0, ramp, n / ramp, (double)(rss1 - rss0) / n, (heap1 - heap0) / 1024.0 / n,
           rss1 / 1024.0, threads, fds, (double)fds / n, m, total, total / ev_s,
           broker_pid ? (double)(broker1 - broker0) / n : -1.0, atomic_load(&connect_failures));
    fflush(stdout);
    fprintf(stderr, "fleet_libmode: threads when idle: %s\n", thread_names);
    fprintf(stderr, "fleet_libmode: heap per idle device: %.2f KiB in malloc's arenas, %.2f KiB in chunks of their own mmap\n",
            (heap1 - mmapped1 - heap0 + mmapped0) / 1024.0 / n, (mmapped1 - mmapped0) / 1024.0 / n);
    if (idle_failures) fprintf(stderr, "fleet_libmode: %d connections dropped after the ramp\n", idle_failures);
    atomic_store(&closing, true);
    for (int i = 0; i < n; i++) mode_client_free(devs[i].client);
    check("runtime free", mode_runtime_free(runtime));
    free(devs);
    return 0;
}
