/*
 * The engine's outbox seam, as a firmware uses it with its flash: no accepted QoS 1 message is
 * lost when the process dies (SIGKILL, a crash, a watchdog reset). The engine reports every
 * change of its outbox (mode_engine_poll_journal: a message ADDED, a message DONE); three small
 * functions persist them to an append-only file, and at boot mode_engine_restore puts back every
 * message ADDED and not DONE, with its id, before anything new is sent.
 *
 * The rule that makes it durable: a send counts as accepted (here: the "accepted" line; on a
 * device: the sensor reading may be discarded) only after its ADDED record is fsync'ed. Sends
 * made in one pass of the loop share one fsync (group commit). DONE records are not fsync'ed: a
 * lost DONE only means the message is sent once more after a restart (a duplicate, which QoS 1
 * allows), never that one is lost.
 *
 * The file: records of [type 'A' or 'D'][id u64][qos u8, topic length u32, payload length u32,
 * topic, payload: 'A' only][crc32 of the record u32], little-endian. A record cut short by the
 * kill, or one that fails its CRC, ends the file: it and what follows are dropped at boot (it was
 * never reported accepted). Boot also compacts the file to the messages still open.
 * To port it to flash, replace journal_open / journal_append / journal_sync.
 *
 * Transport: libmosquitto in one thread, as own_loop.c (read that first).
 *
 * Build:
 *   cc -std=c11 -o durable_outbox examples/c/durable_outbox.c $(pkg-config --cflags --libs mode-core libmosquitto)
 * Run against the local simulator (cargo run -p mode-sim; MQTT on 1883):
 *   ./durable_outbox 127.0.0.1 1883 1001 v1.demo-device-1001 outbox.journal 1 200
 * Arguments: HOST PORT DEVICE_ID API_KEY JOURNAL RUN EVENTS: restores what JOURNAL holds, then
 * sends EVENTS QoS 1 "tick" events numbered RUN * 100000 + 1, + 2, ... (RUN tells the runs of a
 * test apart), four every 10 ms, and closes once every message, restored or new, is delivered.
 */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, nanosleep, fsync, ftruncate */
#include <mode_core.h>
#include <mosquitto.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void fatal(const char *what) {
    perror(what);
    exit(1);
}

/* ---- the journal file: the three functions a firmware replaces with its flash driver ------- */

static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
    }
    return ~c;
}

static void put(uint8_t **at, uint64_t v, int bytes) {
    for (int i = 0; i < bytes; i++) *(*at)++ = (uint8_t)(v >> (8 * i));
}

static uint64_t get(const uint8_t *at, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v |= (uint64_t)at[i] << (8 * i);
    return v;
}

/* Appends one record with one write(), so a kill leaves it whole or cut short, never interleaved. */
static void journal_append(int fd, char type, uint64_t id, const mode_publish_t *m) {
    size_t len = 1 + 8 + (type == 'A' ? 1 + 4 + 4 + m->topic_len + m->payload_len : 0) + 4;
    uint8_t *buf = malloc(len), *at = buf;
    if (!buf) fatal("malloc");
    put(&at, (uint8_t)type, 1);
    put(&at, id, 8);
    if (type == 'A') {
        put(&at, (uint64_t)m->qos, 1);
        put(&at, m->topic_len, 4);
        put(&at, m->payload_len, 4);
        memcpy(at, m->topic, m->topic_len), at += m->topic_len;
        memcpy(at, m->payload, m->payload_len), at += m->payload_len;
    }
    put(&at, crc32(buf, len - 4), 4);
    if (write(fd, buf, len) != (ssize_t)len) fatal("journal write");
    free(buf);
}

static void journal_sync(int fd) {
    if (fsync(fd) != 0) fatal("journal fsync");
}

/* The open messages (ADDED, not DONE), in the order added: what boot restores. */
typedef struct {
    mode_publish_t *items;
    size_t len, cap;
} open_set_t;

static void open_add(open_set_t *s, uint64_t id, int qos, const uint8_t *topic, size_t topic_len,
                     const uint8_t *payload, size_t payload_len) {
    if (s->len == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->items = realloc(s->items, s->cap * sizeof *s->items);
        if (!s->items) fatal("realloc");
    }
    char *t = malloc(topic_len + 1);
    uint8_t *p = malloc(payload_len ? payload_len : 1);
    if (!t || !p) fatal("malloc");
    memcpy(t, topic, topic_len), t[topic_len] = 0;
    memcpy(p, payload, payload_len);
    s->items[s->len++] = (mode_publish_t){id, t, topic_len, p, payload_len, qos};
}

static void open_remove(open_set_t *s, uint64_t id) {
    for (size_t i = 0; i < s->len; i++) {
        if (s->items[i].id != id) continue;
        free((void *)s->items[i].topic);
        free((void *)s->items[i].payload);
        memmove(&s->items[i], &s->items[i + 1], (s->len - i - 1) * sizeof *s->items);
        s->len--;
        return;
    }
}

/* Reads the journal at `path` into `*set`, drops a torn or corrupt tail, rewrites the file
 * with the open messages only (write a copy, fsync, rename), and opens it for appending. */
