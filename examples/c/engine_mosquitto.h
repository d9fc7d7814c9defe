/*
 * libmode_core's engine (mode_engine_*) on libmosquitto: the part the engine examples share
 * (own_loop.c, own_mqtt.c, durable_outbox.c; each includes this header and says so at its top).
 * Read it with own_loop.c, the one-thread firmware pattern.
 *
 *   - the clock the engine runs on (now_ms), a random seed, Ctrl-C, and the demos' engine config;
 *   - link_t: one device's engine and its libmosquitto connection, with the window that maps
 *     libmosquitto's message ids (mids) to the engine's message ids;
 *   - libmosquitto's news as inputs to the engine (link_connack, link_lost, link_puback,
 *     link_message) and the engine's transmits carried out on libmosquitto (link_carry_out:
 *     all but CONNECT, which each threading model does its own way), and its events printed;
 *   - the demo application of own_loop.c and own_mqtt.c: numbered QoS 1 "tick" events;
 *   - the one-thread loop's pieces (own_loop.c, durable_outbox.c): libmosquitto's callbacks,
 *     the transmits with CONNECT, and the wait in mosquitto_loop until the engine's next timer.
 *
 * Nothing here locks: own_mqtt.c calls it with its mutex held. The functions are static inline
 * so that an example compiles without warnings whichever of them it uses.
 */
#ifndef EXAMPLES_C_ENGINE_MOSQUITTO_H
#define EXAMPLES_C_ENGINE_MOSQUITTO_H

#include <mode_core.h>
#include <mosquitto.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the clock, a seed, Ctrl-C, the engine ------------------------------------------------ */

/* The engine's time: milliseconds of a clock that never goes back. */
static inline uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The engine draws its backoff jitter from this; a device would use its hardware RNG. */
static inline uint64_t seed(void) {
    uint64_t s = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&s, sizeof s, 1, f) != 1) s = 0;
        fclose(f);
    }
    return s ^ now_ms();
}

static volatile sig_atomic_t interrupted;

static inline void on_signal(int signal) {
    (void)signal;
    interrupted = 1;
}

/* Ctrl-C (and SIGTERM) set `interrupted`: the loop then closes the engine cleanly. */
static inline void catch_signals(void) {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
}

/* The engine of device `device_id` (its decimal text, as given on the command line), with
 * `journal` reporting every outbox change (mode_engine_poll_journal); NULL, said why, on error. */
static inline mode_engine_t *demo_engine(const char *device_id, bool journal) {
    mode_engine_config_t config;
    mode_engine_config_init(strtoull(device_id, NULL, 10), seed(), &config);
    config.journal = journal;
    config.watchdog_ms = 0;       /* libmosquitto's keepalive notices a dead connection */
    config.backoff_unit_ms = 250; /* quick retries for the demo; the default is 1 s */
    config.backoff_cap_ms = 4000;
    mode_engine_t *engine = NULL;
    mode_status_t status = mode_engine_new(&config, now_ms(), &engine);
    if (status != MODE_OK) fprintf(stderr, "mode_engine_new: %s\n", mode_status_str(status));
    return engine;
}

/* ---- one device: its engine and its libmosquitto connection ------------------------------- */

/* libmosquitto names a publish by its mid; the engine by its message id. */
#define WINDOW 1024
typedef struct {
    int mid;
    uint64_t id;
} sent_t;

typedef struct {
    mode_engine_t *engine;
    struct mosquitto *mosq; /* own_mqtt.c: this connection attempt's, NULL between attempts */
    const char *host, *login, *key;
    int port;
    int live;               /* a loss of mosq is news for the engine (not after ABORT) */
    sent_t sent[WINDOW];    /* in-flight publishes of mosq, by mid % WINDOW */
    long connects, delivered, reloads;
    int closed;             /* the engine reported CLOSED */
} link_t;

