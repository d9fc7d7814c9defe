/*
 * The IO-free C API (mode_mirror_*, mode_session_*, status and version functions): success and
 * error paths, callbacks that call back in, and the header included twice. Built as C11 and as
 * C++17 with -Wall -Wextra -Wpedantic -Werror, run plain, under ASan+UBSan, and under valgrind
 * by tests/c/run.sh.
 */
#include "mode.h"
#include "mode.h" /* twice on purpose: the include guard must hold */

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* X(NAME) for every value of mode_status_t, generated from mode.h by tests/c/run.sh. */
#include "header_statuses.h"

static int passed, failed;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (cond) {                                                                 \
            passed++;                                                               \
        } else {                                                                    \
            failed++;                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

#define CHECK_STATUS(expr, want) CHECK((expr) == (want))

static const uint8_t *bytes(const char *s) { return (const uint8_t *)s; }

/* mode.h's text rule: every string handed out is pointer + length and NUL-terminated too. */
#define TEXT_OK(ptr, len) ((ptr) != NULL && (ptr)[len] == '\0' && strlen(ptr) == (len))
static int text_rule_broken;
#define CHECK_TEXT(ptr, len) \
    do { if (!TEXT_OK(ptr, len)) text_rule_broken++; } while (0)

static const char *last_error(void) {
    static char buf[512];
    size_t len = 0;
    if (mode_last_error(buf, sizeof buf, &len) != MODE_OK) return "(mode_last_error failed)";
    return buf;
}

/* ---- change recording ------------------------------------------------------------------- */

typedef struct {
    int count;
    char log[1024];
    mode_mirror_t *mirror; /* when set, the callback reads the mirror back */
    int reads_ok;
} recorder_t;

static void record_change(void *userdata, mode_change_kind_t kind, const char *key, size_t key_len,
                          const char *value, size_t value_len, const char *previous,
                          size_t previous_len) {
    recorder_t *r = (recorder_t *)userdata;
    CHECK_TEXT(key, key_len);
    if (value) CHECK_TEXT(value, value_len);
    if (previous) CHECK_TEXT(previous, previous_len);
    size_t used = strlen(r->log);
    snprintf(r->log + used, sizeof r->log - used, "%s %.*s=%.*s (was %.*s);",
             kind == MODE_CHANGE_SET ? "set" : "del", (int)key_len, key,
             value ? (int)value_len : 4, value ? value : "null",
             previous ? (int)previous_len : 4, previous ? previous : "none");
    r->count++;
    if (r->mirror) {
        /* Re-entrancy: reading the mirror from inside its own callback is allowed. */
        char buf[64];
        size_t len = 0;
        char key_z[64];
        snprintf(key_z, sizeof key_z, "%.*s", (int)key_len, key);
        mode_status_t st = mode_mirror_get(r->mirror, key_z, buf, sizeof buf, &len);
        if ((kind == MODE_CHANGE_SET && st == MODE_OK) ||
            (kind == MODE_CHANGE_DELETED && st == MODE_ERR_NOT_FOUND)) {
            r->reads_ok++;
        }
    }
}

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
    mode_mirror_t *m = NULL;
    CHECK_STATUS(mode_mirror_new(&m), MODE_OK);
    const char *bad = "{\"action\":\"set\",\"rev\":\"7\",\"key\":\"k\",\"value\":1}";
    CHECK_STATUS(mode_mirror_apply(m, bytes(bad), strlen(bad), NULL, NULL, NULL), MODE_ERR_DECODE);
    CHECK(strstr(last_error(), "rev") != NULL);
    size_t len = 0;
    CHECK_STATUS(mode_last_error(NULL, 0, &len), MODE_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen(last_error())); /* asking for the length did not replace the text */
    CHECK(strstr(last_error(), "rev") != NULL);
    /* A success leaves it; an error without more to say gets its status's text. */
    CHECK_STATUS(mode_mirror_expect_reload(m), MODE_OK);
    CHECK(strstr(last_error(), "rev") != NULL);
    CHECK_STATUS(mode_mirror_get(m, NULL, NULL, 0, NULL), MODE_ERR_NULL);
    CHECK(strncmp(last_error(), "MODE_ERR_NULL", 13) == 0);
    mode_mirror_free(m);
}

