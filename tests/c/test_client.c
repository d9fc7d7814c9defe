/*
 * The managed client connected, through the C API, against a mode-sim subprocess started by
 * tests/c/run.sh (tests/c/sim.h reads its address and types on its console: "command ID JSON",
 * "kv ID KEY JSON", "drop ID"). Covers every client call's success and error paths on a live
 * connection, callbacks that call back in (free included), 8 threads sending at once, free while
 * a callback runs, the delivery callback's one report per message, and the failure paths (wrong
 * port, wrong key) for the leak checkers. The config and the calls refused without a connection
 * are tests/c/test_client_config.c.
 */
#include "check.h"
#include "sim.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- what the callbacks saw ---------------------------------------------------------------- */

typedef struct {
    mode_client_t *client;
    atomic_int connected;
    atomic_int disconnects;
    char reason[256];
    atomic_int commands;
    char command[256];
    atomic_int reentrant_sends_ok;
    atomic_int kv_changes;
    char kv_log[512];
    atomic_int bulk_results;
    char bulk[256];
    atomic_int logs;
    atomic_int library_errors;   /* ERROR lines from the connection task, for this device */
    atomic_int key_leaked;       /* a log line held the API key */
    atomic_int text_rule_broken; /* a string handed out was not NUL-terminated at its length */
    const char *api_key;
    atomic_int freed_userdata;
    atomic_int free_self_on_command;
    atomic_int slow_ms;
    atomic_int in_callback;
    pthread_t callback_thread; /* the dispatcher, as the connection callback saw it */
} state_t;

/* ---- what the delivery callback saw ----------------------------------------------------- */

#define MAX_MESSAGES 512

typedef struct {
    pthread_mutex_t lock;
    uint64_t ids[MAX_MESSAGES];
    mode_status_t statuses[MAX_MESSAGES];
    atomic_int count;
    pthread_t thread;
    int threads;      /* 1 while every call came on one thread */
    int slow_ms;      /* a slow application: each call takes this long */
} deliveries_t;

static void deliveries_init(deliveries_t *d) {
    memset(d, 0, sizeof *d);
    pthread_mutex_init(&d->lock, NULL);
}

static void on_delivery(void *ud, uint64_t message_id, mode_status_t status) {
    deliveries_t *d = (deliveries_t *)ud;
    pthread_mutex_lock(&d->lock);
    int n = atomic_load(&d->count);
    if (n == 0) {
        d->thread = pthread_self();
        d->threads = 1;
    } else if (!pthread_equal(d->thread, pthread_self())) {
        d->threads = 2;
    }
    if (n < MAX_MESSAGES) {
        d->ids[n] = message_id;
        d->statuses[n] = status;
    }
    atomic_store(&d->count, n + 1);
    pthread_mutex_unlock(&d->lock);
    if (d->slow_ms) sleep_ms(d->slow_ms);
}

/* How many times `id` was reported, and with which status (the last). */
static int reported(deliveries_t *d, uint64_t id, mode_status_t *status) {
    int times = 0;
    pthread_mutex_lock(&d->lock);
    for (int i = 0; i < atomic_load(&d->count) && i < MAX_MESSAGES; i++) {
        if (d->ids[i] == id) {
            times++;
            if (status) *status = d->statuses[i];
        }
    }
    pthread_mutex_unlock(&d->lock);
    return times;
}

/* Every id in `ids` is non-zero, distinct, and reported exactly once, with `want`. */
static void check_each_reported_once(deliveries_t *d, const uint64_t *ids, int n, mode_status_t want) {
    int ok = 1;
    for (int i = 0; i < n; i++) {
        mode_status_t status = MODE_OK;
        if (ids[i] == 0 || reported(d, ids[i], &status) != 1 || status != want) ok = 0;
        for (int j = 0; j < i; j++) if (ids[j] == ids[i]) ok = 0;
    }
    if (!ok) fprintf(stderr, "deliveries: %d reported for %d messages\n", atomic_load(&d->count), n);
    CHECK(ok);
}

#define CHECK_TEXT(s, ptr, len) \
    do { if ((ptr) == NULL || (ptr)[len] != '\0' || strlen(ptr) != (len)) atomic_fetch_add(&(s)->text_rule_broken, 1); } while (0)

