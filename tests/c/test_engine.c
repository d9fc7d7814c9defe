/*
 * Tests of libmode's engine C API (mode_core.h), linked against libmode_core alone: every
 * mode_engine_* function's success and error paths, on simulated time and a simulated broker
 * (tests/c/engine_sim.h). This file: the status texts, the version and the last error, the
 * allocator hooks, mode_engine_new's checks, NULL refused everywhere, and main, which runs
 * these and the tests of test_engine_outbox.c and test_engine_inputs.c. The library's memory
 * comes from a counting allocator given with mode_set_allocator before anything else; at the
 * end every engine's memory was given back.
 */
#include "mode_core.h"
#include "mode_core.h" /* twice on purpose: the include guard must hold */

#include "engine_sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a counting allocator ---------------------------------------------------------------- */

typedef struct {
    size_t size;
    size_t pad; /* keeps the block after the header 16-byte aligned, as malloc's */
} header_t;

static long allocs, frees, live;

static void *counting_malloc(size_t size) {
    header_t *h = (header_t *)malloc(sizeof(header_t) + size);
    if (!h) return NULL;
    h->size = size;
    allocs++, live++;
    return h + 1;
}

static void *counting_realloc(void *ptr, size_t size) {
    header_t *h = (header_t *)realloc((header_t *)ptr - 1, sizeof(header_t) + size);
    if (!h) return NULL;
    h->size = size;
    return h + 1;
}

static void counting_free(void *ptr) {
    frees++, live--;
    free((header_t *)ptr - 1);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_status_version_and_last_error(void) {
    CHECK(strcmp(mode_version(), MODE_VERSION) == 0);
    CHECK(strncmp(mode_status_str(MODE_ERR_QUEUE_FULL), "MODE_ERR_QUEUE_FULL: ", 21) == 0);
    CHECK(strcmp(mode_status_str(12345), "unknown mode_status_t value") == 0);
    CHECK_STATUS(mode_engine_config_init(1, 1, NULL), MODE_ERR_NULL);
    CHECK(strncmp(last_error(), "MODE_ERR_NULL", 13) == 0);
    size_t len = 0;
    CHECK_STATUS(mode_last_error(NULL, 0, &len), MODE_ERR_BUFFER_TOO_SMALL);
    CHECK(len == strlen(last_error()));
}

static void test_the_allocator_is_set_once(void) {
    CHECK(allocs > 0); /* the tests before went through the hooks */
    CHECK_STATUS(mode_set_allocator(counting_malloc, counting_realloc, counting_free), MODE_ERR_INVALID_STATE);
    CHECK(strstr(last_error(), "already") != NULL);
    CHECK_STATUS(mode_set_allocator(NULL, counting_realloc, counting_free), MODE_ERR_NULL);
}

static void test_new_checks_its_config_and_writes_nothing_on_error(void) {
    mode_engine_config_t c = config();
    mode_engine_t *e = NULL;
    CHECK_STATUS(mode_engine_new(NULL, 0, &e), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_new(&c, 0, NULL), MODE_ERR_NULL);
    /* Configs one field off, each refused with its status (the first also says which field). */
    mode_engine_config_t bad[5] = {c, c, c, c, c};
    bad[0].queue_size = 0;
    bad[1].full_queue = 7;
    bad[2].backoff_jitter = 1.5;
    bad[3].max_inflight = 0;
    bad[4].backoff_unit_ms = 0;
    const mode_status_t want[5] = {MODE_ERR_CONFIG, MODE_ERR_INVALID_ARGUMENT, MODE_ERR_CONFIG, MODE_ERR_CONFIG,
                                   MODE_ERR_CONFIG};
    for (int i = 0; i < 5; i++) {
        CHECK_STATUS(mode_engine_new(&bad[i], 0, &e), want[i]);
        if (i == 0) CHECK(strstr(last_error(), "queue_size") != NULL);
    }
    CHECK(e == NULL);
    mode_engine_config_t d;
    CHECK_STATUS(mode_engine_config_init(7, 9, &d), MODE_OK);
    CHECK(d.device_id == 7 && d.seed == 9 && d.queue_size == 10000 && d.max_inflight == 100);
    CHECK(d.watchdog_ms == 90000 && d.linger_ms == 2000 && d.backoff_cap_ms == 60000 && !d.journal);
    CHECK(d.full_queue == MODE_QUEUE_ERROR);
    mode_engine_free(NULL); /* a no-op */
}

static void test_every_export_refuses_null(void) {
    mode_transmit_t t;
    mode_event_t e;
    mode_stats_t st;
    sim_t s;
    sim_init(&s, NULL);
    CHECK_STATUS(mode_engine_poll_transmit(NULL, &t), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_poll_transmit(s.engine, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_poll_event(NULL, &e), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_poll_event(s.engine, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_stats(NULL, &st), MODE_ERR_NULL);
    CHECK_STATUS(mode_engine_stats(s.engine, NULL), MODE_ERR_NULL);
    /* The refused calls took nothing: the first transmit is still the CONNECT. */
    CHECK_STATUS(mode_engine_poll_transmit(s.engine, &t), MODE_OK);
    CHECK(t.kind == MODE_TRANSMIT_CONNECT);
    mode_engine_free(s.engine);
}

int main(void) {
    /* First of all: every allocation of the library goes through the counting hooks. */
    if (mode_set_allocator(counting_malloc, counting_realloc, counting_free) != MODE_OK) {
        fprintf(stderr, "mode_set_allocator failed\n");
        return 1;
    }
    test_status_version_and_last_error();
    test_the_allocator_is_set_once();
    long live_before = live;
    test_new_checks_its_config_and_writes_nothing_on_error();
    test_connects_subscribes_sends_and_reports_delivery();
    test_sends_refuse_bad_input_and_queue_nothing();
    test_commands_kv_and_malformed_messages_arrive_as_events();
    test_a_lost_connection_backs_off_resends_and_reloads();
    test_the_watchdog_drops_a_silent_connection();
    test_bulk_requests_resolve_time_out_or_are_forgotten();
    test_a_refused_message_is_dropped_and_the_rest_go_on();
    test_close_delivers_leaves_cleanly_or_gives_up_at_its_deadline();
    test_the_journal_and_restore_carry_the_outbox_across_a_restart();
    test_every_export_refuses_null();
    /* Every engine's memory went back through the hooks; what stays is the thread's last-error
     * text (one block, replaced rather than added to). */
    CHECK(allocs > 500 && frees > 500);
    CHECK(live - live_before <= 1);
    printf("allocator: %ld allocations, %ld frees, %ld live at the end (%ld before the engines)\n", allocs, frees,
           live, live_before);
    return checks_done("test_engine");
}
