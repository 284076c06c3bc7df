/* Two strata nodes sharing one store, one blob directory and one Redis L2
 * (STRATA_TEST_L2 must name the redis-server: this test fails without it,
 * it never passes for want of one).
 *
 * - nodes_never_serve_older: writers change values on one node (cache
 *   PUT and DELETE, saves) after both nodes have read and cached the
 *   previous value, and read the other node at once: it must return the
 *   acknowledged value (0 stale), in rounds of STRATA_NODES_SECONDS (12)
 *   until STRATA_NODES_CHECKS (10,000) checks ran.
 * - redis_restarts_under_load: the same load on both nodes for
 *   STRATA_NODES_FAULT_SECONDS (60) while redis-server is killed and restarted three
 *   times (scripts/redis-test-server restart, STRATA_TEST_REDIS_DIR): 0
 *   failed reads of stored data, 0 stale reads after an acknowledgement,
 *   and the hit rate of hot reads back up after each restart. */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../support/harness.h"

#define WRITERS  6
#define HOT      40 /* stored resources read over and over */
#define RESTARTS 3

static test_server A, B;
static test_server *nodes[2] = {&A, &B};

static long env_long(const char *name, long dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtol(v, NULL, 10) : dflt;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void start_nodes(void)
{
    const char *l2 = getenv("STRATA_TEST_L2");
    ck_assert_msg(l2 != NULL && strncmp(l2, "redis://", 8) == 0,
                  "STRATA_TEST_L2 must name the redis-server this test runs against");
    static const char *const args[] = {"--gc-grace", "0", NULL};
    ck_assert_int_eq(server_start(&A, args), 0);
    ck_assert_int_eq(server_start_shared(&B, A.data_dir, args), 0);
    ck_assert_str_eq(A.l2_url, B.l2_url);
    ck_assert_ptr_nonnull(strstr(A.l2_url, "redis://"));
}

static void stop_nodes(void)
{
    server_stop(&B, 20);
    server_forget_log(&B);
    server_stop(&A, 20);
    server_l2_wipe(&A);
    server_cleanup(&A);
}

/* ---- the shared load ---------------------------------------------------------- */

typedef struct counts {
    atomic_long checks, stale, write_ok, write_failed, stored_reads, stored_failed,
        cache_read_failed, cache_lost;
} counts;

static counts C;
static atomic_bool stop_load;

/* The record's version string, or "" (not 200 or not a record). */
static void record_version(const http_resp *r, char *out, size_t cap)
{
    out[0] = '\0';
    if (r->status != 200 && r->status != 201)
        return;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    const char *v =
        json_string_value(json_object_get(json_object_get(j, "version_info"), "version"));
    if (v)
        snprintf(out, cap, "%s", v);
    json_decref(j);
}

static unsigned patch_of(const char *v)
{
    unsigned a = 0, b = 0, c = 0;
    sscanf(v, "%u.%u.%u", &a, &b, &c);
    return c;
}

static void stale(const char *what, const char *want, const char *got)
{
    long n = atomic_fetch_add(&C.stale, 1);
    if (n < 10)
        fprintf(stderr, "STALE %s: acknowledged %s, read %s\n", what, want, got);
}

/* One writer: its own cache keys and resources, so every value it reads
 * back is one it knows. strict: every write must succeed. */
typedef struct writer {
    int id;
    bool strict;
    unsigned seed;
} writer;

static void cache_round(http_client *c, writer *w, int k, long n)
{
    test_server *x = nodes[rand_r(&w->seed) & 1], *y = x == &A ? &B : &A;
    char path[128], val[64];
    snprintf(path, sizeof path, "/cache/default/w%d-k%d", w->id, k);
    snprintf(val, sizeof val, "v%d-%ld", w->id, n);
    http_resp r;
    /* both nodes hold the previous value first */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(http_client_do(c, nodes[i], "GET", path, NULL, NULL, 0, &r), 0);
        http_resp_free(&r);
    }
    bool del = rand_r(&w->seed) % 4 == 0;
    static const char *const hdr[] = {"Content-Type: application/octet-stream", NULL};
    ck_assert_int_eq(http_client_do(c, x, del ? "DELETE" : "PUT", path, del ? NULL : hdr,
                                    del ? NULL : val, del ? 0 : strlen(val), &r),
                     0);
    long st = r.status;
    http_resp_free(&r);
    if (st != 200 && st != 201 && st != 204 && !(del && st == 404)) {
        atomic_fetch_add(&C.write_failed, 1);
        ck_assert_msg(!w->strict, "cache %s answered %ld", del ? "DELETE" : "PUT", st);
        return;
    }
    atomic_fetch_add(&C.write_ok, 1);
    ck_assert_int_eq(http_client_do(c, y, "GET", path, NULL, NULL, 0, &r), 0);
    if (r.status >= 500) { /* the cache is down: not a value, so not a stale one */
        atomic_fetch_add(&C.cache_read_failed, 1);
        ck_assert_msg(!w->strict, "cache GET answered %ld", r.status);
        http_resp_free(&r);
        return;
    }
    atomic_fetch_add(&C.checks, 1);
    if (del && r.status != 404)
        stale("cache DELETE", "404", r.status == 200 ? "a value" : "an error");
    else if (!del && r.status == 200 &&
             (r.body_len != strlen(val) || memcmp(r.body, val, r.body_len)))
        stale("cache PUT", val, "an older value");
    else if (!del && r.status == 404 && w->strict)
        stale("cache PUT", val, "404");
    else if (!del && r.status == 404) /* a restart emptied the cache: a miss, not older */
        atomic_fetch_add(&C.cache_lost, 1);
    http_resp_free(&r);
}

