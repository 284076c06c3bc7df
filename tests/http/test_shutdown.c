/* Graceful shutdown against the strata binary: under steady keep-alive
 * load, SIGTERM drains quickly, every committed save is answered, and
 * idle keep-alive connections are closed rather than waited for. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/harness.h"

#define NCLIENTS    8
#define VERSION_MAX 32

static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits up to timeout_ms for the server to exit; its exit status, or -1
 * (then it is killed). */
static int wait_exit(test_server *s, int timeout_ms)
{
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    int status = 0;
    while (now_ms() < deadline) {
        if (waitpid(s->pid, &status, WNOHANG) == s->pid) {
            s->pid = 0;
            return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        }
        sleep_ms(5);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

/* What one client saw, request by request. */
typedef struct client_log {
    const test_server *server;
    int index;
    int created;            /* 201: a new version was acknowledged */
    int other_2xx;          /* a 2xx that is not 201 (not expected) */
    int refused;            /* a non-2xx answer */
    int transport;          /* no answer at all */
    int failed_before_term; /* anything but 201 before SIGTERM */
    char (*versions)[VERSION_MAX];
    size_t nversions;
    size_t cap;
} client_log;

static atomic_bool term_sent;
static atomic_bool clients_stop;

static void record_version(client_log *c, const http_resp *r)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    const char *v =
        json_string_value(json_object_get(json_object_get(j, "version_info"), "version"));
    if (v != NULL && c->nversions == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->versions = realloc(c->versions, c->cap * sizeof *c->versions);
    }
    if (v != NULL && c->versions != NULL)
        snprintf(c->versions[c->nversions++], VERSION_MAX, "%s", v);
    json_decref(j);
}

/* Saves new content to /dictionary/kN again and again on one keep-alive
 * handle until the server stops answering after SIGTERM. */
static void *client_main(void *arg)
{
    client_log *c = arg;
    http_client *h = http_client_new();
    char path[64], body[256];
    snprintf(path, sizeof path, "/dictionary/k%d/versions", c->index);
    for (int i = 0; h != NULL && !atomic_load(&clients_stop); i++) {
        snprintf(body, sizeof body,
                 "{\"content\": {\"n\": %d}, \"word\": \"k%d\", \"provider\": \"p\"}", i, c->index);
        http_resp r;
        int rc = http_client_do(h, c->server, "POST", path, JSON_CT, body, strlen(body), &r);
        /* read after the answer: the flag is set before the signal is sent */
        bool after_term = atomic_load(&term_sent);
        if (rc != 0) {
            c->transport++;
            if (!after_term)
                c->failed_before_term++;
            if (after_term)
                break; /* the server is going away; a new connection is refused */
            continue;
        }
        if (r.status == 201) {
            c->created++;
            record_version(c, &r);
        } else if (r.status >= 200 && r.status < 300) {
            c->other_2xx++;
        } else {
            c->refused++;
            if (!after_term)
                c->failed_before_term++;
        }
        http_resp_free(&r);
    }
    http_client_free(h);
    return NULL;
}

static int cmp_version(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Every version the store lists for /dictionary/kN, following "next". */
static size_t list_versions(const test_server *s, int index, char (**out)[VERSION_MAX])
{
    size_t n = 0, cap = 0;
    *out = NULL;
    char cursor[512] = "";
    for (int page = 0; page < 100; page++) {
        char path[700];
        snprintf(path, sizeof path, "/dictionary/k%d/versions?limit=1000%s%s", index,
                 cursor[0] ? "&cursor=" : "", cursor);
        http_resp r;
        ck_assert_int_eq(http_do(s, "GET", path, NULL, NULL, 0, &r), 0);
        if (r.status == 404 && page == 0) {
            http_resp_free(&r);
            return 0;
        }
        ck_assert_msg(r.status == 200, "%s: %ld %s", path, r.status, r.body);
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        ck_assert_ptr_nonnull(j);
        json_t *items = json_object_get(j, "items");
        for (size_t i = 0; i < json_array_size(items); i++) {
            const char *v = json_string_value(json_object_get(
                json_object_get(json_array_get(items, i), "version_info"), "version"));
            ck_assert_ptr_nonnull(v);
            if (n == cap) {
                cap = cap ? 2 * cap : 256;
                *out = realloc(*out, cap * sizeof **out);
                ck_assert_ptr_nonnull(*out);
            }
            snprintf((*out)[n++], VERSION_MAX, "%s", v);
        }
        const char *next = json_string_value(json_object_get(j, "next"));
        /* percent-encode the cursor: it is opaque */
        size_t at = 0;
        for (const char *p = next; p != NULL && *p != '\0' && at + 4 < sizeof cursor; p++) {
            unsigned char ch = (unsigned char)*p;
            if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                ch == '-' || ch == '_' || ch == '.')
                cursor[at++] = (char)ch;
            else
                at += (size_t)snprintf(cursor + at, sizeof cursor - at, "%%%02X", ch);
        }
        cursor[at] = '\0';
        json_decref(j);
        http_resp_free(&r);
        if (next == NULL)
            return n;
    }
    ck_abort_msg("too many pages for k%d", index);
    return n;
}

START_TEST(sigterm_under_keepalive_load_answers_every_committed_save)
{
    test_server s;
    const char *args[] = {"--shutdown-timeout", "30", NULL};
    ck_assert_int_eq(server_start(&s, args), 0);
    atomic_store(&term_sent, false);
    atomic_store(&clients_stop, false);
    client_log logs[NCLIENTS];
    pthread_t threads[NCLIENTS];
    for (int i = 0; i < NCLIENTS; i++) {
        logs[i] = (client_log){.server = &s, .index = i};
        ck_assert_int_eq(pthread_create(&threads[i], NULL, client_main, &logs[i]), 0);
    }
    sleep_ms(1000);
    uint64_t t0 = now_ms();
    atomic_store(&term_sent, true);
    ck_assert_int_eq(kill(s.pid, SIGTERM), 0);
    int code = wait_exit(&s, 5000);
    uint64_t took = now_ms() - t0;
    /* bound the clients in case one hangs on a connection */
    atomic_store(&clients_stop, true);
    for (int i = 0; i < NCLIENTS; i++)
        pthread_join(threads[i], NULL);
    ck_assert_msg(code == 0, "exit status %d after %llu ms (-1: still running after 5 s)", code,
                  (unsigned long long)took);

    int created = 0, refused = 0, transport = 0;
    for (int i = 0; i < NCLIENTS; i++) {
        ck_assert_msg(logs[i].failed_before_term == 0, "client %d failed before SIGTERM", i);
        ck_assert_msg(logs[i].created > 0, "client %d saved nothing", i);
        ck_assert_int_eq(logs[i].other_2xx, 0);
        created += logs[i].created;
        refused += logs[i].refused;
        transport += logs[i].transport;
    }
    fprintf(stderr,
            "shutdown: %d saves answered 201, %d refused, %d unanswered; exit after %llu ms\n",
            created, refused, transport, (unsigned long long)took);

    /* Whatever the store holds was acknowledged, and every acknowledgement
     * is in the store: no committed save went unanswered. */
    ck_assert_int_eq(server_restart(&s, NULL), 0);
    http_client *h = http_client_new();
    for (int i = 0; i < NCLIENTS; i++) {
        char(*stored)[VERSION_MAX] = NULL;
        size_t nstored = list_versions(&s, i, &stored);
        client_log *c = &logs[i];
        ck_assert_msg(nstored == c->nversions,
                      "k%d: the store holds %zu versions, %zu saves were answered 201", i, nstored,
                      c->nversions);
        qsort(stored, nstored, sizeof *stored, cmp_version);
        qsort(c->versions, c->nversions, sizeof *c->versions, cmp_version);
        for (size_t k = 0; k < nstored; k++)
            ck_assert_str_eq(stored[k], c->versions[k]);
        for (size_t k = 0; k < c->nversions; k++) {
            char path[128];
            snprintf(path, sizeof path, "/dictionary/k%d/versions/%s", i, c->versions[k]);
            http_resp r;
            ck_assert_int_eq(http_client_do(h, &s, "GET", path, NULL, NULL, 0, &r), 0);
            ck_assert_msg(r.status == 200, "%s: %ld", path, r.status);
            http_resp_free(&r);
        }
        free(stored);
        free(c->versions);
    }
    http_client_free(h);
    ck_assert_int_eq(server_stop(&s, 20), 0);
    server_cleanup(&s);
}
END_TEST

/* 1 when the peer closes (end of stream or reset) within timeout_ms
 * without sending anything; 0 when bytes arrive; -1 on timeout. */
static int peer_closes(int fd, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    char c;
    ssize_t n = recv(fd, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET) ? 1 : 0;
}

START_TEST(idle_keepalive_connections_do_not_hold_the_shutdown)
{
    test_server s;
    const char *args[] = {"--shutdown-timeout", "30", "--connection-timeout", "60", NULL};
    ck_assert_int_eq(server_start(&s, args), 0);
    int fds[4];
    char buf[4096];
    for (int i = 0; i < 4; i++) {
        fds[i] = raw_connect(s.port);
        ck_assert_int_ge(fds[i], 0);
        const char *req = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
        ck_assert_int_eq(raw_send(fds[i], req, strlen(req)), 0);
        ck_assert_int_gt(raw_read_response(fds[i], buf, sizeof buf, 5000), 0);
        ck_assert_ptr_null(strstr(buf, "Connection: close")); /* kept alive */
    }
    uint64_t t0 = now_ms();
    ck_assert_int_eq(kill(s.pid, SIGTERM), 0);
    /* closed by the server, not by its 60 s idle timeout */
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(peer_closes(fds[i], 2000), 1);
        close(fds[i]);
    }
    ck_assert_int_eq(wait_exit(&s, 3000), 0);
    ck_assert_uint_lt(now_ms() - t0, 3000);
    server_cleanup(&s);
}
END_TEST

