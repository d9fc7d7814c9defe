/*
 * The code of tests/c/sim.h: what the tests against tests/c/sim.sh's mode-sim share. Linked
 * into test_client, test_client_config, test_tls and test_runtime by tests/c/run.sh.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include "sim.h"

#include "check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <time.h>

int mqtt_port;
const char *http_url;
long wait_limit_ms = 10000;
static FILE *console;

void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void sim_open(void) {
    const char *port = getenv("MODE_TEST_MQTT_PORT");
    const char *console_path = getenv("MODE_TEST_CONSOLE");
    http_url = getenv("MODE_TEST_HTTP_URL");
    if (!port || !console_path || !http_url) {
        fprintf(stderr, "run through tests/c/run.sh (needs MODE_TEST_MQTT_PORT, MODE_TEST_HTTP_URL, MODE_TEST_CONSOLE)\n");
        exit(2);
    }
    mqtt_port = atoi(port);
    console = fopen(console_path, "w");
    if (!console) {
        perror("console");
        exit(2);
    }
}

void say(const char *format, ...) {
    va_list args;
    va_start(args, format);
    vfprintf(console, format, args);
    va_end(args);
    fputc('\n', console);
    fflush(console);
}

void sim_close(void) { fclose(console); }

mode_config_t *sim_config(uint64_t device, const char *key, int port) {
    mode_config_t *config = NULL;
    CHECK_STATUS(mode_config_new(device, key, &config), MODE_OK);
    CHECK_STATUS(mode_config_set_mqtt_host(config, "127.0.0.1"), MODE_OK);
    CHECK_STATUS(mode_config_set_mqtt_port(config, port), MODE_OK);
    CHECK_STATUS(mode_config_set_plain(config), MODE_OK);
    CHECK_STATUS(mode_config_set_keepalive_ms(config, 5000), MODE_OK);
    CHECK_STATUS(mode_config_set_backoff_ms(config, 50, 200), MODE_OK);
    CHECK_STATUS(mode_config_set_api_url(config, http_url), MODE_OK);
    return config;
}
