/* The real binary on S3 blobs (--blobs s3://) over HTTP, against the
 * versitygw of the 's3' suite: STRATA_TEST_S3_DIR names its directory
 * (scripts/s3-test-server; DIR/env holds the credentials and endpoint,
 * DIR/port its port). Without it the tests fail, they never pass for want
 * of a server. Each run works under a prefix of its own.
 *
 * - a_wrong_secret_is_named_and_saves_fail_cleanly: strata with a wrong
 *   AWS_SECRET_ACCESS_KEY, then with a wrong AWS_ACCESS_KEY_ID: /ready is
 *   503 problem+json naming the store's error (SignatureDoesNotMatch;
 *   for an unknown key versitygw says XAdminUserNotFound, AWS
 *   InvalidAccessKeyId: STRATA_S3_UNKNOWN_KEY_CODE), /health stays 200
 *   without asking the store; saves of 100 KiB, 5 MiB (streamed) and 20 MiB
 *   (streamed, multipart begun while the body arrives) answer 503
 *   problem+json with a generic detail; no version is created and nothing
 *   is left under the prefix (listed with the right credentials: objects
 *   and unfinished uploads). A control with the right credentials then
 *   saves under the same prefix (the listing sees it), and strata back on
 *   that data with the bad credentials answers a streamed content read
 *   503 and still reads records.
 * - the_s3_server_stopped_for_10s_under_mixed_load: saves (small blobs,
 *   and streamed 6 MiB ones that go up as multipart uploads), reads of
 *   content read once before (held by the cache), reads of records and of
 *   streamed content, from several threads for STRATA_S3_FAULT_SECONDS
 *   (30); versitygw is killed (kill -9) a quarter of the way in and
 *   started again on the same port and data 10 s later. Saves fail only
 *   with 503 problem+json and only while the server is away, never hang;
 *   cached reads and record reads all succeed; every acknowledged save
 *   reads back with its bytes afterwards and no failed save made a
 *   version; saves succeed again within 15 s of the restart, strata never
 *   restarted. */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/blobs/s3_client.h"
#include "../support/harness.h"

#define KIB            1024u
#define MIB            (1024u * 1024u)
#define LIT            "?title=T&authors=A&source=s"
#define OUTAGE_S       10
#define RECOVER_S      15 /* saves work again this long after the restart */
#define SLOW_S         35 /* a request longer than this hung (S3 timeout 30 s) */
#define SAVERS         3
#define CACHED_READERS 2
#define CACHED_N       12 /* small contents read once before the load */
#define STREAMED_N     2  /* large contents, read from S3 as they stream */
#define LARGE          (6u * MIB)
#define EVENTS_MAX     20000 /* per thread */
#define IDS_PER_SAVER  6

static const char *const BYTES_CT[] = {"Content-Type: application/octet-stream", NULL};

static char S3DIR[512];
static char BUCKET[64];
static char RIGHT_KEY[128], RIGHT_SECRET[128];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the S3 server of the suite ------------------------------------------------ */

/* Reads DIR/env ("export NAME=VALUE" lines) into this process's
 * environment, which the strata processes started after inherit. */
static void load_s3_env(void)
{
    const char *dir = getenv("STRATA_TEST_S3_DIR");
    ck_assert_msg(dir != NULL && dir[0] != '\0',
                  "STRATA_TEST_S3_DIR must name the directory of a versitygw started with "
                  "scripts/s3-test-server (scripts/test sets it)");
    snprintf(S3DIR, sizeof S3DIR, "%s", dir);
    char path[600], line[1024];
    snprintf(path, sizeof path, "%s/env", dir);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strncmp(line, "export ", 7) != 0)
            continue;
        char *eq = strchr(line + 7, '=');
        if (eq == NULL)
            continue;
        *eq = '\0';
        ck_assert_int_eq(setenv(line + 7, eq + 1, 1), 0);
    }
    fclose(f);
    const char *b = getenv("STRATA_S3_BUCKET"), *k = getenv("AWS_ACCESS_KEY_ID"),
               *s = getenv("AWS_SECRET_ACCESS_KEY");
    ck_assert_msg(b && k && s && getenv("AWS_ENDPOINT_URL"),
                  "%s lacks STRATA_S3_BUCKET, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or "
                  "AWS_ENDPOINT_URL",
                  path);
    snprintf(BUCKET, sizeof BUCKET, "%s", b);
    snprintf(RIGHT_KEY, sizeof RIGHT_KEY, "%s", k);
    snprintf(RIGHT_SECRET, sizeof RIGHT_SECRET, "%s", s);
}

