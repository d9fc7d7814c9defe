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
 * Transport: libmosquitto in one thread, as own_loop.c (read that first): the pieces of that loop
 * (libmosquitto's callbacks feeding the engine, its transmits carried out, its events printed,
 * the wait in mosquitto_loop) are in engine_mosquitto.h beside this file, shared with
 * own_loop.c and own_mqtt.c. What this file adds is the journal and the group commit.
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
#include "engine_mosquitto.h"

#include <fcntl.h>
#include <unistd.h>

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

typedef struct {
    link_t link;     /* the engine and libmosquitto (engine_mosquitto.h); first: the callbacks' userdata */
    int journal;     /* the file's descriptor */
    long open_count; /* messages ADDED and not DONE */
} device_t;

/* Persists what the engine's outbox did since the last call; fsyncs once if anything was added.
 * Call it after every input, and before telling anyone a send was accepted. */
static void persist(device_t *d) {
    mode_journal_t j;
    int added = 0;
    while (mode_engine_poll_journal(d->link.engine, &j) == MODE_OK && j.kind != MODE_JOURNAL_NONE) {
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

/* The application: four numbered QoS 1 "tick" events every 10 ms, each reported accepted only
 * once its ADDED record is on disk; then, once nothing is open in the journal, close. */
static void ticks(device_t *d, ticks_t *app, long run, uint64_t now) {
    if (!app->closing && app->queued < app->total && now >= app->next_tick) {
        long accepted[4];
        int n = 0;
        for (; n < 4 && app->queued < app->total; n++) {
            char data[48];
            accepted[n] = run * 100000 + app->queued + 1;
            snprintf(data, sizeof data, "{\"n\":%ld}", accepted[n]);
            if (mode_engine_send_event(d->link.engine, "tick", data, strlen(data), MODE_QOS_AT_LEAST_ONCE, NULL) != MODE_OK)
                break; /* queue full: try again on the next tick */
            app->queued++;
        }
        persist(d); /* the ADDED records on disk (one fsync for the four) ... */
        for (int i = 0; i < n; i++) printf("accepted %ld\n", accepted[i]); /* ... then accepted */
        fflush(stdout);
        app->next_tick = now + (uint64_t)app->every_ms;
    }
    if (!app->closing && app->queued == app->total && d->open_count == 0) {
        app->closing = 1;
        mode_engine_close(d->link.engine, now + 5000, now);
    }
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: %s HOST PORT DEVICE_ID API_KEY JOURNAL RUN EVENTS\n", argv[0]);
        return 2;
    }
    static device_t d; /* static: zeroed, and big (the mid window) */
    link_t *l = &d.link;
    link_args(l, argv);
    long run = atol(argv[6]);
    ticks_t app = {.total = atol(argv[7]), .next_tick = now_ms(), .every_ms = 10};
    l->engine = demo_engine(argv[3], true); /* journal on: every outbox change reported */
    if (!l->engine) return 1;

    /* Boot: what the last run accepted and did not finish goes back first, with its ids. */
    open_set_t open_set = {NULL, 0, 0};
    long dropped_bytes = 0;
    d.journal = journal_open(argv[5], &open_set, &dropped_bytes);
    mode_status_t status = mode_engine_restore(l->engine, open_set.items, open_set.len);
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
    l->mosq = link_mosquitto(l, l, one_thread_callbacks());
    if (!l->mosq) return 1;
    for (;;) {
        uint64_t now = now_ms();
        mode_engine_handle_timeout(l->engine, now);
        ticks(&d, &app, run, now);
        one_thread_transmit(l);
        persist(&d);
        if (link_events(l)) break;
        persist(&d);
        one_thread_wait(l, ticks_wake(l, &app));
        persist(&d);
    }
    printf("sent %ld new events, %ld delivered, %ld open in the journal\n", app.queued, l->delivered, d.open_count);
    close(d.journal);
    mode_engine_free(l->engine);
    mosquitto_destroy(l->mosq);
    mosquitto_lib_cleanup();
    return d.open_count == 0 ? 0 : 1;
}
