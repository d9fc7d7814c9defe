/*
 * A complete MODE device in C on libmode's managed client: it connects, sends a "tick" event
 * every second, answers each command with a "command-done" event, and prints every change of
 * its Device Data Proxy keys. libmode reconnects by itself and keeps what is queued meanwhile.
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
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile sig_atomic_t running = 1;

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
    mode_status_t status = mode_client_send_event((const mode_client_t *)client, "command-done", data, 1);
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

static int fail(const char *what, mode_status_t status) {
    fprintf(stderr, "%s: %s\n", what, mode_status_str(status));
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
    if (getenv("MODE_PLAIN")) mode_config_set_plain_tcp(config); /* the local simulator only */
    status = mode_config_validate(config);
    if (status != MODE_OK) {
        fprintf(stderr, "config: %s\n", mode_config_last_error(config));
        mode_config_free(config);
        return 1;
    }

    mode_client_t *client = NULL;
    status = mode_client_new(config, &client); /* consumes config */
    if (status != MODE_OK) return fail("client", status);
    mode_client_set_connection_cb(client, on_connection, client, NULL);
    mode_client_set_command_cb(client, on_command, client, NULL);
    mode_client_set_kv_cb(client, on_kv, client, NULL);
    status = mode_client_start(client);
    if (status != MODE_OK) return fail("start", status);

    signal(SIGINT, stop_running);
    signal(SIGTERM, stop_running);
    for (int tick = 1; running && (seconds == 0 || tick <= seconds); tick++) {
        struct timespec second = {1, 0};
        nanosleep(&second, NULL);
        char data[64];
        snprintf(data, sizeof data, "{\"n\":%d}", tick);
        status = mode_client_send_event(client, "tick", data, 1);
        if (status != MODE_OK) fprintf(stderr, "tick %d not queued: %s\n", tick, mode_status_str(status));
    }

    mode_stats_t stats;
    if (mode_client_stats(client, &stats) == MODE_OK) {
        printf("sent %llu, acknowledged %llu, reconnects %llu\n", (unsigned long long)stats.messages_queued,
               (unsigned long long)stats.messages_acked, (unsigned long long)stats.reconnects);
    }
    status = mode_client_stop(client, 5000); /* delivers what is queued, then disconnects */
    mode_client_free(client);
    printf("stopped: %s\n", mode_status_str(status));
    return status == MODE_OK ? 0 : 1;
}
