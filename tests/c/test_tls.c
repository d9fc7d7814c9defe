/*
 * TLS and malformed messages through the C API, against the mode-sim subprocess of
 * tests/c/run.sh: TLS on every listener with a certificate for `localhost` from a private CA,
 * client certificates of that CA required on them (tests/tls/make-certs.sh wrote the PKI to
 * MODE_TEST_CERTS), the admin API on (MODE_TEST_ADMIN_KEY). Covers mutual TLS on MQTT and on
 * the HTTP transport over HTTPS + wss:// (and device info over HTTPS) with
 * mode_config_set_client_cert; a missing client certificate and a wrong host name, each named in
 * the connection callback's reason and in mode_last_error; and a malformed message from the
 * cloud (raw bytes sent by the admin API) reaching the log callback while the link stays up.
 */
#define _POSIX_C_SOURCE 200809L /* sockets */
#include "check.h"
#include "sim.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int tls_port, https_port, http_port;
static const char *certs, *admin_key;

static const char *cert_path(const char *name) {
    static _Thread_local char paths[4][512];
    static _Thread_local int next;
    char *path = paths[next++ % 4];
    snprintf(path, sizeof paths[0], "%s/%s", certs, name);
    return path;
}

/* ---- what the callbacks saw ---------------------------------------------------------------- */

typedef struct {
    atomic_int connected;
    atomic_int disconnects;
    char reason[1024]; /* the first disconnect's */
    atomic_int commands;
    atomic_int malformed;    /* log lines about a malformed message from the cloud */
    char malformed_log[1024]; /* their topics, "topic=...;" each */
} seen_t;

static void on_connection(void *ud, bool connected, const char *reason, size_t reason_len, int64_t retry_in_ms) {
    seen_t *s = (seen_t *)ud;
    (void)retry_in_ms;
    if (connected) {
        atomic_store(&s->connected, 1);
        return;
    }
    atomic_store(&s->connected, 0);
    if (atomic_load(&s->disconnects) == 0) snprintf(s->reason, sizeof s->reason, "%.*s", (int)reason_len, reason);
    atomic_fetch_add(&s->disconnects, 1);
}

static void on_command(void *ud, const char *action, size_t action_len, const char *params, size_t params_len) {
    (void)action, (void)action_len, (void)params, (void)params_len;
    atomic_fetch_add(&((seen_t *)ud)->commands, 1);
}

static void on_log(void *ud, const mode_log_record_t *record) {
    seen_t *s = (seen_t *)ud;
    const char *topic = strstr(record->message, "topic=");
    if (record->level != MODE_LOG_WARN || !strstr(record->message, "malformed message from the cloud") || !topic) return;
    size_t used = strlen(s->malformed_log);
    snprintf(s->malformed_log + used, sizeof s->malformed_log - used, "%.*s;", (int)strcspn(topic, " "), topic);
    atomic_fetch_add(&s->malformed, 1);
}

static mode_client_t *start(seen_t *s, mode_config_t *config) {
    memset(s, 0, sizeof *s);
    mode_client_t *client = NULL;
    CHECK_STATUS(mode_client_new(config, &client), MODE_OK);
    if (!client) {
        fprintf(stderr, "mode_client_new: %s\n", last_error());
        mode_config_free(config);
        exit(1);
    }
    CHECK_STATUS(mode_client_set_connection_cb(client, on_connection, s, NULL), MODE_OK);
    CHECK_STATUS(mode_client_set_command_cb(client, on_command, s, NULL), MODE_OK);
    CHECK_STATUS(mode_client_set_log_cb(client, on_log, s, NULL), MODE_OK);
    CHECK_STATUS(mode_client_start(client), MODE_OK);
    return client;
}

/* Device 1001 over TLS to `host` (the certificate names localhost), trusting the test CA: MQTT
 * over TLS or the HTTP transport over HTTPS; REST over HTTPS either way. With `client_cert`
 * (a name in MODE_TEST_CERTS, e.g. "client") its .pem and .key are the client certificate. */
