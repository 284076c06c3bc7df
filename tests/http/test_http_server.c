/* The server over real HTTP: the strata binary on a free loopback port. */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/codec/compress.h"
#include "../support/harness.h"

static test_server S; /* shared by the tests of a case; started in the parent */

static void start_shared(void)
{
    const char *args[] = {"--max-body", "64K", "--max-decoded-body", "16M", NULL};
    ck_assert_int_eq(server_start(&S, args), 0);
}

static void stop_shared(void)
{
    int code = server_stop(&S, 20);
    server_cleanup(&S);
    if (code != 0) {
        /* a non-zero exit (a leak under ASan, a crash) fails the run */
        fprintf(stderr, "shared server exited with %d\n", code);
        exit(1);
    }
}

static json_t *body_json(const http_resp *r)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    ck_assert_msg(j != NULL, "body is not JSON: %.200s", r->body);
    return j;
}

static void assert_problem(const http_resp *r, long status)
{
    char ct[128];
    ck_assert_int_eq(r->status, status);
    ck_assert_int_eq(http_header(r, "Content-Type", ct, sizeof ct), 0);
    ck_assert_str_eq(ct, "application/problem+json");
    json_t *j = body_json(r);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), status);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "type")));
    ck_assert_ptr_nonnull(json_string_value(json_object_get(j, "title")));
    ck_assert(strlen(json_string_value(json_object_get(j, "detail"))) > 0);
    json_decref(j);
}

START_TEST(health_answers_ok)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/health", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    json_t *j = body_json(&r);
    ck_assert_str_eq(json_string_value(json_object_get(j, "status")), "ok");
    json_decref(j);
    char rid[80];
    ck_assert_int_eq(http_header(&r, "X-Request-Id", rid, sizeof rid), 0);
    ck_assert_uint_gt(strlen(rid), 8);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "HEAD", "/health", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, 0);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/ready", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
}
END_TEST

START_TEST(request_id_is_echoed)
{
    const char *h[] = {"X-Request-Id: trace-abc.123", NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/health", h, NULL, 0, &r), 0);
    char rid[80];
    http_header(&r, "X-Request-Id", rid, sizeof rid);
    ck_assert_str_eq(rid, "trace-abc.123");
    http_resp_free(&r);
    const char *bad[] = {"X-Request-Id: has spaces/and;junk", NULL};
    ck_assert_int_eq(http_do(&S, "GET", "/health", bad, NULL, 0, &r), 0);
    http_header(&r, "X-Request-Id", rid, sizeof rid);
    ck_assert_str_ne(rid, "has spaces/and;junk");
    http_resp_free(&r);
}
END_TEST

START_TEST(metrics_count_requests_by_route_and_status)
{
    http_resp r;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(http_do(&S, "GET", "/health", NULL, NULL, 0, &r), 0);
        http_resp_free(&r);
    }
    ck_assert_int_eq(
        http_do(&S, "GET", "/no/route/has/this/many/segments/at/all", NULL, NULL, 0, &r), 0);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    char ct[128];
    http_header(&r, "Content-Type", ct, sizeof ct);
    ck_assert_ptr_nonnull(strstr(ct, "text/plain"));
    const char *line =
        strstr(r.body, "strata_http_requests_total{route=\"/health\",status=\"200\"} ");
    ck_assert_ptr_nonnull(line);
    ck_assert_int_ge(atol(strchr(line, '}') + 2), 3);
    ck_assert_ptr_nonnull(strstr(r.body, "{route=\"unmatched\",status=\"404\"}"));
    ck_assert_ptr_nonnull(
        strstr(r.body, "strata_http_request_duration_seconds_bucket{le=\"+Inf\"}"));
    ck_assert_ptr_nonnull(strstr(r.body, "strata_http_request_duration_seconds_count"));
    ck_assert_ptr_nonnull(strstr(r.body, "strata_http_requests_in_flight 1\n"));
    http_resp_free(&r);
}
END_TEST

