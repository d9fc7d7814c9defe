/*
 * The libmosquitto side of issue 15's fleet benchmark: N MODE devices in one process, every
 * libmosquitto client driven by ONE epoll thread (mosquitto_socket, mosquitto_loop_read /
 * loop_write / loop_misc; no mosquitto_loop_start threads), as a gateway on libmosquitto would.
 *
 *   fleet_mosquitto --host H --port P --devices N [--csv FILE] [--ca PEM [--shared-ctx]]
 *                   [--event-devices M] [--events K] [--window W] [--broker-pid PID]
 *
 * Each device logs in as MODE asks (MQTT 3.1.1, clean session, username = device id, password =
 * API key; docs/protocol.md) and subscribes to /devices/{id}/command and /devices/{id}/kv at
 * QoS 0, as libmode does. Credentials come from a CSV `device_id,api_key,...` with a header line
 * (mode-sim --devices-csv); without one, ids 1..N with key "k" (any broker that lets anyone in).
 * With --ca the connections are TLS: a context per client (mosquitto_tls_set), or with
 * --shared-ctx one SSL_CTX for all (MOSQ_OPT_SSL_CTX), both verifying the chain and the host name.
 *
 * libmosquitto opens a socketpair per client besides its socket (3 fds per device): when the fd
 * limit stops new clients, the run goes on with those that fit and says so (fd_limit_at=).
 *
 * One line of key=value pairs per run (scripts/bench and bench/c/compare.py read it):
 *   ramp: devices/s from the first connect to the last SUBACK, at most W handshakes at once
 *         (default 64, TLS 32; more overflows the broker's listen backlog: see main);
 *   idle: VmRSS and heap in use (mallinfo2: uordblks + hblkhd, as fleet_libmode) before the first client and with all N connected,
 *         subscribed and idle, per device; threads and fds of the process; with --broker-pid
 *         also the broker's VmRSS growth per device (what each connection costs the broker);
 *   events: min(N, M) devices each publish K QoS 1 events of 60 bytes to /devices/{id}/event,
 *           all at once; events/s from the first publish to the last PUBACK (on_publish).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <mosquitto.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#define PROGRAM "fleet_mosquitto"
#define BENCH_FLEET
#include "measure.h"

enum state { IDLE, CONNECTING, READY, FAILED };

struct device {
    struct mosquitto *mosq;
    struct credentials who;
    enum state state;
    int fd;
    uint32_t events; /* what epoll watches for it now */
    int acked;
};

static int ready, failed, acked_total;





static void on_connect(struct mosquitto *mosq, void *userdata, int rc) {
    struct device *d = userdata;
    if (rc) {
        fprintf(stderr, "fleet_mosquitto: device %s refused: %s\n", d->who.id, mosquitto_connack_string(rc));
        d->state = FAILED, failed++;
        return;
    }
    char command[64], kv[64];
    snprintf(command, sizeof command, "/devices/%s/command", d->who.id);
    snprintf(kv, sizeof kv, "/devices/%s/kv", d->who.id);
    char *topics[2] = {command, kv};
    mosquitto_subscribe_multiple(mosq, NULL, 2, topics, 0, 0, NULL); /* MODE grants QoS 0 only */
}

static void on_subscribe(struct mosquitto *mosq, void *userdata, int mid, int count, const int *granted) {
    (void)mosq, (void)mid, (void)count, (void)granted;
    struct device *d = userdata;
    if (d->state == CONNECTING) d->state = READY, ready++;
}

static void on_publish(struct mosquitto *mosq, void *userdata, int mid) {
    (void)mosq, (void)mid;
    ((struct device *)userdata)->acked++;
    acked_total++;
}

static void on_disconnect(struct mosquitto *mosq, void *userdata, int rc) {
    (void)mosq;
    struct device *d = userdata;
    if (d->state == CONNECTING || d->state == READY) {
        fprintf(stderr, "fleet_mosquitto: device %s lost its connection: %s (%d)\n", d->who.id, mosquitto_strerror(rc), rc);
        if (d->state == READY) ready--;
        d->state = FAILED, failed++;
    }
}

static int epfd;

/* Watches the socket for reading always and for writing while libmosquitto has bytes queued,
 * except while a TLS handshake waits for the server: mosquitto_want_write() is true then (the
 * CONNECT is queued) but writing cannot progress, and a level-triggered EPOLLOUT would spin
 * (with 256 handshakes at once that starved the broker into dropping them). */