static mode_config_t *tls_config(int transport, const char *host, const char *client_cert) {
    mode_config_t *config = NULL;
    char url[256];
    CHECK_STATUS(mode_config_new(DEVICE, KEY, &config), MODE_OK);
    CHECK_STATUS(mode_config_set_transport(config, transport), MODE_OK);
    CHECK_STATUS(mode_config_set_mqtt_host(config, host), MODE_OK);
    CHECK_STATUS(mode_config_set_mqtt_port(config, tls_port), MODE_OK);
    snprintf(url, sizeof url, "https://%s:%d", host, https_port);
    CHECK_STATUS(mode_config_set_api_url(config, url), MODE_OK);
    CHECK_STATUS(mode_config_set_ca_file(config, cert_path("ca.pem")), MODE_OK);
    if (client_cert) {
        char pem[64], key[64];
        snprintf(pem, sizeof pem, "%s.pem", client_cert);
        snprintf(key, sizeof key, "%s.key", client_cert);
        CHECK_STATUS(mode_config_set_client_cert(config, cert_path(pem), cert_path(key)), MODE_OK);
    }
    CHECK_STATUS(mode_config_set_keepalive_ms(config, 5000), MODE_OK);
    CHECK_STATUS(mode_config_set_backoff_ms(config, 50, 200), MODE_OK);
    CHECK_STATUS(mode_config_set_connect_timeout_ms(config, 5000), MODE_OK);
    CHECK_STATUS(mode_config_set_request_timeout_ms(config, 5000), MODE_OK);
    return config;
}

/* POSTs `body` as it is to the admin API's raw publish of `channel` for device 1001; returns
 * how many connections it was delivered to, or -1. */
static int admin_publish(const char *channel, const char *body) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)http_port);
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("admin API");
        if (fd >= 0) close(fd);
        return -1;
    }
    char request[1024];
    int len = snprintf(request, sizeof request,
                       "POST /admin/devices/%llu/publish/%s HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       "Authorization: ModeCloud %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                       (unsigned long long)DEVICE, channel, admin_key, strlen(body), body);
    char answer[2048];
    size_t got = 0;
    ssize_t n = write(fd, request, (size_t)len);
    while (n > 0 && got < sizeof answer - 1 && (n = read(fd, answer + got, sizeof answer - 1 - got)) > 0) got += (size_t)n;
    close(fd);
    answer[got] = '\0';
    const char *delivered = strstr(answer, "\"delivered\":");
    if (strncmp(answer, "HTTP/1.1 200", 12) != 0 || !delivered) {
        fprintf(stderr, "admin API answered: %s\n", answer);
        return -1;
    }
    return atoi(delivered + strlen("\"delivered\":"));
}

/* ---- tests --------------------------------------------------------------------------------- */

/* Starts a client of `config` that must connect, and sends one QoS 1 event (named `event`)
 * that must be acknowledged. */
static mode_client_t *start_and_deliver_one(seen_t *s, mode_config_t *config, const char *event) {
    mode_client_t *client = start(s, config);
    WAIT_FOR(atomic_load(&s->connected));
    CHECK(atomic_load(&s->connected));
    if (atomic_load(&s->disconnects)) fprintf(stderr, "%s: %s\n", event, s->reason);
    CHECK_STATUS(mode_client_send_event(client, event, "{}", MODE_QOS_AT_LEAST_ONCE, NULL), MODE_OK);
    mode_stats_t stats;
    memset(&stats, 0, sizeof stats);
    WAIT_FOR(mode_client_stats(client, &stats) == MODE_OK && stats.messages_acked >= 1);
    CHECK(stats.messages_acked == 1);
    return client;
}

static void test_mutual_tls_on_mqtt_and_rest_over_https(void) {
    seen_t s;
    mode_client_t *client = start_and_deliver_one(&s, tls_config(MODE_TRANSPORT_MQTT, "localhost", "client"), "mtls-mqtt");
    char info[512];
    size_t len = 0;
    CHECK_STATUS(mode_client_device_info(client, 5000, info, sizeof info, &len), MODE_OK);
    CHECK(strstr(info, "\"id\":1001") != NULL);
    CHECK_STATUS(mode_client_stop(client, 5000), MODE_OK);
    mode_client_free(client);
}

static void test_mutual_tls_on_the_http_transport_over_https_and_wss(void) {
    seen_t s; /* connected: the wss:// WebSockets are up */
    mode_client_t *client = start_and_deliver_one(&s, tls_config(MODE_TRANSPORT_HTTP, "localhost", "client"), "mtls-https");
    say("command 1001 {\"action\":\"over-wss\",\"parameters\":{}}");
    WAIT_FOR(atomic_load(&s.commands) == 1);
    CHECK(atomic_load(&s.commands) == 1);
    CHECK_STATUS(mode_client_stop(client, 5000), MODE_OK);
    mode_client_free(client);
}

