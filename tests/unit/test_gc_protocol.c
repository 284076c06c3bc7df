/* The blob collector and saves, interleaved on purpose, under the store's
 * protocol (src/service/gc.h): a save claims its blob key in the store
 * before it relies on the blob; the collector dooms a key only when no
 * version references it and no claim stands; a doomed key refuses claims
 * until the collector ends it; collection runs under the maintenance
 * lease, and keys doomed under an older lease token are finished by the
 * next run. Real SQLite store, real blob files, the real service; the
 * blob store is wrapped so that a test can hold a save or the collector
 * at one blob operation (or make one fail), nothing else. */
#include <check.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/common/clock.h"
#include "../../src/common/node_id.h"
#include "../../src/service/gc.h"
#include "../../src/service/versions.h"
#include "../support/harness.h"

/* ---- a blob store that can hold or fail one operation -------------------------------- */

enum gate_op { G_TOUCH, G_REMOVE, G_COUNT };

typedef struct gated_blobs {
    blob_store base;
    blob_store *real;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool armed[G_COUNT];   /* hold the next call */
    bool arrived[G_COUNT]; /* a call is being held */
    bool open[G_COUNT];    /* let it go */
    int fail[G_COUNT];     /* fail this many calls with SERR_IO */
} gated_blobs;

static gated_blobs *gate_of(blob_store *b)
{
    return (gated_blobs *)b;
}

/* Holds the caller while op is armed; -1 when the call is to fail. */
static int pass_gate(gated_blobs *g, enum gate_op op, strata_error *err)
{
    pthread_mutex_lock(&g->mu);
    if (g->fail[op] > 0) {
        g->fail[op]--;
        pthread_mutex_unlock(&g->mu);
        return serr_set(err, SERR_IO, "blob store failure (injected)");
    }
    if (g->armed[op]) {
        g->armed[op] = false;
        g->arrived[op] = true;
        pthread_cond_broadcast(&g->cv);
        while (!g->open[op])
            pthread_cond_wait(&g->cv, &g->mu);
        g->open[op] = false;
        g->arrived[op] = false;
    }
    pthread_mutex_unlock(&g->mu);
    return 0;
}

static int g_put(blob_store *b, const char *key, const void *blob, size_t len, strata_error *err)
{
    blob_store *r = gate_of(b)->real;
    return r->ops->put(r, key, blob, len, err);
}

static int g_replace(blob_store *b, const char *key, const void *blob, size_t len,
                     strata_error *err)
{
    blob_store *r = gate_of(b)->real;
    return r->ops->replace(r, key, blob, len, err);
}

static int g_get(blob_store *b, const char *key, size_t max_len, strata_buf *out, strata_error *err)
{
    blob_store *r = gate_of(b)->real;
    return r->ops->get(r, key, max_len, out, err);
}

static int g_exists(blob_store *b, const char *key, bool *out, strata_error *err)
{
    blob_store *r = gate_of(b)->real;
    return r->ops->exists(r, key, out, err);
}

static int g_head(blob_store *b, const char *key, blob_header *h, strata_error *err)
{
    blob_store *r = gate_of(b)->real;
    return r->ops->head(r, key, h, err);
}

static int g_remove(blob_store *b, const char *key, strata_error *err)
{
    if (pass_gate(gate_of(b), G_REMOVE, err) != 0)
        return -1;
    blob_store *r = gate_of(b)->real;
    return r->ops->remove(r, key, err);
}

static int g_touch(blob_store *b, const char *key, strata_error *err)
{
    if (pass_gate(gate_of(b), G_TOUCH, err) != 0)
        return -1;
    blob_store *r = gate_of(b)->real;
    return r->ops->touch(r, key, err);
}

static int g_stat(blob_store *b, const char *key, uint64_t *size, int64_t *mtime_ms,
                  strata_error *err)
{
    blob_store *r = gate_of(b)->real;
    return r->ops->stat(r, key, size, mtime_ms, err);
}

static int g_list(blob_store *b, blob_list_fn fn, void *ctx, strata_error *err)
{
    blob_store *r = gate_of(b)->real;
    return r->ops->list(r, fn, ctx, err);
}