static int journal_open(const char *path, open_set_t *set, long *dropped_bytes) {
    uint8_t *data = NULL;
    size_t size = 0, cap = 0;
    FILE *f = fopen(path, "rb");
    if (f) {
        for (;;) {
            if (size == cap) {
                cap = cap ? 2 * cap : 65536;
                data = realloc(data, cap);
                if (!data) fatal("realloc");
            }
            size_t n = fread(data + size, 1, cap - size, f);
            if (n == 0) break;
            size += n;
        }
        fclose(f);
    }
    size_t at = 0;
    while (at + 13 <= size) {
        const uint8_t *r = data + at;
        size_t len = 13;
        if (r[0] == 'A') {
            if (at + 1 + 8 + 9 > size) break;
            len += 9 + get(r + 10, 4) + get(r + 14, 4);
        } else if (r[0] != 'D') {
            break;
        }
        if (at + len > size || crc32(r, len - 4) != (uint32_t)get(r + len - 4, 4)) break;
        uint64_t id = get(r + 1, 8);
        if (r[0] == 'D') {
            open_remove(set, id);
        } else {
            size_t topic_len = get(r + 10, 4);
            open_remove(set, id); /* the same id twice: the later record holds */
            open_add(set, id, r[9], r + 18, topic_len, r + 18 + topic_len, get(r + 14, 4));
        }
        at += len;
    }
    *dropped_bytes = (long)(size - at);
    free(data);

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fatal(tmp);
    for (size_t i = 0; i < set->len; i++) journal_append(fd, 'A', set->items[i].id, &set->items[i]);
    journal_sync(fd);
    close(fd);
    if (rename(tmp, path) != 0) fatal("journal rename");
    /* The rename itself must be durable too: fsync the directory. */
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    fd = open(path, O_WRONLY | O_APPEND);
    if (fd < 0) fatal(path);
    return fd;
}

/* ---- the device: the engine, its journal and libmosquitto ----------------------------------- */

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
    int up;
    sent_t sent[WINDOW];
    int journal;      /* the file's descriptor */
    long open_count;  /* messages ADDED and not DONE */
    long delivered, connects;
} device_t;

/* Persists what the engine's outbox did since the last call; fsyncs once if anything was added.
 * Call it after every input, and before telling anyone a send was accepted. */
static void persist(device_t *d) {
    mode_journal_t j;
    int added = 0;
    while (mode_engine_poll_journal(d->engine, &j) == MODE_OK && j.kind != MODE_JOURNAL_NONE) {
        if (j.kind == MODE_JOURNAL_ADDED) {
            journal_append(d->journal, 'A', j.id, &j.publish);
            d->open_count++, added = 1;
        } else {
            journal_append(d->journal, 'D', j.id, NULL);
            d->open_count--;
        }
    }
    if (added) journal_sync(d->journal);
}

static void disconnected(device_t *d, int reason, const char *why) {
    mode_engine_disconnected(d->engine, reason, why, strlen(why), now_ms());
}

static void on_connect(struct mosquitto *mosq, void *userdata, int rc) {
    device_t *d = (device_t *)userdata;
    (void)mosq;
    if (rc == 0) {
        d->up = 1;
        mode_engine_connected(d->engine, now_ms());
    } else {
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
        mode_engine_delivered(d->engine, slot->id, now_ms());
        slot->id = 0;
    }
}

static void on_message(struct mosquitto *mosq, void *userdata, const struct mosquitto_message *message) {
    device_t *d = (device_t *)userdata;
    (void)mosq;
    mode_engine_handle_publish(d->engine, message->topic, strlen(message->topic), (const uint8_t *)message->payload,
                               (size_t)message->payloadlen, now_ms());
}

static void transmit(device_t *d) {
    mode_transmit_t t;
    while (mode_engine_poll_transmit(d->engine, &t) == MODE_OK && t.kind != MODE_TRANSMIT_NONE) {
        switch (t.kind) {
        case MODE_TRANSMIT_CONNECT: {
            int rc = d->connects++ == 0 ? mosquitto_connect(d->mosq, d->host, d->port, 30) : mosquitto_reconnect(d->mosq);
            if (rc != MOSQ_ERR_SUCCESS) disconnected(d, MODE_DISCONNECT_NETWORK, mosquitto_strerror(rc));
            break;
        }
        case MODE_TRANSMIT_SUBSCRIBE:
        case MODE_TRANSMIT_UNSUBSCRIBE: {
            char *topics[8];
            int count = 0;
            for (size_t i = 0; i < t.topics_len && count < 8; i++) topics[count++] = (char *)t.topics[i].text;
            if (t.kind == MODE_TRANSMIT_SUBSCRIBE)
                mosquitto_subscribe_multiple(d->mosq, NULL, count, topics, 0, 0, NULL);
            else
                mosquitto_unsubscribe_multiple(d->mosq, NULL, count, topics, NULL);
            break;
        }
        case MODE_TRANSMIT_PUBLISH: {
            int mid = 0;
            if (mosquitto_publish(d->mosq, &mid, t.publish.topic, (int)t.publish.payload_len, t.publish.payload,
                                  t.publish.qos, false) == MOSQ_ERR_SUCCESS)
                d->sent[mid % WINDOW] = (sent_t){mid, t.publish.id};
            break;
        }
        case MODE_TRANSMIT_DISCONNECT:
            mosquitto_disconnect(d->mosq);
            break;
        case MODE_TRANSMIT_ABORT:
            d->up = 0;
            mosquitto_disconnect(d->mosq);
            break;
        default:
            break;
        }
    }
}

