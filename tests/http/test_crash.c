/* Invariants 2 and 6 across kill -9: eight writers save (inline JSON,
 * blobs, batches), read and delete over a small set of resources while the
 * server is killed at a random moment, again and again on one data
 * directory. After every restart:
 * (a) each resource's latest record (GET /{type}/{id}, through the cache)
 *     is the newest version its list names, or both are gone;
 * (b) every acknowledged save that no delete can have removed still
 *     answers with its hash and its content; every acknowledged delete
 *     stays deleted;
 * (c) the list's versions are strictly ordered.
 * The L2 (data dir/cache) and the store survive each crash, so a latest
 * record cached before a save committed and never invalidated would show
 * up in (a). Retention is set out of reach, so that only deletes remove
 * versions; blob collection runs every second with no grace. */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/codec/sha256.h"
#include "../support/harness.h"

#define WRITERS  8
#define NDICT    12
#define NLIT     4
#define NRES     (NDICT + NLIT)
#define POOL     6
#define MAX_ACKS 400000
#define MAX_DELS 200000
#define OWN_MAX  64

static test_server S;
static const char *const ARGS[] = {"--gc-grace",
                                   "0",
                                   "--maintenance-interval",
                                   "1",
                                   "--inline-threshold",
                                   "1K",
                                   "--retention",
                                   "dictionary:keep=1000000;literature:keep=1000000",
                                   NULL};
static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};
static const char *const TEXT_CT[] = {"Content-Type: text/plain", NULL};

static void start(void)
{
    ck_assert_int_eq(server_start(&S, ARGS), 0);
}

