/*
 * The managed client's config and its refusals through the C API (tests/c/run.sh runs it beside
 * the mode-sim it starts, whose address the configs carry): every setting checked as it is set,
 * a config that cannot work refused at mode_client_new and left to the caller, the durable
 * outbox's settings and the outbox across two clients (the one test here that connects),
 * the last error per thread, and calls before start or on NULL answered with a status.
 * The client connected is tests/c/test_client.c.
 */
#define _DEFAULT_SOURCE /* mkdtemp */
#include "check.h"
#include "sim.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- every number setting: its setter, a value, the status it must give -------------------- */

typedef enum { TRANSPORT, PORT, KEEPALIVE, QUEUE, POLICY, MAX_MESSAGE, CONNECT_TIMEOUT, REQUEST_TIMEOUT, INFLIGHT } setting_t;

static const char *const setting_names[] = {"transport", "mqtt_port", "keepalive_ms", "queue_size", "full_queue_policy",
                                            "max_message_size", "connect_timeout_ms", "request_timeout_ms", "max_inflight"};

static mode_status_t set_number(mode_config_t *c, setting_t setting, long value) {
    switch (setting) {
    case TRANSPORT: return mode_config_set_transport(c, (int)value);
    case PORT: return mode_config_set_mqtt_port(c, (int)value);
    case KEEPALIVE: return mode_config_set_keepalive_ms(c, (uint32_t)value);
    case QUEUE: return mode_config_set_queue_size(c, (size_t)value);
    case POLICY: return mode_config_set_full_queue_policy(c, (int)value);
    case MAX_MESSAGE: return mode_config_set_max_message_size(c, (size_t)value);
    case CONNECT_TIMEOUT: return mode_config_set_connect_timeout_ms(c, (uint32_t)value);
    case REQUEST_TIMEOUT: return mode_config_set_request_timeout_ms(c, (uint32_t)value);
    case INFLIGHT: return mode_config_set_max_inflight(c, (uint32_t)value);
    }
    return MODE_ERR_INVALID_ARGUMENT;
}

static const struct {
    setting_t setting;
    long value;
    mode_status_t want;
} number_cases[] = {
    {TRANSPORT, 7, MODE_ERR_INVALID_ARGUMENT},
    {TRANSPORT, -1, MODE_ERR_INVALID_ARGUMENT},
    {TRANSPORT, MODE_TRANSPORT_MQTT, MODE_OK},
    {PORT, 0, MODE_ERR_INVALID_ARGUMENT},
    {PORT, 70000, MODE_ERR_INVALID_ARGUMENT},
    {KEEPALIVE, 10, MODE_ERR_INVALID_ARGUMENT},
    {QUEUE, 0, MODE_ERR_INVALID_ARGUMENT},
    {POLICY, 9, MODE_ERR_INVALID_ARGUMENT},
    {POLICY, MODE_QUEUE_DROP_OLDEST, MODE_OK},
    {MAX_MESSAGE, 1, MODE_ERR_INVALID_ARGUMENT},
    {CONNECT_TIMEOUT, 0, MODE_ERR_INVALID_ARGUMENT},
    {CONNECT_TIMEOUT, 2000, MODE_OK},
    {REQUEST_TIMEOUT, 0, MODE_ERR_INVALID_ARGUMENT},
    {REQUEST_TIMEOUT, 2000, MODE_OK},
    {INFLIGHT, 0, MODE_ERR_INVALID_ARGUMENT},
    {INFLIGHT, 65536, MODE_ERR_INVALID_ARGUMENT},
    {INFLIGHT, 10, MODE_OK},
};

/* ---- tests --------------------------------------------------------------------------------- */

