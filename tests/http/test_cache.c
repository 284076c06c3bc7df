/* The cache over real HTTP: TTLs in both tiers, byte budgets, the L2
 * surviving a restart, request coalescing, pattern invalidation kept in
 * its namespace, and no stale latest after a write. */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../support/harness.h"

static test_server S;
static const char *const ARGS[] = {"--cache-namespaces", "fill:l1_bytes=4M,l1_items=100000", NULL};

static void start(void)
{
    ck_assert_int_eq(server_start(&S, ARGS), 0);
}

static void stop(void)
{
    int code = server_stop(&S, 30);
    server_cleanup(&S);
    if (code != 0) {
        fprintf(stderr, "server exited with %d\n", code);
        exit(1);
    }
}

static long req(const char *method, const char *path, const char *body, const char *ctype,
                http_resp *out)
{
    char ct[128];
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype ? ctype : "application/octet-stream");
    const char *h[] = {ct, NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&S, method, path, body ? h : NULL, body, body ? strlen(body) : 0, &r),
                     0);
    long status = r.status;
    if (out)
        *out = r;
    else
        http_resp_free(&r);
    return status;
}

static json_t *stats(const char *ns)
{
    char path[128];
    snprintf(path, sizeof path, "/cache/%s", ns);
    http_resp r;
    ck_assert_int_eq(req("GET", path, NULL, NULL, &r), 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    ck_assert_ptr_nonnull(j);
    return j;
}

/* The read-only stats of the versioned store's own entries for a type
 * (GET /cache, "internal"): no /cache/{ns} route reaches them. */
static json_t *internal_stats(const char *ns)
{
    http_resp r;
    ck_assert_int_eq(req("GET", "/cache", NULL, NULL, &r), 200);
    json_t *all = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    ck_assert_ptr_nonnull(all);
    json_t *j = json_incref(json_object_get(json_object_get(all, "internal"), ns));
    json_decref(all);
    ck_assert_ptr_nonnull(j);
    return j;
}

static long long stat_of(json_t *s, const char *tier, const char *field)
{
    return json_integer_value(json_object_get(json_object_get(s, tier), field));
}

START_TEST(ttl_one_second_is_gone_from_both_tiers)
{
    ck_assert_int_eq(req("PUT", "/cache/default/short?ttl=1", "soon gone", NULL, NULL), 201);
    http_resp r;
    ck_assert_int_eq(req("GET", "/cache/default/short", NULL, NULL, &r), 200);
    char ttl[16];
    ck_assert_int_eq(http_header(&r, "X-Cache-TTL", ttl, sizeof ttl), 0);
    ck_assert_int_le(atoi(ttl), 1);
    http_resp_free(&r);
    usleep(1100 * 1000);
    ck_assert_int_eq(req("GET", "/cache/default/short", NULL, NULL, NULL), 404);
    json_t *s = stats("default");
    ck_assert_int_ge(stat_of(s, "l1", "expirations"), 1);
    ck_assert_int_ge(stat_of(s, "l2", "expirations"), 1);
    ck_assert_int_eq(stat_of(s, "l1", "items"), 0);
    ck_assert_int_eq(stat_of(s, "l2", "items"), 0);
    json_decref(s);
    /* Cache-Control: max-age works too */
    const char *h[] = {"Cache-Control: max-age=1", NULL};
    ck_assert_int_eq(http_do(&S, "PUT", "/cache/default/short2", h, "x", 1, &r), 0);
    ck_assert_int_eq(r.status, 201);
    http_resp_free(&r);
    usleep(1100 * 1000);
    ck_assert_int_eq(req("GET", "/cache/default/short2", NULL, NULL, NULL), 404);
}
END_TEST

START_TEST(ten_times_the_byte_budget_stays_within_it)
{
    static char value[100 * 1024];
    memset(value, 'v', sizeof value - 1);
    long rss_before = server_peak_rss_kib(&S);
    char path[64];
    for (int i = 0; i < 400; i++) { /* 40 MiB into a 4 MiB namespace */
        snprintf(path, sizeof path, "/cache/fill/k%d", i);
        ck_assert_int_eq(req("PUT", path, value, NULL, NULL), 201);
    }
    json_t *s = stats("fill");
    ck_assert_int_le(stat_of(s, "l1", "bytes"), 4 << 20);
    ck_assert_int_gt(stat_of(s, "l1", "evictions"), 300);
    ck_assert_int_gt(stat_of(s, "l2", "items"), 300); /* L2 (disk) keeps them */
    json_decref(s);
    long rss_after = server_peak_rss_kib(&S);
#ifndef __SANITIZE_ADDRESS__
    /* (under ASan the quarantine of freed memory makes RSS meaningless) */
    ck_assert_msg(rss_after - rss_before < 32 * 1024, "peak RSS grew by %ld KiB",
                  rss_after - rss_before);
#else
    fprintf(stderr, "ASan build: RSS bound not checked (grew %ld KiB)\n", rss_after - rss_before);
#endif
    /* an evicted key comes back from L2 */
    http_resp r;
    ck_assert_int_eq(req("GET", "/cache/fill/k0", NULL, NULL, &r), 200);
    char tier[8];
    http_header(&r, "X-Cache", tier, sizeof tier);
    ck_assert_str_eq(tier, "L2");
    ck_assert_uint_eq(r.body_len, sizeof value - 1);
    http_resp_free(&r);
}
END_TEST

START_TEST(pattern_invalidation_stays_in_its_namespace)
{
    const char *keys[] = {"apple", "apple:pie", "applesauce", "banana", "pineapple"};
    char path[128];
    for (int i = 0; i < 5; i++) {
        snprintf(path, sizeof path, "/cache/dictionary/%s", keys[i]);
        ck_assert_int_eq(req("PUT", path, "v", NULL, NULL), 201);
    }
    ck_assert_int_eq(req("PUT", "/cache/corpus/apple", "v", NULL, NULL), 201);
    http_resp r;
    ck_assert_int_eq(req("DELETE", "/cache/dictionary?pattern=apple*", NULL, NULL, &r), 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "deleted")), 3);
    json_decref(j);
    http_resp_free(&r);
    ck_assert_int_eq(req("GET", "/cache/dictionary/apple", NULL, NULL, NULL), 404);
    ck_assert_int_eq(req("GET", "/cache/dictionary/applesauce", NULL, NULL, NULL), 404);
    ck_assert_int_eq(req("GET", "/cache/dictionary/banana", NULL, NULL, NULL), 200);
    ck_assert_int_eq(req("GET", "/cache/dictionary/pineapple", NULL, NULL, NULL), 200);
    ck_assert_int_eq(req("GET", "/cache/corpus/apple", NULL, NULL, NULL), 200);
    json_t *s = stats("dictionary");
    ck_assert_int_eq(stat_of(s, "l2", "items"), 2); /* gone from L2 as well */
    json_decref(s);
    /* a namespace can not be escaped: names are checked, keys are hashed */
    ck_assert_int_eq(req("DELETE", "/cache/dictionary%2F..?pattern=*", NULL, NULL, NULL), 400);
    ck_assert_int_eq(req("DELETE", "/cache/..?pattern=*", NULL, NULL, NULL), 400);
    ck_assert_int_eq(req("PUT", "/cache/dictionary/..%2F..%2F..%2Fescape", "x", NULL, NULL), 201);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "find %s -name '*escape*' | wc -l", S.data_dir);
    FILE *p = popen(cmd, "r");
    int found = -1;
    ck_assert_int_eq(fscanf(p, "%d", &found), 1);
    pclose(p);
    ck_assert_int_eq(found, 0);
    ck_assert_int_eq(req("DELETE", "/cache/dictionary", NULL, NULL, NULL),
                     400); /* pattern needed */
    ck_assert_int_eq(req("GET", "/cache/dictionary/banana", NULL, NULL, NULL), 200);
}
END_TEST

