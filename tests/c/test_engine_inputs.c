/*
 * What reaches the engine through the C API (mode_core.h), on tests/c/engine_sim.h's simulated
 * broker: commands and DDP kv messages as events (the mirror read back; stale and malformed
 * messages), a lost connection backing off, re-sending and reloading, the watchdog dropping a
 * silent connection, and bulk requests answered, timed out or forgotten.
 */
#include "engine_sim.h"

#include <stdio.h>
#include <string.h>

void test_commands_kv_and_malformed_messages_arrive_as_events(void) {
    sim_t s;
    sim_online(&s, NULL);
    publish_in(&s, "/devices/1001/command",
               "{\"action\":\"light\",\"parameters\":{\"on\":true,\"level\":12345678901234567890}}");
    mode_event_t e;
    CHECK_STATUS(mode_engine_poll_event(s.engine, &e), MODE_OK);
    CHECK(e.kind == MODE_EVENT_COMMAND && text_ok(e.action, e.action_len) && strcmp(e.action, "light") == 0);
    CHECK(text_ok(e.parameters, e.parameters_len) &&
          strcmp(e.parameters, "{\"level\":12345678901234567890,\"on\":true}") == 0);
    publish_in(&s, "/devices/1001/kv",
               "{\"action\":\"reload\",\"rev\":82,\"numItems\":2,\"items\":["
               "{\"key\":\"xyz\",\"value\":\"hello world\"},{\"key\":\"foo\",\"value\":22399}]}");
    CHECK_STATUS(mode_engine_poll_event(s.engine, &e), MODE_OK);
    CHECK(e.kind == MODE_EVENT_KV && e.reload && e.rev == 82 && e.changes_len == 2);
    if (e.changes_len == 2) {
        CHECK(e.changes[0].kind == MODE_CHANGE_SET && strcmp(e.changes[0].key, "foo") == 0);
        CHECK(text_ok(e.changes[0].value, e.changes[0].value_len) && strcmp(e.changes[0].value, "22399") == 0);
        CHECK(e.changes[0].previous == NULL && e.changes[0].previous_len == 0);
        CHECK(strcmp(e.changes[1].key, "xyz") == 0 && strcmp(e.changes[1].value, "\"hello world\"") == 0);
    }
    publish_in(&s, "/devices/1001/kv", "{\"action\":\"delete\",\"rev\":83,\"key\":\"foo\"}");
    CHECK_STATUS(mode_engine_poll_event(s.engine, &e), MODE_OK);
    CHECK(e.kind == MODE_EVENT_KV && !e.reload && e.rev == 83 && e.changes_len == 1);
    CHECK(e.changes_len == 1 && e.changes[0].kind == MODE_CHANGE_DELETED && e.changes[0].value == NULL &&
          strcmp(e.changes[0].previous, "22399") == 0);
    /* The mirror, read back. */
    char buf[64];
    size_t len = 0;
    uint64_t rev = 0;
    CHECK_STATUS(mode_engine_kv_get(s.engine, "xyz", buf, sizeof buf, &len), MODE_OK);
    CHECK(strcmp(buf, "\"hello world\"") == 0 && len == 13);
    CHECK_STATUS(mode_engine_kv_get(s.engine, "foo", buf, sizeof buf, &len), MODE_ERR_NOT_FOUND);
    CHECK_STATUS(mode_engine_kv_get(s.engine, "xyz", NULL, 0, &len), MODE_ERR_BUFFER_TOO_SMALL);
    CHECK(len == 13);
    CHECK_STATUS(mode_engine_kv_get(s.engine, NULL, buf, sizeof buf, &len), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_kv_get(NULL, "xyz", buf, sizeof buf, &len), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_kv_snapshot(s.engine, buf, sizeof buf, &len, &rev), MODE_OK);
    CHECK(strcmp(buf, "{\"xyz\":\"hello world\"}") == 0 && rev == 83);
    CHECK_STATUS(mode_engine_kv_snapshot(s.engine, buf, 3, &len, &rev), MODE_ERR_BUFFER_TOO_SMALL);
    CHECK_STATUS(mode_engine_kv_snapshot(NULL, buf, sizeof buf, &len, &rev), MODE_ERR_NULL);
    /* A stale sync message changes nothing; a malformed one is an event, not a failed call. */
    publish_in(&s, "/devices/1001/kv", "{\"action\":\"set\",\"rev\":80,\"key\":\"xyz\",\"value\":1}");
    CHECK_STATUS(mode_engine_poll_event(s.engine, &e), MODE_OK);
    CHECK(e.kind == MODE_EVENT_NONE);
    publish_in(&s, "/devices/1001/kv", "{\"action\":\"set\",\"rev\":\"7\",\"key\":\"k\",\"value\":1}");
    CHECK_STATUS(mode_engine_poll_event(s.engine, &e), MODE_OK);
    CHECK(e.kind == MODE_EVENT_ERROR && text_ok(e.text, e.text_len) && strstr(e.text, "rev") != NULL);
    CHECK(strcmp(e.topic, "/devices/1001/kv") == 0);
    mode_stats_t st = stats(&s);
    CHECK(st.kv_applied == 2 && st.kv_stale == 1 && st.kv_invalid == 1 && st.commands_received == 1);
    /* Caller errors: nothing happens. */
    CHECK_STATUS(mode_engine_handle_publish(s.engine, NULL, 0, NULL, 0, s.now), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_handle_publish(s.engine, "\xff", 1, NULL, 0, s.now), MODE_ERR_INVALID_UTF8);
    CHECK_STATUS(mode_engine_handle_publish(s.engine, "/devices/1001/kv", 16, NULL, 3, s.now), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_handle_publish(NULL, "t", 1, NULL, 0, s.now), MODE_ERR_NULL);
    /* A topic without a NUL: only its length counts. */
    const char topic[] = {'/', 'd', 'e', 'v', 'i', 'c', 'e', 's', '/', '1', '0', '0', '1', '/', 'c', 'o', 'm', 'm',
                          'a', 'n', 'd', 'X'};
    const char *cmd = "{\"action\":\"x\"}";
    CHECK_STATUS(mode_engine_handle_publish(s.engine, topic, sizeof topic - 1, (const uint8_t *)cmd, strlen(cmd), s.now),
                 MODE_OK);
    CHECK(next_event(&s, MODE_EVENT_COMMAND, &e) && strcmp(e.action, "x") == 0);
    CHECK(stats(&s).kv_applied == 2 && stats(&s).commands_received == 2);
    mode_engine_free(s.engine);
}