/* Reads the engine's events; returns 1 once closed. */
static int events(device_t *d) {
    mode_event_t e;
    int closed = 0;
    while (mode_engine_poll_event(d->engine, &e) == MODE_OK && e.kind != MODE_EVENT_NONE) {
        if (e.kind == MODE_EVENT_CONNECTED) printf("connected\n");
        if (e.kind == MODE_EVENT_DELIVERED) d->delivered++;
        if (e.kind == MODE_EVENT_DROPPED) printf("dropped %llu: %s\n", (unsigned long long)e.id, e.text);
        if (e.kind == MODE_EVENT_CLOSED) {
            printf("closed, %llu unsent\n", (unsigned long long)e.unsent);
            closed = 1;
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
    if (argc != 8) {
        fprintf(stderr, "usage: %s HOST PORT DEVICE_ID API_KEY JOURNAL RUN EVENTS\n", argv[0]);
        return 2;
    }
    static device_t d; /* static: zeroed, and big (the mid window) */
    d.host = argv[1];
    d.port = atoi(argv[2]);
    long run = atol(argv[6]), total = atol(argv[7]);

    mode_engine_config_t config;
    mode_engine_config_init(strtoull(argv[3], NULL, 10), seed(), &config);
    config.journal = true; /* report every outbox change through mode_engine_poll_journal */
    config.watchdog_ms = 0;
    config.backoff_unit_ms = 250;
    config.backoff_cap_ms = 4000;
    mode_status_t status = mode_engine_new(&config, now_ms(), &d.engine);
    if (status != MODE_OK) {
        fprintf(stderr, "mode_engine_new: %s\n", mode_status_str(status));
        return 1;
    }

    /* Boot: what the last run accepted and did not finish goes back first, with its ids. */
    open_set_t open_set = {NULL, 0, 0};
    long dropped_bytes = 0;
    d.journal = journal_open(argv[5], &open_set, &dropped_bytes);
    status = mode_engine_restore(d.engine, open_set.items, open_set.len);
    if (status != MODE_OK) {
        fprintf(stderr, "mode_engine_restore: %s\n", mode_status_str(status));
        return 1;
    }
    d.open_count = (long)open_set.len;
    printf("restored %zu messages, dropped a torn tail of %ld bytes\n", open_set.len, dropped_bytes);
    while (open_set.len) open_remove(&open_set, open_set.items[0].id); /* the engine has its copies */
    free(open_set.items);
    fflush(stdout);

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
            long accepted[4];
            int n = 0;
            for (; n < 4 && queued < total; n++) {
                char data[48];
                accepted[n] = run * 100000 + queued + 1;
                snprintf(data, sizeof data, "{\"n\":%ld}", accepted[n]);
                if (mode_engine_send_event(d.engine, "tick", data, strlen(data), MODE_QOS_AT_LEAST_ONCE, NULL) != MODE_OK)
                    break; /* queue full: try again on the next tick */
                queued++;
            }
            persist(&d); /* the ADDED records on disk (one fsync for the four) ... */
            for (int i = 0; i < n; i++) printf("accepted %ld\n", accepted[i]); /* ... then accepted */
            fflush(stdout);
            next_tick = now + 10;
        }
        if (!closing && queued == total && d.open_count == 0) {
            closing = 1;
            mode_engine_close(d.engine, now + 5000, now);
        }
        transmit(&d);
        persist(&d);
        if (events(&d)) break;
        persist(&d);

        uint64_t wake = MODE_NO_TIMEOUT;
        mode_engine_poll_timeout(d.engine, &wake);
        if (!closing && queued < total && next_tick < wake) wake = next_tick;
        now = now_ms();
        int timeout = wake <= now ? 0 : wake - now > 1000 ? 1000 : (int)(wake - now);
        int rc = mosquitto_loop(d.mosq, timeout, 1);
        if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_REFUSED) {
            struct timespec ts = {timeout / 1000, (long)(timeout % 1000) * 1000000L};
            nanosleep(&ts, NULL);
        } else if (rc != MOSQ_ERR_SUCCESS && d.up) {
            d.up = 0;
            disconnected(&d, MODE_DISCONNECT_NETWORK, mosquitto_strerror(rc));
        }
        persist(&d);
    }
    printf("sent %ld new events, %ld delivered, %ld open in the journal\n", queued, d.delivered, d.open_count);
    close(d.journal);
    mode_engine_free(d.engine);
    mosquitto_destroy(d.mosq);
    mosquitto_lib_cleanup();
    return d.open_count == 0 ? 0 : 1;
}
