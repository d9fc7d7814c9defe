/*
 * The C side of tests/c/sim.sh, for the tests that run against its mode-sim subprocess
 * (test_client.c, test_client_config.c, test_tls.c, test_runtime.c): the simulator's addresses
 * from the environment, its console (`say`), waiting for a condition, and a plain-TCP config for
 * a device on it. tests/c/sim.c holds the code.
 */
#ifndef TESTS_C_SIM_H
#define TESTS_C_SIM_H

#include "mode.h"

#include <stdio.h>

/* The demo device every mode-sim knows. */
#define DEVICE 1001
#define KEY "v1.demo-device-1001"

/* From MODE_TEST_MQTT_PORT and MODE_TEST_HTTP_URL (sim_open sets them). */
extern int mqtt_port;
extern const char *http_url;

/* How long WAIT_FOR waits, in ms: 10 s unless a test sets it. */
extern long wait_limit_ms;

void sleep_ms(long ms);

/* Polls `cond` every 10 ms for up to wait_limit_ms. */
#define WAIT_FOR(cond)                                                                      \
    do {                                                                                    \
        for (long waited_ = 0; !(cond) && waited_ < wait_limit_ms; waited_ += 10) sleep_ms(10); \
    } while (0)

/* Reads the simulator's addresses and opens its console; exits with 2 (saying what is missing)
 * when not run through tests/c/run.sh. */
void sim_open(void);

/* Types a line on the simulator's console ("command ID JSON", "kv ID KEY JSON", "drop ID"). */
void say(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* Closes the console. */
void sim_close(void);

/* A config for `device` on the simulator over plain TCP to 127.0.0.1:`port` (REST at
 * http_url), with keepalives of 5 s and reconnects after 50 to 200 ms. */
mode_config_t *sim_config(uint64_t device, const char *key, int port);

#endif /* TESTS_C_SIM_H */
