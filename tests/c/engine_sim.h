/*
 * What the engine's C tests share (test_engine.c, test_engine_outbox.c, test_engine_inputs.c,
 * linked into one program by tests/c/core.sh against libmode_core alone): a simulated broker on
 * simulated time (a uint64_t the test moves; this side answers CONNECT, SUBSCRIBE and PUBLISH),
 * the readers of the engine's events and stats, and the list of the tests. No socket, no
 * thread, no sleep. tests/c/engine_sim.c holds the code.
 */
#ifndef TESTS_C_ENGINE_SIM_H
#define TESTS_C_ENGINE_SIM_H

#include "check.h"
#include "mode_core.h"

#define DEVICE 1001

/* Every text the engine hands out is pointer + length and NUL-terminated too. */
int text_ok(const char *text, size_t len);

typedef struct {
    mode_engine_t *engine;
    uint64_t now;
    int up;                  /* CONNACK given */
    int auto_ack;            /* PUBACK every publish at once */
    int connects, subscribes, unsubscribes, disconnects, aborts;
    char topics[512];        /* the topics of the last SUBSCRIBE, space-separated */
    uint64_t published[64];  /* ids of PUBLISHes, in order */
    char last_topic[128];
    char last_payload[256];
    int npublished;
} sim_t;

/* The config the tests start from: device 1001, short backoffs and watchdog. */
mode_engine_config_t config(void);

/* A new engine at time 1000 with the broker acknowledging every publish; `c` NULL: config(). */
void sim_init(sim_t *s, const mode_engine_config_t *c);

/* Carries out every transmit: the broker accepts connects and subscriptions, and acknowledges
 * publishes when auto_ack is on. */
void pump(sim_t *s);

/* sim_init, then connected and subscribed, its events read. */
void sim_online(sim_t *s, const mode_engine_config_t *c);

/* Turns auto_ack off and sends one QoS 1 event of `event_type`: written, never acknowledged.
 * Returns its id. */
uint64_t send_unacked(sim_t *s, const char *event_type);

/* The engine's next timer is `ms` from now: checks so, moves the clock there, lets it fire. */
void timer_fires_in(sim_t *s, uint64_t ms);

/* The next event of one kind, skipping others; returns 0 if none came. */
int next_event(sim_t *s, mode_event_kind_t kind, mode_event_t *out);
void drain_events(sim_t *s);
mode_stats_t stats(sim_t *s);

/* The broker delivers `payload` on `topic` now. */
void publish_in(sim_t *s, const char *topic, const char *payload);

/* ---- the tests, by file (test_engine.c's main runs them in this order) ---------------------- */

/* test_engine_outbox.c: what the device sends and what becomes of it. */
void test_connects_subscribes_sends_and_reports_delivery(void);
void test_sends_refuse_bad_input_and_queue_nothing(void);
void test_a_refused_message_is_dropped_and_the_rest_go_on(void);
void test_close_delivers_leaves_cleanly_or_gives_up_at_its_deadline(void);
void test_the_journal_and_restore_carry_the_outbox_across_a_restart(void);

/* test_engine_inputs.c: what arrives, and the connection's ups and downs. */
void test_commands_kv_and_malformed_messages_arrive_as_events(void);
void test_a_lost_connection_backs_off_resends_and_reloads(void);
void test_the_watchdog_drops_a_silent_connection(void);
void test_bulk_requests_resolve_time_out_or_are_forgotten(void);

#endif /* TESTS_C_ENGINE_SIM_H */
