/*
 * Your own MQTT stack with its own thread: libmosquitto's threaded loop (mosquitto_loop_start)
 * holds the socket and calls back on its thread; libmode_core's engine (mode_engine_*) makes
 * every MODE decision: when to connect (its backoff, not libmosquitto's), what to subscribe to,
 * what to re-send after a reconnect (no QoS 1 message is lost), the fresh DDP reload after each
 * connect, and what an incoming message means. The engine is not thread-safe, so one mutex
 * guards it: libmosquitto's callbacks and the main thread (the application and the engine's
 * timer) take it for every call. For the one-thread firmware pattern see own_loop.c.
 *
 * libmosquitto's threaded loop reconnects by itself after a loss; this example turns that off by
 * ending each connection's loop thread (mosquitto_disconnect in on_disconnect) and uses one
 * mosquitto object per connection attempt, so libmosquitto re-sends nothing on its own either:
 * the engine alone decides what goes out again.
 *
 * engine_mosquitto.h (beside this file, shared with own_loop.c and durable_outbox.c) holds the
 * engine's side of the pieces: libmosquitto's news as engine inputs (link_connack, link_down,
 * link_puback, link_message), the transmits carried out (link_carry_out), the events printed
 * (link_events) and the demo's tick events (ticks_run). This file adds the threads and the lock.
 *
 * Build:
 *   cc -std=c11 -pthread -o own_mqtt examples/c/own_mqtt.c $(pkg-config --cflags --libs mode-core libmosquitto)
 * Run against the local simulator (cargo run -p mode-sim; MQTT on 1883):
 *   ./own_mqtt 127.0.0.1 1883 1001 v1.demo-device-1001 200
 * Arguments: HOST PORT DEVICE_ID API_KEY EVENTS: sends EVENTS numbered QoS 1 "tick" events, one
 * every 20 ms, then closes once every one is delivered. Ctrl-C closes early. (Plain TCP here;
 * for the real cloud add mosquitto_tls_set() and port 8883.)
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, pthread_condattr_setclock */
#include "engine_mosquitto.h"

#include <pthread.h>

typedef struct {
    link_t link;          /* link.mosq: this connection's libmosquitto object, NULL between attempts;
                           * link.live: mosq's disconnects are news for the engine */
    pthread_mutex_t lock; /* guards everything here */
    pthread_cond_t wake;  /* the main thread waits on it until the engine's next timer */
    int connect_wanted;   /* the engine asked for CONNECT: the main thread opens one */
} device_t;

/* ---- the engine's outputs, carried out with the lock held ---------------------------------- */

static void transmit(device_t *d) {
    mode_transmit_t t;
    while (mode_engine_poll_transmit(d->link.engine, &t) == MODE_OK && t.kind != MODE_TRANSMIT_NONE) {
        if (t.kind == MODE_TRANSMIT_CONNECT) {
            /* Connecting blocks and joins the last loop thread: the main thread does it, unlocked. */
            d->connect_wanted = 1;
            pthread_cond_signal(&d->wake);
        } else if (d->link.mosq != NULL) { /* no connection: the engine learns it from the attempt */
            link_carry_out(&d->link, &t);
        }
    }
}

/* After every input: carry out the engine's work, read its events, and wake the main thread,
 * whose timer may have moved. */
static void pump(device_t *d) {
    transmit(d);
    link_events(&d->link);
    pthread_cond_signal(&d->wake);
}

/* ---- libmosquitto's callbacks (its thread): each one input to the engine ------------------- */

/* Takes the lock; returns 1 if `mosq` is the live connection (its news are the engine's), else
 * drops the lock again. */
static int enter(device_t *d, struct mosquitto *mosq) {
    pthread_mutex_lock(&d->lock);
    if (mosq == d->link.mosq && d->link.live) return 1;
    pthread_mutex_unlock(&d->lock);
    return 0;
}

static void leave(device_t *d) {
    pump(d);
    pthread_mutex_unlock(&d->lock);
}

static void on_connect(struct mosquitto *mosq, void *userdata, int rc) {
    device_t *d = (device_t *)userdata;
    if (!enter(d, mosq)) return;
    if (!link_connack(&d->link, rc)) {
        d->link.live = 0;
        mosquitto_disconnect(mosq); /* ends this loop thread: no retry of libmosquitto's own */
    }
    leave(d);
}

static void on_disconnect(struct mosquitto *mosq, void *userdata, int rc) {
    device_t *d = (device_t *)userdata;
    /* Ends this loop thread instead of letting it reconnect: the engine's backoff decides. */
    mosquitto_disconnect(mosq);
    if (!enter(d, mosq)) return;
    link_down(&d->link, rc);
    leave(d);
}