static unsigned long long metric_value(const char *text, const char *name)
{
    const char *line = strstr(text, name);
    ck_assert_msg(line != NULL, "no %s in /metrics", name);
    return strtoull(line + strlen(name), NULL, 10);
}

static unsigned long long scrape(const char *name)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    unsigned long long v = metric_value(r.body, name);
    http_resp_free(&r);
    return v;
}

#define HEALTH_OK "strata_http_requests_total{route=\"/health\",status=\"200\"} "
enum { COUNTING_CLIENTS = 4, COUNTED_EACH = 25 };

typedef char request_id[80];

/* COUNTED_EACH GETs of /health, each on a connection of its own; the
 * request ids they were given into arg (request_id[COUNTED_EACH]). */
static void *count_health(void *arg)
{
    request_id *ids = arg;
    for (int i = 0; i < COUNTED_EACH; i++) {
        http_resp r;
        if (http_do(&S, "GET", "/health", NULL, NULL, 0, &r) != 0)
            return (void *)1;
        bool bad = r.status != 200 || http_header(&r, "X-Request-Id", ids[i], sizeof ids[i]) != 0;
        http_resp_free(&r);
        if (bad)
            return (void *)1;
    }
    return NULL;
}

static int id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The server counts in a slot per thread (metrics.c) and numbers requests
 * from blocks per thread: requests from several clients at once, spread
 * over its threads, add up exactly and get ids of their own. A
 * request is counted just after its response went out, so the scrape is
 * repeated (for up to 5 s) until the last one shows. */
START_TEST(metrics_add_up_what_every_thread_counted)
{
    unsigned long long before = scrape(HEALTH_OK);
    pthread_t th[COUNTING_CLIENTS];
    static request_id ids[COUNTING_CLIENTS * COUNTED_EACH];
    for (int i = 0; i < COUNTING_CLIENTS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, count_health, &ids[i * COUNTED_EACH]), 0);
    for (int i = 0; i < COUNTING_CLIENTS; i++) {
        void *failed = NULL;
        pthread_join(th[i], &failed);
        ck_assert_ptr_null(failed);
    }
    /* the ids the server made up, from blocks each thread takes, differ */
    qsort(ids, COUNTING_CLIENTS * COUNTED_EACH, sizeof ids[0], id_cmp);
    for (int i = 1; i < COUNTING_CLIENTS * COUNTED_EACH; i++)
        ck_assert_str_ne(ids[i - 1], ids[i]);
    const unsigned long long want = before + COUNTING_CLIENTS * COUNTED_EACH;
    unsigned long long now = scrape(HEALTH_OK);
    for (int i = 0; i < 100 && now < want; i++) {
        usleep(50 * 1000);
        now = scrape(HEALTH_OK);
    }
    ck_assert_uint_eq(now, want);
}
END_TEST

/* The SQLite store's group commit. Saves are durable when answered, so
 * each is in a counted commit by then: the writes counter grows by at
 * least the saves, the commits by at least one and by no more than the
 * saves (a commit holds one write or more). A MongoDB store publishes no
 * such counters. */
