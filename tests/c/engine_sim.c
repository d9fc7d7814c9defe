/*
 * The simulated broker of the engine's C tests (tests/c/engine_sim.h): it answers CONNECT,
 * SUBSCRIBE and PUBLISH on simulated time, and the small readers every test uses.
 */
#include "engine_sim.h"

#include <stdio.h>
#include <string.h>

int text_ok(const char *text, size_t len) { return text != NULL && text[len] == '\0' && strlen(text) == len; }

mode_engine_config_t config(void) {
    mode_engine_config_t c;
    CHECK_STATUS(mode_engine_config_init(DEVICE, 42, &c), MODE_OK);
    c.backoff_unit_ms = 100;
    c.backoff_cap_ms = 2000;
    c.backoff_jitter = 0.2;
    c.watchdog_ms = 1500;
    c.linger_ms = 200;
    c.auth_failure_wait_ms = 3000;
    c.auth_failure_cap_ms = 20000;
    return c;
}

void sim_init(sim_t *s, const mode_engine_config_t *c) {
    mode_engine_config_t defaults;
    if (c == NULL) defaults = config(), c = &defaults;
    memset(s, 0, sizeof *s);
    s->now = 1000;
    s->auto_ack = 1;
    CHECK_STATUS(mode_engine_new(c, s->now, &s->engine), MODE_OK);
}

/* Carries out every transmit: the broker accepts connects and subscriptions when `up` is asked
 * for, and acknowledges publishes when auto_ack is on. */
void pump(sim_t *s) {
    for (int guard = 0; guard < 1000; guard++) {
        mode_transmit_t t;
        CHECK_STATUS(mode_engine_poll_transmit(s->engine, &t), MODE_OK);
        switch (t.kind) {
        case MODE_TRANSMIT_NONE:
            return;
        case MODE_TRANSMIT_CONNECT:
            s->connects++;
            s->up = 1;
            CHECK_STATUS(mode_engine_connected(s->engine, s->now), MODE_OK);
            break;
        case MODE_TRANSMIT_SUBSCRIBE:
            s->subscribes++;
            s->topics[0] = '\0';
            for (size_t i = 0; i < t.topics_len; i++) {
                CHECK(text_ok(t.topics[i].text, t.topics[i].len));
                strncat(s->topics, t.topics[i].text, sizeof s->topics - strlen(s->topics) - 2);
                strcat(s->topics, " ");
            }
            CHECK_STATUS(mode_engine_subscribed(s->engine, s->now), MODE_OK);
            break;
        case MODE_TRANSMIT_UNSUBSCRIBE:
            s->unsubscribes++;
            CHECK(t.topics_len >= 2);
            break;
        case MODE_TRANSMIT_PUBLISH:
            CHECK(text_ok(t.publish.topic, t.publish.topic_len));
            CHECK(t.publish.id > 0);
            if (s->npublished < 64) s->published[s->npublished++] = t.publish.id;
            snprintf(s->last_topic, sizeof s->last_topic, "%.*s", (int)t.publish.topic_len, t.publish.topic);
            snprintf(s->last_payload, sizeof s->last_payload, "%.*s", (int)t.publish.payload_len,
                     (const char *)t.publish.payload);
            if (s->auto_ack) CHECK_STATUS(mode_engine_delivered(s->engine, t.publish.id, s->now), MODE_OK);
            break;
        case MODE_TRANSMIT_DISCONNECT:
            s->disconnects++;
            s->up = 0;
            CHECK_STATUS(mode_engine_disconnected(s->engine, MODE_DISCONNECT_NETWORK, "closed by peer", 14, s->now),
                         MODE_OK);
            break;
        case MODE_TRANSMIT_ABORT:
            s->aborts++;
            s->up = 0;
            break;
        }
    }
    CHECK(!"the engine kept asking for work");
}

/* The next event of one kind, skipping others; returns 0 if none came. */
int next_event(sim_t *s, mode_event_kind_t kind, mode_event_t *out) {
    for (;;) {
        CHECK_STATUS(mode_engine_poll_event(s->engine, out), MODE_OK);
        if (out->kind == MODE_EVENT_NONE) return 0;
        if (out->kind == kind) return 1;
    }
}

void drain_events(sim_t *s) {
    mode_event_t e;
    do CHECK_STATUS(mode_engine_poll_event(s->engine, &e), MODE_OK);
    while (e.kind != MODE_EVENT_NONE);
}

mode_stats_t stats(sim_t *s) {
    mode_stats_t st;
    CHECK_STATUS(mode_engine_stats(s->engine, &st), MODE_OK);
    return st;
}

void publish_in(sim_t *s, const char *topic, const char *payload) {
    CHECK_STATUS(mode_engine_handle_publish(s->engine, topic, strlen(topic), (const uint8_t *)payload,
                                            strlen(payload), s->now),
                 MODE_OK);
}

void sim_online(sim_t *s, const mode_engine_config_t *c) {
    sim_init(s, c);
    pump(s);
    drain_events(s);
}

uint64_t send_unacked(sim_t *s, const char *event_type) {
    uint64_t id = 0;
    s->auto_ack = 0;
    CHECK_STATUS(mode_engine_send_event(s->engine, event_type, NULL, 0, MODE_QOS_AT_LEAST_ONCE, &id), MODE_OK);
    pump(s);
    return id;
}

void timer_fires_in(sim_t *s, uint64_t ms) {
    uint64_t at = 0;
    CHECK_STATUS(mode_engine_poll_timeout(s->engine, &at), MODE_OK);
    CHECK(at == s->now + ms);
    s->now = at;
    CHECK_STATUS(mode_engine_handle_timeout(s->engine, s->now), MODE_OK);
}