static void on_subscribe(struct mosquitto *mosq, void *userdata, int mid, int count, const int *granted) {
    device_t *d = (device_t *)userdata;
    (void)mid, (void)count, (void)granted;
    if (!enter(d, mosq)) return;
    mode_engine_subscribed(d->link.engine, now_ms());
    leave(d);
}

static void on_publish(struct mosquitto *mosq, void *userdata, int mid) {
    device_t *d = (device_t *)userdata;
    if (!enter(d, mosq)) return;
    link_puback(&d->link, mid);
    leave(d);
}

static void on_message(struct mosquitto *mosq, void *userdata, const struct mosquitto_message *message) {
    device_t *d = (device_t *)userdata;
    if (!enter(d, mosq)) return;
    link_message(&d->link, message);
    leave(d);
}

static const callbacks_t callbacks = {on_connect, on_disconnect, on_subscribe, on_publish, on_message};

/* ---- the main thread: connection attempts, the engine's timer, the application ------------- */

/* Ends a libmosquitto object's connection and its loop thread (already ended after a loss). */
static void finish(struct mosquitto *mosq) {
    if (!mosq) return;
    mosquitto_disconnect(mosq);
    mosquitto_loop_stop(mosq, false); /* joins its thread; its callbacks wait for the lock, so not held */
    mosquitto_destroy(mosq);
}

/* Opens the connection the engine asked for; called with the lock held, drops it meanwhile. */
static void open_connection(device_t *d) {
    link_t *l = &d->link;
    struct mosquitto *old = l->mosq;
    l->mosq = NULL;
    l->live = 0;
    d->connect_wanted = 0;
    l->connects++;
    pthread_mutex_unlock(&d->lock);
    finish(old);
    struct mosquitto *mosq = link_mosquitto(l, d, &callbacks);
    int rc = mosq ? mosquitto_connect(mosq, l->host, l->port, 30) : MOSQ_ERR_NOMEM; /* the TCP connect; CONNACK later */
    pthread_mutex_lock(&d->lock);
    if (rc == MOSQ_ERR_SUCCESS) {
        l->mosq = mosq;
        l->live = 1;
        memset(l->sent, 0, sizeof l->sent); /* a new object counts mids from 1 */
        rc = mosquitto_loop_start(mosq);     /* its callbacks wait for the lock we hold */
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        l->mosq = NULL;
        l->live = 0;
        link_lost(l, MODE_DISCONNECT_NETWORK, mosquitto_strerror(rc));
        if (mosq) mosquitto_destroy(mosq);
    }
    pump(d);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT DEVICE_ID API_KEY EVENTS\n", argv[0]);
        return 2;
    }
    static device_t d; /* static: zeroed, and big (the mid window) */
    link_args(&d.link, argv);
    ticks_t app = {.total = atol(argv[5]), .next_tick = now_ms(), .every_ms = 20};
    catch_signals();

    pthread_mutex_init(&d.lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the engine's clock */
    pthread_cond_init(&d.wake, &attr);
    pthread_condattr_destroy(&attr);

    d.link.engine = demo_engine(argv[3], false);
    if (!d.link.engine) return 1;
    mosquitto_lib_init();

    pthread_mutex_lock(&d.lock);
    pump(&d); /* the engine asks to connect at once */
    while (!d.link.closed) {
        if (d.connect_wanted) {
            open_connection(&d);
            continue;
        }
        uint64_t now = now_ms();
        mode_engine_handle_timeout(d.link.engine, now);
        ticks_run(&d.link, &app, now);
        transmit(&d);
        link_events(&d.link);
        if (d.link.closed || d.connect_wanted) continue;

        /* Sleep until the engine's next timer or our next tick; a callback's input wakes us. */
        uint64_t wake = ticks_wake(&d.link, &app);
        if (wake > now + 1000) wake = now + 1000; /* and look at `interrupted` now and then */
        struct timespec until = {(time_t)(wake / 1000), (long)(wake % 1000) * 1000000L};
        pthread_cond_timedwait(&d.wake, &d.lock, &until);
    }
    struct mosquitto *last = d.link.mosq;
    d.link.mosq = NULL;
    pthread_mutex_unlock(&d.lock);
    finish(last);
    int status = ticks_summary(&d.link, &app);
    mode_engine_free(d.link.engine);
    mosquitto_lib_cleanup();
    return status;
}