START_TEST(metrics_count_the_stores_commits_and_their_writes)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    if (strncmp(S.store_url, "mongodb://", 10) == 0) {
        /* MongoDB commits on its server: nothing of the kind to count */
        ck_assert_ptr_null(strstr(r.body, "strata_store_commit"));
        http_resp_free(&r);
        return;
    }
    ck_assert_ptr_nonnull(strstr(r.body, "# TYPE strata_store_commits_total counter\n"));
    unsigned long long c0 = metric_value(r.body, "\nstrata_store_commits_total ");
    unsigned long long w0 = metric_value(r.body, "\nstrata_store_commit_writes_total ");
    http_resp_free(&r);
    ck_assert_uint_ge(w0, c0);
    enum { SAVES = 5 };
    const char *const json[] = {"Content-Type: application/json", NULL};
    for (int i = 0; i < SAVES; i++) {
        char path[96], body[128];
        snprintf(path, sizeof path, "/dictionary/metrics-commit-%d/versions", i);
        snprintf(body, sizeof body, "{\"word\":\"w%d\",\"provider\":\"p\",\"content\":{\"n\":%d}}",
                 i, i);
        ck_assert_int_eq(http_do(&S, "POST", path, json, body, strlen(body), &r), 0);
        ck_assert_int_eq(r.status, 201);
        http_resp_free(&r);
    }
    ck_assert_int_eq(http_do(&S, "GET", "/metrics", NULL, NULL, 0, &r), 0);
    unsigned long long c1 = metric_value(r.body, "\nstrata_store_commits_total ");
    unsigned long long w1 = metric_value(r.body, "\nstrata_store_commit_writes_total ");
    http_resp_free(&r);
    ck_assert_uint_ge(w1 - w0, SAVES);
    ck_assert_uint_ge(c1 - c0, 1);
    ck_assert_uint_le(c1 - c0, w1 - w0);
}
END_TEST

START_TEST(openapi_is_served)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/openapi.yaml", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "openapi: 3.1"));
    ck_assert_ptr_nonnull(strstr(r.body, "/health"));
    http_resp_free(&r);
}
END_TEST

START_TEST(unknown_path_is_404_problem)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/no/such/thing", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 404);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/bad%00path", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 400);
    http_resp_free(&r);
    /* bytes that are not UTF-8 still get a problem+json body */
    ck_assert_int_eq(http_do(&S, "GET", "/%A3", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 404);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/%A3", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 400);
    http_resp_free(&r);
    /* a UTF-16 surrogate encoded as UTF-8 is not valid UTF-8 for JSON */
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/a%ED%A0%80", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 400);
    http_resp_free(&r);
    /* an empty cursor is the first page */
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary?cursor=", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
}
END_TEST

START_TEST(wrong_method_is_405_with_allow)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, "DELETE", "/health", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 405);
    char allow[64];
    ck_assert_int_eq(http_header(&r, "Allow", allow, sizeof allow), 0);
    ck_assert_str_eq(allow, "GET, HEAD");
    http_resp_free(&r);
}
END_TEST

START_TEST(body_over_the_limit_is_413)
{
    static char big[100 * 1024];
    memset(big, 'x', sizeof big);
    http_resp r;
    /* with Content-Length: refused before the body is read (Expect: the
     * client waits for that verdict rather than racing the close) */
    const char *expect[] = {"Expect: 100-continue", NULL};
    ck_assert_int_eq(http_do(&S, "POST", "/health", expect, big, sizeof big, &r), 0);
    assert_problem(&r, 413);
    http_resp_free(&r);
    /* chunked, so the size is only known as it arrives */
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    ck_assert_int_eq(http_do(&S, "POST", "/health", chunked, big, sizeof big, &r), 0);
    assert_problem(&r, 413);
    http_resp_free(&r);
}
END_TEST