static void stop(void)
{
    if (S.pid > 0) { /* a test that failed early: no clean stop to check */
        kill(S.pid, SIGKILL);
        waitpid(S.pid, NULL, 0);
        S.pid = 0;
    }
    server_cleanup(&S);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *res_type(int r)
{
    return r < NDICT ? "dictionary" : "literature";
}

static void res_id(int r, char *out, size_t cap)
{
    if (r < NDICT)
        snprintf(out, cap, "d%d", r);
    else
        snprintf(out, cap, "l%d", r - NDICT);
}

/* "1.2.3" as one comparable number */
static uint64_t vkey_of(const char *v)
{
    unsigned a, b, c;
    if (v == NULL || sscanf(v, "%u.%u.%u", &a, &b, &c) != 3)
        return 0;
    return ((uint64_t)a << 40) | ((uint64_t)b << 20) | c;
}

/* ---- what the writers were told ------------------------------------------ */

typedef struct ack {
    int res;
    uint64_t vkey;
    char version[24];
    char hash[SHA256_HEX_LEN + 1];
    int64_t t_sent, t_done; /* the request's span */
    int cycle;
} ack;

/* A delete of one version (vkey) or of the whole resource (vkey 0). An
 * unanswered one (in flight at the kill) may or may not have committed. */
typedef struct del {
    int res;
    uint64_t vkey;
    char version[24];
    bool answered;
    int64_t t_sent, t_done; /* t_done INT64_MAX when unanswered */
    int cycle;
} del;

static ack acks[MAX_ACKS];
static del dels[MAX_DELS];
static atomic_int nacks, ndels;
static atomic_int stop_writers;
static atomic_long saves_sent, saves_unanswered, reads_done, transport_errors;
static atomic_long status_hist[600];
static int cycle_no;
static _Thread_local bool server_gone; /* this writer saw a request die */

static char *pool[POOL];
static size_t pool_len[POOL];

static void make_pool(void)
{
    unsigned seed = 12345;
    for (int i = 0; i < POOL; i++) {
        seed = seed * 1103515245u + 12345u;
        size_t len = 2048 + (seed >> 8) % (6 * 1024 + 1);
        pool[i] = malloc(len + 1);
        for (size_t k = 0; k < len; k++) {
            seed = seed * 1103515245u + 12345u;
            unsigned x = (seed >> 16) % 64;
            pool[i][k] = x == 0 ? '\n' : (char)('a' + x % 26);
        }
        pool[i][len] = '\0';
        pool_len[i] = len;
    }
}

static void record_ack(int res, const char *version, const char *hash, int64_t t_sent,
                       int64_t t_done)
{
    if (version == NULL || hash == NULL)
        return;
    int k = atomic_fetch_add(&nacks, 1);
    if (k >= MAX_ACKS)
        return;
    ack *a = &acks[k];
    a->res = res;
    a->vkey = vkey_of(version);
    snprintf(a->version, sizeof a->version, "%s", version);
    snprintf(a->hash, sizeof a->hash, "%s", hash);
    a->t_sent = t_sent;
    a->t_done = t_done;
    a->cycle = cycle_no;
}

static void record_del(int res, const char *version, bool answered, int64_t t_sent, int64_t t_done)
{
    int k = atomic_fetch_add(&ndels, 1);
    if (k >= MAX_DELS)
        return;
    del *d = &dels[k];
    d->res = res;
    d->vkey = version ? vkey_of(version) : 0;
    snprintf(d->version, sizeof d->version, "%s", version ? version : "");
    d->answered = answered;
    d->t_sent = t_sent;
    d->t_done = answered ? t_done : INT64_MAX;
    d->cycle = cycle_no;
}

typedef struct own {
    int res;
    char version[24];
} own;

typedef struct writer_ctx {
    int w;
    unsigned seed;
    own mine[OWN_MAX]; /* versions this writer saw acknowledged, to delete */
    int nmine;
} writer_ctx;

static unsigned rnd(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

static void remember(writer_ctx *x, int res, const char *version)
{
    if (version == NULL)
        return;
    int slot = x->nmine < OWN_MAX ? x->nmine++ : (int)(rnd(&x->seed) % OWN_MAX);
    x->mine[slot].res = res;
    snprintf(x->mine[slot].version, sizeof x->mine[slot].version, "%s", version);
}

static void count_status(long st)
{
    if (st >= 0 && st < 600)
        atomic_fetch_add(&status_hist[st], 1);
}

/* One request; -1 when no answer came (the server died under it). */
static int do_req(http_client *c, const char *method, const char *path, const char *const *hdrs,
                  const void *body, size_t len, http_resp *r)
{
    if (http_client_do(c, &S, method, path, hdrs, body, len, r) != 0) {
        atomic_fetch_add(&transport_errors, 1);
        server_gone = true;
        return -1;
    }
    return 0;
}

static void saved(int res, http_resp *r, int64_t t0, writer_ctx *x)
{
    int64_t t1 = now_ns();
    count_status(r->status);
    if (r->status != 201 && r->status != 200)
        return;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    json_t *vi = json_object_get(j, "version_info");
    const char *v = json_string_value(json_object_get(vi, "version"));
    record_ack(res, v, json_string_value(json_object_get(vi, "data_hash")), t0, t1);
    remember(x, res, v);
    json_decref(j);
}

static void op_json_save(http_client *c, writer_ctx *x)
{
    int res = (int)(rnd(&x->seed) % NDICT);
    char id[16], path[96], filler[1400];
    res_id(res, id, sizeof id);
    snprintf(path, sizeof path, "/dictionary/%s/versions", id);
    /* mostly inline; now and then past --inline-threshold, so a blob */
    size_t fl = rnd(&x->seed) % 5 == 0 ? 1100 + rnd(&x->seed) % 200 : 10 + rnd(&x->seed) % 300;
    for (size_t i = 0; i < fl; i++)
        filler[i] = (char)('a' + rnd(&x->seed) % 26);
    filler[fl] = '\0';
    char *body = malloc(fl + 256);
    snprintf(body, fl + 256,
             "{\"content\": {\"n\": %u, \"w\": %d, \"s\": \"%s\"}, \"word\": \"w\","
             " \"provider\": \"p\"}",
             rnd(&x->seed), x->w, filler);
    atomic_fetch_add(&saves_sent, 1);
    http_resp r;
    int64_t t0 = now_ns();
    if (do_req(c, "POST", path, JSON_CT, body, strlen(body), &r) == 0) {
        saved(res, &r, t0, x);
        http_resp_free(&r);
    } else {
        atomic_fetch_add(&saves_unanswered, 1);
    }
    free(body);
}

static void op_text_save(http_client *c, writer_ctx *x)
{
    int res = NDICT + (int)(rnd(&x->seed) % NLIT);
    int p = (int)(rnd(&x->seed) % POOL);
    char id[16], path[96];
    res_id(res, id, sizeof id);
    snprintf(path, sizeof path, "/literature/%s/versions?title=T&authors=A&source=s", id);
    atomic_fetch_add(&saves_sent, 1);
    http_resp r;
    int64_t t0 = now_ns();
    if (do_req(c, "POST", path, TEXT_CT, pool[p], pool_len[p], &r) == 0) {
        saved(res, &r, t0, x);
        http_resp_free(&r);
    } else {
        atomic_fetch_add(&saves_unanswered, 1);
    }
}

static void op_batch(http_client *c, writer_ctx *x)
{
    int a = (int)(rnd(&x->seed) % NDICT);
    int b = (a + 1 + (int)(rnd(&x->seed) % (NDICT - 1))) % NDICT;
    char body[512];
    snprintf(body, sizeof body,
             "{\"operations\": ["
             "{\"op\": \"save\", \"type\": \"dictionary\", \"id\": \"d%d\", \"content\":"
             " {\"batch\": %u}, \"word\": \"w\", \"provider\": \"p\"},"
             " {\"op\": \"save\", \"type\": \"dictionary\", \"id\": \"d%d\", \"content\":"
             " {\"batch\": %u}, \"word\": \"w\", \"provider\": \"p\"}]}",
             a, rnd(&x->seed), b, rnd(&x->seed));
    atomic_fetch_add(&saves_sent, 2);
    http_resp r;
    int64_t t0 = now_ns();
    if (do_req(c, "POST", "/batch", JSON_CT, body, strlen(body), &r) != 0) {
        atomic_fetch_add(&saves_unanswered, 2);
        return;
    }
    int64_t t1 = now_ns();
    count_status(r.status);
    if (r.status == 200) {
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        size_t i;
        json_t *res;
        json_array_foreach(json_object_get(j, "results"), i, res)
        {
            const char *id = json_string_value(json_object_get(res, "id"));
            int st = (int)json_integer_value(json_object_get(res, "status"));
            if (id == NULL || (st != 200 && st != 201))
                continue;
            int rix = atoi(id + 1);
            const char *v = json_string_value(json_object_get(res, "version"));
            record_ack(rix, v, json_string_value(json_object_get(res, "data_hash")), t0, t1);
            remember(x, rix, v);
        }
        json_decref(j);
    }
    http_resp_free(&r);
}

static void op_read(http_client *c, writer_ctx *x)
{
    /* fills the caches (L1, and the L2 that outlives the kill) */
    int res = (int)(rnd(&x->seed) % NRES);
    char id[16], path[128];
    res_id(res, id, sizeof id);
    if (res >= NDICT && rnd(&x->seed) % 3 == 0)
        snprintf(path, sizeof path, "/%s/%s/versions/latest/content", res_type(res), id);
    else
        snprintf(path, sizeof path, "/%s/%s", res_type(res), id);
    http_resp r;
    if (do_req(c, "GET", path, NULL, NULL, 0, &r) == 0) {
        atomic_fetch_add(&reads_done, 1);
        http_resp_free(&r);
    }
}

static void op_delete_version(http_client *c, writer_ctx *x)
{
    if (x->nmine == 0)
        return;
    int k = (int)(rnd(&x->seed) % (unsigned)x->nmine);
    own o = x->mine[k];
    x->mine[k] = x->mine[--x->nmine];
    char id[16], path[160];
    res_id(o.res, id, sizeof id);
    snprintf(path, sizeof path, "/%s/%s/versions/%s", res_type(o.res), id, o.version);
    http_resp r;
    int64_t t0 = now_ns();
    if (do_req(c, "DELETE", path, NULL, NULL, 0, &r) != 0) {
        record_del(o.res, o.version, false, t0, 0);
        return;
    }
    count_status(r.status);
    if (r.status == 204)
        record_del(o.res, o.version, true, t0, now_ns());
    http_resp_free(&r);
}

static void op_delete_resource(http_client *c, writer_ctx *x)
{
    int res = (int)(rnd(&x->seed) % NDICT);
    char id[16], path[96];
    res_id(res, id, sizeof id);
    snprintf(path, sizeof path, "/dictionary/%s", id);
    http_resp r;
    int64_t t0 = now_ns();
    if (do_req(c, "DELETE", path, NULL, NULL, 0, &r) != 0) {
        record_del(res, NULL, false, t0, 0);
        return;
    }
    count_status(r.status);
    if (r.status == 200)
        record_del(res, NULL, true, t0, now_ns());
    http_resp_free(&r);
}

static void *writer(void *arg)
{
    writer_ctx *x = arg;
    http_client *c = http_client_new();
    server_gone = false;
    /* after the kill each writer sees its request in flight fail, and stops */
    while (!atomic_load(&stop_writers) && !server_gone) {
        unsigned op = rnd(&x->seed) % 100;
        if (op < 33)
            op_json_save(c, x);
        else if (op < 53)
            op_text_save(c, x);
        else if (op < 61)
            op_batch(c, x);
        else if (op < 85)
            op_read(c, x);
        else if (op < 99)
            op_delete_version(c, x);
        else if (rnd(&x->seed) % 2 == 0)
            op_delete_resource(c, x);
    }
    http_client_free(c);
    return NULL;
}

/* ---- checking ---------------------------------------------------------- */

static atomic_long failures, checks;

__attribute__((format(printf, 1, 2))) static void violation(const char *fmt, ...)
{
    long n = atomic_fetch_add(&failures, 1);
    if (n >= 40)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "crash FAIL (cycle %d): ", cycle_no);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void counted(void)
{
    atomic_fetch_add(&checks, 1);
}

/* GET and parse; status in *st (-1 when no answer). */
static json_t *get_json(http_client *c, const char *path, long *st)
{
    http_resp r;
    if (http_client_do(c, &S, "GET", path, NULL, NULL, 0, &r) != 0) {
        *st = -1;
        return NULL;
    }
    *st = r.status;
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    return j;
}

static const char *vi_field(json_t *rec, const char *f)
{
    return json_string_value(json_object_get(json_object_get(rec, "version_info"), f));
}

/* (a) and (c); all_pages walks the whole list. Returns the latest's key
 * (0 when gone). */
static uint64_t check_resource(http_client *c, int r, bool all_pages)
{
    char id[16], path[256];
    res_id(r, id, sizeof id);
    snprintf(path, sizeof path, "/%s/%s", res_type(r), id);
    long lst;
    json_t *latest = get_json(c, path, &lst);
    snprintf(path, sizeof path, "/%s/%s/versions?limit=1000", res_type(r), id);
    long vst;
    json_t *list = get_json(c, path, &vst);
    json_t *items = json_object_get(list, "items");
    size_t n = json_array_size(items);
    uint64_t lkey = 0;
    counted();
    if (lst == 200) {
        const char *lv = vi_field(latest, "version"), *lh = vi_field(latest, "data_hash");
        json_t *first = json_array_get(items, 0);
        const char *fv = vi_field(first, "version"), *fh = vi_field(first, "data_hash");
        lkey = vkey_of(lv);
        if (vst != 200 || n == 0)
            violation("%s/%s: latest answers %s but its list answers %ld with %zu items",
                      res_type(r), id, lv ? lv : "?", vst, n);
        else if (lv == NULL || fv == NULL || strcmp(lv, fv) != 0 || lh == NULL || fh == NULL ||
                 strcmp(lh, fh) != 0)
            violation("%s/%s: latest is %s (%.12s) but the newest listed is %s (%.12s)",
                      res_type(r), id, lv ? lv : "?", lh ? lh : "?", fv ? fv : "?", fh ? fh : "?");
    } else if (lst == 404 || lst == 410) {
        if (!(vst == 404 || vst == 410 || (vst == 200 && n == 0)))
            violation(
                "%s/%s: latest answers %ld but its list answers %ld with %zu items, newest %s",
                res_type(r), id, lst, vst, n,
                n ? vi_field(json_array_get(items, 0), "version") : "-");
    } else {
        violation("%s/%s: latest answers %ld", res_type(r), id, lst);
    }
    json_decref(latest);
    /* (c): newest first, strictly */
    uint64_t prev = UINT64_MAX;
    for (;;) {
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            uint64_t k = vkey_of(vi_field(it, "version"));
            counted();
            if (k == 0 || k >= prev)
                violation("%s/%s: list not strictly ordered at %s", res_type(r), id,
                          vi_field(it, "version"));
            prev = k;
        }
        const char *next = json_string_value(json_object_get(list, "next"));
        if (!all_pages || next == NULL)
            break;
        snprintf(path, sizeof path, "/%s/%s/versions?limit=1000&cursor=%s", res_type(r), id, next);
        json_decref(list);
        list = get_json(c, path, &vst);
        if (vst != 200) {
            violation("%s/%s: list page answers %ld", res_type(r), id, vst);
            break;
        }
        items = json_object_get(list, "items");
    }
    json_decref(list);
    return lkey;
}

/* May a delete have removed this acknowledged version? Must one have? */
static void delete_cover(const ack *a, bool *may, bool *must)
{
    *may = *must = false;
    int nd = atomic_load(&ndels);
    for (int i = 0; i < nd && i < MAX_DELS; i++) {
        const del *d = &dels[i];
        if (d->res != a->res)
            continue;
        if (d->vkey != 0 && d->vkey == a->vkey) {
            *may = true;
            *must |= d->answered;
        } else if (d->vkey == 0) {
            /* a resource delete removes the versions that exist when it
             * commits: ones saved before it was sent must go, ones whose
             * save began before it ended may */
            if (d->t_done >= a->t_sent)
                *may = true;
            if (d->answered && d->t_sent > a->t_done)
                *must = true;
        }
    }
}

static int hash_hex(const void *data, size_t len, char *hex)
{
    unsigned char d[SHA256_LEN];
    if (sha256_oneshot(data, len, d, NULL) != 0)
        return -1;
    sha256_to_hex(d, hex);
    return 0;
}

static long verified, verified_gone;

/* (b) for one acknowledged save; returns its key if it is still there. */
static uint64_t check_ack(http_client *c, const ack *a)
{
    char id[16], path[256];
    res_id(a->res, id, sizeof id);
    bool may, must;
    delete_cover(a, &may, &must);
    snprintf(path, sizeof path, "/%s/%s/versions/%s", res_type(a->res), id, a->version);
    long st;
    json_t *rec = get_json(c, path, &st);
    counted();
    uint64_t alive = 0;
    if (st == 200) {
        const char *h = vi_field(rec, "data_hash");
        if (must)
            violation("%s/%s %s answers 200 after an acknowledged delete removed it",
                      res_type(a->res), id, a->version);
        else if (h == NULL || strcmp(h, a->hash) != 0)
            violation("%s/%s %s: acknowledged with hash %.16s, now %.16s", res_type(a->res), id,
                      a->version, a->hash, h ? h : "?");
        alive = a->vkey;
        /* its content, verified against the acknowledged hash */
        snprintf(path, sizeof path, "/%s/%s/versions/%s/content", res_type(a->res), id, a->version);
        http_resp r;
        counted();
        if (http_client_do(c, &S, "GET", path, NULL, NULL, 0, &r) != 0) {
            violation("GET %s: no answer", path);
        } else {
            char hex[SHA256_HEX_LEN + 1] = "";
            if (r.status != 200)
                violation("GET %s answers %ld: %.200s (acknowledged in cycle %d)", path, r.status,
                          r.body, a->cycle);
            else if (hash_hex(r.body, r.body_len, hex) != 0 || strcmp(hex, a->hash) != 0)
                violation("GET %s: %zu bytes hashing to %.16s, acknowledged %.16s", path,
                          r.body_len, hex, a->hash);
            http_resp_free(&r);
        }
        verified++;
    } else if (st == 410 && may) {
        verified_gone++;
    } else {
        violation("%s/%s %s (acknowledged in cycle %d) answers %ld: %.200s", res_type(a->res), id,
                  a->version, a->cycle, st, json_string_value(json_object_get(rec, "detail")));
    }
    json_decref(rec);
    return alive;
}

/* Acknowledged version deletes stay deleted. */
static void check_del(http_client *c, const del *d)
{
    if (!d->answered || d->vkey == 0)
        return;
    char id[16], path[256];
    res_id(d->res, id, sizeof id);
    snprintf(path, sizeof path, "/%s/%s/versions/%s", res_type(d->res), id, d->version);
    long st;
    json_t *j = get_json(c, path, &st);
    counted();
    if (st != 410)
        violation("%s/%s %s was deleted (204) in cycle %d but answers %ld", res_type(d->res), id,
                  d->version, d->cycle, st);
    json_decref(j);
}

static void verify(int ack_from, int del_from, bool full)
{
    http_client *c = http_client_new();
    uint64_t newest_alive[NRES] = {0}, latest[NRES];
    for (int r = 0; r < NRES; r++)
        latest[r] = check_resource(c, r, full);
    int na = atomic_load(&nacks), nd = atomic_load(&ndels);
    for (int k = ack_from; k < na && k < MAX_ACKS; k++) {
        uint64_t alive = check_ack(c, &acks[k]);
        if (alive > newest_alive[acks[k].res])
            newest_alive[acks[k].res] = alive;
    }
    for (int k = del_from; k < nd && k < MAX_DELS; k++)
        check_del(c, &dels[k]);
    /* invariant 6 straight: no latest older than a surviving acknowledged save */
    for (int r = 0; r < NRES; r++) {
        char id[16];
        res_id(r, id, sizeof id);
        counted();
        if (latest[r] < newest_alive[r])
            violation("%s/%s: latest is key %llx, older than acknowledged key %llx", res_type(r),
                      id, (unsigned long long)latest[r], (unsigned long long)newest_alive[r]);
    }
    http_client_free(c);
}

static void keep_log_on_failure(void)
{
    if (atomic_load(&failures) == 0)
        return;
    char kept[400], cmd[1400];
    snprintf(kept, sizeof kept, "%s.crash-failure.log", S.data_dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && grep -E ' (ERROR|WARN) ' '%s' | tail -n 20 >&2",
             S.log_path, kept, kept);
    if (system(cmd) == 0)
        fprintf(stderr, "crash: the server's log (every cycle) is kept at %s\n", kept);
}

START_TEST(kill_nine_loses_nothing_and_serves_no_stale_latest)
{
    const char *env = getenv("STRATA_TEST_CYCLES");
    int cycles = env && atoi(env) > 0 ? atoi(env) : 40;
    const char *senv = getenv("STRATA_TEST_SEED");
    unsigned seed = senv ? (unsigned)strtoul(senv, NULL, 10) : (unsigned)time(NULL);
    /* the fewest acknowledged saves per cycle that prove the writers wrote
     * (a slower store, such as FerretDB's, is given a lower floor) */
    const char *menv = getenv("STRATA_CRASH_MIN_ACKS");
    int min_acks = menv && atoi(menv) > 0 ? atoi(menv) : 10;
    fprintf(stderr, "crash: %d cycles, seed %u\n", cycles, seed);
    make_pool();
    int64_t t_begin = now_ns();
    int ack_mark = 0, del_mark = 0;
    for (cycle_no = 1; cycle_no <= cycles; cycle_no++) {
        atomic_store(&stop_writers, 0);
        pthread_t th[WRITERS];
        static writer_ctx ctx[WRITERS];
        for (int i = 0; i < WRITERS; i++) {
            memset(&ctx[i], 0, sizeof ctx[i]);
            ctx[i].w = i;
            ctx[i].seed = seed ^ (unsigned)(cycle_no * 7919 + i * 104729);
            pthread_create(&th[i], NULL, writer, &ctx[i]);
        }
        seed = seed * 1103515245u + 12345u;
        long run_ms = 700 + (long)((seed >> 8) % 801);
        struct timespec ts = {run_ms / 1000, (run_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        /* kill -9 with the writers in full flight */
        ck_assert_int_eq(kill(S.pid, SIGKILL), 0);
        int status = 0;
        ck_assert_int_eq(waitpid(S.pid, &status, 0), S.pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        S.pid = 0;
        atomic_store(&stop_writers, 1);
        for (int i = 0; i < WRITERS; i++)
            pthread_join(th[i], NULL);
        ck_assert_msg(server_restart(&S, ARGS) == 0, "cycle %d: the server did not restart",
                      cycle_no);
        verify(ack_mark, del_mark, false);
        ack_mark = atomic_load(&nacks);
        del_mark = atomic_load(&ndels);
    }
    cycle_no = 0;
    /* everything once more, against the final state */
    verify(0, 0, true);
    double secs = (double)(now_ns() - t_begin) / 1e9;
    int deletes = atomic_load(&ndels), answered = 0;
    for (int i = 0; i < deletes && i < MAX_DELS; i++)
        answered += dels[i].answered;
    fprintf(stderr,
            "crash: %d cycles in %.1f s, %ld saves sent, %d acknowledged (%ld unanswered), %d "
            "deletes acknowledged (%d in flight at a kill), %ld reads, %ld checks (%ld versions "
            "verified with content, %ld removed by a delete), %ld failures\n",
            cycles, secs, atomic_load(&saves_sent), atomic_load(&nacks),
            atomic_load(&saves_unanswered), answered, deletes - answered, atomic_load(&reads_done),
            atomic_load(&checks), verified, verified_gone, atomic_load(&failures));
    fprintf(stderr, "crash: answers other than 2xx during the run:");
    for (int st = 300; st < 600; st++)
        if (atomic_load(&status_hist[st]) > 0)
            fprintf(stderr, " %d x%ld", st, atomic_load(&status_hist[st]));
    fprintf(stderr, "\n");
    keep_log_on_failure();
    int code = server_stop(&S, 60); /* before any assertion: a failed one ends this process */
    for (int i = 0; i < POOL; i++)
        free(pool[i]);
    ck_assert_int_lt(atomic_load(&nacks), MAX_ACKS);
    ck_assert_int_lt(atomic_load(&ndels), MAX_DELS);
    ck_assert_int_gt(atomic_load(&nacks), cycles * min_acks); /* the writers really wrote */
    ck_assert_int_gt(answered, 0);
    ck_assert_int_eq(atomic_load(&failures), 0);
    ck_assert_msg(code == 0, "the server exited with %d on SIGTERM", code);
}
END_TEST

static Suite *crash_suite(void)
{
    Suite *s = suite_create("crash");
    TCase *t = tcase_create("crash");
    tcase_set_timeout(t, 900);
    tcase_add_checked_fixture(t, start, stop);
    tcase_add_test(t, kill_nine_loses_nothing_and_serves_no_stale_latest);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(crash_suite());
}