static void g_close(blob_store *b)
{
    gated_blobs *g = gate_of(b);
    blobs_close(g->real);
    pthread_mutex_destroy(&g->mu);
    pthread_cond_destroy(&g->cv);
    free(g);
}

static const blob_store_ops GATED_OPS = {
    .name = "gated",
    .put = g_put,
    .replace = g_replace,
    .get = g_get,
    .exists = g_exists,
    .head = g_head,
    .remove = g_remove,
    .touch = g_touch,
    .stat = g_stat,
    .list = g_list,
    .close = g_close,
};

static gated_blobs *gated_open(const char *url)
{
    strata_error err;
    gated_blobs *g = calloc(1, sizeof *g);
    ck_assert_ptr_nonnull(g);
    g->real = blobs_open(url, &err);
    ck_assert_msg(g->real != NULL, "%s", err.detail);
    g->base.ops = &GATED_OPS;
    pthread_mutex_init(&g->mu, NULL);
    pthread_cond_init(&g->cv, NULL);
    return g;
}

static void gate_arm(gated_blobs *g, enum gate_op op)
{
    pthread_mutex_lock(&g->mu);
    g->armed[op] = true;
    pthread_mutex_unlock(&g->mu);
}

/* Waits (up to 10 s) until a call is held at op. */
static bool gate_wait_arrival(gated_blobs *g, enum gate_op op)
{
    struct timespec dl = clock_deadline_ms(10000);
    pthread_mutex_lock(&g->mu);
    int rc = 0;
    while (!g->arrived[op] && rc == 0)
        rc = pthread_cond_timedwait(&g->cv, &g->mu, &dl);
    bool arrived = g->arrived[op];
    pthread_mutex_unlock(&g->mu);
    return arrived;
}