/* HOST PORT DEVICE_ID API_KEY, the first four arguments of every example. The login is the
 * device id as user name and the API key as password. */
static inline void link_args(link_t *l, char **argv) {
    l->host = argv[1];
    l->port = atoi(argv[2]);
    l->login = argv[3];
    l->key = argv[4];
}

/* libmosquitto's five callbacks, as an example gives them to a connection. */
typedef struct {
    void (*connect)(struct mosquitto *, void *, int);
    void (*disconnect)(struct mosquitto *, void *, int);
    void (*subscribe)(struct mosquitto *, void *, int, int, const int *);
    void (*publish)(struct mosquitto *, void *, int);
    void (*message)(struct mosquitto *, void *, const struct mosquitto_message *);
} callbacks_t;

/* A libmosquitto object for the device (MODE: clean session, no will, MQTT 3.1.1) calling `cb`
 * with `userdata`; NULL when out of memory. It does not connect yet. */
static inline struct mosquitto *link_mosquitto(const link_t *l, void *userdata, const callbacks_t *cb) {
    struct mosquitto *mosq = mosquitto_new(NULL, true, userdata);
    if (!mosq) return NULL;
    mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_username_pw_set(mosq, l->login, l->key);
    mosquitto_connect_callback_set(mosq, cb->connect);
    mosquitto_disconnect_callback_set(mosq, cb->disconnect);
    mosquitto_subscribe_callback_set(mosq, cb->subscribe);
    mosquitto_publish_callback_set(mosq, cb->publish);
    mosquitto_message_callback_set(mosq, cb->message);
    return mosq;
}

/* ---- libmosquitto's news, each one input to the engine ------------------------------------- */

/* The connection ended or an attempt failed: the engine schedules the next one. */
static inline void link_lost(link_t *l, int reason, const char *why) {
    mode_engine_disconnected(l->engine, reason, why, strlen(why), now_ms());
}

/* The CONNACK: returns 1 if the broker accepted. CONNACK 4 (bad user name or password) or
 * 5 (not authorized): the engine waits longer before the next attempt. */
static inline int link_connack(link_t *l, int rc) {
    if (rc == 0) {
        mode_engine_connected(l->engine, now_ms());
        return 1;
    }
    link_lost(l, rc == 4 || rc == 5 ? MODE_DISCONNECT_AUTH : MODE_DISCONNECT_NETWORK, mosquitto_connack_string(rc));
    return 0;
}

/* libmosquitto's on_disconnect (rc 0: we asked for it), or its loop failed: news for the engine
 * once, while the connection is live. */
static inline void link_down(link_t *l, int rc) {
    if (!l->live) return;
    l->live = 0;
    link_lost(l, MODE_DISCONNECT_NETWORK, rc == 0 ? "closed" : mosquitto_strerror(rc));
}

/* libmosquitto's on_publish: PUBACK (QoS 1) or written (QoS 0). Returns 1 if it was ours. */
static inline int link_puback(link_t *l, int mid) {
    sent_t *slot = &l->sent[mid % WINDOW];
    if (slot->mid != mid || slot->id == 0) return 0;
    mode_engine_delivered(l->engine, slot->id, now_ms());
    slot->id = 0;
    return 1;
}

/* libmosquitto's on_message: the engine decides what it means (a command, a DDP change, ...). */
static inline void link_message(link_t *l, const struct mosquitto_message *message) {
    mode_engine_handle_publish(l->engine, message->topic, strlen(message->topic), (const uint8_t *)message->payload,
                               (size_t)message->payloadlen, now_ms());
}

/* ---- the engine's outputs -------------------------------------------------------------------- */