static void on_connection(void *ud, bool connected, const char *reason, size_t reason_len, int64_t retry_in_ms) {
    state_t *s = (state_t *)ud;
    (void)retry_in_ms;
    s->callback_thread = pthread_self();
    if (!connected) CHECK_TEXT(s, reason, reason_len);
    if (connected) {
        atomic_store(&s->connected, 1);
    } else {
        atomic_store(&s->connected, 0);
        snprintf(s->reason, sizeof s->reason, "%.*s", (int)reason_len, reason);
        atomic_fetch_add(&s->disconnects, 1);
    }
}

static void on_command(void *ud, const char *action, size_t action_len, const char *params, size_t params_len) {
    state_t *s = (state_t *)ud;
    CHECK_TEXT(s, action, action_len);
    CHECK_TEXT(s, params, params_len);
    atomic_store(&s->in_callback, 1);
    snprintf(s->command, sizeof s->command, "%.*s %.*s", (int)action_len, action, (int)params_len, params);
    if (atomic_load(&s->free_self_on_command)) {
        mode_client_free(s->client); /* allowed from inside a callback */
        atomic_fetch_add(&s->commands, 1);
        atomic_store(&s->in_callback, 0);
        return;
    }
    /* Calling the API from inside a callback must not deadlock. */
    char buf[64];
    size_t len = 0;
    if (mode_client_send_event(s->client, "ack", "{\"from\":\"callback\"}", MODE_QOS_AT_LEAST_ONCE, NULL) == MODE_OK &&
        mode_client_kv_get(s->client, "nothing-here", buf, sizeof buf, &len) == MODE_ERR_NOT_FOUND) {
        atomic_fetch_add(&s->reentrant_sends_ok, 1);
    }
    if (atomic_load(&s->slow_ms)) sleep_ms(atomic_load(&s->slow_ms));
    atomic_fetch_add(&s->commands, 1);
    atomic_store(&s->in_callback, 0);
}

static void on_kv(void *ud, mode_change_kind_t kind, const char *key, size_t key_len, const char *value, size_t value_len,
                  const char *previous, size_t previous_len) {
    state_t *s = (state_t *)ud;
    CHECK_TEXT(s, key, key_len);
    if (value) CHECK_TEXT(s, value, value_len);
    if (previous) CHECK_TEXT(s, previous, previous_len);
    size_t used = strlen(s->kv_log);
    snprintf(s->kv_log + used, sizeof s->kv_log - used, "%s %.*s=%.*s;", kind == MODE_CHANGE_SET ? "set" : "del",
             (int)key_len, key, value ? (int)value_len : 0, value ? value : "");
    atomic_fetch_add(&s->kv_changes, 1);
}

static void on_bulk(void *ud, mode_status_t status, const char *request_id, size_t request_id_len, const char *bulk_status,
                    size_t bulk_status_len, const char *payload, size_t payload_len) {
    state_t *s = (state_t *)ud;
    CHECK_TEXT(s, request_id, request_id_len);
    CHECK_TEXT(s, bulk_status, bulk_status_len);
    CHECK_TEXT(s, payload, payload_len);
    snprintf(s->bulk, sizeof s->bulk, "%d %.*s %.*s %.*s", (int)status, (int)request_id_len, request_id,
             (int)bulk_status_len, bulk_status, (int)payload_len, payload);
    atomic_fetch_add(&s->bulk_results, 1);
}

static void on_log(void *ud, const mode_log_record_t *record) {
    state_t *s = (state_t *)ud;
    CHECK_TEXT(s, record->message, record->message_len);
    CHECK_TEXT(s, record->target, record->target_len);
    if (s->api_key && strstr(record->message, s->api_key)) atomic_fetch_add(&s->key_leaked, 1);
    if (record->level == MODE_LOG_ERROR && strncmp(record->target, "mode_client", 11) == 0 &&
        record->device_id == DEVICE) {
        atomic_fetch_add(&s->library_errors, 1);
    }
    atomic_fetch_add(&s->logs, 1);
}

static void free_state(void *ud) { atomic_fetch_add(&((state_t *)ud)->freed_userdata, 1); }

static mode_client_t *start_client_reporting(state_t *s, mode_config_t *config, deliveries_t *d);

static mode_client_t *start_client(state_t *s, mode_config_t *config) {
    return start_client_reporting(s, config, NULL);
}