static void test_config_validates_what_it_is_given(void) {
    mode_config_t *c = NULL;
    CHECK_STATUS(mode_config_new(DEVICE, NULL, &c), MODE_ERR_NULL);
    CHECK_STATUS(mode_config_new(DEVICE, KEY, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_config_new(DEVICE, KEY, &c), MODE_OK);
    for (size_t i = 0; i < sizeof number_cases / sizeof number_cases[0]; i++) {
        mode_status_t got = set_number(c, number_cases[i].setting, number_cases[i].value);
        if (got != number_cases[i].want)
            fprintf(stderr, "mode_config_set_%s(%ld): %s\n", setting_names[number_cases[i].setting], number_cases[i].value,
                    mode_status_str(got));
        CHECK(got == number_cases[i].want);
    }
    CHECK_STATUS(mode_config_set_backoff_ms(c, 100, 10), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_config_set_max_inflight(NULL, 10), MODE_ERR_NULL);
    CHECK_STATUS(mode_config_set_mqtt_host(c, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_config_set_mqtt_host(c, "\xff"), MODE_ERR_INVALID_UTF8);
    CHECK_STATUS(mode_config_set_transport(NULL, 0), MODE_ERR_NULL);
    CHECK_STATUS(mode_config_set_plain(NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_config_set_plain_tcp(NULL), MODE_ERR_NULL); /* the older name, kept */
    CHECK_STATUS(mode_config_set_plain_tcp(c), MODE_OK);
    CHECK_STATUS(mode_config_validate(c), MODE_OK);
    mode_config_free(c);
    mode_config_free(NULL);
    CHECK_STATUS(mode_client_new(NULL, NULL), MODE_ERR_NULL);
}

static void test_a_config_that_cannot_work_is_not_consumed_and_says_why(void) {
    mode_config_t *c = NULL;
    CHECK_STATUS(mode_config_new(DEVICE, "", &c), MODE_OK);
    mode_client_t *client = NULL;
    CHECK_STATUS(mode_client_new(c, &client), MODE_ERR_CONFIG);
    CHECK(client == NULL);
    CHECK(strstr(last_error(), "API key is empty") != NULL);
    /* Still the caller's: fix it and try again, or free it (valgrind checks both). */
    CHECK_STATUS(mode_config_set_mqtt_port(c, 0), MODE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "port 0") != NULL);
    CHECK_STATUS(mode_config_validate(c), MODE_ERR_CONFIG);
    mode_config_free(c);
    c = sim_config(DEVICE, KEY, mqtt_port);
    CHECK_STATUS(mode_client_new(c, NULL), MODE_ERR_NULL); /* not consumed either */
    mode_config_free(c);
}

/* The durable outbox's settings are checked like the others, and the outbox works from C: QoS 1
 * events a client accepted while the cloud was unreachable survive mode_client_free and are
 * delivered by the next client on the same directory, with ids that continue; a second client on
 * a directory in use is refused with the lock named, and its config stays the caller's. */
static void test_the_durable_outbox_keeps_what_an_offline_client_accepted(void) {
    char dir[] = "/tmp/libmode-test-outbox-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    mode_config_t *c = sim_config(DEVICE, KEY, 1); /* nothing listens on port 1: offline */
    CHECK_STATUS(mode_config_set_outbox_dir(NULL, "/tmp/x"), MODE_ERR_NULL);
    CHECK_STATUS(mode_config_set_outbox_dir(c, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_config_set_outbox_dir(c, "\xff"), MODE_ERR_INVALID_UTF8);
    CHECK_STATUS(mode_config_set_outbox_max_bytes(c, 0), MODE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "at least 1") != NULL);
    CHECK_STATUS(mode_config_set_outbox_max_bytes(NULL, 10), MODE_ERR_NULL);
    CHECK_STATUS(mode_config_set_outbox_max_bytes(c, 1 << 20), MODE_OK);
    CHECK_STATUS(mode_config_set_outbox_sync(NULL, true, 0), MODE_ERR_NULL);
    CHECK_STATUS(mode_config_set_outbox_sync(c, false, 5), MODE_OK);
    CHECK_STATUS(mode_config_set_outbox_dir(c, dir), MODE_OK);
    mode_client_t *offline = NULL;
    CHECK_STATUS(mode_client_new(c, &offline), MODE_OK);
    CHECK_STATUS(mode_client_start(offline), MODE_OK);
    uint64_t id = 0;
    for (int n = 0; n < 5; n++) {
        char data[32];
        snprintf(data, sizeof data, "{\"n\":%d}", n);
        CHECK_STATUS(mode_client_send_event(offline, "stored", data, MODE_QOS_AT_LEAST_ONCE, &id), MODE_OK);
    }
    CHECK(id == 5);

    /* The directory is opened (and locked) at start. */
    mode_config_t *second = sim_config(DEVICE, KEY, mqtt_port);
    CHECK_STATUS(mode_config_set_outbox_dir(second, dir), MODE_OK);
    mode_client_t *refused = NULL;
    CHECK_STATUS(mode_client_new(second, &refused), MODE_OK);
    CHECK_STATUS(mode_client_start(refused), MODE_ERR_CONFIG);
    CHECK(strstr(last_error(), "in use by another client") != NULL);
    mode_client_free(refused);
    mode_client_free(offline);

    /* A client on the directory, now free: the five go out first. */
    mode_config_t *third = sim_config(DEVICE, KEY, mqtt_port);
    CHECK_STATUS(mode_config_set_outbox_dir(third, dir), MODE_OK);
    mode_client_t *online = NULL;
    CHECK_STATUS(mode_client_new(third, &online), MODE_OK);
    CHECK_STATUS(mode_client_start(online), MODE_OK);
    mode_stats_t stats;
    memset(&stats, 0, sizeof stats);
    WAIT_FOR(mode_client_stats(online, &stats) == MODE_OK && stats.messages_acked >= 5);
    CHECK(stats.messages_acked == 5 && stats.outbox_unrecovered == 0);
    CHECK_STATUS(mode_client_send_event(online, "after", "{}", MODE_QOS_AT_LEAST_ONCE, &id), MODE_OK);
    CHECK(id == 6);
    WAIT_FOR(mode_client_stats(online, &stats) == MODE_OK && stats.messages_acked >= 6);
    CHECK(stats.messages_acked == 6 && stats.pending == 0);
    mode_client_free(online);
    char path[sizeof dir + 16];
    const char *const files[] = {"outbox.queue", "outbox.lock"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        CHECK(unlink(path) == 0);
    }
    CHECK(rmdir(dir) == 0);
}

static void *fail_on_another_thread(void *arg) {
    (void)arg;
    mode_config_t *c = NULL;
    mode_config_new(DEVICE, KEY, &c);
    mode_config_set_transport(c, 42);
    mode_config_free(c);
    return strstr(last_error(), "transport 42") != NULL ? (void *)1 : NULL;
}

static void test_the_last_error_is_per_thread(void) {
    mode_config_t *c = NULL;
    CHECK_STATUS(mode_config_new(DEVICE, KEY, &c), MODE_OK);
    CHECK_STATUS(mode_config_set_queue_size(c, 0), MODE_ERR_INVALID_ARGUMENT);
    pthread_t other;
    void *seen = NULL;
    pthread_create(&other, NULL, fail_on_another_thread, NULL);
    pthread_join(other, &seen);
    CHECK(seen == (void *)1);
    CHECK(strstr(last_error(), "queue size") != NULL); /* this thread's, untouched */
    mode_config_free(c);
}

static void test_calls_before_start_and_on_null_are_statuses(void) {
    mode_client_t *client = NULL;
    CHECK_STATUS(mode_client_new(sim_config(DEVICE, KEY, mqtt_port), &client), MODE_OK);
    uint64_t id = 77;
    CHECK_STATUS(mode_client_send_event(client, "t", NULL, MODE_QOS_AT_MOST_ONCE, &id), MODE_ERR_INVALID_STATE);
    CHECK(id == 77); /* out-pointers are written on success only */
    CHECK(strstr(last_error(), "mode_client_start") != NULL);
    char buf[256];
    size_t len = 0;
    CHECK_STATUS(mode_client_set_log_level(client, 0), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_client_set_log_level(client, MODE_LOG_DEBUG), MODE_OK);
    CHECK_STATUS(mode_client_send_event(NULL, "t", NULL, 0, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_client_kv_get(NULL, "k", buf, sizeof buf, &len), MODE_ERR_NULL);
    CHECK_STATUS(mode_client_stop(NULL, 0), MODE_ERR_NULL);
    CHECK_STATUS(mode_client_stats(client, NULL), MODE_ERR_NULL);
    CHECK(!mode_client_is_connected(client));
    CHECK(!mode_client_is_connected(NULL));
    mode_client_free(client); /* never started: no thread, nothing to join */
    mode_client_free(NULL);
}

int main(void) {
    sim_open();
    test_config_validates_what_it_is_given();
    test_a_config_that_cannot_work_is_not_consumed_and_says_why();
    test_the_durable_outbox_keeps_what_an_offline_client_accepted();
    test_the_last_error_is_per_thread();
    test_calls_before_start_and_on_null_are_statuses();
    sim_close();
    return checks_done("test_client_config");
}