/* scripts/s3-test-server CMD DIR [PORT] */
static int s3_server(const char *cmd, int port)
{
    const char *src = getenv("MESON_SOURCE_ROOT");
    char line[1400], p[16] = "";
    if (port > 0)
        snprintf(p, sizeof p, "%d", port);
    snprintf(line, sizeof line, "'%s/scripts/s3-test-server' %s '%s' %s >/dev/null",
             src ? src : ".", cmd, S3DIR, p);
    return system(line);
}

static int s3_port(void)
{
    char path[600];
    snprintf(path, sizeof path, "%s/port", S3DIR);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    int port = 0;
    ck_assert_int_eq(fscanf(f, "%d", &port), 1);
    fclose(f);
    return port;
}

/* A prefix of this run's own: s3://BUCKET/faults-PID-TIME-what */
static void blobs_url(const char *what, char *prefix, size_t pcap, char *url, size_t ucap)
{
    snprintf(prefix, pcap, "faults-%d-%ld-%s", (int)getpid(), (long)time(NULL), what);
    snprintf(url, ucap, "s3://%s/%s", BUCKET, prefix);
}

/* A client with the right credentials over the prefix. */
static s3_client *right_client(const char *prefix)
{
    char url[256];
    snprintf(url, sizeof url, "s3://%s/%s", BUCKET, prefix);
    s3_config cfg;
    strata_error err = {0};
    ck_assert_msg(s3_config_from_url(url, &cfg, &err) == 0, "%s: %s", url, err.detail);
    snprintf(cfg.access_key, sizeof cfg.access_key, "%s", RIGHT_KEY);
    snprintf(cfg.secret_key, sizeof cfg.secret_key, "%s", RIGHT_SECRET);
    s3_client *c = s3_client_new(&cfg, &err);
    ck_assert_msg(c != NULL, "s3_client_new: %s", err.detail);
    return c;
}

typedef struct listing {
    int n;
    char first[256];
} listing;

static int on_key(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    (void)size;
    (void)mtime_ms;
    listing *l = ctx;
    if (l->n++ == 0)
        snprintf(l->first, sizeof l->first, "%s", key);
    return 0;
}

static int on_upload(void *ctx, const char *key, const char *upload_id, int64_t initiated_ms)
{
    (void)upload_id;
    (void)initiated_ms;
    return on_key(ctx, key, 0, 0);
}

/* Objects and unfinished multipart uploads under the prefix, as a client
 * with the right credentials sees them. */
static void count_under(const char *prefix, listing *objects, listing *uploads)
{
    s3_client *c = right_client(prefix);
    strata_error err = {0};
    memset(objects, 0, sizeof *objects);
    memset(uploads, 0, sizeof *uploads);
    ck_assert_msg(s3_list(c, "", on_key, objects, &err) == 0, "list: %s", err.detail);
    ck_assert_msg(s3_mpu_list(c, "", on_upload, uploads, &err) == 0, "uploads: %s", err.detail);
    s3_client_free(c);
}

/* Best effort: the run's objects go (the server's directory is a
 * throwaway one anyway). */
typedef struct keys {
    char (*k)[256];
    int n, cap;
} keys;

static int gather(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    (void)size;
    (void)mtime_ms;
    keys *ks = ctx;
    if (ks->n < ks->cap)
        snprintf(ks->k[ks->n++], 256, "%s", key);
    return 0;
}

static void empty_prefix(const char *prefix)
{
    s3_client *c = right_client(prefix);
    keys ks = {.cap = 4000};
    ks.k = malloc((size_t)ks.cap * sizeof *ks.k);
    strata_error err = {0};
    if (ks.k != NULL && s3_list(c, "", gather, &ks, &err) == 0)
        for (int i = 0; i < ks.n; i++)
            s3_delete(c, ks.k[i], &err);
    free(ks.k);
    s3_client_free(c);
}

/* ---- bytes ------------------------------------------------------------------------ */

/* Incompressible bytes from a seed: what a save sent can be made again. */
static void fill(unsigned char *b, size_t len, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        b[i] = (unsigned char)(x >> 24);
    }
}

static unsigned char *make(size_t len, uint64_t seed)
{
    unsigned char *b = malloc(len ? len : 1);
    ck_assert_ptr_nonnull(b);
    fill(b, len, seed);
    return b;
}

