/*
 * The firmware pattern: one thread, no library thread, your own MQTT stack. libmosquitto holds
 * the socket and is driven by mosquitto_loop(); libmode_core's engine (mode_engine_*) makes
 * every MODE decision: when to connect (its backoff), what to subscribe to, what to re-send
 * after a reconnect (no QoS 1 message is lost), the fresh DDP reload after each connect, and
 * what an incoming message means. The loop waits in mosquitto_loop at most until the engine's
 * next timer (mode_engine_poll_timeout). Links only libmode_core and libmosquitto.
 *
 * This file is the loop; engine_mosquitto.h (beside it, shared with own_mqtt.c and
 * durable_outbox.c) holds the pieces it calls: libmosquitto's callbacks feeding the engine
 * (one_thread_on_*), the engine's transmits carried out on libmosquitto (one_thread_transmit),
 * its events printed (link_events), the wait in mosquitto_loop (one_thread_wait) and the demo's
 * tick events (ticks_run).
 *
 * Build:
 *   cc -std=c11 -o own_loop examples/c/own_loop.c $(pkg-config --cflags --libs mode-core libmosquitto)
 * Run against the local simulator (cargo run -p mode-sim; MQTT on 1883):
 *   ./own_loop 127.0.0.1 1883 1001 v1.demo-device-1001 200
 * Arguments: HOST PORT DEVICE_ID API_KEY EVENTS: sends EVENTS numbered QoS 1 "tick" events, one
 * every 20 ms, then closes once every one is delivered. Ctrl-C closes early.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include "engine_mosquitto.h"

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT DEVICE_ID API_KEY EVENTS\n", argv[0]);
        return 2;
    }
    static link_t d; /* static: zeroed, and big (the mid window) */
    link_args(&d, argv);
    ticks_t app = {.total = atol(argv[5]), .next_tick = now_ms(), .every_ms = 20};
    catch_signals();
    d.engine = demo_engine(argv[3], false);
    if (!d.engine) return 1;
    mosquitto_lib_init();
    d.mosq = link_mosquitto(&d, &d, one_thread_callbacks());
    if (!d.mosq) return 1;

    for (;;) {
        uint64_t now = now_ms();
        mode_engine_handle_timeout(d.engine, now);
        ticks_run(&d, &app, now);   /* the application: mode_engine_send_event, at last mode_engine_close */
        one_thread_transmit(&d);    /* poll_transmit until NONE: mosquitto_connect/_subscribe/_publish */
        if (link_events(&d)) break; /* poll_event until NONE: commands, kv changes, deliveries */
        /* Wait for the network, at most until the engine's next timer or our next tick. */
        one_thread_wait(&d, ticks_wake(&d, &app));
    }
    int status = ticks_summary(&d, &app);
    mode_engine_free(d.engine);
    mosquitto_destroy(d.mosq);
    mosquitto_lib_cleanup();
    return status;
}