static void watch(struct device *d) {
    if (d->state == FAILED || d->fd < 0) return;
    SSL *ssl = mosquitto_ssl_get(d->mosq);
    bool out = mosquitto_want_write(d->mosq) && !(ssl && !SSL_is_init_finished(ssl) && SSL_want_read(ssl));
    uint32_t want = EPOLLIN | (out ? EPOLLOUT : 0);
    if (want == d->events) return;
    struct epoll_event ev = {.events = want, .data.ptr = d};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, d->fd, &ev)) die("epoll_ctl", strerror(errno));
    d->events = want;
}

static void serve(struct device *d, uint32_t events) {
    int rc = MOSQ_ERR_SUCCESS;
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) rc = mosquitto_loop_read(d->mosq, 1);
    if (rc == MOSQ_ERR_SUCCESS && (events & EPOLLOUT)) rc = mosquitto_loop_write(d->mosq, 1);
    if (rc != MOSQ_ERR_SUCCESS && d->state != FAILED) {
        fprintf(stderr, "fleet_mosquitto: device %s: %s\n", d->who.id, mosquitto_strerror(rc));
        if (d->state == READY) ready--;
        d->state = FAILED, failed++;
    }
    watch(d);
}

/* One pass of epoll; every second also mosquitto_loop_misc on every client (keepalive). */
static void poll_once(struct device *devs, int n, int timeout_ms) {
    static struct epoll_event evs[1024];
    static double last_misc;
    int k = epoll_wait(epfd, evs, 1024, timeout_ms);
    if (k < 0 && errno != EINTR) die("epoll_wait", strerror(errno));
    for (int i = 0; i < k; i++) serve(evs[i].data.ptr, evs[i].events);
    if (now_s() - last_misc > 1) {
        last_misc = now_s();
        for (int i = 0; i < n; i++)
            if (devs[i].state == READY || devs[i].state == CONNECTING) mosquitto_loop_misc(devs[i].mosq), watch(&devs[i]);
    }
}

