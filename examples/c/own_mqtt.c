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
 * Build:
 *   cc -std=c11 -pthread -o own_mqtt examples/c/own_mqtt.c $(pkg-config --cflags --libs mode-core libmosquitto)
 * Run against the local simulator (cargo run -p mode-sim; MQTT on 1883):
 *   ./own_mqtt 127.0.0.1 1883 1001 v1.demo-device-1001 200
 * Arguments: HOST PORT DEVICE_ID API_KEY EVENTS: sends EVENTS numbered QoS 1 "tick" events, one
 * every 20 ms, then closes once every one is delivered. Ctrl-C closes early. (Plain TCP here;
 * for the real cloud add mosquitto_tls_set() and port 8883.)
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, pthread_condattr_setclock */
#include <mode_core.h>
#include <mosquitto.h>

#include <pthread.h>
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
    pthread_mutex_t lock; /* guards everything below */
    pthread_cond_t wake;  /* the main thread waits on it until the engine's next timer */
    mode_engine_t *engine;
    struct mosquitto *mosq; /* this connection's libmosquitto object, NULL between attempts */
    int live;               /* mosq's disconnects are news for the engine (not after ABORT) */
    int connect_wanted;     /* the engine asked for CONNECT: the main thread opens one */
    const char *host, *login, *key;
    int port;
    sent_t sent[WINDOW]; /* in-flight publishes of mosq, by mid % WINDOW */
    long delivered, connects, reloads;
    int closed;
} device_t;

static void disconnected(device_t *d, int reason, const char *why) {
    mode_engine_disconnected(d->engine, reason, why, strlen(why), now_ms());
}

/* ---- the engine's outputs, carried out with the lock held ---------------------------------- */

static void transmit(device_t *d) {
    mode_transmit_t t;
    while (mode_engine_poll_transmit(d->engine, &t) == MODE_OK && t.kind != MODE_TRANSMIT_NONE) {
        if (t.kind == MODE_TRANSMIT_CONNECT) {
            /* Connecting blocks and joins the last loop thread: the main thread does it, unlocked. */
            d->connect_wanted = 1;
            pthread_cond_signal(&d->wake);
            continue;
        }
        if (d->mosq == NULL) continue; /* no connection: the engine learns it from the attempt */
        switch (t.kind) {
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
            /* On failure the connection is going down: the engine re-sends it after the reconnect.
             * The lock is held, so its PUBACK cannot be handled before the mid is written down. */
            if (rc == MOSQ_ERR_SUCCESS) d->sent[mid % WINDOW] = (sent_t){mid, t.publish.id};
            break;
        }
        case MODE_TRANSMIT_DISCONNECT:
            mosquitto_disconnect(d->mosq); /* on_disconnect reports it */
            break;
        case MODE_TRANSMIT_ABORT:
            d->live = 0; /* not to be reported */
            mosquitto_disconnect(d->mosq);
            break;
        default:
            break;
        }
    }
}

static void events(device_t *d) {
    mode_event_t e;
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
            d->closed = 1;
            break;
        default:
            break;
        }
    }
    fflush(stdout);
}

/* After every input: carry out the engine's work, read its events, and wake the main thread,
 * whose timer may have moved. */
static void pump(device_t *d) {
    transmit(d);
    events(d);
    pthread_cond_signal(&d->wake);
}

/* ---- libmosquitto's callbacks (its thread): each one input to the engine ------------------- */

static void on_connect(struct mosquitto *mosq, void *userdata, int rc) {
    device_t *d = (device_t *)userdata;
    pthread_mutex_lock(&d->lock);
    if (mosq == d->mosq && d->live) {
        if (rc == 0) {
            mode_engine_connected(d->engine, now_ms());
        } else {
            /* CONNACK 4 (bad user name or password) or 5 (not authorized): the engine waits longer. */
            d->live = 0;
            disconnected(d, rc == 4 || rc == 5 ? MODE_DISCONNECT_AUTH : MODE_DISCONNECT_NETWORK,
                         mosquitto_connack_string(rc));
            mosquitto_disconnect(mosq); /* ends this loop thread: no retry of libmosquitto's own */
        }
        pump(d);
    }
    pthread_mutex_unlock(&d->lock);
}

static void on_disconnect(struct mosquitto *mosq, void *userdata, int rc) {
    device_t *d = (device_t *)userdata;
    /* Ends this loop thread instead of letting it reconnect: the engine's backoff decides. */
    mosquitto_disconnect(mosq);
    pthread_mutex_lock(&d->lock);
    if (mosq == d->mosq && d->live) {
        d->live = 0;
        disconnected(d, MODE_DISCONNECT_NETWORK, rc == 0 ? "closed" : mosquitto_strerror(rc));
        pump(d);
    }
    pthread_mutex_unlock(&d->lock);
}

static void on_subscribe(struct mosquitto *mosq, void *userdata, int mid, int count, const int *granted) {
    device_t *d = (device_t *)userdata;
    (void)mid, (void)count, (void)granted;
    pthread_mutex_lock(&d->lock);
    if (mosq == d->mosq && d->live) {
        mode_engine_subscribed(d->engine, now_ms());
        pump(d);
    }
    pthread_mutex_unlock(&d->lock);
}

static void on_publish(struct mosquitto *mosq, void *userdata, int mid) {
    device_t *d = (device_t *)userdata;
    pthread_mutex_lock(&d->lock);
    sent_t *slot = &d->sent[mid % WINDOW];
    if (mosq == d->mosq && d->live && slot->mid == mid && slot->id != 0) {
        mode_engine_delivered(d->engine, slot->id, now_ms()); /* PUBACK (QoS 1), written (QoS 0) */
        slot->id = 0;
        pump(d);
    }
    pthread_mutex_unlock(&d->lock);
}

