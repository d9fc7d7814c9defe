/*
 * What mode.h shares with mode_core.h, through libmode: the header included twice (C11 and
 * C++17), the status texts and the version, the last error, and the engine (`mode_engine_*`),
 * which libmode exports too so a client user sees one API. The engine itself is tested
 * against libmode_core alone by tests/c/test_engine.c (tests/c/core.sh). Run plain, under
 * ASan+UBSan, and under valgrind by tests/c/run.sh.
 */
#include "mode.h"
#include "mode.h" /* twice on purpose: the include guards must hold */

#include "check.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* X(NAME) for every value of mode_status_t, generated from mode_core.h by tests/c/run.sh. */
#include "header_statuses.h"

static void test_status_and_version(void) {
    CHECK(strcmp(mode_version(), MODE_VERSION) == 0);
    /* Every value the header declares has its own text, starting with its name. */
    static const struct { const char *name; int value; } statuses[] = {
#define X(name) {#name, (int)name},
        MODE_HEADER_STATUSES
#undef X
    };
    size_t count = sizeof statuses / sizeof statuses[0];
    CHECK(count >= 19);
    for (size_t i = 0; i < count; i++) {
        const char *text = mode_status_str(statuses[i].value);
        size_t name_len = strlen(statuses[i].name);
        int ok = text != NULL && strncmp(text, statuses[i].name, name_len) == 0 && strncmp(text + name_len, ": ", 2) == 0;
        if (!ok) fprintf(stderr, "mode_status_str(%s = %d) = \"%s\"\n", statuses[i].name, statuses[i].value, text);
        CHECK(ok);
    }
    /* Any other int gets the generic text, never NULL. */
    const int others[] = {-1, 18, 19, 50, 98, 100, 12345, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        CHECK(strcmp(mode_status_str(others[i]), "unknown mode_status_t value") == 0);
    }
}

static void test_the_last_error_says_why_and_survives_reading_it(void) {
    mode_engine_config_t config;
    CHECK_STATUS(mode_engine_config_init(1001, 7, &config), MODE_OK);
    config.queue_size = 0;
    mode_engine_t *engine = NULL;
    CHECK_STATUS(mode_engine_new(&config, 0, &engine), MODE_ERR_CONFIG);
    CHECK(engine == NULL);
    CHECK(strstr(last_error(), "queue") != NULL);
    size_t len = 0;
    CHECK_STATUS(mode_last_error(NULL, 0, &len), MODE_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen(last_error())); /* asking for the length did not replace the text */
    CHECK(strstr(last_error(), "queue") != NULL);
    /* An error without more to say gets its status's text. */
    CHECK_STATUS(mode_engine_new(NULL, 0, &engine), MODE_ERR_NULL);
    CHECK(strncmp(last_error(), "MODE_ERR_NULL", 13) == 0);
}

/* libmode carries the engine: a device that keeps its own MQTT stack links libmode or
 * libmode_core alike. One event goes from a send to the transport, acknowledged. */
static void test_libmode_exports_the_engine(void) {
    mode_engine_config_t config;
    mode_engine_t *engine = NULL;
    CHECK_STATUS(mode_engine_config_init(1001, 7, &config), MODE_OK);
    CHECK_STATUS(mode_engine_new(&config, 0, &engine), MODE_OK);
    const char *data = "{\"celsius\":21.5}";
    uint64_t id = 0;
    CHECK_STATUS(mode_engine_send_event(engine, "temperature", data, strlen(data), MODE_QOS_AT_LEAST_ONCE, &id), MODE_OK);
    int published = 0;
    for (int guard = 0; guard < 20; guard++) {
        mode_transmit_t t;
        CHECK_STATUS(mode_engine_poll_transmit(engine, &t), MODE_OK);
        if (t.kind == MODE_TRANSMIT_NONE) break;
        if (t.kind == MODE_TRANSMIT_CONNECT) CHECK_STATUS(mode_engine_connected(engine, 1), MODE_OK);
        if (t.kind == MODE_TRANSMIT_SUBSCRIBE) CHECK_STATUS(mode_engine_subscribed(engine, 2), MODE_OK);
        if (t.kind == MODE_TRANSMIT_PUBLISH) {
            published++;
            CHECK(t.publish.id == id);
            char payload[128] = {0};
            CHECK(t.publish.payload_len < sizeof payload);
            memcpy(payload, t.publish.payload, t.publish.payload_len < sizeof payload ? t.publish.payload_len : 0);
            CHECK(strstr(payload, "\"celsius\":21.5") != NULL);
            CHECK_STATUS(mode_engine_delivered(engine, t.publish.id, 3), MODE_OK);
        }
    }
    CHECK(published == 1);
    mode_stats_t stats;
    CHECK_STATUS(mode_engine_stats(engine, &stats), MODE_OK);
    CHECK(stats.messages_acked == 1);
    mode_engine_free(engine);
}

int main(void) {
    test_status_and_version();
    test_the_last_error_says_why_and_survives_reading_it();
    test_libmode_exports_the_engine();
    return checks_done("test_core");
}
