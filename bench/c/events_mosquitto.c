/*
 * One device streams N MODE events through libmosquitto as fast as it accepts them, and prints
 * events/s: the baseline half of issue 15's single-device comparison (events_libmode.c is the
 * other half: same payload, same in-flight window of 100, same broker, same MODE login).
 *
 *   events_mosquitto HOST PORT DEVICE_ID API_KEY QOS COUNT [threaded|inline]
 *
 * threaded (the default): libmosquitto's own loop thread (mosquitto_loop_start), the way most
 * applications use it and the closest match to libmode's background connection task; the
 * application thread only calls mosquitto_publish. inline: no thread, mosquitto_publish writes
 * at once from the calling thread and the program reads PUBACKs in between (a tight loop).
 * The clock starts after CONNACK and SUBACK (the device's command and kv topics, as libmode
 * subscribes them) and stops at the COUNTth on_publish: QoS 1 the PUBACK, QoS 0 the write.
 */
#define _POSIX_C_SOURCE 200809L
#include <mosquitto.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROGRAM "events_mosquitto"
#define BENCH_EVENTS
#include "measure.h"

static atomic_bool subscribed;
static char topics[2][64];

static void on_connect(struct mosquitto *mosq, void *userdata, int rc) {
    (void)userdata;
    if (rc) { fprintf(stderr, "events_mosquitto: CONNACK %d: %s\n", rc, mosquitto_connack_string(rc)); exit(1); }
    char *subs[2] = {topics[0], topics[1]};
    mosquitto_subscribe_multiple(mosq, NULL, 2, subs, 0, 0, NULL); /* MODE grants QoS 0 */
}

static void on_subscribe(struct mosquitto *mosq, void *userdata, int mid, int count, const int *granted) {
    (void)mosq, (void)userdata, (void)mid, (void)count, (void)granted;
    atomic_store(&subscribed, true);
}

static void on_publish(struct mosquitto *mosq, void *userdata, int mid) {
    (void)mosq, (void)userdata, (void)mid;
    count_ack();
}

static void check(const char *what, int rc) {
    if (rc == MOSQ_ERR_SUCCESS) return;
    fprintf(stderr, "events_mosquitto: %s: %s\n", what, mosquitto_strerror(rc));
    exit(1);
}

int main(int argc, char **argv) {
    struct events_args run = events_args(argc, argv, 1, "HOST PORT DEVICE_ID API_KEY QOS COUNT [threaded|inline]");
    int qos = run.qos;
    unsigned long count = run.count;
    int threaded = argc == 7 || strcmp(argv[7], "inline") != 0;
    char event_topic[64];
    snprintf(event_topic, sizeof event_topic, "/devices/%s/event", run.device);
    snprintf(topics[0], sizeof topics[0], "/devices/%s/command", run.device);
    snprintf(topics[1], sizeof topics[1], "/devices/%s/kv", run.device);

    mosquitto_lib_init();
    struct mosquitto *mosq = mosquitto_new(NULL, true, NULL);
    if (!mosq) { fprintf(stderr, "events_mosquitto: mosquitto_new failed\n"); return 1; }
    check("protocol", mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311));
    check("login", mosquitto_username_pw_set(mosq, run.device, run.key)); /* user = device id, password = key */
    check("in-flight window", mosquitto_max_inflight_messages_set(mosq, 100)); /* as libmode's default */
    mosquitto_connect_callback_set(mosq, on_connect);
    mosquitto_subscribe_callback_set(mosq, on_subscribe);
    mosquitto_publish_callback_set(mosq, on_publish);
    check("connect", mosquitto_connect(mosq, run.host, run.port, 60));
    if (threaded) check("loop_start", mosquitto_loop_start(mosq));
    double deadline = now_s() + 10;
    while (!atomic_load(&subscribed)) {
        if (now_s() > deadline) { fprintf(stderr, "events_mosquitto: not subscribed after 10 s\n"); return 1; }
        if (threaded) {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        } else {
            check("loop", mosquitto_loop(mosq, 10, 1));
        }
    }

    char payload[80];
    double start = now_s();
    for (unsigned long i = 0; i < count; i++) {
        int len = snprintf(payload, sizeof payload, "{\"eventType\":\"reading\",\"eventData\":{\"i\":%lu,\"v\":21.25}}",
                           10000000 + i % 90000000);
        check("publish", mosquitto_publish(mosq, NULL, event_topic, len, payload, qos, false));
        /* inline: take in what the broker sent (PUBACKs free the in-flight window) without waiting */
        if (!threaded && (i & 63) == 63) check("loop_read", mosquitto_loop_read(mosq, 64));
    }
    double sent = now_s();
    struct timespec limit;
    clock_gettime(CLOCK_REALTIME, &limit);
    limit.tv_sec += 60;
    while (atomic_load(&acked) < count) {
        if (now_s() > sent + 60) { fprintf(stderr, "events_mosquitto: %lu of %lu published after 60 s\n", atomic_load(&acked), count); return 1; }
        if (threaded) {
            if (sem_timedwait(&all_acked, &limit) == 0) break;
        } else {
            check("loop", mosquitto_loop(mosq, 10, 100));
        }
    }
    double end = last_ack_s();
    mosquitto_disconnect(mosq);
    if (threaded) mosquitto_loop_stop(mosq, false);
    mosquitto_destroy(mosq);
    mosquitto_lib_cleanup();
    printf("mosquitto-%s qos=%d events=%lu seconds=%.4f events_per_s=%.0f send_calls_per_s=%.0f\n", threaded ? "threaded" : "inline",
           qos, count, end - start, (double)count / (end - start), (double)count / (sent - start));
    return 0;
}
