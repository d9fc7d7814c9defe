/*
 * One device streams N MODE events through libmode's C API as fast as it accepts them, and prints
 * events/s: the libmode half of issue 15's single-device comparison (events_mosquitto.c is the
 * other half, with the same payload and the same in-flight window, against the same broker).
 *
 *   events_libmode HOST PORT DEVICE_ID API_KEY QOS COUNT
 *
 * The clock starts once the device is connected and subscribed (the connection callback) and
 * stops at the COUNTth delivery callback: for QoS 1 the broker's PUBACK, for QoS 0 the event
 * written to the socket. libmosquitto's on_publish means the same two things, so both programs
 * time the same span. Each event is 60 bytes on the wire:
 * {"eventType":"reading","eventData":{"i":10000000,"v":21.25}} with i counting up.
 */
#define _POSIX_C_SOURCE 200809L
#include <mode.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define PROGRAM "events_libmode"
#define BENCH_EVENTS
#include "measure.h"

static atomic_bool connected;
static atomic_ulong failed;

static void on_connection(void *userdata, bool up, const char *reason, size_t reason_len, int64_t retry_in_ms) {
    (void)userdata, (void)reason_len, (void)retry_in_ms;
    if (!up) fprintf(stderr, "events_libmode: disconnected: %s\n", reason);
    atomic_store(&connected, up);
}

static void on_delivery(void *userdata, uint64_t message_id, mode_status_t status) {
    (void)userdata, (void)message_id;
    if (status != MODE_OK) atomic_fetch_add(&failed, 1);
    count_ack();
}

int main(int argc, char **argv) {
    struct events_args run = events_args(argc, argv, 0, "HOST PORT DEVICE_ID API_KEY QOS COUNT");
    int qos = run.qos;
    unsigned long count = run.count;
    mode_config_t *config = NULL;
    check("config", mode_config_new(strtoull(run.device, NULL, 10), run.key, &config));
    check("plain tcp", mode_config_set_plain(config));
    check("host", mode_config_set_mqtt_host(config, run.host));
    check("port", mode_config_set_mqtt_port(config, run.port));
    check("in-flight window", mode_config_set_max_inflight(config, 100)); /* libmode's default, set for the record */
    check("queue size", mode_config_set_queue_size(config, count + 1));  /* the sender never meets a full queue */
    mode_client_t *client = NULL;
    check("client", mode_client_new(config, &client));
    check("connection cb", mode_client_set_connection_cb(client, on_connection, NULL, NULL));
    check("delivery cb", mode_client_set_delivery_cb(client, on_delivery, NULL, NULL));
    check("start", mode_client_start(client));
    double deadline = now_s() + 10;
    while (!atomic_load(&connected)) {
        if (now_s() > deadline) { fprintf(stderr, "events_libmode: not connected after 10 s\n"); return 1; }
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }

    char data[64];
    double start = now_s();
    for (unsigned long i = 0; i < count; i++) {
        snprintf(data, sizeof data, "{\"i\":%lu,\"v\":21.25}", 10000000 + i % 90000000);
        mode_status_t status;
        while ((status = mode_client_send_event(client, "reading", data, qos, NULL)) == MODE_ERR_QUEUE_FULL) sched_yield();
        check("send", status);
    }
    double sent = now_s();
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 60;
    if (sem_timedwait(&all_acked, &limit)) {
        fprintf(stderr, "events_libmode: %lu of %lu delivered after 60 s\n", atomic_load(&acked), count);
        return 1;
    }
    double end = last_ack_s();
    mode_stats_t stats;
    check("stats", mode_client_stats(client, &stats));
    mode_client_stop(client, 5000);
    mode_client_free(client);
    if (atomic_load(&failed)) { fprintf(stderr, "events_libmode: %lu deliveries failed\n", atomic_load(&failed)); return 1; }
    printf("libmode qos=%d events=%lu seconds=%.4f events_per_s=%.0f send_calls_per_s=%.0f bytes_out=%llu\n", qos, count,
           end - start, (double)count / (end - start), (double)count / (sent - start), (unsigned long long)stats.bytes_out);
    return 0;
}