/* Carries out a transmit other than CONNECT on l->mosq. */
static inline void link_carry_out(link_t *l, const mode_transmit_t *t) {
    switch (t->kind) {
    case MODE_TRANSMIT_SUBSCRIBE:
    case MODE_TRANSMIT_UNSUBSCRIBE: {
        char *topics[8];
        int count = 0;
        for (size_t i = 0; i < t->topics_len && count < 8; i++) topics[count++] = (char *)t->topics[i].text;
        if (t->kind == MODE_TRANSMIT_SUBSCRIBE)
            mosquitto_subscribe_multiple(l->mosq, NULL, count, topics, 0, 0, NULL); /* MODE grants QoS 0 */
        else
            mosquitto_unsubscribe_multiple(l->mosq, NULL, count, topics, NULL);
        break;
    }
    case MODE_TRANSMIT_PUBLISH: {
        int mid = 0;
        int rc = mosquitto_publish(l->mosq, &mid, t->publish.topic, (int)t->publish.payload_len, t->publish.payload,
                                   t->publish.qos, false);
        /* On failure the connection is going down: the engine re-sends it after the reconnect.
         * (own_mqtt.c holds its lock, so the PUBACK cannot be handled before the mid is noted.) */
        if (rc == MOSQ_ERR_SUCCESS) l->sent[mid % WINDOW] = (sent_t){mid, t->publish.id};
        break;
    }
    case MODE_TRANSMIT_DISCONNECT:
        mosquitto_disconnect(l->mosq); /* on_disconnect reports it */
        break;
    case MODE_TRANSMIT_ABORT:
        l->live = 0; /* not to be reported */
        mosquitto_disconnect(l->mosq);
        break;
    default:
        break;
    }
}

/* Prints what the engine has for the application; returns 1 (and sets l->closed) once closed. */
static inline int link_events(link_t *l) {
    mode_event_t e;
    while (mode_engine_poll_event(l->engine, &e) == MODE_OK && e.kind != MODE_EVENT_NONE) {
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
            if (e.reload) l->reloads++;
            printf("kv %s rev %llu, %zu changes\n", e.reload ? "reload" : "change", (unsigned long long)e.rev,
                   e.changes_len);
            break;
        case MODE_EVENT_COMMAND:
            printf("command %.*s %.*s\n", (int)e.action_len, e.action, (int)e.parameters_len, e.parameters);
            break;
        case MODE_EVENT_DELIVERED:
            if (++l->delivered % 25 == 0) printf("progress: %ld delivered\n", l->delivered);
            break;
        case MODE_EVENT_DROPPED:
            printf("dropped %llu: %s\n", (unsigned long long)e.id, e.text);
            break;
        case MODE_EVENT_ERROR:
            printf("ignored a malformed message on %s: %s\n", e.topic, e.text);
            break;
        case MODE_EVENT_CLOSED:
            printf("closed, %llu unsent\n", (unsigned long long)e.unsent);
            l->closed = 1;
            break;
        default:
            break;
        }
    }
    fflush(stdout);
    return l->closed;
}

/* ---- the demo application: numbered QoS 1 "tick" events -------------------------------------- */

typedef struct {
    long queued, total; /* events the engine accepted, of how many */
    uint64_t next_tick;
    int every_ms;
    int closing; /* mode_engine_close was called */
} ticks_t;

/* One tick event every `every_ms`, numbered from 1, until `total`; then, once every one is
 * delivered (or on Ctrl-C), the engine closes with 5 s to deliver what is in flight. */
static inline void ticks_run(link_t *l, ticks_t *a, uint64_t now) {
    if (!a->closing && a->queued < a->total && now >= a->next_tick) {
        char data[32];
        snprintf(data, sizeof data, "{\"n\":%ld}", a->queued + 1);
        if (mode_engine_send_event(l->engine, "tick", data, strlen(data), MODE_QOS_AT_LEAST_ONCE, NULL) == MODE_OK)
            a->queued++;
        a->next_tick = now + (uint64_t)a->every_ms;
    }
    if (!a->closing && (interrupted || (a->queued == a->total && l->delivered == a->total))) {
        a->closing = 1;
        mode_engine_close(l->engine, now + 5000, now);
    }
}

