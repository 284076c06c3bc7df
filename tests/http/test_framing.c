/* Request framing over raw sockets: a body whose length could be read two
 * ways, or not at all, is refused with 400 problem+json before the handler
 * runs, and the connection is closed so that the bytes after it are never
 * parsed as another request. */
#include <check.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../support/harness.h"

static test_server S;

static void start(void)
{
    ck_assert_int_eq(server_start(&S, NULL), 0);
}

static void stop(void)
{
    int code = server_stop(&S, 20);
    server_cleanup(&S);
    if (code != 0) {
        fprintf(stderr, "server exited with %d\n", code);
        exit(1);
    }
}

/* The value of a header in a raw response head, or NULL. */
static const char *raw_header(const char *resp, const char *name, char *out, size_t cap)
{
    const char *end = strstr(resp, "\r\n\r\n");
    size_t nlen = strlen(name);
    for (const char *p = strstr(resp, "\r\n"); p != NULL && p < end; p = strstr(p + 2, "\r\n")) {
        if (strncasecmp(p + 2, name, nlen) == 0 && p[2 + nlen] == ':') {
            const char *v = p + 3 + nlen;
            while (*v == ' ')
                v++;
            size_t n = strcspn(v, "\r");
            if (n >= cap)
                n = cap - 1;
            memcpy(out, v, n);
            out[n] = '\0';
            return out;
        }
    }
    return NULL;
}

/* 1 when the peer closes (end of stream or reset) within timeout_ms
 * without sending anything more; 0 when bytes arrive; -1 on timeout. */
static int peer_closes(int fd, int timeout_ms, char *got, size_t cap)
{
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return -1;
    ssize_t n = recv(fd, got, cap - 1, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET))
        return 1;
    got[n > 0 ? n : 0] = '\0';
    return 0;
}

/* Sends `req` on a fresh connection and expects exactly one 400
 * bad-framing problem, Connection: close, and then the peer closing
 * without a second response. */
static void expect_refused_and_closed(const char *req, size_t len, const char *detail_part)
{
    int fd = raw_connect(S.port);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(raw_send(fd, req, len), 0);
    char buf[8192], v[128];
    ssize_t n = raw_read_response(fd, buf, sizeof buf, 2000);
    ck_assert_msg(n > 0, "no answer within 2 s");
    ck_assert_msg(strncmp(buf, "HTTP/1.1 400 ", 13) == 0, "%s", buf);
    ck_assert_ptr_nonnull(raw_header(buf, "Content-Type", v, sizeof v));
    ck_assert_str_eq(v, "application/problem+json");
    ck_assert_ptr_nonnull(raw_header(buf, "Connection", v, sizeof v));
    ck_assert_str_eq(v, "close");
    ck_assert_ptr_nonnull(strstr(buf, "\"urn:strata:problem:bad-framing\""));
    ck_assert_msg(strstr(buf, detail_part) != NULL, "detail lacks '%s': %s", detail_part, buf);
    /* one response, then the peer closes: what followed was not parsed */
    ck_assert_msg(strstr(buf + 1, "HTTP/1.1 ") == NULL, "a second response: %s", buf);
    char more[4096];
    int closed = peer_closes(fd, 3000, more, sizeof more);
    ck_assert_msg(closed == 1, closed == 0 ? "more after the 400: %s" : "still open%s",
                  closed == 0 ? more : "");
    close(fd);
}

/* The cache entry a refused request would have written is absent. */
static void assert_not_stored(const char *key)
{
    char path[128];
    snprintf(path, sizeof path, "/cache/dictionary/%s", key);
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", path, NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 404);
    http_resp_free(&r);
}

START_TEST(duplicate_content_length_is_refused)
{
    /* 5 bytes by the first header; 51 by the second, whose tail is a
     * complete GET that a lenient server answers as a second request */
    const char *second = "GET /health HTTP/1.1\r\nHost: t\r\nX-Pad: 1234\r\n\r\n";
    char req[512];
    int n = snprintf(req, sizeof req,
                     "PUT /cache/dictionary/dupcl HTTP/1.1\r\nHost: t\r\n"
                     "Content-Type: text/plain\r\nContent-Length: 5\r\nContent-Length: 51\r\n"
                     "\r\nhello%s",
                     second);
    ck_assert_uint_eq(5 + strlen(second), 51);
    expect_refused_and_closed(req, (size_t)n, "2 Content-Length headers");
    assert_not_stored("dupcl");
}
END_TEST

START_TEST(content_length_with_chunked_is_refused)
{
    const char *req = "PUT /cache/dictionary/clte HTTP/1.1\r\nHost: t\r\n"
                      "Content-Type: text/plain\r\nContent-Length: 5\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
                      "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    expect_refused_and_closed(req, strlen(req), "both Content-Length and Transfer-Encoding");
    assert_not_stored("clte");
}
END_TEST