static void save_round(http_client *c, writer *w, int k, long n)
{
    test_server *x = nodes[rand_r(&w->seed) & 1], *y = x == &A ? &B : &A;
    char path[128], body[256], got[32];
    snprintf(path, sizeof path, "/dictionary/w%d-r%d", w->id, k);
    http_resp r;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(http_client_do(c, nodes[i], "GET", path, NULL, NULL, 0, &r), 0);
        http_resp_free(&r);
    }
    char vpath[160];
    snprintf(vpath, sizeof vpath, "%s/versions", path);
    snprintf(body, sizeof body,
             "{\"content\":{\"n\":%ld},\"word\":\"w%d-r%d\",\"provider\":\"test\"}", n, w->id, k);
    static const char *const hdr[] = {"Content-Type: application/json", NULL};
    ck_assert_int_eq(http_client_do(c, x, "POST", vpath, hdr, body, strlen(body), &r), 0);
    char acked[32];
    record_version(&r, acked, sizeof acked);
    long st = r.status;
    http_resp_free(&r);
    if (st != 201 || acked[0] == '\0') {
        atomic_fetch_add(&C.write_failed, 1);
        ck_assert_msg(!w->strict, "save answered %ld", st);
        return;
    }
    atomic_fetch_add(&C.write_ok, 1);
    ck_assert_int_eq(http_client_do(c, y, "GET", path, NULL, NULL, 0, &r), 0);
    atomic_fetch_add(&C.checks, 1);
    record_version(&r, got, sizeof got);
    /* newer is fine (a save answered 503 may have committed since) */
    if (r.status != 200) {
        if (atomic_fetch_add(&C.stored_failed, 1) < 5)
            fprintf(stderr, "stored read %s answered %ld\n", path, r.status);
    } else if (patch_of(got) < patch_of(acked)) {
        stale("save", acked, got);
    }
    http_resp_free(&r);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    http_client *c = http_client_new();
    for (long n = 0; !atomic_load(&stop_load); n++) {
        int k = rand_r(&w->seed) % 20;
        if (rand_r(&w->seed) & 1)
            cache_round(c, w, k, n);
        else
            save_round(c, w, k, n);
    }
    http_client_free(c);
    return NULL;
}

/* Reads the hot stored resources on both nodes: every read must succeed. */
static void *reader_main(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    http_client *c = http_client_new();
    while (!atomic_load(&stop_load)) {
        char path[64];
        snprintf(path, sizeof path, "/dictionary/hot%d", rand_r(&seed) % HOT);
        http_resp r;
        ck_assert_int_eq(
            http_client_do(c, nodes[rand_r(&seed) & 1], "GET", path, NULL, NULL, 0, &r), 0);
        atomic_fetch_add(&C.stored_reads, 1);
        if (r.status != 200) {
            if (atomic_fetch_add(&C.stored_failed, 1) < 5)
                fprintf(stderr, "stored read %s answered %ld: %.*s\n", path, r.status,
                        (int)r.body_len, r.body);
        }
        http_resp_free(&r);
    }
    http_client_free(c);
    return NULL;
}

static void save_hot(void)
{
    static const char *const hdr[] = {"Content-Type: application/json", NULL};
    for (int i = 0; i < HOT; i++) {
        char path[64], body[128];
        snprintf(path, sizeof path, "/dictionary/hot%d/versions", i);
        snprintf(body, sizeof body,
                 "{\"content\":{\"hot\":%d},\"word\":\"hot%d\",\"provider\":\"t\"}", i, i);
        http_resp r;
        ck_assert_int_eq(http_do(&A, "POST", path, hdr, body, strlen(body), &r), 0);
        ck_assert_int_eq(r.status, 201);
        http_resp_free(&r);
    }
}

/* Hot reads served by a cache tier on both nodes so far: L1 and L2 hits
 * of the internal dictionary namespace, and the loads that missed both. */