static mode_client_t *start_client_reporting(state_t *s, mode_config_t *config, deliveries_t *d) {
    mode_client_t *client = NULL;
    CHECK_STATUS(mode_client_new(config, &client), MODE_OK);
    s->client = client;
    CHECK(atomic_load(&s->text_rule_broken) == 0);
    CHECK_STATUS(mode_client_set_connection_cb(client, on_connection, s, NULL), MODE_OK);
    CHECK_STATUS(mode_client_set_command_cb(client, on_command, s, free_state), MODE_OK);
    CHECK_STATUS(mode_client_set_kv_cb(client, on_kv, s, NULL), MODE_OK);
    CHECK_STATUS(mode_client_set_bulk_cb(client, on_bulk, s, NULL), MODE_OK);
    CHECK_STATUS(mode_client_set_log_cb(client, on_log, s, NULL), MODE_OK);
    if (d) CHECK_STATUS(mode_client_set_delivery_cb(client, on_delivery, d, NULL), MODE_OK);
    CHECK_STATUS(mode_client_start(client), MODE_OK);
    if (d) CHECK_STATUS(mode_client_set_delivery_cb(client, on_delivery, d, NULL), MODE_ERR_INVALID_STATE);
    return client;
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_a_device_sends_receives_and_mirrors(void) {
    state_t s;
    memset(&s, 0, sizeof s);
    mode_client_t *client = start_client(&s, sim_config(DEVICE, KEY, mqtt_port));
    CHECK_STATUS(mode_client_set_command_cb(client, on_command, &s, NULL), MODE_ERR_INVALID_STATE);
    CHECK_STATUS(mode_client_start(client), MODE_ERR_INVALID_STATE);
    WAIT_FOR(atomic_load(&s.connected));
    CHECK(atomic_load(&s.connected) && mode_client_is_connected(client));

    /* Events: bad arguments refused up front, good ones acknowledged by the cloud. */
    CHECK_STATUS(mode_client_send_event(client, "t", "{}", 2, NULL), MODE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "QoS 2") != NULL);
    CHECK_STATUS(mode_client_send_event(client, "t", "[1,2]", 1, NULL), MODE_ERR_INVALID_JSON);
    CHECK_STATUS(mode_client_send_event(client, "", "{}", 1, NULL), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_client_send_event(client, "boot", "{\"version\":\"1.0\"}", MODE_QOS_AT_LEAST_ONCE, NULL), MODE_OK);
    mode_stats_t stats;
    memset(&stats, 0, sizeof stats);
    WAIT_FOR(mode_client_stats(client, &stats) == MODE_OK && stats.messages_acked >= 1);
    CHECK(stats.messages_acked >= 1 && stats.connection_attempts >= 1);

    /* A command arrives with its integers exact, and the callback calls back in. */
    say("command 1001 {\"action\":\"light\",\"parameters\":{\"on\":true,\"level\":12345678901234567890}}");
    WAIT_FOR(atomic_load(&s.commands) == 1);
    CHECK(strcmp(s.command, "light {\"level\":12345678901234567890,\"on\":true}") == 0);
    CHECK(atomic_load(&s.reentrant_sends_ok) == 1);

    /* DDP: a change made by the app arrives, and so does the device's own write. */
    say("kv 1001 color \"red\"");
    WAIT_FOR(strstr(s.kv_log, "set color=\"red\";") != NULL);
    char buf[256];
    size_t len = 0;
    WAIT_FOR(mode_client_kv_get(client, "color", buf, sizeof buf, &len) == MODE_OK);
    CHECK(strcmp(buf, "\"red\"") == 0 && len == 5);
    char tiny[3];
    CHECK_STATUS(mode_client_kv_get(client, "color", tiny, sizeof tiny, &len), MODE_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 5);
    CHECK_STATUS(mode_client_kv_set(client, "mode", "{\"eco\":true}", NULL), MODE_OK);
    WAIT_FOR(strstr(s.kv_log, "set mode={\"eco\":true};") != NULL);
    CHECK(strstr(s.kv_log, "set mode={\"eco\":true};") != NULL);
    CHECK_STATUS(mode_client_kv_keys(client, buf, sizeof buf, &len), MODE_OK);
    CHECK(strcmp(buf, "[\"color\",\"mode\"]") == 0);
    CHECK_STATUS(mode_client_kv_delete(client, "mode", NULL), MODE_OK);
    WAIT_FOR(strstr(s.kv_log, "del mode=;") != NULL);
    CHECK_STATUS(mode_client_kv_get(client, "mode", buf, sizeof buf, &len), MODE_ERR_NOT_FOUND);
    CHECK_STATUS(mode_client_kv_set(client, "", "1", NULL), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_client_kv_set(client, "k", "{nope", NULL), MODE_ERR_INVALID_JSON);

    /* Bulk data and a bulk request answered by the simulator's echo module. */
    const uint8_t blob[] = {1, 2, 3, 0, 255};
    CHECK_STATUS(mode_client_send_bulk_data(client, "echo", blob, sizeof blob, 1, NULL), MODE_OK);
    CHECK_STATUS(mode_client_send_bulk_data(client, "a/b", blob, sizeof blob, 1, NULL), MODE_ERR_INVALID_ARGUMENT);
    mode_stats_t before;
    memset(&before, 0, sizeof before);
    /* Settled: everything sent so far is counted (the connection task counts asynchronously). */
    WAIT_FOR(mode_client_stats(client, &before) == MODE_OK && before.messages_queued >= 5 && before.pending == 0);
    /* A buffer too small for a request id is refused before anything is sent. */
    char small[8];
    size_t id_len = 0;
    CHECK_STATUS(mode_client_bulk_request(client, "echo", "{\"q\":6}", 5000, small, sizeof small, &id_len, NULL),
                 MODE_ERR_BUFFER_TOO_SMALL);
    CHECK(id_len == MODE_REQUEST_ID_SIZE - 1);
    char request_id[MODE_REQUEST_ID_SIZE];
    CHECK_STATUS(mode_client_bulk_request(client, "echo", "{\"q\":7}", 5000, request_id, sizeof request_id, &id_len, NULL),
                 MODE_OK);
    CHECK(id_len == strlen(request_id));
    WAIT_FOR(atomic_load(&s.bulk_results) == 1);
    WAIT_FOR(mode_client_stats(client, &stats) == MODE_OK && stats.pending == 0);
    CHECK(stats.messages_queued == before.messages_queued + 1); /* only the second request */
    char want[256];
    snprintf(want, sizeof want, "0 %s OK {\"q\":7}", request_id);
    CHECK(strcmp(s.bulk, want) == 0);

    /* Device info over REST. */
    CHECK_STATUS(mode_client_device_info(client, 5000, buf, sizeof buf, &len), MODE_OK);
    CHECK(strstr(buf, "\"id\":1001") != NULL && strstr(buf, "\"homeId\":10") != NULL);

    CHECK_STATUS(mode_client_stop(client, 5000), MODE_OK);
    CHECK_STATUS(mode_client_send_event(client, "late", NULL, 0, NULL), MODE_ERR_CLOSED);
    CHECK(atomic_load(&s.bulk_results) == 1); /* the refused request never answered */
    CHECK(atomic_load(&s.text_rule_broken) == 0);
    CHECK(atomic_load(&s.logs) >= 1);
    mode_client_free(client);
    CHECK(atomic_load(&s.freed_userdata) == 1);
}