/* The first disconnect of a client that cannot connect says `want`, and no connection came up. */
static void check_refused(mode_config_t *config, const char *want, const char *also) {
    seen_t s;
    mode_client_t *client = start(&s, config);
    WAIT_FOR(atomic_load(&s.disconnects) >= 1);
    CHECK(atomic_load(&s.disconnects) >= 1 && !atomic_load(&s.connected));
    CHECK(strstr(s.reason, want) != NULL);
    CHECK(strstr(s.reason, also) != NULL);
    if (!strstr(s.reason, want) || !strstr(s.reason, also)) fprintf(stderr, "reason: %s\n", s.reason);
    /* A REST call over the same TLS settings fails, and mode_last_error says why alike. */
    char info[256];
    size_t len = 0;
    CHECK(mode_client_device_info(client, 5000, info, sizeof info, &len) != MODE_OK);
    CHECK(strstr(last_error(), want) != NULL);
    if (!strstr(last_error(), want)) fprintf(stderr, "mode_last_error: %s\n", last_error());
    mode_client_free(client);
}

static void test_a_missing_client_certificate_is_named_on_mqtt_and_https(void) {
    const char *want = "requires a client certificate and none was sent";
    check_refused(tls_config(MODE_TRANSPORT_MQTT, "localhost", NULL), want, "client_cert");
    check_refused(tls_config(MODE_TRANSPORT_HTTP, "localhost", NULL), want, "client_cert");
}

static void test_a_client_certificate_from_another_ca_is_named(void) {
    check_refused(tls_config(MODE_TRANSPORT_MQTT, "localhost", "other-client"),
                  "refused our client certificate: it is not issued by a CA the server trusts", "client certificate");
}

static void test_a_wrong_host_name_is_named_on_mqtt_and_https(void) {
    /* The name is the host (MQTT) or the URL (HTTPS) the client used. */
    const char *want = "certificate is not valid for the host name";
    check_refused(tls_config(MODE_TRANSPORT_MQTT, "127.0.0.1", "client"), want, "127.0.0.1");
    check_refused(tls_config(MODE_TRANSPORT_HTTP, "127.0.0.1", "client"), want, "127.0.0.1");
}

/* Raw bytes on the device's command and kv channels reach the log callback as a warning with
 * the topic; the connection stays, and a command sent after them arrives. */
static void check_malformed_messages_are_logged(int transport) {
    mode_config_t *config = sim_config(DEVICE, KEY, mqtt_port);
    CHECK_STATUS(mode_config_set_transport(config, transport), MODE_OK);
    seen_t s;
    mode_client_t *client = start(&s, config);
    WAIT_FOR(atomic_load(&s.connected));
    CHECK(atomic_load(&s.connected));
    CHECK(admin_publish("command", "{\"action\": 42") >= 1);
    WAIT_FOR(atomic_load(&s.malformed) >= 1);
    CHECK(admin_publish("kv", "\xff not json") >= 1);
    WAIT_FOR(atomic_load(&s.malformed) >= 2);
    CHECK(atomic_load(&s.malformed) == 2);
    const char *command = strstr(s.malformed_log, "command;");
    const char *kv = strstr(s.malformed_log, "kv;");
    CHECK(command != NULL && kv != NULL && command < kv);
    if (!command || !kv) fprintf(stderr, "malformed-message log lines: %s\n", s.malformed_log);
    say("command 1001 {\"action\":\"after\",\"parameters\":{}}");
    WAIT_FOR(atomic_load(&s.commands) == 1);
    CHECK(atomic_load(&s.commands) == 1);
    CHECK(atomic_load(&s.disconnects) == 0);
    CHECK_STATUS(mode_client_stop(client, 5000), MODE_OK);
    mode_client_free(client);
}

static void test_a_malformed_message_from_the_cloud_reaches_the_log_callback(void) {
    check_malformed_messages_are_logged(MODE_TRANSPORT_MQTT);
    check_malformed_messages_are_logged(MODE_TRANSPORT_HTTP);
}

int main(void) {
    sim_open();
    const char *tls = getenv("MODE_TEST_TLS_PORT"), *https = getenv("MODE_TEST_HTTPS_PORT");
    certs = getenv("MODE_TEST_CERTS");
    admin_key = getenv("MODE_TEST_ADMIN_KEY");
    if (!tls || !*tls || !https || !*https || !certs || !admin_key) {
        fprintf(stderr, "run through tests/c/run.sh (needs a mode-sim with TLS, client CA and admin API)\n");
        return 2;
    }
    tls_port = atoi(tls);
    https_port = atoi(https);
    const char *colon = strrchr(http_url, ':');
    http_port = colon ? atoi(colon + 1) : 0;
    test_mutual_tls_on_mqtt_and_rest_over_https();
    test_mutual_tls_on_the_http_transport_over_https_and_wss();
    test_a_missing_client_certificate_is_named_on_mqtt_and_https();
    test_a_client_certificate_from_another_ca_is_named();
    test_a_wrong_host_name_is_named_on_mqtt_and_https();
    test_a_malformed_message_from_the_cloud_reaches_the_log_callback();
    sim_close();
    return checks_done("test_tls");
}