int main(int argc, char **argv) {
    struct fleet_options o = {.flag = "--shared-ctx"};
    parse_fleet_options(argc, argv, &o);
    const char *host = o.host, *csv = o.csv, *ca = o.ca;
    int port = o.port, broker_pid = o.broker_pid, n = o.devices, event_devices = o.event_devices, events = o.events;
    int window = o.window, fd_limit_at = 0;
    bool shared_ctx = o.flag_set;
    /* 64 handshakes at once for plain TCP: 256 sometimes overflowed the mosquitto broker's listen
     * backlog (100) and a dropped SYN waits a second for its retransmit (a 1,000-device ramp
     * took 1.16 s instead of 0.09 s). 32 for TLS, where more gains nothing (the handshakes are
     * CPU-bound) and 256 against the mosquitto broker with one shared SSL_CTX left some
     * handshakes stalled until the keepalive ended them. */
    if (!window) window = ca ? 32 : 64;
    if (n < 1 || window < 1) die("--devices/--window", "must be at least 1");

    /* A socket per device, and 8 fds kept back for the measurement (measure.h). */
    make_room_for_sockets();
    struct device *devs;
    NEW_DEVICES(csv, devs, &n);
    mosquitto_lib_init();
    SSL_CTX *ctx = NULL;
    if (ca && shared_ctx) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) die(ca, "cannot load the CA into an SSL_CTX");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        X509_VERIFY_PARAM_set1_host(SSL_CTX_get0_param(ctx), host, 0); /* what mosquitto_tls_set checks too */
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);                /* as libmosquitto's own contexts */
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct mallinfo2 heap0 = mallinfo2();
    long rss0 = status_kib(0, "VmRSS"), broker0 = broker_pid ? status_kib(broker_pid, "VmRSS") : 0;

    /* Ramp: at most `window` clients between connect and SUBACK at a time. */
    double t0 = now_s();
    int next = 0;
    while (ready + failed < n) {
        while (next < n && next - ready - failed < window) {
            struct device *d = &devs[next++];
            d->fd = -1;
            d->state = CONNECTING;
            d->mosq = mosquitto_new(NULL, true, d);
            if (!d->mosq && errno == EMFILE) { d->state = IDLE, fd_limit_at = --next, n = next; break; }
            if (!d->mosq) die("mosquitto_new", strerror(errno));
            mosquitto_int_option(d->mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
            mosquitto_username_pw_set(d->mosq, d->who.id, d->who.key);
            mosquitto_max_inflight_messages_set(d->mosq, 100);
            mosquitto_connect_callback_set(d->mosq, on_connect);
            mosquitto_subscribe_callback_set(d->mosq, on_subscribe);
            mosquitto_publish_callback_set(d->mosq, on_publish);
            mosquitto_disconnect_callback_set(d->mosq, on_disconnect);
            if (ca && shared_ctx) { /* ours as it is: without this libmosquitto asks for a CA file too */
                mosquitto_int_option(d->mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);
                mosquitto_void_option(d->mosq, MOSQ_OPT_SSL_CTX, ctx);
            }
            else if (ca) mosquitto_tls_set(d->mosq, ca, NULL, NULL, NULL, NULL);
            int rc = mosquitto_connect_async(d->mosq, host, port, 60);
            if (rc == MOSQ_ERR_ERRNO && errno == EMFILE) { /* the fd limit: measure the devices that fit */
                mosquitto_destroy(d->mosq);
                d->mosq = NULL, d->state = IDLE, fd_limit_at = --next, n = next;
                break;
            }
            if (rc != MOSQ_ERR_SUCCESS) die("mosquitto_connect_async", mosquitto_strerror(rc));
            d->fd = mosquitto_socket(d->mosq);
            d->events = EPOLLIN | EPOLLOUT; /* the CONNECT (and TLS handshake) is queued */
            struct epoll_event ev = {.events = d->events, .data.ptr = d};
            if (epoll_ctl(epfd, EPOLL_CTL_ADD, d->fd, &ev)) die("epoll_ctl add", strerror(errno));
        }
        poll_once(devs, next, 100);
        if (now_s() - t0 > 300) die("ramp", "not every device subscribed after 300 s");
    }
    double ramp = now_s() - t0;
    if (failed) die("ramp", "some devices failed (above)");

    /* Idle: let late packets (mode-sim's DDP reload on the kv subscription) arrive first. */
    for (double t = now_s(); now_s() - t < 1;) poll_once(devs, n, 50);
    give_back_fds();
    malloc_trim(0);
    long rss1 = status_kib(0, "VmRSS"), broker1 = broker_pid ? status_kib(broker_pid, "VmRSS") : 0;
    struct mallinfo2 heap1 = mallinfo2();
    long threads = status_kib(0, "Threads");
    int fds = open_fds();

    /* Events: each of the first M devices publishes K QoS 1 events at once. */
    int m = event_devices < n ? event_devices : n;
    char payload[80], topic[64];
    double e0 = now_s();
    for (int i = 0; i < m; i++) {
        snprintf(topic, sizeof topic, "/devices/%s/event", devs[i].who.id);
        for (int k = 0; k < events; k++) {
            int len = snprintf(payload, sizeof payload, "{\"eventType\":\"reading\",\"eventData\":{\"i\":%d,\"v\":21.25}}",
                               10000000 + k);
            int rc = mosquitto_publish(devs[i].mosq, NULL, topic, len, payload, 1, false);
            if (rc != MOSQ_ERR_SUCCESS) die("mosquitto_publish", mosquitto_strerror(rc));
        }
        watch(&devs[i]);
    }
    long total = (long)m * events;
    while (acked_total < total && failed == 0) {
        poll_once(devs, n, 100);
        if (now_s() - e0 > 120) die("events", "not every PUBACK after 120 s");
    }
    double ev_s = now_s() - e0;

    printf("fleet=libmosquitto tls=%s devices=%d fd_limit_at=%d ramp_s=%.3f ramp_devices_per_s=%.0f rss_kib_per_device=%.2f "
           "heap_kib_per_device=%.2f rss_mib=%.1f threads=%ld fds=%d fds_per_device=%.2f event_devices=%d "
           "events=%ld events_per_s=%.0f broker_rss_kib_per_device=%.2f\n",
           ca ? (shared_ctx ? "shared-ctx" : "ctx-per-client") : "none", n, fd_limit_at, ramp, n / ramp, (double)(rss1 - rss0) / n,
           ((double)heap1.uordblks + (double)heap1.hblkhd - (double)heap0.uordblks - (double)heap0.hblkhd) / 1024.0 / n, rss1 / 1024.0, threads, fds, (double)fds / n, m,
           total, total / ev_s, broker_pid ? (double)(broker1 - broker0) / n : -1.0);
    fflush(stdout);
    for (int i = 0; i < n; i++) {
        if (devs[i].state == READY) devs[i].state = IDLE, mosquitto_disconnect(devs[i].mosq);
        if (devs[i].mosq) mosquitto_destroy(devs[i].mosq);
    }
    if (ctx) SSL_CTX_free(ctx);
    mosquitto_lib_cleanup();
    free(devs);
    return 0;
}