void test_a_lost_connection_backs_off_resends_and_reloads(void) {
    sim_t s;
    sim_online(&s, NULL);
    uint64_t id = send_unacked(&s, "e");
    CHECK(s.npublished == 1);
    /* Misuse first: refused, nothing happens. */
    CHECK_STATUS(mode_engine_disconnected(s.engine, MODE_DISCONNECT_KEEPALIVE, NULL, 0, s.now), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_engine_disconnected(s.engine, 0, NULL, 0, s.now), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_engine_disconnected(s.engine, 99, NULL, 0, s.now), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_engine_disconnected(s.engine, MODE_DISCONNECT_NETWORK, NULL, 3, s.now), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_disconnected(s.engine, MODE_DISCONNECT_NETWORK, "\xff", 1, s.now), MODE_ERR_INVALID_UTF8);
    CHECK_STATUS(mode_engine_disconnected(NULL, MODE_DISCONNECT_NETWORK, NULL, 0, s.now), MODE_ERR_NULL);
    bool connected = false;
    CHECK_STATUS(mode_engine_state(s.engine, &connected, NULL), MODE_OK);
    CHECK(connected);
    mode_event_t e;
    CHECK_STATUS(mode_engine_poll_event(s.engine, &e), MODE_OK);
    CHECK(e.kind == MODE_EVENT_NONE);

    s.now += 10;
    CHECK_STATUS(mode_engine_disconnected(s.engine, MODE_DISCONNECT_NETWORK, "reset", 5, s.now), MODE_OK);
    CHECK_STATUS(mode_engine_poll_event(s.engine, &e), MODE_OK);
    CHECK(e.kind == MODE_EVENT_DISCONNECTED && e.disconnect == MODE_DISCONNECT_NETWORK && e.has_retry);
    CHECK(e.retry_in_ms >= 80 && e.retry_in_ms <= 100); /* one unit, less up to 20% jitter */
    CHECK(text_ok(e.text, e.text_len) && strstr(e.text, "reset") != NULL);
    uint64_t wait = e.retry_in_ms, at = 0;
    CHECK_STATUS(mode_engine_poll_timeout(s.engine, &at), MODE_OK);
    CHECK(at == s.now + wait);
    CHECK_STATUS(mode_engine_poll_timeout(s.engine, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_poll_timeout(NULL, &at), MODE_ERR_NULL);
    /* Early: nothing. */
    CHECK_STATUS(mode_engine_handle_timeout(s.engine, at - 1), MODE_OK);
    mode_transmit_t t;
    CHECK_STATUS(mode_engine_poll_transmit(s.engine, &t), MODE_OK);
    CHECK(t.kind == MODE_TRANSMIT_NONE);
    /* Due: connect; the unacknowledged message goes again with its id, and a reload is taken. */
    s.now = at;
    CHECK_STATUS(mode_engine_handle_timeout(s.engine, s.now), MODE_OK);
    s.auto_ack = 1;
    pump(&s);
    CHECK(s.connects == 2 && s.subscribes == 2 && s.npublished == 2 && s.published[1] == id);
    CHECK(next_event(&s, MODE_EVENT_CONNECTED, &e));
    CHECK(next_event(&s, MODE_EVENT_DELIVERED, &e) && e.id == id);
    CHECK(stats(&s).reconnects == 1);

    /* A refused key: a long wait, its own kind. */
    s.now += 50;
    CHECK_STATUS(mode_engine_disconnected(s.engine, MODE_DISCONNECT_AUTH, "not authorized", 14, s.now), MODE_OK);
    CHECK(next_event(&s, MODE_EVENT_DISCONNECTED, &e));
    CHECK(e.disconnect == MODE_DISCONNECT_AUTH && e.retry_in_ms >= 2400 && e.retry_in_ms <= 3000);
    CHECK(strstr(e.text, "API key") != NULL);
    /* Inputs that do not fit the state are ignored, as the engine documents. */
    CHECK_STATUS(mode_engine_connected(s.engine, s.now), MODE_OK);
    CHECK_STATUS(mode_engine_subscribed(s.engine, s.now), MODE_OK);
    CHECK_STATUS(mode_engine_poll_event(s.engine, &e), MODE_OK);
    CHECK(e.kind == MODE_EVENT_NONE);
    CHECK_STATUS(mode_engine_connected(NULL, s.now), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_subscribed(NULL, s.now), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_handle_timeout(NULL, s.now), MODE_ERR_NULL);
    mode_engine_free(s.engine);
}

void test_the_watchdog_drops_a_silent_connection(void) {
    sim_t s;
    sim_online(&s, NULL);
    uint64_t at = 0;
    CHECK_STATUS(mode_engine_poll_timeout(s.engine, &at), MODE_OK);
    CHECK(at == s.now + 1500);
    s.now += 1000;
    CHECK_STATUS(mode_engine_handle_activity(s.engine, s.now), MODE_OK); /* a PINGRESP */
    CHECK_STATUS(mode_engine_handle_activity(NULL, s.now), MODE_ERR_NULL);
    timer_fires_in(&s, 1500);
    pump(&s);
    CHECK(s.aborts == 1);
    mode_event_t e;
    CHECK(next_event(&s, MODE_EVENT_DISCONNECTED, &e) && e.disconnect == MODE_DISCONNECT_KEEPALIVE && e.has_retry);
    mode_engine_free(s.engine);
}

void test_bulk_requests_resolve_time_out_or_are_forgotten(void) {
    sim_t s;
    sim_online(&s, NULL);
    uint64_t id = 0;
    const char *request_id = NULL;
    size_t request_id_len = 0;
    CHECK_STATUS(mode_engine_bulk_request(s.engine, "ml", "{\"x\":1}", 7, 0, s.now, &id, &request_id, &request_id_len),
                 MODE_OK);
    CHECK(id > 0 && text_ok(request_id, request_id_len));
    char rid[64];
    snprintf(rid, sizeof rid, "%s", request_id);
    pump(&s); /* the response topic's SUBSCRIBE, then the request */
    CHECK(s.subscribes == 2 && strcmp(s.topics, "/devices/1001/bulkData/ml/response ") == 0);
    CHECK(strcmp(s.last_topic, "/devices/1001/bulkData/ml/request") == 0 && strstr(s.last_payload, rid) != NULL);
    char resp[160];
    snprintf(resp, sizeof resp, "{\"requestId\":\"%s\",\"status\":\"OK\",\"payload\":{\"y\":2}}", rid);
    publish_in(&s, "/devices/1001/bulkData/ml/response", resp);
    mode_event_t e;
    CHECK(next_event(&s, MODE_EVENT_BULK_RESPONSE, &e));
    CHECK(e.request && strcmp(e.request_id, rid) == 0 && strcmp(e.label, "ml") == 0 && strcmp(e.status, "OK") == 0);
    CHECK(text_ok(e.payload, e.payload_len) && strcmp(e.payload, "{\"y\":2}") == 0);
    /* With a timeout: BULK_TIMEOUT exactly at the deadline. */
    CHECK_STATUS(mode_engine_bulk_request(s.engine, "ml", NULL, 0, 500, s.now, &id, &request_id, NULL), MODE_OK);
    snprintf(rid, sizeof rid, "%s", request_id);
    pump(&s);
    timer_fires_in(&s, 500);
    CHECK(next_event(&s, MODE_EVENT_BULK_TIMEOUT, &e) && strcmp(e.request_id, rid) == 0);
    /* Forgotten: its late response comes with request false. */
    CHECK_STATUS(mode_engine_bulk_request(s.engine, "ml", NULL, 0, 0, s.now, NULL, &request_id, NULL), MODE_OK);
    snprintf(rid, sizeof rid, "%s", request_id);
    CHECK_STATUS(mode_engine_forget_bulk_request(s.engine, rid), MODE_OK);
    CHECK_STATUS(mode_engine_forget_bulk_request(s.engine, "unknown"), MODE_OK);
    CHECK_STATUS(mode_engine_forget_bulk_request(s.engine, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_forget_bulk_request(NULL, rid), MODE_ERR_NULL);
    snprintf(resp, sizeof resp, "{\"requestId\":\"%s\",\"status\":\"OK\"}", rid);
    publish_in(&s, "/devices/1001/bulkData/ml/response", resp);
    CHECK(next_event(&s, MODE_EVENT_BULK_RESPONSE, &e) && !e.request && strcmp(e.payload, "null") == 0);
    /* Errors: nothing queued, no subscription added. */
    long queued = (long)stats(&s).messages_queued;
    CHECK_STATUS(mode_engine_bulk_request(s.engine, "ml", "[1]", 3, 0, s.now, &id, NULL, NULL), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_engine_bulk_request(s.engine, "ml", "{", 1, 0, s.now, &id, NULL, NULL), MODE_ERR_INVALID_JSON);
    CHECK_STATUS(mode_engine_bulk_request(s.engine, "", NULL, 0, 0, s.now, &id, NULL, NULL), MODE_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(mode_engine_bulk_request(s.engine, NULL, NULL, 0, 0, s.now, &id, NULL, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_bulk_request(NULL, "ml", NULL, 0, 0, s.now, &id, NULL, NULL), MODE_ERR_NULL);
    CHECK((long)stats(&s).messages_queued == queued);
    int subscribes = s.subscribes;
    pump(&s);
    CHECK(s.subscribes == subscribes);
    mode_engine_free(s.engine);
}
