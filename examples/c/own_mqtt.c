/*
 * The same device as device.c, for firmware that already owns its MQTT stack: libmosquitto
 * keeps the connection, libmode's IO-free session (mode_session_*) does the MODE protocol —
 * which topics to subscribe to, what an incoming publish means (a command, a DDP change applied
 * to the session's mirror, a bulk response), and how to encode events and key-value writes.
 * libmode opens no socket and starts no thread here.
 *
 * Build:
 *   cc -std=c11 -o own_mqtt examples/c/own_mqtt.c $(pkg-config --cflags --libs mode libmosquitto)
 * Run against the local simulator (cargo run -p mode-sim; MQTT on 1883):
 *   ./own_mqtt 127.0.0.1 1883 1001 v1.demo-device-1001 10
 * Arguments: HOST PORT DEVICE_ID API_KEY [SECONDS, 0 = until interrupted]. (Plain TCP here; for
 * the real cloud add mosquitto_tls_set() and port 8883.)
 */
#include <mode.h>
#include <mosquitto.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t running = 1;

static void stop_running(int signal) {
    (void)signal;
    running = 0;
}

typedef struct {
    struct mosquitto *mosq;
    mode_session_t *session;
} device_t;

/* libmode hands each encoded publish here; libmosquitto sends it. Like every string libmode
 * hands out, the topic has a length and a NUL, so it goes to libmosquitto as it is. */
static void publish(void *userdata, const mode_outgoing_t *out) {
    device_t *device = (device_t *)userdata;
    int rc = mosquitto_publish(device->mosq, NULL, out->topic, (int)out->payload_len, out->payload, out->qos, false);
    if (rc != MOSQ_ERR_SUCCESS) fprintf(stderr, "publish to %s: %s\n", out->topic, mosquitto_strerror(rc));
}

static void subscribe(void *userdata, const char *topic, size_t topic_len) {
    device_t *device = (device_t *)userdata;
    (void)topic_len;
    mosquitto_subscribe(device->mosq, NULL, topic, 0); /* MODE grants QoS 0 only */
}

static void unsubscribe(void *userdata, const char *topic, size_t topic_len) {
    device_t *device = (device_t *)userdata;
    (void)topic_len;
    mosquitto_unsubscribe(device->mosq, NULL, topic);
}

static void on_connect(struct mosquitto *mosq, void *userdata, int rc) {
    device_t *device = (device_t *)userdata;
    (void)mosq;
    if (rc != 0) {
        printf("refused: %s\n", mosquitto_connack_string(rc));
        fflush(stdout);
        return;
    }
    printf("connected\n");
    fflush(stdout);
    mode_session_subscriptions(device->session, subscribe, device);
    mode_session_on_subscribed(device->session); /* the reload that follows is the new truth */
}

static void on_command(void *userdata, const char *action, size_t action_len, const char *parameters, size_t parameters_len) {
    device_t *device = (device_t *)userdata;
    printf("command %.*s %.*s\n", (int)action_len, action, (int)parameters_len, parameters);
    fflush(stdout);
    char data[256];
    snprintf(data, sizeof data, "{\"action\":\"%.*s\"}", (int)action_len, action);
    mode_session_encode_event(device->session, "command-done", data, MODE_QOS_AT_LEAST_ONCE, publish, device);
}

static void on_kv(void *userdata, mode_change_kind_t kind, const char *key, size_t key_len, const char *value,
                  size_t value_len, const char *previous, size_t previous_len) {
    (void)userdata;
    if (kind == MODE_CHANGE_SET) {
        printf("kv set %.*s = %.*s (was %.*s)\n", (int)key_len, key, (int)value_len, value,
               previous ? (int)previous_len : 4, previous ? previous : "none");
    } else {
        printf("kv deleted %.*s (was %.*s)\n", (int)key_len, key, (int)previous_len, previous);
    }
    fflush(stdout);
}

static void on_message(struct mosquitto *mosq, void *userdata, const struct mosquitto_message *message) {
    device_t *device = (device_t *)userdata;
    (void)mosq;
    mode_incoming_handlers_t handlers = {on_command, on_kv, NULL};
    mode_incoming_kind_t kind;
    /* Topic as pointer + length: stacks that hand a topic without a NUL (ESP-MQTT, coreMQTT)
     * pass theirs the same way, without a copy. */
    mode_status_t status =
        mode_session_handle(device->session, message->topic, strlen(message->topic), (const uint8_t *)message->payload,
                            (size_t)message->payloadlen, &handlers, device, &kind, NULL);
    if (status == MODE_ERR_DECODE) {
        char why[256];
        size_t len = 0;
        mode_last_error(why, sizeof why, &len);
        fprintf(stderr, "ignored a malformed message on %s: %s\n", message->topic, why);
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT DEVICE_ID API_KEY [SECONDS]\n", argv[0]);
        return 2;
    }
    int seconds = argc > 5 ? atoi(argv[5]) : 0;
    device_t device = {NULL, NULL};
    mode_status_t status = mode_session_new(strtoull(argv[3], NULL, 10), (uint64_t)time(NULL), &device.session);
    if (status != MODE_OK) {
        fprintf(stderr, "session: %s\n", mode_status_str(status));
        return 1;
    }

    mosquitto_lib_init();
    device.mosq = mosquitto_new(NULL, true, &device); /* MODE: clean session, no will, no retain */
    mosquitto_int_option(device.mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_username_pw_set(device.mosq, argv[3], argv[4]); /* username = device id, password = key */
    mosquitto_connect_callback_set(device.mosq, on_connect);
    mosquitto_message_callback_set(device.mosq, on_message);
    int rc = mosquitto_connect(device.mosq, argv[1], atoi(argv[2]), 60);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "connect: %s\n", mosquitto_strerror(rc));
        return 1;
    }

    /* One thread: libmosquitto's loop and the ticks share it, so the session needs no lock. */
    signal(SIGINT, stop_running);
    signal(SIGTERM, stop_running);
    time_t next_tick = time(NULL) + 1;
    int tick = 0;
    while (running && (seconds == 0 || tick < seconds)) {
        rc = mosquitto_loop(device.mosq, 100, 1);
        if (rc != MOSQ_ERR_SUCCESS) mosquitto_reconnect(device.mosq); /* libmosquitto's own backoff is the caller's job */
        if (time(NULL) >= next_tick) {
            next_tick++;
            char data[64];
            snprintf(data, sizeof data, "{\"n\":%d}", ++tick);
            mode_session_encode_event(device.session, "tick", data, MODE_QOS_AT_LEAST_ONCE, publish, &device);
        }
    }
    for (int i = 0; i < 10; i++) mosquitto_loop(device.mosq, 50, 1); /* let the last PUBACKs in */

    char mirror[1024];
    size_t len = 0;
    if (mode_session_kv_snapshot(device.session, mirror, sizeof mirror, &len) == MODE_OK) printf("mirror %s\n", mirror);
    /* Graceful, as MODE asks: UNSUBSCRIBE every topic, then DISCONNECT. */
    mode_session_subscriptions(device.session, unsubscribe, &device);
    mosquitto_loop(device.mosq, 100, 1);
    mosquitto_disconnect(device.mosq);
    mosquitto_destroy(device.mosq);
    mosquitto_lib_cleanup();
    mode_session_free(device.session);
    printf("stopped after %d ticks\n", tick);
    return 0;
}