START_TEST(json_values_and_conditional_gets)
{
    http_resp r;
    ck_assert_int_eq(req("PUT", "/cache/search/q1", "{\"hits\": [1, 2]}", "application/json", NULL),
                     201);
    ck_assert_int_eq(req("PUT", "/cache/search/q2", "{not json", "application/json", NULL), 400);
    ck_assert_int_eq(req("GET", "/cache/search/q1", NULL, NULL, &r), 200);
    char ct[64], etag[64], inm[100];
    http_header(&r, "Content-Type", ct, sizeof ct);
    ck_assert_str_eq(ct, "application/json");
    ck_assert_int_eq(http_header(&r, "ETag", etag, sizeof etag), 0);
    http_resp_free(&r);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *h[] = {inm, NULL};
    ck_assert_int_eq(http_do(&S, "GET", "/cache/search/q1", h, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 304);
    http_resp_free(&r);
    ck_assert_int_eq(req("HEAD", "/cache/search/q1", NULL, NULL, NULL), 200);
    ck_assert_int_eq(req("DELETE", "/cache/search/q1", NULL, NULL, &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"deleted\":1"));
    http_resp_free(&r);
    ck_assert_int_eq(req("GET", "/cache/search/q1", NULL, NULL, NULL), 404);
    ck_assert_int_eq(req("PUT", "/cache/search/q3?ttl=-5", "x", NULL, NULL), 400);
    ck_assert_int_eq(req("PUT", "/cache/bad%20ns/k", "x", NULL, NULL), 400);
}
END_TEST

#define READERS 32

static pthread_barrier_t start_line;

static void *cold_reader(void *arg)
{
    (void)arg;
    /* all at once, without spinning (32 spinning threads starve 2 cores) */
    pthread_barrier_wait(&start_line);
    http_resp r;
    long status = http_do(&S, "GET", "/trie/cold", NULL, NULL, 0, &r) == 0 ? r.status : -1;
    http_resp_free(&r);
    return (void *)status;
}

START_TEST(concurrent_cold_reads_load_once)
{
    ck_assert_int_eq(
        req("POST", "/trie/cold/versions",
            "{\"content\": 1, \"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1}",
            "application/json", NULL),
        201);
    json_t *s = internal_stats("trie");
    long long before = json_integer_value(json_object_get(s, "loader_calls"));
    json_decref(s);
    pthread_t th[READERS];
    pthread_barrier_init(&start_line, NULL, READERS);
    for (int i = 0; i < READERS; i++)
        pthread_create(&th[i], NULL, cold_reader, NULL);
    for (int i = 0; i < READERS; i++) {
        void *rv;
        pthread_join(th[i], &rv);
        ck_assert_int_eq((long)rv, 200);
    }
    pthread_barrier_destroy(&start_line);
    s = internal_stats("trie");
    ck_assert_int_eq(json_integer_value(json_object_get(s, "loader_calls")) - before, 1);
    json_decref(s);
}
END_TEST

static atomic_int acked; /* the patch number the last acknowledged POST created */
static atomic_int writer_done;

static void *writer(void *arg)
{
    (void)arg;
    http_client *c = http_client_new();
    const char *h[] = {"Content-Type: application/json", NULL};
    for (int i = 1; i <= 150; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"content\": %d, \"word\": \"w\", \"provider\": \"p\"}", i);
        http_resp r;
        if (http_client_do(c, &S, "POST", "/dictionary/poll/versions", h, body, strlen(body), &r) ==
                0 &&
            r.status == 201)
            atomic_store(&acked, i);
        http_resp_free(&r);
    }
    http_client_free(c);
    atomic_store(&writer_done, 1);
    return NULL;
}

