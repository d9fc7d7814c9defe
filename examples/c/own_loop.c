/*
 * The firmware pattern: one thread, no library thread, your own MQTT stack. libmosquitto holds
 * the socket and is driven by mosquitto_loop(); libmode_core's engine (mode_engine_*) makes
 * every MODE decision: when to connect (its backoff), what to subscribe to, what to re-send
 * after a reconnect (no QoS 1 message is lost), the fresh DDP reload after each connect, and
 * what an incoming message means. The loop waits in mosquitto_loop at most until the engine's
 * next timer (mode_engine_poll_timeout). Links only libmode_core and libmosquitto.
 *
 * Build:
 *   cc -std=c11 -o own_loop examples/c/own_loop.c $(pkg-config --cflags --libs mode-core libmosquitto)
 * Run against the local simulator (cargo run -p mode-sim; MQTT on 1883):
 *   ./own_loop 127.0.0.1 1883 1001 v1.demo-device-1001 200
 * Arguments: HOST PORT DEVICE_ID API_KEY EVENTS: sends EVENTS numbered QoS 1 "tick" events, one
 * every 20 ms, then closes once every one is delivered. Ctrl-C closes early.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep */
#include <mode_core.h>
#include <mosquitto.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t interrupted;

static void on_signal(int signal) {
    (void)signal;
    interrupted = 1;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* libmosquitto names a publish by its mid; the engine by its message id. */
#define WINDOW 1024
typedef struct {
    int mid;
    uint64_t id;
} sent_t;

typedef struct {
    struct mosquitto *mosq;
    mode_engine_t *engine;
    const char *host;
    int port;
    int up;              /* libmosquitto's connection is up (the engine was told connected) */
    sent_t sent[WINDOW]; /* in-flight publishes, by mid % WINDOW */
    long delivered, connects, reloads;
} device_t;

static void disconnected(device_t *d, int reason, const char *why) {
    mode_engine_disconnected(d->engine, reason, why, strlen(why), now_ms());
}

/* ---- libmosquitto's callbacks: each one input to the engine ------------------------------- */

static void on_connect(struct mosquitto *mosq, void *userdata, int rc) {
    device_t *d = (device_t *)userdata;
    (void)mosq;
    if (rc == 0) {
        d->up = 1;
        mode_engine_connected(d->engine, now_ms());
    } else {
        /* CONNACK 4 (bad user name or password) or 5 (not authorized): the engine waits longer. */
        disconnected(d, rc == 4 || rc == 5 ? MODE_DISCONNECT_AUTH : MODE_DISCONNECT_NETWORK,
                     mosquitto_connack_string(rc));
    }
}

static void on_disconnect(struct mosquitto *mosq, void *userdata, int rc) {
    device_t *d = (device_t *)userdata;
    (void)mosq;
    if (!d->up) return;
    d->up = 0;
    disconnected(d, MODE_DISCONNECT_NETWORK, rc == 0 ? "closed" : mosquitto_strerror(rc));
}

static void on_subscribe(struct mosquitto *mosq, void *userdata, int mid, int count, const int *granted) {
    device_t *d = (device_t *)userdata;
    (void)mosq, (void)mid, (void)count, (void)granted;
    mode_engine_subscribed(d->engine, now_ms());
}

static void on_publish(struct mosquitto *mosq, void *userdata, int mid) {
    device_t *d = (device_t *)userdata;
    (void)mosq;
    sent_t *slot = &d->sent[mid % WINDOW];
    if (slot->mid == mid && slot->id != 0) {
        mode_engine_delivered(d->engine, slot->id, now_ms()); /* PUBACK (QoS 1), written (QoS 0) */
        slot->id = 0;
    }
}

static void on_message(struct mosquitto *mosq, void *userdata, const struct mosquitto_message *message) {
    device_t *d = (device_t *)userdata;
    (void)mosq;
    mode_engine_handle_publish(d->engine, message->topic, strlen(message->topic), (const uint8_t *)message->payload,
                               (size_t)message->payloadlen, now_ms());
}

/* ---- the engine's outputs ------------------------------------------------------------------- */

/* Carries out what the engine asks of the transport. */
static void transmit(device_t *d) {
    mode_transmit_t t;
    while (mode_engine_poll_transmit(d->engine, &t) == MODE_OK && t.kind != MODE_TRANSMIT_NONE) {
        switch (t.kind) {
        case MODE_TRANSMIT_CONNECT: {
            d->connects++;
            /* The first time a connect, later a reconnect: libmosquitto keeps host and login. */
            int rc = d->connects == 1 ? mosquitto_connect(d->mosq, d->host, d->port, 30) : mosquitto_reconnect(d->mosq);
            if (rc != MOSQ_ERR_SUCCESS) disconnected(d, MODE_DISCONNECT_NETWORK, mosquitto_strerror(rc));
            break;
        }
        case MODE_TRANSMIT_SUBSCRIBE:
        case MODE_TRANSMIT_UNSUBSCRIBE: {
            char *topics[8];
            int count = 0;
            for (size_t i = 0; i < t.topics_len && count < 8; i++) topics[count++] = (char *)t.topics[i].text;
            if (t.kind == MODE_TRANSMIT_SUBSCRIBE)
                mosquitto_subscribe_multiple(d->mosq, NULL, count, topics, 0, 0, NULL); /* MODE grants QoS 0 */
            else
                mosquitto_unsubscribe_multiple(d->mosq, NULL, count, topics, NULL);
            break;
        }
        case MODE_TRANSMIT_PUBLISH: {
            int mid = 0;
            int rc = mosquitto_publish(d->mosq, &mid, t.publish.topic, (int)t.publish.payload_len, t.publish.payload,
                                       t.publish.qos, false);
            /* On failure the connection is going down: the engine re-sends it after the reconnect. */
            if (rc == MOSQ_ERR_SUCCESS) d->sent[mid % WINDOW] = (sent_t){mid, t.publish.id};
            break;
        }
        case MODE_TRANSMIT_DISCONNECT:
            mosquitto_disconnect(d->mosq); /* on_disconnect reports it */
            break;
        case MODE_TRANSMIT_ABORT:
            d->up = 0;
            mosquitto_disconnect(d->mosq);
            break;
        case MODE_TRANSMIT_NONE:
            break;
        }
    }
}

/* Reads what the engine has for the application; returns 1 once closed. */
static int events(device_t *d) {
    mode_event_t e;
    int closed = 0;
    while (mode_engine_poll_event(d->engine, &e) == MODE_OK && e.kind != MODE_EVENT_NONE) {
        switch (e.kind) {
        case MODE_EVENT_CONNECTED:
            printf("connected\n");
            break;
        case MODE_EVENT_DISCONNECTED:
            if (e.has_retry)
                printf("disconnected: %s; retry in %llu ms\n", e.text, (unsigned long long)e.retry_in_ms);
            else
                printf("disconnected: %s\n", e.text);
            break;
        case MODE_EVENT_KV:
            if (e.reload) d->reloads++;
            printf("kv %s rev %llu, %zu changes\n", e.reload ? "reload" : "change", (unsigned long long)e.rev,
                   e.changes_len);
            break;
        case MODE_EVENT_COMMAND:
            printf("command %.*s %.*s\n", (int)e.action_len, e.action, (int)e.parameters_len, e.parameters);
            break;
        case MODE_EVENT_DELIVERED:
            if (++d->delivered % 25 == 0) printf("progress: %ld delivered\n", d->delivered);
            break;
        case MODE_EVENT_DROPPED:
            printf("dropped %llu: %s\n", (unsigned long long)e.id, e.text);
            break;
        case MODE_EVENT_ERROR:
            printf("ignored a malformed message on %s: %s\n", e.topic, e.text);
            break;
        case MODE_EVENT_CLOSED:
            printf("closed, %llu unsent\n", (unsigned long long)e.unsent);
            closed = 1;
            break;
        default:
            break;
        }
    }
    fflush(stdout);
    return closed;
}

static uint64_t seed(void) {
    uint64_t s = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&s, sizeof s, 1, f) != 1) s = 0;
        fclose(f);
    }
    return s ^ now_ms();
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s HOST PORT DEVICE_ID API_KEY EVENTS\n", argv[0]);
        return 2;
    }
    device_t d;
    memset(&d, 0, sizeof d);
    d.host = argv[1];
    d.port = atoi(argv[2]);
    long total = atol(argv[5]);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    mode_engine_config_t config;
    mode_engine_config_init(strtoull(argv[3], NULL, 10), seed(), &config);
    config.watchdog_ms = 0;        /* libmosquitto's keepalive notices a dead connection */
    config.backoff_unit_ms = 250;  /* quick retries for the demo; the default is 1 s */
    config.backoff_cap_ms = 4000;
    mode_status_t status = mode_engine_new(&config, now_ms(), &d.engine);
    if (status != MODE_OK) {
        fprintf(stderr, "mode_engine_new: %s\n", mode_status_str(status));
        return 1;
    }
    mosquitto_lib_init();
    d.mosq = mosquitto_new(NULL, true, &d);
    mosquitto_username_pw_set(d.mosq, argv[3], argv[4]);
    mosquitto_connect_callback_set(d.mosq, on_connect);
    mosquitto_disconnect_callback_set(d.mosq, on_disconnect);
    mosquitto_subscribe_callback_set(d.mosq, on_subscribe);
    mosquitto_publish_callback_set(d.mosq, on_publish);
    mosquitto_message_callback_set(d.mosq, on_message);

    long queued = 0;
    uint64_t next_tick = now_ms();
    int closing = 0;
    for (;;) {
        uint64_t now = now_ms();
        mode_engine_handle_timeout(d.engine, now);
        if (!closing && queued < total && now >= next_tick) {
            char data[32];
            snprintf(data, sizeof data, "{\"n\":%ld}", queued + 1);
            if (mode_engine_send_event(d.engine, "tick", data, strlen(data), MODE_QOS_AT_LEAST_ONCE, NULL) == MODE_OK)
                queued++;
            next_tick = now + 20;
        }
        if (!closing && (interrupted || (queued == total && d.delivered == total))) {
            closing = 1;
            mode_engine_close(d.engine, now + 5000, now);
        }
        transmit(&d);
        if (events(&d)) break;

        /* Wait for the network, at most until the engine's next timer or our next tick. */
        uint64_t wake = MODE_NO_TIMEOUT;
        mode_engine_poll_timeout(d.engine, &wake);
        if (!closing && queued < total && next_tick < wake) wake = next_tick;
        now = now_ms();
        int timeout = wake <= now ? 0 : wake - now > 1000 ? 1000 : (int)(wake - now);
        int rc = mosquitto_loop(d.mosq, timeout, 1);
        if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_REFUSED) {
            /* No socket to wait on: wait for the timer alone. */
            struct timespec ts = {timeout / 1000, (long)(timeout % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        } else if (rc != MOSQ_ERR_SUCCESS && d.up) {
            d.up = 0;
            disconnected(&d, MODE_DISCONNECT_NETWORK, mosquitto_strerror(rc));
        }
    }
    mode_stats_t stats;
    mode_engine_stats(d.engine, &stats);
    printf("sent %ld events, %ld delivered, %llu connection attempts, %llu reconnects, %ld reloads\n", queued,
           d.delivered, (unsigned long long)stats.connection_attempts, (unsigned long long)stats.reconnects, d.reloads);
    mode_engine_free(d.engine);
    mosquitto_destroy(d.mosq);
    mosquitto_lib_cleanup();
    return d.delivered == queued ? 0 : 1;
}