typedef struct {
    mode_client_t *client;
    int sent;
} sender_t;

static void *send_many(void *arg) {
    sender_t *sender = (sender_t *)arg;
    for (int i = 0; i < 100; i++) {
        char data[64];
        snprintf(data, sizeof data, "{\"i\":%d}", i);
        mode_status_t st;
        while ((st = mode_client_send_event(sender->client, "load", data, 1, NULL)) == MODE_ERR_QUEUE_FULL) sleep_ms(1);
        if (st == MODE_OK) sender->sent++;
    }
    return NULL;
}

static void test_eight_threads_send_at_once_and_nothing_is_lost(void) {
    state_t s;
    memset(&s, 0, sizeof s);
    mode_config_t *config = sim_config(DEVICE, KEY, mqtt_port);
    CHECK_STATUS(mode_config_set_queue_size(config, 256), MODE_OK);
    mode_client_t *client = start_client(&s, config);
    pthread_t threads[8];
    sender_t senders[8];
    for (int t = 0; t < 8; t++) {
        senders[t].client = client;
        senders[t].sent = 0;
        pthread_create(&threads[t], NULL, send_many, &senders[t]);
    }
    int sent = 0;
    for (int t = 0; t < 8; t++) {
        pthread_join(threads[t], NULL);
        sent += senders[t].sent;
    }
    CHECK(sent == 800);
    mode_stats_t stats;
    memset(&stats, 0, sizeof stats);
    WAIT_FOR(mode_client_stats(client, &stats) == MODE_OK && stats.messages_acked >= 800);
    CHECK(stats.messages_acked == 800);
    CHECK_STATUS(mode_client_stop(client, 5000), MODE_OK);
    mode_client_free(client);
}