START_TEST(latest_is_never_older_than_an_acknowledged_write)
{
    ck_assert_int_eq(req("POST", "/dictionary/poll/versions",
                         "{\"content\": 0, \"word\": \"w\", \"provider\": \"p\"}",
                         "application/json", NULL),
                     201);
    atomic_store(&acked, 0);
    atomic_store(&writer_done, 0);
    pthread_t w;
    pthread_create(&w, NULL, writer, NULL);
    http_client *c = http_client_new();
    int reads = 0, violations = 0;
    while (!atomic_load(&writer_done)) {
        int floor = atomic_load(&acked);
        http_resp r;
        ck_assert_int_eq(http_client_do(c, &S, "GET", "/dictionary/poll", NULL, NULL, 0, &r), 0);
        ck_assert_int_eq(r.status, 200);
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        const char *v =
            json_string_value(json_object_get(json_object_get(j, "version_info"), "version"));
        int patch = atoi(strrchr(v, '.') + 1);
        if (patch < floor)
            violations++;
        reads++;
        json_decref(j);
        http_resp_free(&r);
    }
    pthread_join(w, NULL);
    http_client_free(c);
    ck_assert_int_eq(atomic_load(&acked), 150);
    ck_assert_int_gt(reads, 20);
    ck_assert_int_eq(violations, 0);
    /* and the cache did serve some of them */
    json_t *s = internal_stats("dictionary");
    ck_assert_int_gt(stat_of(s, "l1", "hits") + stat_of(s, "l2", "hits"), 0);
    json_decref(s);
}
END_TEST