/* ---- responses -------------------------------------------------------------------- */

static bool is_problem(const http_resp *r)
{
    char ct[128] = "";
    return http_header(r, "Content-Type", ct, sizeof ct) == 0 &&
           strncmp(ct, "application/problem+json", 24) == 0;
}

/* The string member of a JSON body ("" when missing), into out. */
static void json_member(const http_resp *r, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    const char *v = json_string_value(json_object_get(j, name));
    if (v)
        snprintf(out, cap, "%s", v);
    json_decref(j);
}

/* ---- a_wrong_secret_is_named_and_saves_fail_cleanly --------------------------------- */

/* One strata with bad credentials: what it says and what a save leaves. */
static void refused(const char *what, const char *bad_var, const char *bad_value, const char *code)
{
    char prefix[128], url[256];
    blobs_url(what, prefix, sizeof prefix, url, sizeof url);
    test_server node;
    const char *const args[] = {"--blobs", url, NULL};
    /* the child inherits the environment as it is when it starts */
    ck_assert_int_eq(setenv(bad_var, bad_value, 1), 0);
    int started = server_start(&node, args);
    ck_assert_int_eq(setenv("AWS_ACCESS_KEY_ID", RIGHT_KEY, 1), 0);
    ck_assert_int_eq(setenv("AWS_SECRET_ACCESS_KEY", RIGHT_SECRET, 1), 0);
    ck_assert_msg(started == 0, "strata did not start with a wrong %s (see %s)", bad_var,
                  node.log_path);

    http_resp r;
    char detail[1024], blobs[1024];
    ck_assert_int_eq(http_do(&node, "GET", "/ready", NULL, NULL, 0, &r), 0);
    json_member(&r, "detail", detail, sizeof detail);
    printf("%s: /ready %ld: %s\n", what, r.status, detail);
    ck_assert_int_eq(r.status, 503);
    ck_assert_msg(is_problem(&r), "/ready 503 is not problem+json");
    ck_assert_msg(strstr(detail, "blob store") && strstr(detail, code),
                  "/ready does not name %s: %s", code, detail);
    http_resp_free(&r);

    /* liveness does not ask the blob store: the node is alive */
    ck_assert_int_eq(http_do(&node, "GET", "/health", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    json_member(&r, "blobs", blobs, sizeof blobs);
    ck_assert_msg(blobs[0] == '\0', "/health asked the blob store: %s", blobs);
    http_resp_free(&r);

    /* blob-sized (over the 64 KiB inline threshold), streamed (past 4 MiB:
     * its parts go up at commit) and streamed past the first two parts (a
     * multipart upload begun while the body arrives) */
    static const size_t sizes[] = {100 * KIB, 5 * MIB, 20 * MIB};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char path[256], id[64];
        snprintf(id, sizeof id, "refused%zu", i);
        snprintf(path, sizeof path, "/literature/%s/versions" LIT, id);
        unsigned char *body = make(sizes[i], 1000 + i);
        double t0 = now_s();
        ck_assert_int_eq(http_do(&node, "POST", path, BYTES_CT, body, sizes[i], &r), 0);
        free(body);
        json_member(&r, "detail", detail, sizeof detail);
        printf("%s: save of %zu bytes: %ld in %.2f s: %s\n", what, sizes[i], r.status, now_s() - t0,
               detail);
        ck_assert_msg(r.status == 503, "a save of %zu bytes with a wrong %s answered %ld: %.300s",
                      sizes[i], bad_var, r.status, r.body);
        ck_assert_msg(is_problem(&r), "the 503 is not problem+json");
        /* a 5xx's detail is generic: the store's own words stay in the log */
        ck_assert_msg(strstr(detail, code) == NULL, "a 503's detail names the cause: %s", detail);
        http_resp_free(&r);
        snprintf(path, sizeof path, "/literature/%s", id);
        ck_assert_int_eq(http_do(&node, "GET", path, NULL, NULL, 0, &r), 0);
        ck_assert_msg(r.status == 404, "after a failed save GET %s answered %ld", path, r.status);
        http_resp_free(&r);
        snprintf(path, sizeof path, "/literature/%s/versions/1.0.0/content", id);
        ck_assert_int_eq(http_do(&node, "GET", path, NULL, NULL, 0, &r), 0);
        ck_assert_msg(r.status == 404, "after a failed save GET %s answered %ld", path, r.status);
        http_resp_free(&r);
    }
    int code_stop = server_stop(&node, 30);
    server_cleanup(&node);
    ck_assert_int_eq(code_stop, 0);

    /* refused from the first request: no object, no upload begun */
    listing objects, uploads;
    count_under(prefix, &objects, &uploads);
    printf("%s: under %s: %d objects, %d unfinished uploads\n", what, prefix, objects.n, uploads.n);
    ck_assert_msg(objects.n == 0, "%d objects left under %s, e.g. %s", objects.n, prefix,
                  objects.first);
    ck_assert_msg(uploads.n == 0, "%d uploads left under %s, e.g. %s", uploads.n, prefix,
                  uploads.first);

    /* the control: the same prefix with the right credentials takes the
     * same saves, and the listing above would have seen their objects */
    const char *const args2[] = {"--blobs", url, NULL};
    ck_assert_int_eq(server_start(&node, args2), 0);
    ck_assert_int_eq(http_do(&node, "GET", "/ready", NULL, NULL, 0, &r), 0);
    ck_assert_msg(r.status == 200, "/ready with the right credentials: %ld %.300s", r.status,
                  r.body);
    http_resp_free(&r);
    for (size_t i = 0; i < 2; i++) {
        char path[128];
        snprintf(path, sizeof path, "/literature/refused%zu/versions" LIT, i);
        unsigned char *body = make(sizes[i], 1000 + i);
        ck_assert_int_eq(http_do(&node, "POST", path, BYTES_CT, body, sizes[i], &r), 0);
        free(body);
        ck_assert_msg(r.status == 201, "the control save answered %ld: %.300s", r.status, r.body);
        http_resp_free(&r);
    }
    ck_assert_int_eq(server_stop(&node, 30), 0);
    count_under(prefix, &objects, &uploads);
    ck_assert_msg(objects.n > 0, "the control saves left no object under %s", prefix);

    /* and back with the bad credentials on that data: a content read from
     * the blob store (5 MiB: it streams, no cache holds it) is 503 too,
     * while records, in the store, still read */
    ck_assert_int_eq(setenv(bad_var, bad_value, 1), 0);
    started = server_restart(&node, args);
    ck_assert_int_eq(setenv("AWS_ACCESS_KEY_ID", RIGHT_KEY, 1), 0);
    ck_assert_int_eq(setenv("AWS_SECRET_ACCESS_KEY", RIGHT_SECRET, 1), 0);
    ck_assert_int_eq(started, 0);
    ck_assert_int_eq(
        http_do(&node, "GET", "/literature/refused1/versions/1.0.0/content", NULL, NULL, 0, &r), 0);
    json_member(&r, "detail", detail, sizeof detail);
    printf("%s: read of 5 MiB content: %ld: %s\n", what, r.status, detail);
    ck_assert_msg(r.status == 503 && is_problem(&r),
                  "a content read with a wrong %s answered %ld: %.300s", bad_var, r.status, r.body);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&node, "GET", "/literature/refused1", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    code_stop = server_stop(&node, 30);
    server_cleanup(&node);
    ck_assert_int_eq(code_stop, 0);
    empty_prefix(prefix);
}

START_TEST(a_wrong_secret_is_named_and_saves_fail_cleanly)
{
    load_s3_env();
    char wrong[sizeof RIGHT_SECRET];
    snprintf(wrong, sizeof wrong, "%s", RIGHT_SECRET);
    size_t n = strlen(wrong);
    ck_assert_uint_gt(n, 0);
    wrong[n - 1] = wrong[n - 1] == 'x' ? 'y' : 'x';
    refused("wrong-secret", "AWS_SECRET_ACCESS_KEY", wrong, "SignatureDoesNotMatch");
    /* AWS says InvalidAccessKeyId (403); versitygw v1.8.0 XAdminUserNotFound (404) */
    refused("wrong-key-id", "AWS_ACCESS_KEY_ID", "STRATAWRONGKEY00",
            getenv("STRATA_S3_UNKNOWN_KEY_CODE") ? getenv("STRATA_S3_UNKNOWN_KEY_CODE")
                                                 : "XAdminUserNotFound");
}
END_TEST

/* ---- the_s3_server_stopped_for_10s_under_mixed_load -------------------------------- */

static test_server S;

typedef enum { EV_SAVE, EV_CACHED, EV_RECORD, EV_STREAMED } ev_kind;

/* One request of the load, judged once the run is over. */
typedef struct event {
    double t0, t1;
    long status; /* -1: no answer (transport error, timeout) */
    bool problem;
    bool bad_bytes;
    unsigned char kind;
} event;

/* An acknowledged save: what to read back. */
typedef struct acked {
    char location[160];
    uint64_t seed;
    size_t len;
} acked;

typedef struct worker {
    int id;
    unsigned rng;
    event *ev;
    int n_ev;
    acked *ack;
    int n_ack;
    int failed_per_id[IDS_PER_SAVER]; /* saves not acknowledged */
    int acked_per_id[IDS_PER_SAVER];
    char last_location[IDS_PER_SAVER][160];
} worker;

static atomic_bool stop_load;
static unsigned char *cached_data[CACHED_N];
static size_t cached_len[CACHED_N];
static unsigned char *streamed_data[STREAMED_N];

static event *note(worker *w, ev_kind kind, double t0, const http_resp *r, int rc)
{
    if (w->n_ev == EVENTS_MAX)
        return NULL;
    event *e = &w->ev[w->n_ev++];
    e->kind = (unsigned char)kind;
    e->t0 = t0;
    e->t1 = now_s();
    e->status = rc == 0 ? r->status : -1;
    e->problem = rc == 0 && is_problem(r);
    e->bad_bytes = false;
    return e;
}

static void one_save(worker *w, http_client *c, long n)
{
    int slot = (int)(n % IDS_PER_SAVER);
    /* saver 0 sends a streamed 6 MiB body every 5th save: it goes up as a
     * multipart upload (part 1 and one more) */
    bool large = w->id == 0 && n % 5 == 4;
    size_t len = large ? LARGE : 80 * KIB + (size_t)(rand_r(&w->rng) % (160 * KIB));
    uint64_t seed = ((uint64_t)(w->id + 1) << 40) | (uint64_t)n;
    unsigned char *body = make(len, seed);
    char path[160];
    snprintf(path, sizeof path, "/literature/s%d-%d/versions" LIT, w->id, slot);
    http_resp r;
    double t0 = now_s();
    int rc = http_client_do(c, &S, "POST", path, BYTES_CT, body, len, &r);
    free(body);
    note(w, EV_SAVE, t0, &r, rc);
    if (rc == 0 && (r.status == 201 || r.status == 200)) {
        char loc[160] = "";
        if (http_header(&r, "Location", loc, sizeof loc) == 0 && w->n_ack < EVENTS_MAX) {
            acked *a = &w->ack[w->n_ack++];
            snprintf(a->location, sizeof a->location, "%s", loc);
            a->seed = seed;
            a->len = len;
            snprintf(w->last_location[slot], sizeof w->last_location[slot], "%s", loc);
            w->acked_per_id[slot]++;
        } else if (w->n_ev > 0) {
            w->ev[w->n_ev - 1].bad_bytes = true; /* an acknowledgement without Location */
        }
    } else {
        w->failed_per_id[slot]++;
        if (rc == 0 && r.status != 503)
            fprintf(stderr, "save %s of %zu bytes answered %ld: %.300s\n", path, len, r.status,
                    r.body);
    }
    if (rc == 0)
        http_resp_free(&r);
}

static void *saver_main(void *arg)
{
    worker *w = arg;
    http_client *c = http_client_new();
    for (long n = 0; !atomic_load(&stop_load); n++)
        one_save(w, c, n);
    http_client_free(c);
    return NULL;
}

/* Reads content held by the cache (read once before the load). */
static void *cached_reader_main(void *arg)
{
    worker *w = arg;
    http_client *c = http_client_new();
    while (!atomic_load(&stop_load)) {
        int i = rand_r(&w->rng) % CACHED_N;
        char path[128];
        snprintf(path, sizeof path, "/literature/c%d/versions/latest/content", i);
        http_resp r;
        double t0 = now_s();
        int rc = http_client_do(c, &S, "GET", path, NULL, NULL, 0, &r);
        event *e = note(w, EV_CACHED, t0, &r, rc);
        if (rc == 0) {
            if (e && r.status == 200 &&
                (r.body_len != cached_len[i] || memcmp(r.body, cached_data[i], r.body_len)))
                e->bad_bytes = true;
            if (r.status != 200)
                fprintf(stderr, "cached read %s answered %ld: %.300s\n", path, r.status, r.body);
            http_resp_free(&r);
        }
        usleep(5000);
    }
    http_client_free(c);
    return NULL;
}

/* Reads records, and now and then a large content that streams from S3. */
static void *record_reader_main(void *arg)
{
    worker *w = arg;
    http_client *c = http_client_new();
    for (long n = 0; !atomic_load(&stop_load); n++) {
        char path[128];
        bool streamed = n % 10 == 9;
        int i = rand_r(&w->rng) % (streamed ? STREAMED_N : CACHED_N);
        if (streamed)
            snprintf(path, sizeof path, "/literature/big%d/versions/1.0.0/content", i);
        else
            snprintf(path, sizeof path, "/literature/c%d", i);
        http_resp r;
        double t0 = now_s();
        int rc = http_client_do(c, &S, "GET", path, NULL, NULL, 0, &r);
        event *e = note(w, streamed ? EV_STREAMED : EV_RECORD, t0, &r, rc);
        if (rc == 0) {
            if (e && streamed && r.status == 200 &&
                (r.body_len != LARGE || memcmp(r.body, streamed_data[i], LARGE)))
                e->bad_bytes = true;
            if (!streamed && r.status != 200)
                fprintf(stderr, "record read %s answered %ld: %.300s\n", path, r.status, r.body);
            http_resp_free(&r);
        }
        usleep(10000);
    }
    http_client_free(c);
    return NULL;
}

static void preload(void)
{
    http_resp r;
    char path[160];
    for (int i = 0; i < CACHED_N; i++) {
        cached_len[i] = 70 * KIB + (size_t)i * 23 * KIB;
        cached_data[i] = make(cached_len[i], 500 + (uint64_t)i);
        snprintf(path, sizeof path, "/literature/c%d/versions" LIT, i);
        ck_assert_int_eq(http_do(&S, "POST", path, BYTES_CT, cached_data[i], cached_len[i], &r), 0);
        ck_assert_msg(r.status == 201, "preload %s: %ld %.300s", path, r.status, r.body);
        http_resp_free(&r);
        /* read once: from now on a cache tier holds it */
        snprintf(path, sizeof path, "/literature/c%d/versions/latest/content", i);
        ck_assert_int_eq(http_do(&S, "GET", path, NULL, NULL, 0, &r), 0);
        ck_assert_int_eq(r.status, 200);
        ck_assert(r.body_len == cached_len[i] && !memcmp(r.body, cached_data[i], r.body_len));
        http_resp_free(&r);
    }
    for (int i = 0; i < STREAMED_N; i++) {
        streamed_data[i] = make(LARGE, 900 + (uint64_t)i);
        snprintf(path, sizeof path, "/literature/big%d/versions" LIT, i);
        ck_assert_int_eq(http_do(&S, "POST", path, BYTES_CT, streamed_data[i], LARGE, &r), 0);
        ck_assert_msg(r.status == 201, "preload %s: %ld %.300s", path, r.status, r.body);
        http_resp_free(&r);
    }
}

static const char *kind_name(int k)
{
    return k == EV_SAVE     ? "save"
           : k == EV_CACHED ? "cached read"
           : k == EV_RECORD ? "record read"
                            : "streamed read";
}

/* Reads back every acknowledged save and counts what is missing. */
static long verify_acked(worker *ws, int n_savers, long *checked)
{
    long lost = 0;
    *checked = 0;
    http_client *c = http_client_new();
    for (int i = 0; i < n_savers; i++) {
        for (int k = 0; k < ws[i].n_ack; k++) {
            const acked *a = &ws[i].ack[k];
            char path[200];
            snprintf(path, sizeof path, "%s/content", a->location);
            http_resp r;
            int rc = http_client_do(c, &S, "GET", path, NULL, NULL, 0, &r);
            (*checked)++;
            bool ok = false;
            if (rc == 0 && r.status == 200 && r.body_len == a->len) {
                unsigned char *want = make(a->len, a->seed);
                ok = memcmp(r.body, want, a->len) == 0;
                free(want);
            }
            if (!ok && lost++ < 10)
                fprintf(stderr, "LOST acknowledged save %s (%zu bytes): %ld, %zu bytes\n", path,
                        a->len, rc == 0 ? r.status : -1L, rc == 0 ? r.body_len : 0);
            if (rc == 0)
                http_resp_free(&r);
        }
    }
    http_client_free(c);
    return lost;
}

/* Versions a save made though it was not acknowledged: a resource holds
 * more versions than saves acknowledged on it, or its latest is not the
 * last one acknowledged. */
static long unacked_versions(worker *ws, int n_savers)
{
    long extra = 0;
    for (int i = 0; i < n_savers; i++) {
        for (int s = 0; s < IDS_PER_SAVER; s++) {
            char path[160];
            snprintf(path, sizeof path, "/literature/s%d-%d/versions?limit=1000", i, s);
            http_resp r;
            ck_assert_int_eq(http_do(&S, "GET", path, NULL, NULL, 0, &r), 0);
            long n = 0;
            if (r.status == 200) {
                json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
                n = (long)json_array_size(json_object_get(j, "items"));
                json_decref(j);
            } else {
                ck_assert_msg(r.status == 404 && ws[i].acked_per_id[s] == 0, "GET %s answered %ld",
                              path, r.status);
            }
            http_resp_free(&r);
            if (n != ws[i].acked_per_id[s]) {
                fprintf(stderr, "%s: %ld versions for %d acknowledged saves (%d failed)\n", path, n,
                        ws[i].acked_per_id[s], ws[i].failed_per_id[s]);
                extra += n > ws[i].acked_per_id[s] ? n - ws[i].acked_per_id[s] : 0;
            }
        }
    }
    return extra;
}

START_TEST(the_s3_server_stopped_for_10s_under_mixed_load)
{
    load_s3_env();
    int port = s3_port();
    char prefix[128], url[256];
    blobs_url("outage", prefix, sizeof prefix, url, sizeof url);
    const char *const args[] = {"--blobs", url, "--threads", "8", NULL};
    ck_assert_int_eq(server_start(&S, args), 0);
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/ready", NULL, NULL, 0, &r), 0);
    ck_assert_msg(r.status == 200, "/ready: %ld %.300s", r.status, r.body);
    http_resp_free(&r);
    preload();

    const char *secs = getenv("STRATA_S3_FAULT_SECONDS");
    double seconds = secs && *secs ? atof(secs) : 30.0;
    if (seconds < OUTAGE_S + RECOVER_S + 4)
        seconds = OUTAGE_S + RECOVER_S + 4;
    enum { NW = SAVERS + CACHED_READERS + 1 };
    worker ws[NW];
    pthread_t th[NW];
    memset(ws, 0, sizeof ws);
    atomic_store(&stop_load, false);
    double t_start = now_s();
    for (int i = 0; i < NW; i++) {
        ws[i].id = i;
        ws[i].rng = (unsigned)(i * 7919 + 17);
        ws[i].ev = calloc(EVENTS_MAX, sizeof *ws[i].ev);
        ws[i].ack = i < SAVERS ? calloc(EVENTS_MAX, sizeof *ws[i].ack) : NULL;
        ck_assert_ptr_nonnull(ws[i].ev);
        void *(*fn)(void *) = i < SAVERS                    ? saver_main
                              : i < SAVERS + CACHED_READERS ? cached_reader_main
                                                            : record_reader_main;
        ck_assert_int_eq(pthread_create(&th[i], NULL, fn, &ws[i]), 0);
    }

    /* a quarter in: the S3 server crashes, and comes back 10 s later */
    while (now_s() < t_start + seconds / 4)
        usleep(50 * 1000);
    double t_down = now_s();
    int killed = s3_server("kill", 0);
    printf("versitygw killed at %.1f s\n", now_s() - t_start);
    usleep(OUTAGE_S * 1000 * 1000);
    int started = s3_server("start", port);
    double t_back = now_s();
    printf("versitygw started again on port %d at %.1f s\n", port, t_back - t_start);
    while (now_s() < t_start + seconds)
        usleep(50 * 1000);
    atomic_store(&stop_load, true);
    for (int i = 0; i < NW; i++)
        pthread_join(th[i], NULL);
    ck_assert_msg(killed == 0 && started == 0, "scripts/s3-test-server kill/start failed (%d, %d)",
                  killed, started);

    /* recovered: the first save that began after the restart and succeeded */
    double t_ok = 0;
    for (int i = 0; i < SAVERS; i++)
        for (int k = 0; k < ws[i].n_ev; k++) {
            const event *e = &ws[i].ev[k];
            if (e->t0 >= t_back && (e->status == 201 || e->status == 200) &&
                (t_ok == 0 || e->t1 < t_ok))
                t_ok = e->t1;
        }

    long saves[3] = {0}, acked_n[3] = {0}, failed_503[3] = {0}, bad = 0, reads[4] = {0},
         reads_503[4] = {0};
    double slowest = 0, slowest_503 = 0;
    for (int i = 0; i < NW; i++) {
        for (int k = 0; k < ws[i].n_ev; k++) {
            const event *e = &ws[i].ev[k];
            double took = e->t1 - e->t0;
            if (took > slowest)
                slowest = took;
            /* 0 before the crash, 1 from the crash until saves work again, 2 after */
            int when = e->t1 < t_down ? 0 : (t_ok > 0 && e->t0 > t_ok) ? 2 : 1;
            bool ok = e->status == 200 || e->status == 201;
            bool clean_503 = e->status == 503 && e->problem;
            const char *why = NULL;
            if (e->bad_bytes)
                why = "wrong bytes";
            else if (took > SLOW_S)
                why = "took too long";
            else if (e->kind == EV_SAVE) {
                saves[when]++;
                if (ok)
                    acked_n[when]++;
                else if (clean_503 && when == 1)
                    failed_503[when]++;
                else
                    why = clean_503 ? "503 while the S3 server was up" : "not 2xx or clean 503";
                if (clean_503 && took > slowest_503)
                    slowest_503 = took;
            } else if (e->kind == EV_STREAMED) {
                /* in the outage a stream is refused (503) or, begun before
                 * the crash, ends short: no answer */
                reads[e->kind]++;
                if ((clean_503 || e->status == -1) && when == 1)
                    reads_503[e->kind]++;
                else if (!ok)
                    why = "streamed read failed while the S3 server was up, or not cleanly";
            } else {
                reads[e->kind]++;
                if (!ok)
                    why = "read failed";
            }
            if (why != NULL && bad++ < 20)
                fprintf(stderr, "BAD %s at %.2f-%.2f s: %ld%s: %s\n", kind_name(e->kind),
                        e->t0 - t_start, e->t1 - t_start, e->status,
                        e->problem ? " problem+json" : "", why);
        }
    }
    long checked = 0, lost = verify_acked(ws, SAVERS, &checked);
    long extra = unacked_versions(ws, SAVERS);
    printf("%.0f s, versitygw down %.1f-%.1f s (killed, restarted on port %d), saves work again "
           "%.1f s after the restart\n",
           seconds, t_down - t_start, t_back - t_start, port, t_ok > 0 ? t_ok - t_back : -1.0);
    printf("saves: before %ld/%ld acked; outage %ld acked, %ld failed 503 problem+json of %ld "
           "(slowest 503 %.2f s); after %ld/%ld acked\n",
           acked_n[0], saves[0], acked_n[1], failed_503[1], saves[1], slowest_503, acked_n[2],
           saves[2]);
    printf("reads: %ld cached (all must succeed), %ld records, %ld streamed from S3 (%ld 503 or "
           "cut in the outage); slowest request %.2f s; %ld bad\n",
           reads[EV_CACHED], reads[EV_RECORD], reads[EV_STREAMED], reads_503[EV_STREAMED], slowest,
           bad);
    printf("afterwards: %ld acknowledged saves read back, %ld lost; %ld versions made by saves "
           "not acknowledged\n",
           checked, lost, extra);

    ck_assert_msg(t_ok > 0 && t_ok - t_back <= RECOVER_S,
                  "saves did not work again within %d s of the restart", RECOVER_S);
    ck_assert_int_eq(bad, 0);
    ck_assert_int_eq(lost, 0);
    ck_assert_int_eq(extra, 0);
    /* the load ran in each phase: the outage was seen, not slept through */
    ck_assert_int_gt(acked_n[0], 0);
    ck_assert_int_gt(failed_503[1], 0);
    ck_assert_int_gt(acked_n[2], 0);
    ck_assert_int_gt(reads[EV_CACHED], 0);

    int code = server_stop(&S, 30);
    server_cleanup(&S);
    ck_assert_int_eq(code, 0);
    empty_prefix(prefix);
    for (int i = 0; i < NW; i++) {
        free(ws[i].ev);
        free(ws[i].ack);
    }
    for (int i = 0; i < CACHED_N; i++)
        free(cached_data[i]);
    for (int i = 0; i < STREAMED_N; i++)
        free(streamed_data[i]);
}
END_TEST

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    Suite *s = suite_create("s3_faults");
    /* two cases, so that CK_RUN_CASE=credentials or =outage runs one */
    TCase *tc = tcase_create("credentials");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, a_wrong_secret_is_named_and_saves_fail_cleanly);
    suite_add_tcase(s, tc);
    tc = tcase_create("outage");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, the_s3_server_stopped_for_10s_under_mixed_load);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