static void gate_release(gated_blobs *g, enum gate_op op)
{
    pthread_mutex_lock(&g->mu);
    g->open[op] = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* ---- one node: store, gated blobs, versions service --------------------------------- */

static char dir[] = "/tmp/strata-gc-XXXXXX";
static store *st;
static gated_blobs *gate;
static versions_svc *vs;

static const versions_config CFG = {
    .inline_threshold = 0, .max_content = 1 << 20, .access_flush_ms = 1000};

static void open_node(store **s, gated_blobs **g, versions_svc **v)
{
    char url[300];
    strata_error err;
    snprintf(url, sizeof url, "sqlite:%s/strata.db", dir);
    *s = store_open(url, &err);
    ck_assert_msg(*s != NULL, "%s", err.detail);
    snprintf(url, sizeof url, "file:%s/blobs", dir);
    *g = gated_open(url);
    *v = versions_new(*s, &(*g)->base, NULL, &CFG, &err);
    ck_assert_msg(*v != NULL, "%s", err.detail);
}

static void close_node(store *s, gated_blobs *g, versions_svc *v)
{
    versions_free(v);
    blobs_close(&g->base);
    store_close(s);
}

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/strata-gc-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void setup(void)
{
    make_dir();
    open_node(&st, &gate, &vs);
}

static void teardown(void)
{
    close_node(st, gate, vs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static uint64_t V(const char *s)
{
    uint64_t k = 0;
    ck_assert_int_eq(semver_parse(s, &k), 0);
    return k;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* The blob key of a save of JSON string content (its canonical form). */
static void key_of(const char *content, char key[SHA256_HEX_LEN + 1])
{
    char canon[256];
    snprintf(canon, sizeof canon, "\"%s\"", content);
    unsigned char d[SHA256_LEN];
    ck_assert_int_eq(sha256_oneshot(canon, strlen(canon), d, NULL), 0);
    sha256_to_hex(d, key);
}

static int save_on(versions_svc *v, const char *content, store_version *out, bool *created,
                   strata_error *err)
{
    json_t *env = json_pack("{s:s, s:s, s:s}", "content", content, "word", "w", "provider", "p");
    save_request rq = {.type = "dictionary", .id = "w", .envelope = env};
    int rc = versions_save(v, &rq, out, created, err);
    json_decref(env);
    return rc;
}

static void save_ok(const char *content)
{
    store_version v;
    bool created;
    strata_error err;
    ck_assert_msg(save_on(vs, content, &v, &created, &err) == 0, "%s", err.detail);
    store_version_clear(&v);
}

static void delete_version(const char *version)
{
    strata_error err;
    ck_assert_msg(versions_delete(vs, "dictionary", "w", version, NULL, "request", &err) == 0, "%s",
                  err.detail);
}

/* The content of a version read back through the service, verified. */
static void expect_content(const store_version *v, const char *content)
{
    content_out c;
    strata_error err;
    char want[256];
    snprintf(want, sizeof want, "\"%s\"", content);
    ck_assert_msg(versions_content(vs, v, 0, &c, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(c.len, strlen(want));
    ck_assert_int_eq(memcmp(c.data, want, c.len), 0);
    content_out_free(&c);
}

/* The blob of key is on disk, whole. */
static void expect_blob_whole(const char *key)
{
    strata_buf out;
    sbuf_init(&out, 0);
    blob_header h;
    strata_error err;
    ck_assert_msg(blobs_get_verified(gate->real, key, 1 << 22, &out, &h, &err) == 0, "blob %s: %s",
                  key, err.detail);
    sbuf_free(&out);
}

static bool blob_on_disk(const char *key)
{
    bool e = false;
    strata_error err;
    ck_assert_int_eq(gate->real->ops->exists(gate->real, key, &e, &err), 0);
    return e;
}

typedef struct doomed_walk {
    const char *key;
    int seen;
    uint64_t token;
} doomed_walk;

static int note_doomed(void *ctx, const char *key, uint64_t token)
{
    doomed_walk *w = ctx;
    if (strcmp(key, w->key) == 0) {
        w->seen++;
        w->token = token;
    }
    return 0;
}

static bool is_doomed(const char *key, uint64_t *token)
{
    doomed_walk w = {.key = key};
    strata_error err;
    ck_assert_int_eq(st->ops->blob_collecting(st, note_doomed, &w, &err), 0);
    if (token)
        *token = w.token;
    return w.seen > 0;
}

static json_int_t report_int(json_t *report, const char *field)
{
    json_t *v = json_object_get(report, field);
    ck_assert_msg(json_is_integer(v), "report has no %s", field);
    return json_integer_value(v);
}

/* A save run on its own thread; done tells whether it returned yet. */
typedef struct bg_save {
    const char *content;
    pthread_t th;
    int rc;
    bool created;
    int done;
    store_version v;
    strata_error err;
} bg_save;

static void *run_save(void *arg)
{
    bg_save *s = arg;
    s->rc = save_on(vs, s->content, &s->v, &s->created, &s->err);
    __atomic_store_n(&s->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void bg_start(bg_save *s, const char *content)
{
    memset(s, 0, sizeof *s);
    s->content = content;
    ck_assert_int_eq(pthread_create(&s->th, NULL, run_save, s), 0);
}

static bool bg_done(bg_save *s)
{
    return __atomic_load_n(&s->done, __ATOMIC_ACQUIRE) != 0;
}

typedef struct bg_gc {
    pthread_t th;
    int rc;
    json_t *report;
    strata_error err;
} bg_gc;

static void *run_gc(void *arg)
{
    bg_gc *g = arg;
    g->rc = gc_run(vs, 0, false, &g->report, &g->err);
    return NULL;
}

/* ---- (a) a claim of an in-flight save ------------------------------------------------ */

START_TEST(a_blob_claimed_by_an_in_flight_save_survives_collection)
{
    char key[SHA256_HEX_LEN + 1];
    key_of("alpha", key);
    save_ok("alpha");
    save_ok("beta");
    delete_version("1.0.0"); /* alpha's blob loses its only reference */
    /* a save of alpha claims the key, finds the blob and is held before it
     * touches it: claim taken, version not yet put */
    gate_arm(gate, G_TOUCH);
    bg_save s;
    bg_start(&s, "alpha");
    ck_assert(gate_wait_arrival(gate, G_TOUCH));
    sleep_ms(20); /* the blob is older than the cutoff of a grace of 0 */
    json_t *report = NULL;
    strata_error err;
    ck_assert_msg(gc_run(vs, 0, false, &report, &err) == 0, "%s", err.detail);
    /* the collector saw an unreferenced blob, and the store kept it */
    ck_assert_int_eq(report_int(report, "blobs_referenced"), 1);
    ck_assert_int_eq(report_int(report, "blobs_kept_on_recheck"), 1);
    ck_assert_int_eq(report_int(report, "blobs_removed"), 0);
    json_decref(report);
    ck_assert(blob_on_disk(key));
    ck_assert(!is_doomed(key, NULL));
    gate_release(gate, G_TOUCH);
    pthread_join(s.th, NULL);
    ck_assert_msg(s.rc == 0, "%s", s.err.detail);
    ck_assert(s.created);
    ck_assert_str_eq(s.v.blob_key, key);
    expect_content(&s.v, "alpha");
    expect_blob_whole(key);
    store_version_clear(&s.v);
    /* referenced now: collection keeps it without a re-check */
    ck_assert_int_eq(gc_run(vs, 0, false, &report, &err), 0);
    ck_assert_int_eq(report_int(report, "blobs_removed"), 0);
    ck_assert_int_eq(report_int(report, "blobs_kept_on_recheck"), 0);
    json_decref(report);
    /* and once nothing references it, it goes */
    delete_version("1.0.2");
    ck_assert_int_eq(gc_run(vs, 0, false, &report, &err), 0);
    ck_assert_int_eq(report_int(report, "blobs_removed"), 1);
    json_decref(report);
    ck_assert(!blob_on_disk(key));
}
END_TEST

/* ---- (b) a save meets a key being collected ------------------------------------------ */

START_TEST(a_save_waits_for_a_doomed_key_and_then_succeeds)
{
    char key[SHA256_HEX_LEN + 1];
    key_of("beta", key);
    save_ok("beta");
    save_ok("gamma");
    delete_version("1.0.0");
    /* the collector dooms beta's key and is held before it removes the blob */
    gate_arm(gate, G_REMOVE);
    bg_gc g = {0};
    ck_assert_int_eq(pthread_create(&g.th, NULL, run_gc, &g), 0);
    ck_assert(gate_wait_arrival(gate, G_REMOVE));
    ck_assert(is_doomed(key, NULL));
    ck_assert(blob_on_disk(key));
    /* a save of the same content cannot claim it: it waits */
    bg_save s;
    bg_start(&s, "beta");
    sleep_ms(400);
    ck_assert_msg(!bg_done(&s), "the save did not wait for the collector (rc %d: %s)", s.rc,
                  s.err.detail);
    /* the collector removes the blob and ends; the save claims the key,
     * writes the blob again and commits */
    gate_release(gate, G_REMOVE);
    pthread_join(g.th, NULL);
    ck_assert_msg(g.rc == 0, "%s", g.err.detail);
    ck_assert_int_eq(report_int(g.report, "blobs_removed"), 1);
    json_decref(g.report);
    pthread_join(s.th, NULL);
    ck_assert_msg(s.rc == 0, "%s", s.err.detail);
    ck_assert(s.created);
    ck_assert_uint_eq(s.v.vkey, V("1.0.2"));
    ck_assert(!is_doomed(key, NULL));
    expect_blob_whole(key);
    expect_content(&s.v, "beta");
    /* read afresh from the store too */
    store_version r;
    strata_error err;
    ck_assert_int_eq(versions_get(vs, "dictionary", "w", "latest", &r, &err), 0);
    ck_assert_str_eq(r.blob_key, key);
    expect_content(&r, "beta");
    store_version_clear(&r);
    store_version_clear(&s.v);
}
END_TEST

/* ---- (c) a collector that died with a key doomed ----------------------------------- */

START_TEST(a_key_left_doomed_by_a_dead_collector_is_finished_by_the_next_run)
{
    char key[SHA256_HEX_LEN + 1];
    key_of("delta", key);
    save_ok("delta");
    save_ok("epsilon");
    delete_version("1.0.0");
    /* another node took the maintenance lease, doomed delta's key, removed
     * the blob, and died before it ended the key */
    strata_error err;
    bool held = false, doomed = false;
    uint64_t dead_token = 0;
    /* 3 s: long enough that the checks below run inside it on a loaded
     * machine under ThreadSanitizer (300 ms was not) */
    ck_assert_int_eq(st->ops->lease_acquire(st, MAINTENANCE_LEASE, "dead-node:1:0", 3000, &held,
                                            &dead_token, NULL, &err),
                     0);
    ck_assert(held);
    ck_assert_int_eq(st->ops->blob_collect_begin(
                         st, key, dead_token, clock_wall_ms() - BLOB_CLAIM_TTL_MS, &doomed, &err),
                     0);
    ck_assert(doomed);
    ck_assert_int_eq(gate->real->ops->remove(gate->real, key, &err), 0);
    /* a save of that content waits */
    bg_save s;
    bg_start(&s, "delta");
    /* while the dead node's lease lasts, no collector runs */
    json_t *report = NULL;
    ck_assert_int_eq(gc_run(vs, 0, false, &report, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    sleep_ms(3200); /* the lease lapses */
    ck_assert_msg(!bg_done(&s), "the save did not wait (rc %d: %s)", s.rc, s.err.detail);
    uint64_t token = 0;
    ck_assert(is_doomed(key, &token));
    ck_assert_uint_eq(token, dead_token);
    /* the next run, under a newer token, finishes the key */
    ck_assert_msg(gc_run(vs, 0, false, &report, &err) == 0, "%s", err.detail);
    ck_assert_int_eq(report_int(report, "interrupted_collections_finished"), 1);
    json_decref(report);
    bool mine = false;
    uint64_t my_token = 0;
    ck_assert_int_eq(gc_lease(vs, &mine, &my_token, &err), 0);
    ck_assert(mine);
    ck_assert_uint_gt(my_token, dead_token);
    /* and the waiting save goes through, with its blob written again */
    pthread_join(s.th, NULL);
    ck_assert_msg(s.rc == 0, "%s", s.err.detail);
    ck_assert(s.created);
    ck_assert(!is_doomed(key, NULL));
    expect_blob_whole(key);
    expect_content(&s.v, "delta");
    store_version_clear(&s.v);
}
END_TEST

/* A run that fails half-way (the blob store refuses a removal) leaves the
 * key it doomed; the next run of the same node, under the same lease
 * token, must finish it, or saves of that content are refused for as long
 * as this node keeps the lease. */
START_TEST(a_key_left_doomed_by_a_failed_run_is_finished_by_the_next_run)
{
    char key[SHA256_HEX_LEN + 1];
    key_of("zeta", key);
    save_ok("zeta");
    save_ok("eta");
    delete_version("1.0.0");
    gate->fail[G_REMOVE] = 1;
    json_t *report = NULL;
    strata_error err;
    ck_assert_int_eq(gc_run(vs, 0, false, &report, &err), -1);
    ck_assert_int_eq(err.kind, SERR_IO);
    ck_assert(blob_on_disk(key));
    ck_assert_msg(gc_run(vs, 0, false, &report, &err) == 0, "%s", err.detail);
    json_decref(report);
    uint64_t token = 0;
    ck_assert_msg(!is_doomed(key, &token),
                  "the key is still doomed (token %llu) after a second run of the same node: "
                  "saves of its content get SERR_RETRY until the lease changes hands",
                  (unsigned long long)token);
    store_version v;
    bool created;
    ck_assert_msg(save_on(vs, "zeta", &v, &created, &err) == 0, "%s", err.detail);
    expect_blob_whole(key);
    store_version_clear(&v);
}
END_TEST

/* A save slower than claims live: a collector dropped its claim as
 * abandoned and removed the blob it had found. The save must not commit
 * a version of a blob that is gone: its put is refused (the claim lapsed),
 * it claims again, writes the blob again, and then commits. */
START_TEST(a_save_whose_claim_lapsed_claims_again_and_rewrites_its_blob)
{
    char key[SHA256_HEX_LEN + 1];
    key_of("theta", key);
    save_ok("theta");
    save_ok("iota");
    delete_version("1.0.0");
    gate_arm(gate, G_TOUCH);
    bg_save s;
    bg_start(&s, "theta"); /* claimed, found the blob, held before the touch */
    ck_assert(gate_wait_arrival(gate, G_TOUCH));
    strata_error err;
    bool doomed = false;
    ck_assert_int_eq(st->ops->blob_collect_begin(st, key, 99, clock_wall_ms() + 1, &doomed, &err),
                     0);
    ck_assert(doomed); /* the claim was dropped as abandoned */
    ck_assert_int_eq(gate->real->ops->remove(gate->real, key, &err), 0);
    ck_assert_int_eq(st->ops->blob_collect_end(st, key, &err), 0);
    gate_release(gate, G_TOUCH);
    pthread_join(s.th, NULL);
    ck_assert_msg(s.rc == 0, "%s", s.err.detail);
    ck_assert(s.created);
    expect_blob_whole(key);
    expect_content(&s.v, "theta");
    store_version_clear(&s.v);
    /* and no claim of it is left behind */
    ck_assert_int_eq(st->ops->blob_collect_begin(st, key, 99, clock_wall_ms() - BLOB_CLAIM_TTL_MS,
                                                 &doomed, &err),
                     0);
    ck_assert(!doomed); /* referenced by the version */
}
END_TEST

START_TEST(nothing_referenced_at_all)
{
    save_ok("lonely");
    delete_version("1.0.0");
    json_t *report = NULL;
    strata_error err;
    ck_assert_int_eq(gc_run(vs, 0, false, &report, &err), 0);
    ck_assert_int_eq(report_int(report, "blobs_referenced"), 0);
    ck_assert_int_eq(report_int(report, "blobs_removed"), 1);
    json_decref(report);
    /* a dry run reports without removing and needs no lease */
    save_ok("again");
    delete_version("1.0.1");
    ck_assert_int_eq(gc_run(vs, 0, true, &report, &err), 0);
    ck_assert_int_eq(report_int(report, "blobs_removed"), 1);
    json_decref(report);
    char key[SHA256_HEX_LEN + 1];
    key_of("again", key);
    ck_assert(blob_on_disk(key));
    /* a grace period keeps young blobs */
    ck_assert_int_eq(gc_run(vs, 3600, false, &report, &err), 0);
    ck_assert_int_eq(report_int(report, "blobs_in_grace"), 1);
    ck_assert_int_eq(report_int(report, "blobs_removed"), 0);
    json_decref(report);
    ck_assert(blob_on_disk(key));
}
END_TEST

/* ---- (d) another node on the same files ---------------------------------------------- */

/* The other node is another process (a node is a process: its lease
 * holder is node_id()), forked before either opens anything; it opens the
 * same files once this one has (see fresh_file_opened_by_processes_at_once
 * in the store contract). It runs gc_run each time it reads a byte ('d': a
 * dry run), and answers with the outcome. */
static void other_node(int cmd_fd, int res_fd)
{
    store *s2 = NULL;
    gated_blobs *g2 = NULL;
    versions_svc *v2 = NULL;
    char c;
    while (read(cmd_fd, &c, 1) == 1) {
        strata_error err = {0};
        if (g2 == NULL) {
            char url[300];
            snprintf(url, sizeof url, "sqlite:%s/strata.db", dir);
            s2 = store_open(url, &err);
            snprintf(url, sizeof url, "file:%s/blobs", dir);
            g2 = calloc(1, sizeof *g2);
            g2->real = blobs_open(url, &err);
            g2->base.ops = &GATED_OPS;
            pthread_mutex_init(&g2->mu, NULL);
            pthread_cond_init(&g2->cv, NULL);
            v2 = s2 && g2->real ? versions_new(s2, &g2->base, NULL, &CFG, &err) : NULL;
        }
        int out[2] = {-1, SERR_INTERNAL};
        if (v2 != NULL) {
            json_t *report = NULL;
            out[0] = gc_run(v2, 0, c == 'd', &report, &err);
            out[1] = out[0] == 0 ? SERR_OK : (int)err.kind;
            json_decref(report);
        }
        if (write(res_fd, out, sizeof out) != (ssize_t)sizeof out)
            break;
    }
    if (v2)
        close_node(s2, g2, v2);
    _exit(0);
}

static void ask(int cmd_fd, int res_fd, char c, int *rc, int *kind)
{
    int out[2];
    ck_assert_int_eq(write(cmd_fd, &c, 1), 1);
    ck_assert_int_eq(read(res_fd, out, sizeof out), (ssize_t)sizeof out);
    *rc = out[0];
    *kind = out[1];
}

START_TEST(another_node_is_refused_while_this_one_holds_the_lease)
{
    make_dir();
    int cmd[2], res[2];
    ck_assert_int_eq(pipe(cmd), 0);
    ck_assert_int_eq(pipe(res), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(cmd[1]);
        close(res[0]);
        other_node(cmd[0], res[1]);
    }
    close(cmd[0]);
    close(res[1]);
    open_node(&st, &gate, &vs);
    save_ok("one");
    save_ok("two");
    delete_version("1.0.0");
    /* this node collects, and keeps the maintenance lease */
    json_t *report = NULL;
    strata_error err;
    ck_assert_msg(gc_run(vs, 0, false, &report, &err) == 0, "%s", err.detail);
    json_decref(report);
    int rc, kind;
    ask(cmd[1], res[0], 'r', &rc, &kind);
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(kind, SERR_CONFLICT);
    /* a dry run needs no lease */
    ask(cmd[1], res[0], 'd', &rc, &kind);
    ck_assert_int_eq(rc, 0);
    /* while this node renews it, still refused */
    bool held = false;
    uint64_t token = 0;
    ck_assert_int_eq(gc_lease(vs, &held, &token, &err), 0);
    ck_assert(held);
    ask(cmd[1], res[0], 'r', &rc, &kind);
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(kind, SERR_CONFLICT);
    /* given up: the other node collects */
    ck_assert_int_eq(st->ops->lease_release(st, MAINTENANCE_LEASE, node_id(), &err), 0);
    ask(cmd[1], res[0], 'r', &rc, &kind);
    ck_assert_msg(rc == 0, "the other node was refused (kind %d)", kind);
    /* and now this one is refused */
    ck_assert_int_eq(gc_run(vs, 0, false, &report, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    close(cmd[1]);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(res[0]);
    teardown();
}
END_TEST

static Suite *gc_suite(void)
{
    Suite *s = suite_create("gc_protocol");
    TCase *t = tcase_create("gc");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, a_blob_claimed_by_an_in_flight_save_survives_collection);
    tcase_add_test(t, a_save_waits_for_a_doomed_key_and_then_succeeds);
    tcase_add_test(t, a_key_left_doomed_by_a_dead_collector_is_finished_by_the_next_run);
    tcase_add_test(t, a_key_left_doomed_by_a_failed_run_is_finished_by_the_next_run);
    tcase_add_test(t, a_save_whose_claim_lapsed_claims_again_and_rewrites_its_blob);
    tcase_add_test(t, nothing_referenced_at_all);
    suite_add_tcase(s, t);
    /* no fixture: the test forks before anything is opened. Without
     * Check's fork mode an earlier test has computed node_id() in this
     * process, and a forked child would be the same node: skipped. */
    const char *fork_mode = getenv("CK_FORK");
    if (fork_mode != NULL && strcmp(fork_mode, "no") == 0) {
        printf("SKIP: gc_protocol/nodes/another_node_is_refused_while_this_one_holds_the_lease: "
               "needs Check's fork mode (CK_FORK=no)\n");
        fflush(stdout);
        return s;
    }
    TCase *nodes = tcase_create("nodes");
    tcase_set_timeout(nodes, 120);
    tcase_add_test(nodes, another_node_is_refused_while_this_one_holds_the_lease);
    suite_add_tcase(s, nodes);
    return s;
}

int main(void)
{
    return run_suite(gc_suite());
}