/* A request under way when SIGTERM arrives is answered, with Connection:
 * close, on its keep-alive connection; the server then exits. */
START_TEST(request_under_way_is_answered_with_connection_close)
{
    test_server s;
    const char *args[] = {"--shutdown-timeout", "30", NULL};
    ck_assert_int_eq(server_start(&s, args), 0);
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    char buf[4096];
    const char *req = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    ck_assert_int_eq(raw_send(fd, req, strlen(req)), 0);
    ck_assert_int_gt(raw_read_response(fd, buf, sizeof buf, 5000), 0);
    /* a second request on the same connection, its body half sent */
    const char *head = "PUT /cache/dictionary/late HTTP/1.1\r\nHost: t\r\n"
                       "Content-Type: text/plain\r\nContent-Length: 10\r\n\r\n12345";
    ck_assert_int_eq(raw_send(fd, head, strlen(head)), 0);
    sleep_ms(200);
    ck_assert_int_eq(kill(s.pid, SIGTERM), 0);
    sleep_ms(300);
    ck_assert_int_eq(raw_send(fd, "67890", 5), 0);
    ck_assert_int_gt(raw_read_response(fd, buf, sizeof buf, 5000), 0);
    ck_assert_msg(strncmp(buf, "HTTP/1.1 2", 10) == 0, "%s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "\r\nConnection: close\r\n"));
    ck_assert_int_eq(peer_closes(fd, 2000), 1);
    close(fd);
    ck_assert_int_eq(wait_exit(&s, 3000), 0);
    server_cleanup(&s);
}
END_TEST

static Suite *shutdown_suite(void)
{
    Suite *s = suite_create("shutdown");
    TCase *t = tcase_create("shutdown");
    tcase_set_timeout(t, 180);
    tcase_add_test(t, sigterm_under_keepalive_load_answers_every_committed_save);
    tcase_add_test(t, idle_keepalive_connections_do_not_hold_the_shutdown);
    tcase_add_test(t, request_under_way_is_answered_with_connection_close);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(shutdown_suite());
}