static void test_mirror_applies_sync_and_reports_changes(void) {
    mode_mirror_t *m = NULL;
    CHECK_STATUS(mode_mirror_new(&m), MODE_OK);
    CHECK(m != NULL);

    recorder_t r;
    memset(&r, 0, sizeof r);
    r.mirror = m;
    mode_apply_info_t info;
    const char *reload = "{\"action\":\"reload\",\"rev\":82,\"numItems\":2,\"items\":["
                         "{\"key\":\"xyz\",\"value\":\"hello world\"},{\"key\":\"foo\",\"value\":22399}]}";
    CHECK_STATUS(mode_mirror_apply(m, bytes(reload), strlen(reload), record_change, &r, &info), MODE_OK);
    CHECK(info.reload && info.rev == 82 && info.changes == 2 && info.ignored == MODE_IGNORE_NONE);
    CHECK(strcmp(r.log, "set foo=22399 (was none);set xyz=\"hello world\" (was none);") == 0);
    CHECK(r.reads_ok == 2);

    const char *del = "{\"action\":\"delete\",\"rev\":85,\"key\":\"xyz\"}";
    CHECK_STATUS(mode_mirror_apply(m, bytes(del), strlen(del), record_change, &r, &info), MODE_OK);
    CHECK(r.count == 3 && r.reads_ok == 3);

    const char *late = "{\"action\":\"set\",\"rev\":83,\"key\":\"xyz\",\"value\":\"late\"}";
    CHECK_STATUS(mode_mirror_apply(m, bytes(late), strlen(late), record_change, &r, &info), MODE_OK);
    CHECK(info.ignored == MODE_IGNORE_STALE && info.held_rev == 85 && info.changes == 0);
    CHECK(r.count == 3);

    /* No callback and no info are fine too. */
    const char *again = "{\"action\":\"set\",\"rev\":86,\"key\":\"big\",\"value\":123456789012345678901234567890}";
    CHECK_STATUS(mode_mirror_apply(m, bytes(again), strlen(again), NULL, NULL, NULL), MODE_OK);

    size_t len = 0;
    uint64_t rev = 0;
    CHECK_STATUS(mode_mirror_stat(m, &len, &rev), MODE_OK);
    CHECK(len == 2 && rev == 86);

    char buf[128];
    CHECK_STATUS(mode_mirror_get(m, "big", buf, sizeof buf, &len), MODE_OK);
    CHECK(strcmp(buf, "123456789012345678901234567890") == 0 && len == 30);
    CHECK_STATUS(mode_mirror_get(m, "xyz", buf, sizeof buf, &len), MODE_ERR_NOT_FOUND);

    /* Too small: nothing written past the buffer, the length needed reported. */
    char tiny[4] = {'#', '#', '#', '#'};
    CHECK_STATUS(mode_mirror_get(m, "big", tiny, sizeof tiny, &len), MODE_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 30);
    CHECK_STATUS(mode_mirror_get(m, "big", NULL, 0, &len), MODE_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 30);
    /* Exactly the text without room for the NUL is too small as well. */
    char exact[30];
    CHECK_STATUS(mode_mirror_get(m, "big", exact, sizeof exact, &len), MODE_ERR_BUFFER_TOO_SMALL);

    CHECK_STATUS(mode_mirror_snapshot(m, buf, sizeof buf, &len), MODE_OK);
    CHECK(strcmp(buf, "{\"big\":123456789012345678901234567890,\"foo\":22399}") == 0);

    mode_mirror_free(m);
}

static void collect_keys(void *userdata, const char *key, size_t key_len, const char *value, size_t value_len) {
    char *out = (char *)userdata;
    CHECK_TEXT(key, key_len);
    CHECK_TEXT(value, value_len);
    size_t used = strlen(out);
    snprintf(out + used, 256 - used, "%.*s:%.*s,", (int)key_len, key, (int)value_len, value);
}