START_TEST(zstd_bomb_body_is_413_without_expanding)
{
    strata_buf z;
    sbuf_init(&z, 0);
    make_zstd_bomb(&z, 0);
    ck_assert_uint_lt(z.len, 64 * 1024);
    const char *h[] = {"Content-Encoding: zstd", "Content-Type: application/octet-stream", NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/health", h, z.data, z.len, &r), 0);
    assert_problem(&r, 413);
    ck_assert_ptr_nonnull(strstr(r.body, "decompresses past"));
    http_resp_free(&r);
    /* the server decoded into a hash, never into memory: its peak RSS stays
     * far below the 1 GiB the body expands to (and below the 16 MiB cap
     * plus the server's own footprint) */
    long kib = server_peak_rss_kib(&S);
    ck_assert_int_gt(kib, 0);
    ck_assert_msg(kib < 200 * 1024, "server peak RSS %ld KiB", kib);
    /* a body that is not what its Content-Encoding says is 400 */
    ck_assert_int_eq(http_do(&S, "GET", "/health", h, "not zstd at all", 15, &r), 0);
    assert_problem(&r, 400);
    http_resp_free(&r);
    const char *br[] = {"Content-Encoding: br", NULL};
    ck_assert_int_eq(http_do(&S, "GET", "/health", br, "x", 1, &r), 0);
    assert_problem(&r, 415);
    http_resp_free(&r);
    sbuf_free(&z);
}
END_TEST

START_TEST(two_requests_share_one_connection)
{
    http_client *c = http_client_new();
    http_resp r;
    ck_assert_int_eq(http_client_do(c, &S, "GET", "/health", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.new_connections, 1);
    http_resp_free(&r);
    /* an error answer, then a request with a body: still the same connection */
    ck_assert_int_eq(http_client_do(c, &S, "GET", "/nope", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 404);
    ck_assert_int_eq(r.new_connections, 0);
    http_resp_free(&r);
    ck_assert_int_eq(http_client_do(c, &S, "POST", "/health", NULL, "abc", 3, &r), 0);
    ck_assert_int_eq(r.status, 405);
    ck_assert_int_eq(r.new_connections, 0);
    http_resp_free(&r);
    ck_assert_int_eq(http_client_do(c, &S, "GET", "/health", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.new_connections, 0);
    http_resp_free(&r);
    http_client_free(c);

    /* the same on a raw socket: two requests, two responses, no close */
    int fd = raw_connect(S.port);
    ck_assert_int_ge(fd, 0);
    char buf[4096];
    for (int i = 0; i < 2; i++) {
        const char *req = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
        ck_assert_int_eq(raw_send(fd, req, strlen(req)), 0);
        ssize_t n = raw_read_response(fd, buf, sizeof buf, 5000);
        ck_assert_int_gt(n, 0);
        ck_assert_msg(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
        ck_assert_ptr_null(strstr(buf, "Connection: close"));
    }
    close(fd);
}
END_TEST

/* The per-connection memory (--connection-memory, 64K by default) holds
 * the request head: heads up to 56 KiB (the contract's longest request
 * lines are about 50 KB) are taken, on a connection that stays open; a
 * larger one is 431, never a crash or a hang. */
START_TEST(request_heads_up_to_56_kib_are_taken)
{
    static char big[80 * 1024];
    http_client *c = http_client_new();
    http_resp r;
    for (size_t len = 1024; len <= 56 * 1024; len += 5 * 1024) {
        int n = snprintf(big, sizeof big, "X-Pad: ");
        memset(big + n, 'a', len - (size_t)n);
        big[len] = '\0';
        const char *h[] = {big, NULL};
        ck_assert_int_eq(http_client_do(c, &S, "GET", "/health", h, NULL, 0, &r), 0);
        ck_assert_msg(r.status == 200, "a %zu-byte header: %ld", len, r.status);
        ck_assert_int_eq(r.new_connections, len == 1024 ? 1 : 0);
        http_resp_free(&r);
    }
    http_client_free(c);
    int n = snprintf(big, sizeof big, "X-Pad: ");
    memset(big + n, 'a', sizeof big - 1 - (size_t)n);
    big[sizeof big - 1] = '\0';
    const char *h[] = {big, NULL};
    ck_assert_int_eq(http_do(&S, "GET", "/health", h, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 431);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/health", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
}
END_TEST

/* SIGTERM while a request is in flight: the server stops accepting, lets
 * the request finish, answers it, and exits 0. */
START_TEST(sigterm_finishes_the_request_in_flight)
{
    test_server own;
    ck_assert_int_eq(server_start(&own, NULL), 0);
    int fd = raw_connect(own.port);
    ck_assert_int_ge(fd, 0);
    const char *head = "POST /health HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n12345";
    ck_assert_int_eq(raw_send(fd, head, strlen(head)), 0);
    struct timespec pause = {0, 300 * 1000 * 1000};
    nanosleep(&pause, NULL);
    ck_assert_int_eq(kill(own.pid, SIGTERM), 0);
    nanosleep(&pause, NULL);
    /* no longer accepting */
    int late = raw_connect(own.port);
    ck_assert_int_lt(late, 0);
    /* still running: the request holds it open */
    ck_assert_int_eq(waitpid(own.pid, NULL, WNOHANG), 0);
    ck_assert_int_eq(raw_send(fd, "67890", 5), 0);
    char buf[4096];
    ssize_t n = raw_read_response(fd, buf, sizeof buf, 10000);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(strncmp(buf, "HTTP/1.1 405", 12) == 0, "%s", buf);
    /* the answer tells a keep-alive client to go away */
    ck_assert_ptr_nonnull(strstr(buf, "\r\nConnection: close\r\n"));
    close(fd);
    int status = 0;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(own.pid, &status, WNOHANG) == own.pid)
            break;
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    }
    ck_assert(WIFEXITED(status));
    ck_assert_int_eq(WEXITSTATUS(status), 0);
    own.pid = 0;
    server_cleanup(&own);
}
END_TEST

static char *read_text_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* A 500 names neither server paths nor backend messages: the client gets
 * a generic detail with the request id, the log gets the real one. */
START_TEST(server_error_detail_is_generic_and_logged)
{
    test_server own;
    ck_assert_int_eq(server_start(&own, NULL), 0);
    static char body[100000]; /* past the 64 KiB inline threshold: a blob file */
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)('a' + i % 23);
    const char *ct[] = {"Content-Type: text/plain", NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&own, "POST",
                             "/literature/odyssey/versions?title=Odyssey&authors=A&source=s", ct,
                             body, sizeof body, &r),
                     0);
    ck_assert_int_eq(r.status, 201);
    json_t *rec = body_json(&r);
    const char *k =
        json_string_value(json_object_get(json_object_get(rec, "content_location"), "key"));
    ck_assert_ptr_nonnull(k);
    char key[80], path[600];
    snprintf(key, sizeof key, "%s", k);
    json_decref(rec);
    http_resp_free(&r);
    if (strncmp(own.blobs_url, "file:", 5) == 0) {
        /* a directory where the blob file was: reading it fails with an
         * error that names the full path */
        ck_assert_int_eq(server_blob_path(&own, key, path, sizeof path), 0);
        ck_assert_int_eq(unlink(path), 0);
        ck_assert_int_eq(mkdir(path, 0755), 0);
    } else {
        /* on S3 or GridFS: an object that is no blob (it ends inside the
         * header); the log names the blob by its key */
        ck_assert_int_eq(server_blob_write(&own, key, "not a blob", 10), 0);
        snprintf(path, sizeof path, "%s", key);
    }
    const char *rid_h[] = {"X-Request-Id: five-hundred-1", NULL};
    ck_assert_int_eq(
        http_do(&own, "GET", "/literature/odyssey/versions/latest/content", rid_h, NULL, 0, &r), 0);
    assert_problem(&r, 500);
    json_t *p = body_json(&r);
    const char *detail = json_string_value(json_object_get(p, "detail"));
    ck_assert_str_eq(json_string_value(json_object_get(p, "request_id")), "five-hundred-1");
    ck_assert_msg(strstr(detail, "five-hundred-1") != NULL, "detail: %s", detail);
    ck_assert_msg(strstr(detail, "server log") != NULL, "detail: %s", detail);
    ck_assert_msg(strchr(detail, '/') == NULL, "detail: %s", detail);
    ck_assert_ptr_null(strstr(r.body, own.data_dir));
    ck_assert_ptr_null(strstr(r.body, "blobs"));
    ck_assert_ptr_null(strcasestr(r.body, "sqlite"));
    ck_assert_ptr_null(strstr(r.body, key));
    json_decref(p);
    http_resp_free(&r);
    /* the log has the real detail, with method, path and request id */
    ck_assert_int_eq(server_stop(&own, 20), 0);
    const char *log = read_text_file(own.log_path);
    ck_assert_ptr_nonnull(log);
    const char *line = strstr(log, "GET /literature/odyssey/versions/latest/content: 500");
    ck_assert_msg(line != NULL, "no 500 line in the log:\n%s", log);
    const char *eol = strchr(line, '\n');
    size_t len = eol ? (size_t)(eol - line) : strlen(line);
    char copy[1024];
    snprintf(copy, sizeof copy, "%.*s", (int)(len < sizeof copy ? len : sizeof copy - 1), line);
    ck_assert_msg(strstr(copy, path) != NULL, "log line lacks the path: %s", copy);
    ck_assert_msg(strstr(copy, "five-hundred-1") != NULL, "log line lacks the id: %s", copy);
    server_cleanup(&own);
}
END_TEST

static int run_binary(const char *const *args, char *out, size_t cap)
{
    const char *argv[16] = {getenv("STRATA_BIN")};
    int argc = 1;
    for (int i = 0; argc < 13 && args[i]; i++)
        argv[argc++] = args[i];
    char l2[512], blobs[512];
    argc = strata_env_args(argv, argc, 16, NULL, args, l2, sizeof l2, blobs, sizeof blobs, NULL);
    if (argc < 0)
        return -1;
    argv[argc] = NULL;
    int p[2];
    if (pipe(p) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < cap && (n = read(p[0], out + got, cap - 1 - got)) > 0)
        got += (size_t)n;
    out[got] = '\0';
    close(p[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

START_TEST(invalid_option_exits_2_with_a_message)
{
    char out[8192];
    const char *bad[] = {"--threads", "0", NULL};
    ck_assert_int_eq(run_binary(bad, out, sizeof out), 2);
    ck_assert_ptr_nonnull(strstr(out, "--threads"));
    const char *help[] = {"--help", NULL};
    ck_assert_int_eq(run_binary(help, out, sizeof out), 0);
    ck_assert_ptr_nonnull(strstr(out, "--max-body"));
    ck_assert_ptr_nonnull(strstr(out, "STRATA_DATA_DIR"));
}
END_TEST

static Suite *http_suite(void)
{
    Suite *s = suite_create("http_server");
    TCase *t = tcase_create("shared_server");
    tcase_set_timeout(t, 120);
    tcase_add_unchecked_fixture(t, start_shared, stop_shared);
    tcase_add_test(t, health_answers_ok);
    tcase_add_test(t, request_id_is_echoed);
    tcase_add_test(t, metrics_count_requests_by_route_and_status);
    tcase_add_test(t, metrics_count_the_stores_commits_and_their_writes);
    tcase_add_test(t, metrics_add_up_what_every_thread_counted);
    tcase_add_test(t, openapi_is_served);
    tcase_add_test(t, unknown_path_is_404_problem);
    tcase_add_test(t, wrong_method_is_405_with_allow);
    tcase_add_test(t, body_over_the_limit_is_413);
    tcase_add_test(t, zstd_bomb_body_is_413_without_expanding);
    tcase_add_test(t, two_requests_share_one_connection);
    tcase_add_test(t, request_heads_up_to_56_kib_are_taken);
    suite_add_tcase(s, t);
    t = tcase_create("own_server");
    tcase_set_timeout(t, 120);
    tcase_add_test(t, sigterm_finishes_the_request_in_flight);
    tcase_add_test(t, server_error_detail_is_generic_and_logged);
    tcase_add_test(t, invalid_option_exits_2_with_a_message);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(http_suite());
}