static void hits_and_loads(long *hits, long *loads)
{
    *hits = *loads = 0;
    for (int i = 0; i < 2; i++) {
        http_resp r;
        ck_assert_int_eq(http_do(nodes[i], "GET", "/cache", NULL, NULL, 0, &r), 0);
        ck_assert_int_eq(r.status, 200);
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        json_t *d = json_object_get(json_object_get(j, "internal"), "dictionary");
        *hits += json_integer_value(json_object_get(json_object_get(d, "l1"), "hits"));
        *hits += json_integer_value(json_object_get(json_object_get(d, "l2"), "hits")) / 2;
        *loads += json_integer_value(json_object_get(d, "loader_calls"));
        json_decref(j);
        http_resp_free(&r);
    }
}

static void run_load(int seconds, bool strict, bool restarts)
{
    memset(&C, 0, sizeof C);
    atomic_store(&stop_load, false);
    pthread_t wt[WRITERS], rt[2];
    writer ws[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        ws[i] = (writer){.id = i, .strict = strict, .seed = (unsigned)(i * 7919 + 1)};
        ck_assert_int_eq(pthread_create(&wt[i], NULL, writer_main, &ws[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&rt[i], NULL, reader_main, (void *)(uintptr_t)(i + 11)), 0);

    const char *rdir = getenv("STRATA_TEST_REDIS_DIR");
    double t0 = now_s(), step = (double)seconds / (RESTARTS + 1);
    double rate_before[RESTARTS + 1];
    int nrates = 0;
    for (int phase = 0; phase <= RESTARTS; phase++) {
        /* the hit rate of this phase's second half: caches warmed again */
        while (now_s() < t0 + step * (phase + 0.5))
            usleep(100 * 1000);
        long h0, l0, h1, l1;
        hits_and_loads(&h0, &l0);
        while (now_s() < t0 + step * (phase + 1))
            usleep(100 * 1000);
        hits_and_loads(&h1, &l1);
        double rate = (double)(h1 - h0) / (double)((h1 - h0) + (l1 - l0) + 1);
        rate_before[nrates++] = rate;
        printf("phase %d: hot-read hit rate %.3f (%ld hits, %ld loads)\n", phase, rate, h1 - h0,
               l1 - l0);
        if (restarts && phase < RESTARTS) {
            ck_assert_msg(rdir != NULL, "STRATA_TEST_REDIS_DIR must name the redis-server's dir");
            char cmd[600];
            snprintf(cmd, sizeof cmd, "scripts/redis-test-server restart '%s' >/dev/null", rdir);
            const char *src = getenv("MESON_SOURCE_ROOT");
            if (src != NULL)
                snprintf(cmd, sizeof cmd, "'%s/scripts/redis-test-server' restart '%s' >/dev/null",
                         src, rdir);
            ck_assert_int_eq(system(cmd), 0);
            printf("redis-server killed and restarted at %.1f s\n", now_s() - t0);
        }
    }
    atomic_store(&stop_load, true);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(wt[i], NULL);
    for (int i = 0; i < 2; i++)
        pthread_join(rt[i], NULL);
    printf(
        "%d s%s: %ld checks after acknowledged writes (%ld writes acked, %ld failed), %ld stale; "
        "%ld stored reads, %ld failed; %ld cache reads failed (cache down), %ld values lost "
        "(emptied by a restart)\n",
        seconds, restarts ? ", 3 redis restarts" : "", atomic_load(&C.checks),
        atomic_load(&C.write_ok), atomic_load(&C.write_failed), atomic_load(&C.stale),
        atomic_load(&C.stored_reads), atomic_load(&C.stored_failed),
        atomic_load(&C.cache_read_failed), atomic_load(&C.cache_lost));
    ck_assert_int_eq(atomic_load(&C.stale), 0);
    ck_assert_int_eq(atomic_load(&C.stored_failed), 0);
    /* the caches served: a test of freshness that nothing cached proves nothing */
    for (int i = 0; i < nrates; i++)
        ck_assert_msg(rate_before[i] > 0.5, "phase %d: hit rate %.3f: the caches did not serve", i,
                      rate_before[i]);
}

START_TEST(nodes_never_serve_older)
{
    start_nodes();
    save_hot();
    /* rounds until enough checks ran (a loaded machine runs fewer a
     * second), each with 0 stale */
    long want = env_long("STRATA_NODES_CHECKS", 10000), total = 0;
    for (int round = 0; round < 8 && total < want; round++) {
        run_load((int)env_long("STRATA_NODES_SECONDS", 12), true, false);
        total += atomic_load(&C.checks);
    }
    printf("%ld checks in all, 0 stale\n", total);
    ck_assert_int_ge(total, want);
    stop_nodes();
}
END_TEST

START_TEST(redis_restarts_under_load)
{
    start_nodes();
    save_hot();
    run_load((int)env_long("STRATA_NODES_FAULT_SECONDS", 60), false, true);
    ck_assert_int_gt(atomic_load(&C.write_ok), 1000);
    stop_nodes();
}
END_TEST

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    Suite *s = suite_create("l2_nodes");
    TCase *tc = tcase_create("redis");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, nodes_never_serve_older);
    tcase_add_test(tc, redis_restarts_under_load);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