START_TEST(unknown_transfer_coding_is_refused_at_once)
{
    /* libmicrohttpd alone reads such a body until the peer closes */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    const char *req = "PUT /cache/dictionary/xchunked HTTP/1.1\r\nHost: t\r\n"
                      "Content-Type: text/plain\r\nTransfer-Encoding: xchunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\n\r\n";
    expect_refused_and_closed(req, strlen(req), "'xchunked' is not supported");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 4); /* 400 within 2 s, close within 3 more */
    assert_not_stored("xchunked");
}
END_TEST

START_TEST(layered_transfer_codings_are_refused)
{
    const char *req = "PUT /cache/dictionary/gzchunked HTTP/1.1\r\nHost: t\r\n"
                      "Content-Type: text/plain\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                      "5\r\nhello\r\n0\r\n\r\n";
    expect_refused_and_closed(req, strlen(req), "'gzip, chunked' is not supported");
    assert_not_stored("gzchunked");
    /* the same split over two headers */
    const char *two = "PUT /cache/dictionary/twote HTTP/1.1\r\nHost: t\r\n"
                      "Content-Type: text/plain\r\nTransfer-Encoding: gzip\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    expect_refused_and_closed(two, strlen(two), "2 Transfer-Encoding headers");
    assert_not_stored("twote");
}
END_TEST

/* libmicrohttpd refuses a Content-Length that is not a number (a list
 * included) by itself, before the handler sees the request: a 400 of its
 * own (not problem+json), and the connection closes. */
START_TEST(content_length_list_is_refused_by_libmicrohttpd)
{
    int fd = raw_connect(S.port);
    ck_assert_int_ge(fd, 0);
    const char *req = "PUT /cache/dictionary/cllist HTTP/1.1\r\nHost: t\r\n"
                      "Content-Type: text/plain\r\nContent-Length: 5, 5\r\n\r\nhello"
                      "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
    ck_assert_int_eq(raw_send(fd, req, strlen(req)), 0);
    char buf[8192];
    ssize_t n = raw_recv(fd, buf, sizeof buf - 1, 3000);
    ck_assert_int_gt(n, 0);
    buf[n] = '\0';
    ck_assert_msg(strncmp(buf, "HTTP/1.1 400 ", 13) == 0, "%s", buf);
    ck_assert_ptr_null(strstr(buf, "200 OK"));
    char more[64];
    ck_assert_int_eq(peer_closes(fd, 1000, more, sizeof more), 1);
    close(fd);
    assert_not_stored("cllist");
}
END_TEST

START_TEST(valid_chunked_body_still_works)
{
    int fd = raw_connect(S.port);
    ck_assert_int_ge(fd, 0);
    /* "Chunked": the coding name is case-insensitive */
    const char *req = "PUT /cache/dictionary/chunky HTTP/1.1\r\nHost: t\r\n"
                      "Content-Type: text/plain\r\nTransfer-Encoding: Chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    ck_assert_int_eq(raw_send(fd, req, strlen(req)), 0);
    char buf[8192], v[64];
    ck_assert_int_gt(raw_read_response(fd, buf, sizeof buf, 5000), 0);
    ck_assert_msg(strncmp(buf, "HTTP/1.1 2", 10) == 0, "%s", buf);
    ck_assert_ptr_null(raw_header(buf, "Connection", v, sizeof v));
    /* the connection stays open for the next request */
    const char *get = "GET /cache/dictionary/chunky HTTP/1.1\r\nHost: t\r\n\r\n";
    ck_assert_int_eq(raw_send(fd, get, strlen(get)), 0);
    ssize_t n = raw_read_response(fd, buf, sizeof buf, 5000);
    ck_assert_int_gt(n, 0);
    ck_assert_msg(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "\r\n\r\nhello world"));
    close(fd);
}
END_TEST

static Suite *framing_suite(void)
{
    Suite *s = suite_create("framing");
    TCase *t = tcase_create("framing");
    tcase_set_timeout(t, 60);
    tcase_add_unchecked_fixture(t, start, stop);
    tcase_add_test(t, duplicate_content_length_is_refused);
    tcase_add_test(t, content_length_with_chunked_is_refused);
    tcase_add_test(t, unknown_transfer_coding_is_refused_at_once);
    tcase_add_test(t, layered_transfer_codings_are_refused);
    tcase_add_test(t, content_length_list_is_refused_by_libmicrohttpd);
    tcase_add_test(t, valid_chunked_body_still_works);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(framing_suite());
}