/* When the loop must run next: the engine's next timer, or the next tick if sooner. */
static inline uint64_t ticks_wake(const link_t *l, const ticks_t *a) {
    uint64_t wake = MODE_NO_TIMEOUT;
    mode_engine_poll_timeout(l->engine, &wake);
    if (!a->closing && a->queued < a->total && a->next_tick < wake) wake = a->next_tick;
    return wake;
}

/* The last line: what was sent and what the engine counted. Returns the exit status. */
static inline int ticks_summary(const link_t *l, const ticks_t *a) {
    mode_stats_t stats;
    mode_engine_stats(l->engine, &stats);
    printf("sent %ld events, %ld delivered, %llu connection attempts, %llu reconnects, %ld reloads\n", a->queued,
           l->delivered, (unsigned long long)stats.connection_attempts, (unsigned long long)stats.reconnects, l->reloads);
    return l->delivered == a->queued ? 0 : 1;
}

/* ---- the one-thread loop (own_loop.c, durable_outbox.c): userdata is the link_t ------------- */

static inline void one_thread_on_connect(struct mosquitto *mosq, void *userdata, int rc) {
    (void)mosq;
    link_t *l = (link_t *)userdata;
    l->live = link_connack(l, rc);
}

static inline void one_thread_on_disconnect(struct mosquitto *mosq, void *userdata, int rc) {
    (void)mosq;
    link_down((link_t *)userdata, rc);
}

static inline void one_thread_on_subscribe(struct mosquitto *mosq, void *userdata, int mid, int count, const int *granted) {
    (void)mosq, (void)mid, (void)count, (void)granted;
    mode_engine_subscribed(((link_t *)userdata)->engine, now_ms());
}

static inline void one_thread_on_publish(struct mosquitto *mosq, void *userdata, int mid) {
    (void)mosq;
    link_puback((link_t *)userdata, mid);
}

static inline void one_thread_on_message(struct mosquitto *mosq, void *userdata, const struct mosquitto_message *message) {
    (void)mosq;
    link_message((link_t *)userdata, message);
}

static inline const callbacks_t *one_thread_callbacks(void) {
    static const callbacks_t callbacks = {one_thread_on_connect, one_thread_on_disconnect, one_thread_on_subscribe,
                                          one_thread_on_publish, one_thread_on_message};
    return &callbacks;
}

/* Carries out what the engine asks of the transport. CONNECT: the first time a connect, later a
 * reconnect (libmosquitto keeps host and login). */
static inline void one_thread_transmit(link_t *l) {
    mode_transmit_t t;
    while (mode_engine_poll_transmit(l->engine, &t) == MODE_OK && t.kind != MODE_TRANSMIT_NONE) {
        if (t.kind != MODE_TRANSMIT_CONNECT) {
            link_carry_out(l, &t);
            continue;
        }
        int rc = l->connects++ == 0 ? mosquitto_connect(l->mosq, l->host, l->port, 30) : mosquitto_reconnect(l->mosq);
        if (rc != MOSQ_ERR_SUCCESS) link_lost(l, MODE_DISCONNECT_NETWORK, mosquitto_strerror(rc));
    }
}

/* Waits for the network until `wake` at the latest (and 1 s at most): mosquitto_loop reads and
 * writes, and its callbacks feed the engine. Without a socket, waits for the timer alone. */
static inline void one_thread_wait(link_t *l, uint64_t wake) {
    uint64_t now = now_ms();
    int timeout = wake <= now ? 0 : wake - now > 1000 ? 1000 : (int)(wake - now);
    int rc = mosquitto_loop(l->mosq, timeout, 1);
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_REFUSED) {
        struct timespec ts = {timeout / 1000, (long)(timeout % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    } else if (rc != MOSQ_ERR_SUCCESS) {
        link_down(l, rc);
    }
}

#endif /* EXAMPLES_C_ENGINE_MOSQUITTO_H */