START_TEST(after_a_restart_l2_then_l1)
{
    ck_assert_int_eq(req("PUT", "/cache/semantic/vec", "0123456789", NULL, NULL), 201);
    ck_assert_int_eq(server_stop(&S, 30), 0);
    ck_assert_int_eq(server_restart(&S, ARGS), 0);
    http_resp r;
    char tier[8];
    ck_assert_int_eq(req("GET", "/cache/semantic/vec", NULL, NULL, &r), 200);
    http_header(&r, "X-Cache", tier, sizeof tier);
    ck_assert_str_eq(tier, "L2");
    ck_assert_str_eq(r.body, "0123456789");
    http_resp_free(&r);
    ck_assert_int_eq(req("GET", "/cache/semantic/vec", NULL, NULL, &r), 200);
    http_header(&r, "X-Cache", tier, sizeof tier);
    ck_assert_str_eq(tier, "L1");
    http_resp_free(&r);
    json_t *s = stats("semantic");
    ck_assert_int_eq(stat_of(s, "l2", "hits"), 1);
    ck_assert_int_eq(stat_of(s, "l1", "hits"), 1);
    json_decref(s);
    /* stats are in /metrics too */
    ck_assert_int_eq(req("GET", "/metrics", NULL, NULL, &r), 200);
    ck_assert_ptr_nonnull(
        strstr(r.body, "strata_cache_hits{namespace=\"semantic\",tier=\"l1\"} 1"));
    http_resp_free(&r);
}
END_TEST

static Suite *cache_suite(void)
{
    Suite *s = suite_create("cache");
    TCase *t = tcase_create("cache");
    tcase_set_timeout(t, 300);
    tcase_add_unchecked_fixture(t, start, stop);
    tcase_add_test(t, ttl_one_second_is_gone_from_both_tiers);
    tcase_add_test(t, ten_times_the_byte_budget_stays_within_it);
    tcase_add_test(t, pattern_invalidation_stays_in_its_namespace);
    tcase_add_test(t, json_values_and_conditional_gets);
    tcase_add_test(t, concurrent_cold_reads_load_once);
    tcase_add_test(t, latest_is_never_older_than_an_acknowledged_write);
    suite_add_tcase(s, t);
    t = tcase_create("restart");
    tcase_set_timeout(t, 300);
    tcase_add_checked_fixture(t, start, stop);
    tcase_add_test(t, after_a_restart_l2_then_l1);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(cache_suite());
}
