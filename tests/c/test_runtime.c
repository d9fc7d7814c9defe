/*
 * Many clients in one shared runtime (mode_runtime_new / mode_client_new_in), against the
 * mode-sim subprocess of tests/c/run.sh started with --devices (ids from 100000, keys
 * "v1.fleet-device-ID"). Covers: 100 devices on one IO thread and one callback thread, each
 * getting only its own commands and its own delivery outcomes in order; a slow callback of one
 * device delaying no other device's connection; the free order rules; a client freeing itself
 * from its callback while the others run; misuse as statuses.
 */
#include "check.h"
#include "sim.h"

#include <dirent.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { DEVICES = 100, FIRST = 100000, EVENTS = 20 };

static int threads_of_this_process(void) {
    DIR *dir = opendir("/proc/self/task");
    int n = 0;
    if (!dir) return -1;
    for (struct dirent *e; (e = readdir(dir));) n += e->d_name[0] != '.';
    closedir(dir);
    return n;
}

/* What one device's callbacks saw. */
typedef struct {
    uint64_t id;
    mode_client_t *client;
    atomic_int connected;
    atomic_int reconnects_seen;
    atomic_int commands;
    atomic_int foreign_commands; /* a command meant for another device */
    atomic_int deliveries;
    atomic_int out_of_order; /* a delivery outcome with an id below the last one */
    uint64_t last_delivered;
    atomic_int slow_ms;       /* the command callback sleeps this long */
    atomic_int in_slow_callback;
    atomic_int free_self_on_command;
} device_t;

static device_t devices[DEVICES];

static void on_connection(void *ud, bool connected, const char *reason, size_t reason_len, int64_t retry_in_ms) {
    device_t *d = ud;
    (void)reason, (void)reason_len, (void)retry_in_ms;
    if (connected && atomic_fetch_add(&d->connected, 1) > 0) atomic_fetch_add(&d->reconnects_seen, 1);
    if (!connected) atomic_store(&d->connected, 0);
}

static void on_command(void *ud, const char *action, size_t action_len, const char *params, size_t params_len) {
    device_t *d = ud;
    char want[64];
    (void)action, (void)action_len, (void)params_len;
    snprintf(want, sizeof want, "{\"for\":%llu}", (unsigned long long)d->id);
    if (strcmp(params, want) != 0) atomic_fetch_add(&d->foreign_commands, 1);
    int slow = atomic_load(&d->slow_ms);
    if (slow > 0) {
        atomic_store(&d->in_slow_callback, 1);
        sleep_ms(slow);
        atomic_store(&d->in_slow_callback, 0);
    }
    atomic_fetch_add(&d->commands, 1);
    if (atomic_load(&d->free_self_on_command)) {
        mode_client_free(d->client);
        d->client = NULL;
    }
}

static void on_delivery(void *ud, uint64_t message_id, mode_status_t status) {
    device_t *d = ud;
    if (message_id <= d->last_delivered || status != MODE_OK) atomic_fetch_add(&d->out_of_order, 1);
    d->last_delivered = message_id;
    atomic_fetch_add(&d->deliveries, 1);
}

static void send_command(uint64_t id) {
    say("command %llu {\"action\":\"whoami\",\"parameters\":{\"for\":%llu}}", (unsigned long long)id,
        (unsigned long long)id);
}

static mode_client_t *start_device(mode_runtime_t *runtime, device_t *d, uint64_t id, int keepalive_ms) {
    char key[64];
    memset(d, 0, sizeof *d);
    d->id = id;
    snprintf(key, sizeof key, "v1.fleet-device-%llu", (unsigned long long)id);
    mode_config_t *config = sim_config(id, key, mqtt_port);
    CHECK_STATUS(mode_config_set_keepalive_ms(config, keepalive_ms), MODE_OK);
    CHECK_STATUS(mode_client_new_in(runtime, config, &d->client), MODE_OK);
    CHECK_STATUS(mode_client_set_connection_cb(d->client, on_connection, d, NULL), MODE_OK);
    CHECK_STATUS(mode_client_set_command_cb(d->client, on_command, d, NULL), MODE_OK);
    CHECK_STATUS(mode_client_set_delivery_cb(d->client, on_delivery, d, NULL), MODE_OK);
    CHECK_STATUS(mode_client_start(d->client), MODE_OK);
    return d->client;
}

static int all_connected(int n) {
    for (int i = 0; i < n; i++)
        if (!atomic_load(&devices[i].connected)) return 0;
    return 1;
}