static void on_message(struct mosquitto *mosq, void *userdata, const struct mosquitto_message *message) {
    device_t *d = (device_t *)userdata;
    pthread_mutex_lock(&d->lock);
    if (mosq == d->mosq && d->live) {
        mode_engine_handle_publish(d->engine, message->topic, strlen(message->topic),
                                   (const uint8_t *)message->payload, (size_t)message->payloadlen, now_ms());
        pump(d);
    }
    pthread_mutex_unlock(&d->lock);
}

/* ---- the main thread: connection attempts, the engine's timer, the application ------------- */

/* Opens the connection the engine asked for; called with the lock held, drops it meanwhile. */
static void open_connection(device_t *d) {
    struct mosquitto *old = d->mosq;
    d->mosq = NULL;
    d->live = 0;
    d->connect_wanted = 0;
    d->connects++;
    pthread_mutex_unlock(&d->lock);
    if (old) {
        mosquitto_disconnect(old);        /* its loop thread ends (already, after a loss) */
        mosquitto_loop_stop(old, false); /* joins it; its callbacks wait for the lock, so not held */
        mosquitto_destroy(old);
    }
    struct mosquitto *mosq = mosquitto_new(NULL, true, d); /* MODE: clean session, no will */
    int rc = mosq ? MOSQ_ERR_SUCCESS : MOSQ_ERR_NOMEM;
    if (rc == MOSQ_ERR_SUCCESS) {
        mosquitto_int_option(mosq, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
        mosquitto_username_pw_set(mosq, d->login, d->key); /* user name = device id, password = key */
        mosquitto_connect_callback_set(mosq, on_connect);
        mosquitto_disconnect_callback_set(mosq, on_disconnect);
        mosquitto_subscribe_callback_set(mosq, on_subscribe);
        mosquitto_publish_callback_set(mosq, on_publish);
        mosquitto_message_callback_set(mosq, on_message);
        rc = mosquitto_connect(mosq, d->host, d->port, 30); /* the TCP connect; CONNACK comes later */
    }
    pthread_mutex_lock(&d->lock);
    if (rc == MOSQ_ERR_SUCCESS) {
        d->mosq = mosq;
        d->live = 1;
        memset(d->sent, 0, sizeof d->sent); /* a new object counts mids from 1 */
        rc = mosquitto_loop_start(mosq);     /* its callbacks wait for the lock we hold */
    }
    if (rc != MOSQ_ERR_SUCCESS) {
        d->mosq = NULL;
        d->live = 0;
        disconnected(d, MODE_DISCONNECT_NETWORK, mosquitto_strerror(rc));
        if (mosq) mosquitto_destroy(mosq);
    }
    pump(d);
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
    static device_t d; /* static: zeroed, and big (the mid window) */
    d.host = argv[1];
    d.port = atoi(argv[2]);
    d.login = argv[3];
    d.key = argv[4];
    long total = atol(argv[5]);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    pthread_mutex_init(&d.lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the engine's clock */
    pthread_cond_init(&d.wake, &attr);
    pthread_condattr_destroy(&attr);

    mode_engine_config_t config;
    mode_engine_config_init(strtoull(argv[3], NULL, 10), seed(), &config);
    config.watchdog_ms = 0;       /* libmosquitto's keepalive notices a dead connection */
    config.backoff_unit_ms = 250; /* quick retries for the demo; the default is 1 s */
    config.backoff_cap_ms = 4000;
    mode_status_t status = mode_engine_new(&config, now_ms(), &d.engine);
    if (status != MODE_OK) {
        fprintf(stderr, "mode_engine_new: %s\n", mode_status_str(status));
        return 1;
    }
    mosquitto_lib_init();

    long queued = 0;
    uint64_t next_tick = now_ms();
    int closing = 0;
    pthread_mutex_lock(&d.lock);
    pump(&d); /* the engine asks to connect at once */
    while (!d.closed) {
        if (d.connect_wanted) {
            open_connection(&d);
            continue;
        }
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
        events(&d);
        if (d.closed || d.connect_wanted) continue;

        /* Sleep until the engine's next timer or our next tick; a callback's input wakes us. */
        uint64_t wake = MODE_NO_TIMEOUT;
        mode_engine_poll_timeout(d.engine, &wake);
        if (!closing && queued < total && next_tick < wake) wake = next_tick;
        if (wake > now + 1000) wake = now + 1000; /* and look at `interrupted` now and then */
        struct timespec until = {(time_t)(wake / 1000), (long)(wake % 1000) * 1000000L};
        pthread_cond_timedwait(&d.wake, &d.lock, &until);
    }
    struct mosquitto *last = d.mosq;
    d.mosq = NULL;
    mode_stats_t stats;
    mode_engine_stats(d.engine, &stats);
    pthread_mutex_unlock(&d.lock);
    if (last) {
        mosquitto_disconnect(last);
        mosquitto_loop_stop(last, false);
        mosquitto_destroy(last);
    }
    printf("sent %ld events, %ld delivered, %llu connection attempts, %llu reconnects, %ld reloads\n", queued,
           d.delivered, (unsigned long long)stats.connection_attempts, (unsigned long long)stats.reconnects, d.reloads);
    mode_engine_free(d.engine);
    mosquitto_lib_cleanup();
    return d.delivered == queued ? 0 : 1;
}