static void test_a_callback_may_free_its_own_client(void) {
    state_t s;
    memset(&s, 0, sizeof s);
    atomic_store(&s.free_self_on_command, 1);
    start_client(&s, sim_config(DEVICE, KEY, mqtt_port));
    WAIT_FOR(atomic_load(&s.connected));
    say("command 1001 {\"action\":\"bye\",\"parameters\":{}}");
    WAIT_FOR(atomic_load(&s.commands) == 1 && atomic_load(&s.freed_userdata) == 1);
    CHECK(atomic_load(&s.commands) == 1);
    CHECK(atomic_load(&s.freed_userdata) == 1);
}

static void test_free_waits_for_a_callback_in_flight(void) {
    state_t s;
    memset(&s, 0, sizeof s);
    atomic_store(&s.slow_ms, 300);
    mode_client_t *client = start_client(&s, sim_config(DEVICE, KEY, mqtt_port));
    WAIT_FOR(atomic_load(&s.connected));
    say("command 1001 {\"action\":\"slow\",\"parameters\":{}}");
    WAIT_FOR(atomic_load(&s.in_callback));
    CHECK(atomic_load(&s.in_callback));
    mode_client_free(client); /* must wait for the callback, then free its userdata */
    CHECK(atomic_load(&s.in_callback) == 0);
    CHECK(atomic_load(&s.commands) == 1);
    CHECK(atomic_load(&s.freed_userdata) == 1);
}

static void test_failures_to_connect_are_reported_and_leak_nothing(void) {
    /* A port where nothing listens. */
    state_t s;
    memset(&s, 0, sizeof s);
    mode_client_t *client = start_client(&s, sim_config(DEVICE, KEY, 1));
    WAIT_FOR(atomic_load(&s.disconnects) >= 1);
    CHECK(atomic_load(&s.disconnects) >= 1 && !atomic_load(&s.connected));
    CHECK(strlen(s.reason) > 0);
    CHECK_STATUS(mode_client_send_event(client, "queued", NULL, 1, NULL), MODE_OK); /* queued while offline */
    mode_client_free(client);

    /* A wrong API key: an authentication failure, said so, and logged by the library itself
     * (the connection task's own line, forwarded to the log callback) without the key. */
    state_t t;
    memset(&t, 0, sizeof t);
    t.api_key = "v1.wrong-secret-key";
    client = start_client(&t, sim_config(DEVICE, t.api_key, mqtt_port));
    WAIT_FOR(atomic_load(&t.disconnects) >= 1 && atomic_load(&t.library_errors) >= 1);
    CHECK(strstr(t.reason, "authentication") != NULL);
    CHECK(atomic_load(&t.library_errors) >= 1);
    CHECK(atomic_load(&t.key_leaked) == 0);
    CHECK(atomic_load(&t.text_rule_broken) == 0);
    mode_client_free(client);
}