static void test_misuse_is_a_status_and_changes_nothing(void) {
    mode_runtime_t *runtime = NULL;
    mode_config_t *config = NULL;
    mode_client_t *client = NULL;
    CHECK_STATUS(mode_runtime_new(1, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_runtime_free(NULL), MODE_OK);
    CHECK_STATUS(mode_config_new(FIRST, "v1.fleet-device-100000", &config), MODE_OK);
    CHECK_STATUS(mode_client_new_in(NULL, config, &client), MODE_ERR_NULL);
    CHECK(client == NULL);
    /* The config was not consumed: it still works. */
    CHECK_STATUS(mode_runtime_new(0, &runtime), MODE_OK);
    CHECK_STATUS(mode_client_new_in(runtime, config, NULL), MODE_ERR_NULL);
    CHECK_STATUS(mode_client_new_in(runtime, config, &client), MODE_OK);
    /* A runtime with a client in it is not freed... */
    CHECK_STATUS(mode_runtime_free(runtime), MODE_ERR_INVALID_STATE);
    char why[256];
    CHECK_STATUS(mode_last_error(why, sizeof why, NULL), MODE_OK);
    CHECK(strstr(why, "free them first") != NULL);
    /* ...and still makes clients. */
    mode_client_free(client);
    CHECK_STATUS(mode_runtime_free(runtime), MODE_OK);
}

static void test_a_hundred_devices_share_two_threads_and_get_only_their_own(void) {
    mode_runtime_t *runtime = NULL;
    int before = threads_of_this_process();
    CHECK_STATUS(mode_runtime_new(1, &runtime), MODE_OK);
    for (int i = 0; i < DEVICES; i++) start_device(runtime, &devices[i], FIRST + i, 5000);
    WAIT_FOR(all_connected(DEVICES));
    CHECK(all_connected(DEVICES));
    int grown = threads_of_this_process() - before;
    printf("   %d devices: %d threads more (one IO thread, one callback thread)\n", DEVICES, grown);
    CHECK(grown == 2);

    for (int i = 0; i < DEVICES; i++) send_command(FIRST + i);
    for (int i = 0; i < DEVICES; i++) {
        for (int n = 0; n < EVENTS; n++) {
            CHECK_STATUS(mode_client_send_event(devices[i].client, "fleet", "{\"n\":1}", MODE_QOS_AT_LEAST_ONCE, NULL),
                         MODE_OK);
        }
    }
    for (int i = 0; i < DEVICES; i++) {
        device_t *d = &devices[i];
        WAIT_FOR(atomic_load(&d->commands) == 1 && atomic_load(&d->deliveries) == EVENTS);
        CHECK(atomic_load(&d->commands) == 1);
        CHECK(atomic_load(&d->foreign_commands) == 0);
        CHECK(atomic_load(&d->deliveries) == EVENTS);
        CHECK(atomic_load(&d->out_of_order) == 0);
    }

    /* A client frees itself from its own callback; the others go on. */
    atomic_store(&devices[0].free_self_on_command, 1);
    send_command(FIRST);
    WAIT_FOR(devices[0].client == NULL);
    CHECK(devices[0].client == NULL);
    send_command(FIRST + 1);
    WAIT_FOR(atomic_load(&devices[1].commands) == 2);
    CHECK(atomic_load(&devices[1].commands) == 2);

    CHECK_STATUS(mode_runtime_free(runtime), MODE_ERR_INVALID_STATE);
    for (int i = 1; i < DEVICES; i++) mode_client_free(devices[i].client);
    CHECK_STATUS(mode_runtime_free(runtime), MODE_OK);
    WAIT_FOR(threads_of_this_process() == before);
    CHECK(threads_of_this_process() == before);
}

static void test_a_slow_callback_delays_no_other_devices_connection(void) {
    mode_runtime_t *runtime = NULL;
    mode_stats_t stats;
    CHECK_STATUS(mode_runtime_new(1, &runtime), MODE_OK);
    /* Keepalives of 1 s: a connection that missed its pings for the 3 s would be dropped. */
    device_t *slow = &devices[0], *other = &devices[1];
    start_device(runtime, slow, FIRST, 1000);
    start_device(runtime, other, FIRST + 1, 1000);
    WAIT_FOR(all_connected(2));
    CHECK(all_connected(2));
    atomic_store(&slow->slow_ms, 3000);
    send_command(FIRST);
    WAIT_FOR(atomic_load(&slow->in_slow_callback));
    CHECK(atomic_load(&slow->in_slow_callback));
    /* While the dispatcher sleeps in the slow callback, the other device's events are sent
     * and acknowledged (its delivery callbacks wait for the dispatcher; its stats do not). */
    for (int n = 0; n < EVENTS; n++) {
        CHECK_STATUS(mode_client_send_event(other->client, "busy", "{}", MODE_QOS_AT_LEAST_ONCE, NULL), MODE_OK);
    }
    int acked = 0;
    WAIT_FOR((mode_client_stats(other->client, &stats), acked = (int)stats.messages_acked) == EVENTS ||
             !atomic_load(&slow->in_slow_callback));
    CHECK(acked == EVENTS);
    CHECK(atomic_load(&slow->in_slow_callback));
    WAIT_FOR(!atomic_load(&slow->in_slow_callback));
    WAIT_FOR(atomic_load(&other->deliveries) == EVENTS);
    CHECK(atomic_load(&other->deliveries) == EVENTS);
    CHECK_STATUS(mode_client_stats(other->client, &stats), MODE_OK);
    CHECK(stats.reconnects == 0);
    CHECK_STATUS(mode_client_stats(slow->client, &stats), MODE_OK);
    CHECK(stats.reconnects == 0);
    mode_client_free(slow->client);
    mode_client_free(other->client);
    CHECK_STATUS(mode_runtime_free(runtime), MODE_OK);
}

int main(void) {
    sim_open();
    wait_limit_ms = 20000; /* a hundred devices take their time under valgrind */
    test_misuse_is_a_status_and_changes_nothing();
    test_a_hundred_devices_share_two_threads_and_get_only_their_own();
    test_a_slow_callback_delays_no_other_devices_connection();
    sim_close();
    return checks_done("test_runtime");
}
