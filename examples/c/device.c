/*
 * A complete MODE device in C on libmode's managed client: it connects, sends a "tick" event
 * every second, answers each command with a "command-done" event, and prints every change of
 * its Device Data Proxy keys. libmode reconnects by itself and keeps what is queued meanwhile;
 * the delivery callback says when each event reached the cloud, and the library's own log lines
 * go to the log callback.
 *
 * Build (after scripts/install-c /usr/local, or any prefix on PKG_CONFIG_PATH):
 *   cc -std=c11 -o device examples/c/device.c $(pkg-config --cflags --libs mode)
 * Run against the local simulator (cargo run -p mode-sim; MQTT on 1883, plain TCP):
 *   MODE_PLAIN=1 ./device 127.0.0.1 1883 1001 v1.demo-device-1001 10
 *   (then type `command 1001 {"action":"light","parameters":{"on":true}}` or
 *    `kv 1001 color "red"` into the simulator's console)
 * Run against the real cloud (MQTT over TLS): ./device mqtt.tinkermode.com 8883 DEVICE_ID API_KEY
 * Arguments: HOST PORT DEVICE_ID API_KEY [SECONDS, 0 = until interrupted].
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep under -std=c11 */
#include <mode.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile sig_atomic_t running = 1;
static atomic_ulong delivered, not_delivered;

static void stop_running(int signal) {
    (void)signal;
    running = 0;
}

/* Callbacks run on libmode's callback thread; calling the client from them is allowed. */
static void on_connection(void *client, bool connected, const char *reason, size_t reason_len, int64_t retry_in_ms) {
    (void)client;
    if (connected) {
        printf("connected\n");
    } else {
        printf("disconnected: %.*s (retry in %lld ms)\n", (int)reason_len, reason, (long long)retry_in_ms);
    }
    fflush(stdout);
}

static void on_command(void *client, const char *action, size_t action_len, const char *parameters, size_t parameters_len) {
    printf("command %.*s %.*s\n", (int)action_len, action, (int)parameters_len, parameters);
    fflush(stdout);
    char data[256];
    snprintf(data, sizeof data, "{\"action\":\"%.*s\"}", (int)action_len, action);
    mode_status_t status =
        mode_client_send_event((const mode_client_t *)client, "command-done", data, MODE_QOS_AT_LEAST_ONCE, NULL);
    if (status != MODE_OK) fprintf(stderr, "could not answer: %s\n", mode_status_str(status));
}

static void on_kv(void *client, mode_change_kind_t kind, const char *key, size_t key_len, const char *value,
                  size_t value_len, const char *previous, size_t previous_len) {
    (void)client;
    if (kind == MODE_CHANGE_SET) {
        printf("kv set %.*s = %.*s (was %.*s)\n", (int)key_len, key, (int)value_len, value,
               previous ? (int)previous_len : 4, previous ? previous : "none");
    } else {
        printf("kv deleted %.*s (was %.*s)\n", (int)key_len, key, (int)previous_len, previous);
    }
    fflush(stdout);
}

/* Once per message a send accepted, with the id that send returned. */
static void on_delivery(void *userdata, uint64_t message_id, mode_status_t status) {
    (void)userdata;
    if (status == MODE_OK) {
        atomic_fetch_add(&delivered, 1);
    } else {
        atomic_fetch_add(&not_delivered, 1);
        fprintf(stderr, "message %llu not delivered: %s\n", (unsigned long long)message_id, mode_status_str(status));
    }
}

/* The library's own log lines (connection refused, reconnecting, malformed messages, ...). */
static void on_log(void *userdata, const mode_log_record_t *record) {
    static const char *const names[] = {"?", "info", "warn", "error", "debug", "trace"};
    (void)userdata;
    fprintf(stderr, "libmode %s %s: %s\n", names[record->level <= 5 ? record->level : 0], record->target, record->message);
}

/* Why the last call on this thread failed. */
static int fail(const char *what, mode_status_t status) {
    char why[256];
    size_t len = 0;
    mode_last_error(why, sizeof why, &len);
    fprintf(stderr, "%s: %s (%s)\n", what, mode_status_str(status), why);
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s HOST PORT DEVICE_ID API_KEY [SECONDS]\n", argv[0]);
        return 2;
    }
    int seconds = argc > 5 ? atoi(argv[5]) : 0;
    mode_config_t *config = NULL;
    mode_status_t status = mode_config_new(strtoull(argv[3], NULL, 10), argv[4], &config);
    if (status != MODE_OK) return fail("config", status);
    mode_config_set_mqtt_host(config, argv[1]);
    status = mode_config_set_mqtt_port(config, atoi(argv[2]));
    if (status != MODE_OK) return fail("port", status);
    if (getenv("MODE_PLAIN")) mode_config_set_plain(config); /* the local simulator only */

    mode_client_t *client = NULL;
    status = mode_client_new(config, &client); /* consumes config when it succeeds */
    if (status != MODE_OK) {
        fail("client", status); /* e.g. MODE_ERR_CONFIG with the reason */
        mode_config_free(config);
        return 1;
    }
    mode_client_set_connection_cb(client, on_connection, client, NULL);
    mode_client_set_command_cb(client, on_command, client, NULL);
    mode_client_set_kv_cb(client, on_kv, client, NULL);
    mode_client_set_delivery_cb(client, on_delivery, NULL, NULL);
    mode_client_set_log_cb(client, on_log, NULL, NULL);
    status = mode_client_start(client);
    if (status != MODE_OK) return fail("start", status);

    signal(SIGINT, stop_running);
    signal(SIGTERM, stop_running);
    for (int tick = 1; running && (seconds == 0 || tick <= seconds); tick++) {
        struct timespec second = {1, 0};
        nanosleep(&second, NULL);
        char data[64];
        snprintf(data, sizeof data, "{\"n\":%d}", tick);
        uint64_t id = 0;
        status = mode_client_send_event(client, "tick", data, MODE_QOS_AT_LEAST_ONCE, &id);
        if (status != MODE_OK) fprintf(stderr, "tick %d not queued: %s\n", tick, mode_status_str(status));
    }

    mode_stats_t stats;
    if (mode_client_stats(client, &stats) == MODE_OK) {
        printf("sent %llu, acknowledged %llu, reconnects %llu\n", (unsigned long long)stats.messages_queued,
               (unsigned long long)stats.messages_acked, (unsigned long long)stats.reconnects);
    }
    status = mode_client_stop(client, 5000); /* delivers what is queued, then disconnects */
    mode_client_free(client); /* every delivery callback has run when it returns */
    printf("delivered %lu, not delivered %lu\n", (unsigned long)atomic_load(&delivered),
           (unsigned long)atomic_load(&not_delivered));
    printf("stopped: %s\n", mode_status_str(status));
    return status == MODE_OK ? 0 : 1;
}