static void test_every_message_is_reported_once_by_its_id_across_a_reconnect(void) {
    state_t s;
    memset(&s, 0, sizeof s);
    deliveries_t d;
    deliveries_init(&d);
    mode_client_t *client = start_client_reporting(&s, sim_config(DEVICE, KEY, mqtt_port), &d);
    WAIT_FOR(atomic_load(&s.connected));
    uint64_t ids[300];
    int n = 0;
    for (int i = 0; i < 100; i++) {
        mode_qos_t qos = i % 2 ? MODE_QOS_AT_MOST_ONCE : MODE_QOS_AT_LEAST_ONCE;
        CHECK_STATUS(mode_client_send_event(client, "before", "{}", qos, &ids[n++]), MODE_OK);
    }
    say("drop 1001"); /* QoS 1 messages still unacknowledged are re-sent after the reconnect */
    for (int i = 0; i < 100; i++) {
        CHECK_STATUS(mode_client_send_event(client, "after", "{}", MODE_QOS_AT_LEAST_ONCE, &ids[n++]), MODE_OK);
    }
    const uint8_t blob[] = {1, 2, 3};
    CHECK_STATUS(mode_client_kv_set(client, "k", "1", &ids[n++]), MODE_OK);
    CHECK_STATUS(mode_client_kv_delete(client, "k", &ids[n++]), MODE_OK);
    CHECK_STATUS(mode_client_send_bulk_data(client, "echo", blob, sizeof blob, MODE_QOS_AT_LEAST_ONCE, &ids[n++]), MODE_OK);
    char request_id[MODE_REQUEST_ID_SIZE];
    CHECK_STATUS(mode_client_bulk_request(client, "echo", "{}", 5000, request_id, sizeof request_id, NULL, &ids[n++]), MODE_OK);
    for (int i = 1; i < n; i++) CHECK(ids[i] > ids[i - 1]); /* increasing in send order */
    WAIT_FOR(atomic_load(&s.disconnects) >= 1 && atomic_load(&s.connected) && atomic_load(&d.count) >= n);
    CHECK(atomic_load(&s.disconnects) >= 1);
    mode_stats_t stats;
    CHECK_STATUS(mode_client_stats(client, &stats), MODE_OK);
    CHECK(stats.reconnects >= 1);
    CHECK_STATUS(mode_client_stop(client, 5000), MODE_OK);
    check_each_reported_once(&d, ids, n, MODE_OK);
    CHECK(atomic_load(&d.count) == n); /* nothing else */
    /* On the dispatcher thread, where every callback runs, never on the connection task. */
    CHECK(d.threads == 1 && pthread_equal(d.thread, s.callback_thread));
    mode_client_free(client);
    CHECK(atomic_load(&d.count) == n); /* and nothing more at free */
    pthread_mutex_destroy(&d.lock);
}

static void test_messages_dropped_or_given_up_are_reported_with_their_reason(void) {
    /* Offline (nothing listens on port 1): a queue of 2 that drops the oldest. */
    state_t s;
    memset(&s, 0, sizeof s);
    deliveries_t d;
    deliveries_init(&d);
    mode_config_t *config = sim_config(DEVICE, KEY, 1);
    CHECK_STATUS(mode_config_set_queue_size(config, 2), MODE_OK);
    CHECK_STATUS(mode_config_set_full_queue_policy(config, MODE_QUEUE_DROP_OLDEST), MODE_OK);
    mode_client_t *client = start_client_reporting(&s, config, &d);
    uint64_t ids[5];
    for (int i = 0; i < 5; i++) CHECK_STATUS(mode_client_send_event(client, "e", "{}", 1, &ids[i]), MODE_OK);
    WAIT_FOR(atomic_load(&d.count) >= 3);
    check_each_reported_once(&d, ids, 3, MODE_ERR_QUEUE_FULL); /* the three oldest */
    /* Stop with no time to deliver: the two left are given up, each reported. */
    CHECK_STATUS(mode_client_stop(client, 0), MODE_ERR_TIMEOUT);
    WAIT_FOR(atomic_load(&d.count) >= 5);
    check_each_reported_once(&d, ids + 3, 2, MODE_ERR_CLOSED);
    mode_client_free(client);
    CHECK(atomic_load(&d.count) == 5);
    pthread_mutex_destroy(&d.lock);

    /* Freed without a stop: every message is reported before mode_client_free returns, also
     * when the application is slow and most outcomes still wait for it as free begins. */
    state_t t;
    memset(&t, 0, sizeof t);
    deliveries_t e;
    deliveries_init(&e);
    e.slow_ms = 20;
    client = start_client_reporting(&t, sim_config(DEVICE, KEY, 1), &e);
    uint64_t queued[10];
    for (int i = 0; i < 10; i++) CHECK_STATUS(mode_client_send_event(client, "e", "{}", 1, &queued[i]), MODE_OK);
    mode_client_free(client);
    check_each_reported_once(&e, queued, 10, MODE_ERR_CLOSED);
    CHECK(atomic_load(&e.count) == 10);
    pthread_mutex_destroy(&e.lock);
}

int main(void) {
    sim_open();
    test_a_device_sends_receives_and_mirrors();
    test_eight_threads_send_at_once_and_nothing_is_lost();
    test_a_callback_may_free_its_own_client();
    test_free_waits_for_a_callback_in_flight();
    test_failures_to_connect_are_reported_and_leak_nothing();
    test_every_message_is_reported_once_by_its_id_across_a_reconnect();
    test_messages_dropped_or_given_up_are_reported_with_their_reason();
    sim_close();
    return checks_done("test_client");
}