static void test_mirror_iterates_in_key_order(void) {
    mode_mirror_t *m = NULL;
    CHECK_STATUS(mode_mirror_new(&m), MODE_OK);
    const char *msgs[] = {
        "{\"action\":\"set\",\"rev\":1,\"key\":\"c\",\"value\":3}",
        "{\"action\":\"set\",\"rev\":2,\"key\":\"a\",\"value\":[1]}",
        "{\"action\":\"set\",\"rev\":3,\"key\":\"b\",\"value\":{\"x\":true}}",
    };
    for (size_t i = 0; i < sizeof msgs / sizeof msgs[0]; i++) {
        CHECK_STATUS(mode_mirror_apply(m, bytes(msgs[i]), strlen(msgs[i]), NULL, NULL, NULL), MODE_OK);
    }
    char keys[256] = "";
    CHECK_STATUS(mode_mirror_for_each(m, collect_keys, keys), MODE_OK);
    CHECK(strcmp(keys, "a:[1],b:{\"x\":true},c:3,") == 0);
    CHECK_STATUS(mode_mirror_for_each(m, NULL, keys), MODE_ERR_NULL);
    mode_mirror_free(m);
}

static void test_mirror_refuses_bad_input_without_changing(void) {
    mode_mirror_t *m = NULL;
    CHECK_STATUS(mode_mirror_new(&m), MODE_OK);
    const char *bad = "{\"action\":\"set\",\"rev\":\"7\",\"key\":\"k\",\"value\":1}";
    CHECK_STATUS(mode_mirror_apply(m, bytes(bad), strlen(bad), NULL, NULL, NULL), MODE_ERR_DECODE);
    CHECK(strstr(last_error(), "at `rev`") != NULL);
    CHECK_STATUS(mode_mirror_apply(m, bytes("\xff\xfe"), 2, NULL, NULL, NULL), MODE_ERR_DECODE);
    CHECK_STATUS(mode_mirror_apply(m, NULL, 5, NULL, NULL, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_mirror_apply(m, NULL, 0, NULL, NULL, NULL), MODE_ERR_DECODE); /* empty payload */
    size_t len = 99;
    CHECK_STATUS(mode_mirror_stat(m, &len, NULL), MODE_OK);
    CHECK(len == 0);

    /* NULL handles and arguments are statuses, never crashes. */
    CHECK_STATUS(mode_mirror_new(NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_mirror_apply(NULL, bytes("{}"), 2, NULL, NULL, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_mirror_get(NULL, "k", NULL, 0, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_mirror_get(m, NULL, NULL, 0, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_mirror_get(m, "\xff", NULL, 0, NULL), MODE_ERR_INVALID_UTF8);
    CHECK_STATUS(mode_mirror_snapshot(NULL, NULL, 0, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_mirror_stat(NULL, NULL, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_mirror_expect_reload(NULL), MODE_ERR_NULL);
    mode_mirror_free(NULL);
    mode_mirror_free(m);
}

/* ---- session ------------------------------------------------------------------------------ */

typedef struct {
    char topics[512];
    char last_topic[128];
    char last_payload[512];
    char last_request_id[128];
    mode_qos_t last_qos;
    int commands;
    char command[256];
    char bulk[256];
    mode_session_t *session;
    int kv_reads_ok;
} device_t;

static void collect_topic(void *userdata, const char *topic, size_t topic_len) {
    device_t *d = (device_t *)userdata;
    CHECK_TEXT(topic, topic_len);
    size_t used = strlen(d->topics);
    snprintf(d->topics + used, sizeof d->topics - used, "%.*s ", (int)topic_len, topic);
}

static void capture_outgoing(void *userdata, const mode_outgoing_t *out) {
    device_t *d = (device_t *)userdata;
    CHECK_TEXT(out->topic, out->topic_len);
    if (out->request_id) CHECK_TEXT(out->request_id, out->request_id_len);
    CHECK(out->request_id != NULL || out->request_id_len == 0);
    snprintf(d->last_topic, sizeof d->last_topic, "%s", out->topic);
    snprintf(d->last_payload, sizeof d->last_payload, "%.*s", (int)out->payload_len, (const char *)out->payload);
    snprintf(d->last_request_id, sizeof d->last_request_id, "%s", out->request_id ? out->request_id : "");
    d->last_qos = out->qos;
}

static void on_command(void *userdata, const char *action, size_t action_len, const char *params, size_t params_len) {
    device_t *d = (device_t *)userdata;
    CHECK_TEXT(action, action_len);
    CHECK_TEXT(params, params_len);
    d->commands++;
    snprintf(d->command, sizeof d->command, "%.*s %.*s", (int)action_len, action, (int)params_len, params);
}

static void on_kv(void *userdata, mode_change_kind_t kind, const char *key, size_t key_len, const char *value,
                  size_t value_len, const char *previous, size_t previous_len) {
    device_t *d = (device_t *)userdata;
    (void)kind, (void)value, (void)value_len, (void)previous, (void)previous_len;
    char key_z[64], buf[64];
    size_t len = 0;
    snprintf(key_z, sizeof key_z, "%.*s", (int)key_len, key);
    if (mode_session_kv_get(d->session, key_z, buf, sizeof buf, &len) == MODE_OK) d->kv_reads_ok++;
}

static void on_bulk(void *userdata, const char *label, size_t label_len, const char *request_id, size_t request_id_len,
                    const char *status, size_t status_len, const char *payload, size_t payload_len) {
    device_t *d = (device_t *)userdata;
    CHECK_TEXT(label, label_len);
    CHECK_TEXT(request_id, request_id_len);
    CHECK_TEXT(status, status_len);
    CHECK_TEXT(payload, payload_len);
    snprintf(d->bulk, sizeof d->bulk, "%.*s %.*s %.*s %.*s", (int)label_len, label, (int)request_id_len, request_id,
             (int)status_len, status, (int)payload_len, payload);
}

static void test_session_round_trip(void) {
    mode_session_t *s = NULL;
    CHECK_STATUS(mode_session_new(1234, 0xabc, &s), MODE_OK);
    device_t d;
    memset(&d, 0, sizeof d);
    d.session = s;

    CHECK_STATUS(mode_session_watch_bulk_responses(s, "ml"), MODE_OK);
    CHECK_STATUS(mode_session_watch_bulk_responses(s, "a/b"), MODE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "a/b") != NULL);
    CHECK_STATUS(mode_session_subscriptions(s, collect_topic, &d), MODE_OK);
    CHECK(strcmp(d.topics, "/devices/1234/command /devices/1234/kv /devices/1234/bulkData/ml/response ") == 0);
    CHECK_STATUS(mode_session_on_subscribed(s), MODE_OK);

    mode_incoming_handlers_t handlers = {on_command, on_kv, on_bulk};
    mode_incoming_kind_t kind;
    mode_apply_info_t info;
    const char *cmd = "{\"action\":\"light\",\"parameters\":{\"on\":true,\"n\":18446744073709551615}}";
    CHECK_STATUS(mode_session_handle(s, "/devices/1234/command", 21, bytes(cmd), strlen(cmd), &handlers, &d, &kind, NULL), MODE_OK);
    CHECK(kind == MODE_INCOMING_COMMAND && d.commands == 1);
    CHECK(strcmp(d.command, "light {\"n\":18446744073709551615,\"on\":true}") == 0);

    const char *reload = "{\"action\":\"reload\",\"rev\":5,\"items\":[{\"key\":\"a\",\"value\":1}]}";
    CHECK_STATUS(mode_session_handle(s, "/devices/1234/kv", 16, bytes(reload), strlen(reload), &handlers, &d, &kind, &info), MODE_OK);
    CHECK(kind == MODE_INCOMING_KV && info.reload && info.changes == 1 && d.kv_reads_ok == 1);

    const char *resp = "{\"requestId\":\"r-1\",\"status\":\"OK\",\"payload\":{\"y\":2}}";
    CHECK_STATUS(mode_session_handle(s, "/devices/1234/bulkData/ml/response", 34, bytes(resp), strlen(resp), &handlers, &d, &kind, NULL), MODE_OK);
    CHECK(kind == MODE_INCOMING_BULK_RESPONSE && strcmp(d.bulk, "ml r-1 OK {\"y\":2}") == 0);

    CHECK_STATUS(mode_session_handle(s, "/devices/99/command", 19, bytes(cmd), strlen(cmd), &handlers, &d, &kind, NULL), MODE_OK);
    CHECK(kind == MODE_INCOMING_UNRELATED && d.commands == 1);
    CHECK_STATUS(mode_session_handle(s, "/devices/1234/command", 21, bytes("{"), 1, NULL, NULL, &kind, NULL), MODE_ERR_DECODE);
    CHECK(kind == MODE_INCOMING_INVALID && strlen(last_error()) > 0);

    CHECK_STATUS(mode_session_encode_event(s, "temp", "{\"c\":21}", 1, capture_outgoing, &d), MODE_OK);
    CHECK(strcmp(d.last_topic, "/devices/1234/event") == 0 && d.last_qos == 1);
    CHECK(strcmp(d.last_payload, "{\"eventType\":\"temp\",\"eventData\":{\"c\":21}}") == 0);
    CHECK_STATUS(mode_session_encode_event(s, "empty", NULL, 0, capture_outgoing, &d), MODE_OK);
    CHECK(strcmp(d.last_payload, "{\"eventType\":\"empty\",\"eventData\":{}}") == 0 && d.last_qos == 0);

    CHECK_STATUS(mode_session_encode_kv_set(s, "status", "\"ok\"", capture_outgoing, &d), MODE_OK);
    CHECK(strcmp(d.last_topic, "/devices/1234/kv") == 0 && d.last_qos == 1);
    CHECK(strcmp(d.last_payload, "{\"action\":\"set\",\"key\":\"status\",\"value\":\"ok\"}") == 0);
    CHECK_STATUS(mode_session_encode_kv_delete(s, "status", capture_outgoing, &d), MODE_OK);
    CHECK(strcmp(d.last_payload, "{\"action\":\"delete\",\"key\":\"status\"}") == 0);

    const uint8_t blob[] = {0, 1, 2, 'x'};
    CHECK_STATUS(mode_session_encode_bulk_data(s, "ml", blob, sizeof blob, 0, capture_outgoing, &d), MODE_OK);
    CHECK(strcmp(d.last_topic, "/devices/1234/bulkData/ml") == 0);
    CHECK_STATUS(mode_session_encode_bulk_request(s, "ml", "{\"q\":1}", 1, capture_outgoing, &d), MODE_OK);
    CHECK(strcmp(d.last_topic, "/devices/1234/bulkData/ml/request") == 0);
    CHECK(strncmp(d.last_request_id, "1234-0000000000000abc-", 22) == 0);
    CHECK(strstr(d.last_payload, d.last_request_id) != NULL);

    char buf[64];
    size_t len = 0;
    CHECK_STATUS(mode_session_kv_snapshot(s, buf, sizeof buf, &len), MODE_OK);
    CHECK(strcmp(buf, "{\"a\":1}") == 0);
    mode_session_free(s);
}

static void test_session_refuses_misuse(void) {
    mode_session_t *s = NULL;
    CHECK_STATUS(mode_session_new(7, 0, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_session_new(7, 0, &s), MODE_OK);
    device_t d;
    memset(&d, 0, sizeof d);
    CHECK_STATUS(mode_session_encode_event(s, "t", "{}", 2, capture_outgoing, &d), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_session_encode_event(s, "t", "{}", -1, capture_outgoing, &d), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_session_encode_event(s, "t", "[1]", 0, capture_outgoing, &d), MODE_ERR_INVALID_JSON);
    CHECK_STATUS(mode_session_encode_event(s, "t", "{oops", 0, capture_outgoing, &d), MODE_ERR_INVALID_JSON);
    CHECK_STATUS(mode_session_encode_event(s, "", "{}", 0, capture_outgoing, &d), MODE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(last_error(), "event type") != NULL);
    CHECK_STATUS(mode_session_encode_event(s, "t", "{}", 0, NULL, &d), MODE_ERR_NULL);
    CHECK_STATUS(mode_session_encode_event(NULL, "t", "{}", 0, capture_outgoing, &d), MODE_ERR_NULL);
    CHECK_STATUS(mode_session_encode_kv_set(s, "", "1", capture_outgoing, &d), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_session_encode_kv_set(s, "k", NULL, capture_outgoing, &d), MODE_ERR_NULL);
    CHECK_STATUS(mode_session_encode_kv_delete(s, NULL, capture_outgoing, &d), MODE_ERR_NULL);
    CHECK_STATUS(mode_session_encode_bulk_data(s, "#", NULL, 0, 0, capture_outgoing, &d), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_session_encode_bulk_data(s, "ml", NULL, 3, 0, capture_outgoing, &d), MODE_ERR_NULL);
    CHECK_STATUS(mode_session_handle(s, NULL, 0, NULL, 0, NULL, NULL, NULL, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_session_handle(s, "/devices/7/\xff", 12, NULL, 0, NULL, NULL, NULL, NULL), MODE_ERR_INVALID_UTF8);
    CHECK_STATUS(mode_session_kv_get(s, "missing", NULL, 0, NULL), MODE_ERR_NOT_FOUND);
    CHECK(strcmp(d.last_topic, "") == 0); /* nothing was ever handed out */
    mode_session_free(NULL);
    mode_session_free(s);
}

static void test_session_takes_topics_without_a_nul(void) {
    mode_session_t *s = NULL;
    CHECK_STATUS(mode_session_new(1234, 1, &s), MODE_OK);
    device_t d;
    memset(&d, 0, sizeof d);
    mode_incoming_handlers_t handlers = {on_command, NULL, NULL};
    mode_incoming_kind_t kind;
    /* As ESP-MQTT and coreMQTT hand it over: the topic runs on into other bytes, no NUL. */
    char frame[64];
    const char *topic = "/devices/1234/command";
    size_t topic_len = strlen(topic);
    memcpy(frame, topic, topic_len);
    memcpy(frame + topic_len, "XYZ{\"action\":\"go\",\"parameters\":{}}", 35);
    const char *payload = frame + topic_len + 3;
    CHECK_STATUS(mode_session_handle(s, frame, topic_len, bytes(payload), 31, &handlers, &d, &kind, NULL), MODE_OK);
    CHECK(kind == MODE_INCOMING_COMMAND && d.commands == 1 && strcmp(d.command, "go {}") == 0);
    /* The same bytes with the longer length are another topic. */
    CHECK_STATUS(mode_session_handle(s, frame, topic_len + 3, bytes(payload), 31, &handlers, &d, &kind, NULL), MODE_OK);
    CHECK(kind == MODE_INCOMING_UNRELATED && d.commands == 1);
    mode_session_free(s);
}

static void test_a_refused_encode_uses_up_no_request_id(void) {
    /* Two sessions with the same seed: the one whose first request was refused (no callback)
     * must hand out the same id next as the one that never failed. */
    mode_session_t *a = NULL, *b = NULL;
    CHECK_STATUS(mode_session_new(5, 42, &a), MODE_OK);
    CHECK_STATUS(mode_session_new(5, 42, &b), MODE_OK);
    device_t da, db;
    memset(&da, 0, sizeof da);
    memset(&db, 0, sizeof db);
    CHECK_STATUS(mode_session_encode_bulk_request(a, "ml", "{}", MODE_QOS_AT_LEAST_ONCE, NULL, &da), MODE_ERR_NULL);
    CHECK_STATUS(mode_session_encode_bulk_request(a, "ml", "{}", MODE_QOS_AT_LEAST_ONCE, capture_outgoing, &da), MODE_OK);
    CHECK_STATUS(mode_session_encode_bulk_request(b, "ml", "{}", MODE_QOS_AT_LEAST_ONCE, capture_outgoing, &db), MODE_OK);
    CHECK(strlen(da.last_request_id) > 0 && strcmp(da.last_request_id, db.last_request_id) == 0);
    CHECK(da.last_qos == MODE_QOS_AT_LEAST_ONCE);
    mode_session_free(a);
    mode_session_free(b);
}

int main(void) {
    test_status_and_version();
    test_the_last_error_says_why_and_survives_reading_it();
    test_mirror_applies_sync_and_reports_changes();
    test_mirror_iterates_in_key_order();
    test_mirror_refuses_bad_input_without_changing();
    test_session_round_trip();
    test_session_refuses_misuse();
    test_session_takes_topics_without_a_nul();
    test_a_refused_encode_uses_up_no_request_id();
    CHECK(text_rule_broken == 0);
    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
