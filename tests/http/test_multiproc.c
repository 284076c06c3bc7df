/* Several strata processes on one data directory, killed -9 at random and
 * restarted at once (on a new port), while eight writers save (inline JSON,
 * blobs drawn from small recycled pools, batches), delete (versions,
 * resources) and change corpus trees (attach, detach, re-save children)
 * through process w % N, or another one while it is down. Beside them:
 * readers load the latest records being saved on every process, a
 * collector forces blob collection (POST /admin/gc) on any process, and an
 * auditor reads recent acknowledged contents back while the run goes on (a
 * later save of the same content rewrites a missing blob, which would hide
 * a loss from the end's checks).
 *
 * Checked:
 * 1. freshness across processes: after every acknowledged save of a
 *    resource only its writer touches, GET latest on another live process
 *    answers that version or a newer one;
 * 2. every acknowledged version that no delete can have removed answers
 *    200 with its hash and its content byte for byte on every process, at
 *    the end and when the auditor reads it (404, 410 or a 500
 *    corrupt-content is LOST); every acknowledged delete stays deleted;
 * 3. on every process, each resource's versions list marks exactly one
 *    version latest, the newest, the one GET latest answers, and none older
 *    than a surviving acknowledged save;
 * 4. on every process, each master's vocabulary (every page) is exactly the
 *    union of its current children's latest contents (words, frequencies,
 *    children counts), and it aggregates each child's latest version.
 * The run fails too when a process dies unasked or does not stop cleanly,
 * and when it did too little to prove anything.
 *
 * Environment: STRATA_MP_PROCS (3), STRATA_MP_SECONDS (120), STRATA_MP_KILL_S
 * (10: mean seconds between kills, each ±50%; 0: no kills), STRATA_MP_SETTLE_S
 * (20: how long masters may take to be rolled forward at the end; a dead
 * process's maintenance lease lapses after 15 s), STRATA_MP_MIN_RATE (10:
 * the fewest acknowledged saves per second of the run that prove anything;
 * a slower store, such as FerretDB's, is given a lower floor), STRATA_TEST_SEED,
 * STRATA_KEEP_LOGS (keep the servers' logs, with their access logs),
 * STRATA_MP_READERS (2, at most 8), STRATA_MP_KILL_JITTER (1; 0: a kill
 * exactly every STRATA_MP_KILL_S). The summary line goes to stdout;
 * failures to stderr, with the logs kept.
 *
 * Cluster mode (STRATA_MP_CLUSTER=1; the 'cluster' suite): the processes
 * are the nodes scripts/cluster starts over FerretDB, redis-server and
 * versitygw (mp_cluster.h; STRATA_CLUSTER_SCRIPTS names scripts/), and
 * every request goes through its nginx half the time. The first kill is
 * of the maintenance lease's holder; redis-server is restarted (empty) at
 * 40% of the run and versitygw stopped for 5 s at 60%. Writers also PUT
 * and DELETE cache entries of their own and read them back on any node.
 * Checked besides 1-4: 5. no cache read answers a value older than an
 * acknowledged PUT or DELETE of its key; 6. no maintenance lease token is
 * taken by two nodes (their logs), and the lease moved when its holder was
 * killed. 503s while a server is down are expected; an nginx 503 (no node
 * answered: it may have committed) leaves the outcome unknown. */
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
#include <time.h>
#include <unistd.h>

#include "../../src/codec/sha256.h"
#include "../support/harness.h"
#include "mp_cluster.h"

#define WRITERS    8
#define MAXP       16
#define OWN_D      2 /* dictionaries each writer owns */
#define OWN_L      2 /* literatures each writer owns */
#define SH_D       6 /* dictionaries every writer saves */
#define SH_L       3
#define NCHILD     12
#define NMASTER    3
#define POOL       64 /* literature texts: 6 common, 58 rare */
#define COMMON     6
#define JPOOL      24 /* dictionary contents past the inline threshold */
#define VPOOL      9  /* child vocabularies */
#define NSYL       8
#define NWORDS     (NSYL * NSYL * NSYL)
#define OWN_MAX    64
#define VERIFIERS  8
#define MAX_REPORT 40

/* ---- resources --------------------------------------------------------- */

typedef struct resource {
    const char *type;
    char id[24];
    int owner; /* writer, or -1 when shared */
} resource;

enum {
    R_OWN = 0,
    R_SH_D = WRITERS * (OWN_D + OWN_L),
    R_SH_L = R_SH_D + SH_D,
    R_CHILD = R_SH_L + SH_L,
    R_MASTER = R_CHILD + NCHILD,
    NRES = R_MASTER + NMASTER,
};

static resource R[NRES];

static void make_resources(void)
{
    for (int w = 0; w < WRITERS; w++) {
        for (int k = 0; k < OWN_D + OWN_L; k++) {
            resource *r = &R[R_OWN + w * (OWN_D + OWN_L) + k];
            r->type = k < OWN_D ? "dictionary" : "literature";
            snprintf(r->id, sizeof r->id, "w%d-%c%d", w, k < OWN_D ? 'd' : 'l',
                     k < OWN_D ? k : k - OWN_D);
            r->owner = w;
        }
    }
    for (int k = 0; k < SH_D; k++) {
        R[R_SH_D + k].type = "dictionary";
        snprintf(R[R_SH_D + k].id, sizeof R[0].id, "sd%d", k);
        R[R_SH_D + k].owner = -1;
    }
    for (int k = 0; k < SH_L; k++) {
        R[R_SH_L + k].type = "literature";
        snprintf(R[R_SH_L + k].id, sizeof R[0].id, "sl%d", k);
        R[R_SH_L + k].owner = -1;
    }
    for (int k = 0; k < NCHILD; k++) {
        R[R_CHILD + k].type = "corpus";
        snprintf(R[R_CHILD + k].id, sizeof R[0].id, "c%d", k);
        R[R_CHILD + k].owner = -1;
    }
    for (int k = 0; k < NMASTER; k++) {
        R[R_MASTER + k].type = "corpus";
        snprintf(R[R_MASTER + k].id, sizeof R[0].id, "m%d", k);
        R[R_MASTER + k].owner = -1;
    }
}

static int own_dict(int w, int k)
{
    return R_OWN + w * (OWN_D + OWN_L) + k;
}

static int own_lit(int w, int k)
{
    return R_OWN + w * (OWN_D + OWN_L) + OWN_D + k;
}

/* ---- processes ----------------------------------------------------------- */

typedef struct proc {
    test_server s;
    bool up;
} proc;

static proc P[MAXP];
static int NP;
static pthread_mutex_t procs_mu = PTHREAD_MUTEX_INITIALIZER;
static char data_dir[256];
static const char *server_args[16];
/* cluster mode (STRATA_MP_CLUSTER=1): the processes are scripts/cluster's
 * nodes, and half the requests go through its nginx, LB */
static bool cluster;
static mp_cluster CL;
static test_server LB;

/* A copy of process i when it is up. */
static bool proc_get(int i, test_server *out)
{
    pthread_mutex_lock(&procs_mu);
    bool up = P[i].up;
    if (up)
        *out = P[i].s;
    pthread_mutex_unlock(&procs_mu);
    return up;
}

/* The first live process from `from` on, other than `skip`; -1 when none. */
static int pick_live(int from, int skip)
{
    int found = -1;
    pthread_mutex_lock(&procs_mu);
    for (int k = 0; k < NP && found < 0; k++) {
        int i = (from + k) % NP;
        if (i != skip && P[i].up)
            found = i;
    }
    pthread_mutex_unlock(&procs_mu);
    return found;
}

static void set_down(int i)
{
    pthread_mutex_lock(&procs_mu);
    P[i].up = false;
    pthread_mutex_unlock(&procs_mu);
}

static void set_up(int i, const test_server *s)
{
    pthread_mutex_lock(&procs_mu);
    P[i].s = *s;
    P[i].up = true;
    pthread_mutex_unlock(&procs_mu);
}

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static unsigned rnd(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

/* Where a request for process p goes: p, or in cluster mode nginx half
 * the time (it passes the request to any live node). false: p is down. */
static bool route(int p, unsigned *seed, test_server *out, bool *via_lb)
{
    bool lb = cluster && rnd(seed) % 2 == 0;
    if (via_lb != NULL)
        *via_lb = lb;
    if (lb) {
        *out = LB;
        return true;
    }
    return proc_get(p, out);
}

/* nginx's own 503: no node answered, or the node died under the request
 * (it may have committed it first: the outcome is unknown) */
static bool lb_gave_up(bool via_lb, const http_resp *r)
{
    return via_lb && r->status == 503 && r->body != NULL &&
           strstr(r->body, "no Strata node answered") != NULL;
}

/* "1.2.3" as one comparable number; 0 when not a version */
static uint64_t vkey_of(const char *v)
{
    unsigned a, b, c;
    if (v == NULL || sscanf(v, "%u.%u.%u", &a, &b, &c) != 3)
        return 0;
    return ((uint64_t)a << 40) | ((uint64_t)b << 20) | c;
}

static int env_int(const char *name, int def)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static const char *vi_field(json_t *rec, const char *f)
{
    return json_string_value(json_object_get(json_object_get(rec, "version_info"), f));
}

/* A 500 that says the content is missing or damaged (not, say, a busy store) */
static bool is_corrupt(const http_resp *r)
{
    return r->status == 500 && strstr(r->body, "corrupt-content") != NULL;
}

static int hash_hex(const void *data, size_t len, char *hex)
{
    unsigned char d[SHA256_LEN];
    if (sha256_oneshot(data, len, d, NULL) != 0)
        return -1;
    sha256_to_hex(d, hex);
    return 0;
}

/* ---- counts ------------------------------------------------------------- */

static atomic_long n_kills, n_restarts, n_deaths;
static atomic_long n_inline, n_blob, n_batches, n_del_version, n_del_resource;
static atomic_long n_attach, n_detach, n_child_saves, n_fresh, n_stale, n_fresh_skipped;
static atomic_long n_unknown, n_sent;
static atomic_long n_verified, n_gone_ok, n_lost, n_changed, n_undeleted, n_del_checked;
static atomic_long n_latest_checks, n_latest_bad, n_master_checks, n_master_bad;
static atomic_long n_errors; /* anything else the checks refuse */
/* cluster mode: 503s while a server was down (no other failure is one),
 * and the cache entries' checks */
static atomic_long n_unavailable, n_cache_put, n_cache_del, n_cache_reads, n_cache_stale;
static atomic_long status_hist[600];
static atomic_int stop_writers;

__attribute__((format(printf, 2, 3))) static void report(atomic_long *counter, const char *fmt, ...)
{
    static atomic_long reported;
    if (counter)
        atomic_fetch_add(counter, 1);
    if (atomic_fetch_add(&reported, 1) >= MAX_REPORT)
        return;
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "multiproc FAIL: %s\n", line);
}

static void count_status(long st)
{
    if (st >= 0 && st < 600)
        atomic_fetch_add(&status_hist[st], 1);
}

/* ---- what the writers were told ------------------------------------------ */

typedef struct ack {
    int res;
    uint64_t vkey;
    char version[24];
    char hash[SHA256_HEX_LEN + 1];
    bool blob;
    int64_t t_sent, t_done;
} ack;

/* A delete of one version (vkey) or of a whole resource (vkey 0), noted
 * before it is sent, so that a read that finds a version gone knows every
 * delete that may have removed it. One cut by a kill may or may not have
 * committed; one refused (4xx) removed nothing. */
enum { D_PENDING, D_DONE, D_UNKNOWN, D_VOID };

typedef struct del {
    int res;
    uint64_t vkey;
    char version[24];
    int state;
    int64_t t_sent, t_done; /* t_done INT64_MAX until answered */
} del;

static pthread_mutex_t book_mu = PTHREAD_MUTEX_INITIALIZER;
static ack *acks;
static size_t nacks, cap_acks;
static del *dels;
static size_t ndels, cap_dels;

static void *grow(void *p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return p;
    size_t c = *cap ? *cap * 2 : 4096;
    void *q = realloc(p, c * size);
    ck_assert_ptr_nonnull(q);
    *cap = c;
    return q;
}

static void record_ack(int res, const char *version, const char *hash, bool blob, int64_t t_sent,
                       int64_t t_done)
{
    if (vkey_of(version) == 0 || hash == NULL || strlen(hash) != SHA256_HEX_LEN) {
        report(&n_errors, "%s/%s: a 2xx save without a version or hash", R[res].type, R[res].id);
        return;
    }
    ack a = {
        .res = res, .vkey = vkey_of(version), .blob = blob, .t_sent = t_sent, .t_done = t_done};
    snprintf(a.version, sizeof a.version, "%s", version);
    snprintf(a.hash, sizeof a.hash, "%s", hash);
    pthread_mutex_lock(&book_mu);
    acks = grow(acks, &cap_acks, nacks + 1, sizeof *acks);
    acks[nacks++] = a;
    pthread_mutex_unlock(&book_mu);
}

static size_t del_begin(int res, const char *version)
{
    del d = {.res = res,
             .vkey = version ? vkey_of(version) : 0,
             .state = D_PENDING,
             .t_sent = now_ns(),
             .t_done = INT64_MAX};
    snprintf(d.version, sizeof d.version, "%s", version ? version : "");
    pthread_mutex_lock(&book_mu);
    dels = grow(dels, &cap_dels, ndels + 1, sizeof *dels);
    size_t i = ndels++;
    dels[i] = d;
    pthread_mutex_unlock(&book_mu);
    return i;
}

static void del_end(size_t i, int state)
{
    pthread_mutex_lock(&book_mu);
    dels[i].state = state;
    if (state == D_DONE)
        dels[i].t_done = now_ns();
    pthread_mutex_unlock(&book_mu);
}

/* May this delete have removed the version? Must it have? */
static void cover_one(const ack *a, const del *d, bool *may, bool *must)
{
    if (d->res != a->res || d->state == D_VOID)
        return;
    if (d->vkey != 0 && d->vkey == a->vkey) {
        *may = true;
        *must |= d->state == D_DONE;
    } else if (d->vkey == 0) {
        /* a resource delete removes the versions there when it commits:
         * those acknowledged before it was sent must go, those whose save
         * began before it ended may */
        if (d->t_done >= a->t_sent)
            *may = true;
        if (d->state == D_DONE && d->t_sent > a->t_done)
            *must = true;
    }
}

/* ---- contents ----------------------------------------------------------- */

static char *pool[POOL]; /* literature texts past 1 KiB: blobs */
static size_t pool_len[POOL];
static char *jpool[JPOOL]; /* letters only, 1100-1400 of them: a JSON blob */
static char *vpool[VPOOL]; /* child contents as JSON, every third past 1 KiB */
static const char *const SYL[NSYL] = {"ka", "lo", "mi", "nu", "re", "sa", "ti", "vo"};

static void word_of(int i, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s%s", SYL[i % NSYL], SYL[(i / NSYL) % NSYL], SYL[i / NSYL / NSYL]);
}

/* {"words": [...], "frequencies": {...}}: n distinct words, some counted */
static char *make_vocabulary(unsigned *seed, int n)
{
    json_t *words = json_array(), *freq = json_object();
    int start = (int)(rnd(seed) % NWORDS), step = 1 + 2 * (int)(rnd(seed) % 7);
    for (int k = 0; k < n; k++) {
        char w[16];
        word_of((start + k * step) % NWORDS, w, sizeof w);
        json_array_append_new(words, json_string(w));
        if (rnd(seed) % 4 == 0)
            json_object_set_new(freq, w, json_integer(2 + rnd(seed) % 8));
    }
    json_t *content = json_pack("{s:o, s:o}", "words", words, "frequencies", freq);
    char *s = json_dumps(content, JSON_COMPACT);
    json_decref(content);
    return s;
}

static void make_pools(unsigned seed)
{
    for (int i = 0; i < POOL; i++) {
        size_t len = i < COMMON ? 2048 + rnd(&seed) % (6 * 1024 + 1) : 1100 + rnd(&seed) % 2048;
        pool[i] = malloc(len + 1);
        for (size_t k = 0; k < len; k++) {
            unsigned x = rnd(&seed) % 64;
            pool[i][k] = x == 0 ? '\n' : (char)('a' + x % 26);
        }
        pool[i][len] = '\0';
        pool_len[i] = len;
    }
    for (int i = 0; i < JPOOL; i++) {
        size_t len = 1100 + rnd(&seed) % 300;
        jpool[i] = malloc(len + 1);
        for (size_t k = 0; k < len; k++)
            jpool[i][k] = (char)('a' + rnd(&seed) % 26);
        jpool[i][len] = '\0';
    }
    for (int i = 0; i < VPOOL; i++)
        vpool[i] = make_vocabulary(&seed, i % 3 == 0 ? 150 + (int)(rnd(&seed) % 100)
                                                     : 3 + (int)(rnd(&seed) % 12));
}

static void free_pools(void)
{
    for (int i = 0; i < POOL; i++)
        free(pool[i]);
    for (int i = 0; i < JPOOL; i++)
        free(jpool[i]);
    for (int i = 0; i < VPOOL; i++)
        free(vpool[i]);
}

/* Half the picks among the first `common`, half among the rest: rare
 * contents lose their last reference now and then, so the collector takes
 * their blob while other saves come back to it. */
static int skewed(unsigned *seed, int n, int common)
{
    return rnd(seed) % 2 ? common + (int)(rnd(seed) % (unsigned)(n - common))
                         : (int)(rnd(seed) % (unsigned)common);
}

/* ---- writers ------------------------------------------------------------- */

static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};
static const char *const TEXT_CT[] = {"Content-Type: text/plain", NULL};

typedef struct own {
    int res;
    char version[24];
} own;

#define CKEYS 4 /* cluster mode: cache entries per writer */

typedef struct writer_ctx {
    int w;
    unsigned seed;
    http_client *c;
    own mine[OWN_MAX]; /* versions this writer saw acknowledged, to delete */
    int nmine;
    char last[24]; /* the version of the last 201 */
    bool via_lb;   /* the last request went through nginx */
    long cache_seq;
    long cache_acked[CKEYS]; /* per cache key: the seq of the last acknowledged PUT or DELETE */
    long cache_tried[CKEYS]; /* and of the last one sent, answered or not */
} writer_ctx;

static atomic_int child_master[NCHILD]; /* a hint: the master last seen, -1 none */
static atomic_int hot[WRITERS];         /* the resource of its own each writer saved last */

static void remember(writer_ctx *x, int res, const char *version)
{
    if (version == NULL || R[res].type[0] == 'c')
        return;
    int slot = x->nmine < OWN_MAX ? x->nmine++ : (int)(rnd(&x->seed) % OWN_MAX);
    x->mine[slot].res = res;
    snprintf(x->mine[slot].version, sizeof x->mine[slot].version, "%s", version);
}

/* One request to a live process, the writer's own (w % N) when it is up.
 * 0: answered, on process *pi; -1: no answer (cut by a kill: the outcome is
 * unknown); -2: nothing sent, the run is over. */
static int send_req(writer_ctx *x, const char *method, const char *path, const char *const *headers,
                    const void *body, size_t len, http_resp *r, int *pi)
{
    atomic_fetch_add(&n_sent, 1);
    for (;;) {
        if (atomic_load(&stop_writers))
            return -2;
        test_server s;
        int p = pick_live(x->w % NP, -1);
        if (p < 0 || !route(p, &x->seed, &s, &x->via_lb)) {
            sleep_ms(20);
            continue;
        }
        if (http_client_do(x->c, &s, method, path, headers, body, len, r) != 0) {
            atomic_fetch_add(&n_unknown, 1);
            return -1;
        }
        count_status(r->status);
        if (lb_gave_up(x->via_lb, r)) {
            http_resp_free(r);
            atomic_fetch_add(&n_unknown, 1);
            return -1;
        }
        *pi = p; /* (through nginx: any node) */
        return 0;
    }
}

/* Check 1: GET latest on another live process (the same one when N is 1)
 * answers the acknowledged version or newer. */
static void freshness(writer_ctx *x, int res, uint64_t vkey, const char *version, int saved_on)
{
    char path[128];
    snprintf(path, sizeof path, "/%s/%s", R[res].type, R[res].id);
    int64_t deadline = now_ns() + 10 * (int64_t)1000000000;
    while (now_ns() < deadline) {
        int q = NP >= 2 ? pick_live((saved_on + 1 + (int)(rnd(&x->seed) % (unsigned)(NP - 1))) % NP,
                                    saved_on)
                        : pick_live(0, -1);
        test_server s;
        if (q < 0 || !route(q, &x->seed, &s, NULL)) {
            sleep_ms(20);
            continue;
        }
        http_resp r;
        if (http_client_do(x->c, &s, "GET", path, NULL, NULL, 0, &r) != 0)
            continue; /* q was killed under the read: another one */
        if (cluster && r.status == 503) {
            /* the blob store stopped, or no node answered nginx: again */
            http_resp_free(&r);
            atomic_fetch_add(&n_unavailable, 1);
            sleep_ms(100);
            continue;
        }
        atomic_fetch_add(&n_fresh, 1);
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        const char *got = r.status == 200 ? vi_field(j, "version") : NULL;
        if (r.status == 200 && vkey_of(got) >= vkey) {
            /* fresh */
        } else if (r.status == 200 || r.status == 404 || r.status == 410) {
            /* and a moment later? (a stale copy that outlives its moment
             * is worse than a race) */
            sleep_ms(200);
            http_resp r2;
            char later[64] = "no answer";
            if (http_client_do(x->c, &s, "GET", path, NULL, NULL, 0, &r2) == 0) {
                json_t *j2 = json_loadb(r2.body, r2.body_len, 0, NULL);
                const char *v2 = r2.status == 200 ? vi_field(j2, "version") : NULL;
                snprintf(later, sizeof later, "%ld %s", r2.status, v2 ? v2 : "");
                json_decref(j2);
                http_resp_free(&r2);
            }
            report(&n_stale,
                   "stale: %s/%s %s acknowledged on process %d, process %d answers %ld %s (0.2 s "
                   "later: %s)",
                   R[res].type, R[res].id, version, saved_on, q, r.status, got ? got : "", later);
        } else {
            report(&n_errors, "freshness read of %s on process %d answers %ld: %.200s", path, q,
                   r.status, r.body);
        }
        json_decref(j);
        http_resp_free(&r);
        return;
    }
    atomic_fetch_add(&n_fresh_skipped, 1);
}

/* Records a 2xx save answered with a record; returns the version's key. */
static uint64_t saved(writer_ctx *x, int res, http_resp *r, int64_t t0, int p)
{
    if (r->status != 200 && r->status != 201)
        return 0;
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    const char *v = vi_field(j, "version");
    const char *st =
        json_string_value(json_object_get(json_object_get(j, "content_location"), "storage_type"));
    bool blob = st && strcmp(st, "blob") == 0;
    record_ack(res, v, vi_field(j, "data_hash"), blob, t0, now_ns());
    remember(x, res, v);
    snprintf(x->last, sizeof x->last, "%s", r->status == 201 && v ? v : "");
    if (R[res].type[0] == 'c')
        atomic_fetch_add(&n_child_saves, 1);
    else if (blob)
        atomic_fetch_add(&n_blob, 1);
    else
        atomic_fetch_add(&n_inline, 1);
    uint64_t k = vkey_of(v);
    if (R[res].owner >= 0 && k != 0) {
        char ver[24];
        snprintf(ver, sizeof ver, "%s", v);
        json_decref(j);
        freshness(x, res, k, ver, p);
        return k;
    }
    json_decref(j);
    return k;
}

static void post_save(writer_ctx *x, int res, const char *path, const char *const *ct,
                      const char *body, size_t len)
{
    if (R[res].owner == x->w)
        atomic_store(&hot[x->w], res);
    http_resp r;
    int p;
    int64_t t0 = now_ns();
    if (send_req(x, "POST", path, ct, body, len, &r, &p) != 0)
        return;
    saved(x, res, &r, t0, p);
    http_resp_free(&r);
}

static void delete_version(writer_ctx *x, int res, const char *version);

static int pick_dict(writer_ctx *x)
{
    return rnd(&x->seed) % 2 ? own_dict(x->w, (int)(rnd(&x->seed) % OWN_D))
                             : R_SH_D + (int)(rnd(&x->seed) % SH_D);
}

static int pick_lit(writer_ctx *x)
{
    return rnd(&x->seed) % 2 ? own_lit(x->w, (int)(rnd(&x->seed) % OWN_L))
                             : R_SH_L + (int)(rnd(&x->seed) % SH_L);
}

static void op_inline_save(writer_ctx *x)
{
    int res = pick_dict(x);
    char path[96], body[512];
    snprintf(path, sizeof path, "/dictionary/%s/versions", R[res].id);
    snprintf(body, sizeof body,
             "{\"content\": {\"n\": %u, \"w\": %d, \"t\": %lld}, \"word\": \"w\","
             " \"provider\": \"p\"}",
             rnd(&x->seed), x->w, (long long)now_ns());
    post_save(x, res, path, JSON_CT, body, strlen(body));
}

static void op_json_blob_save(writer_ctx *x)
{
    int res = pick_dict(x), k = skewed(&x->seed, JPOOL, 4);
    char path[96];
    snprintf(path, sizeof path, "/dictionary/%s/versions", R[res].id);
    size_t cap = strlen(jpool[k]) + 128;
    char *body = malloc(cap);
    snprintf(body, cap,
             "{\"content\": {\"b\": %d, \"s\": \"%s\"}, \"word\": \"w\", \"provider\": \"p\"}", k,
             jpool[k]);
    post_save(x, res, path, JSON_CT, body, strlen(body));
    free(body);
}

static void op_text_save(writer_ctx *x)
{
    int res = pick_lit(x), k = skewed(&x->seed, POOL, COMMON);
    char path[128];
    snprintf(path, sizeof path, "/literature/%s/versions?title=T&authors=A&source=s", R[res].id);
    x->last[0] = '\0';
    post_save(x, res, path, TEXT_CT, pool[k], pool_len[k]);
    /* a rare content's new version on a resource of this writer's: half the
     * time deleted at once, so that its blob may lose its last reference */
    if (k >= COMMON && R[res].owner == x->w && x->last[0] && rnd(&x->seed) % 2)
        delete_version(x, res, x->last);
}

static void op_child_save(writer_ctx *x)
{
    int c = (int)(rnd(&x->seed) % NCHILD);
    char *content;
    if (rnd(&x->seed) % 3 == 0) {
        content = make_vocabulary(&x->seed, 2 + (int)(rnd(&x->seed) % 10));
    } else {
        int k = skewed(&x->seed, VPOOL, VPOOL / 2);
        content = strdup(vpool[k]);
    }
    size_t cap = strlen(content) + 128;
    char *body = malloc(cap);
    snprintf(body, cap, "{\"content\": %s, \"corpus_type\": \"base\", \"language\": \"en\"}",
             content);
    char path[96];
    snprintf(path, sizeof path, "/corpus/%s/versions", R[R_CHILD + c].id);
    post_save(x, R_CHILD + c, path, JSON_CT, body, strlen(body));
    free(body);
    free(content);
}

static void op_batch(writer_ctx *x)
{
    int a = own_dict(x->w, (int)(rnd(&x->seed) % OWN_D));
    int b = R_SH_D + (int)(rnd(&x->seed) % SH_D);
    char dbuf[256] = "";
    own victim = {.res = -1};
    if (x->nmine > 0 && rnd(&x->seed) % 3 == 0) {
        int k = (int)(rnd(&x->seed) % (unsigned)x->nmine);
        victim = x->mine[k];
        x->mine[k] = x->mine[--x->nmine];
        snprintf(dbuf, sizeof dbuf,
                 ", {\"op\": \"delete\", \"type\": \"%s\", \"id\": \"%s\", \"version\": \"%s\"}",
                 R[victim.res].type, R[victim.res].id, victim.version);
    }
    int k = skewed(&x->seed, JPOOL, 4);
    bool big = rnd(&x->seed) % 4 == 0;
    size_t cap = strlen(jpool[k]) + 1024;
    char *body = malloc(cap);
    snprintf(body, cap,
             "{\"operations\": ["
             "{\"op\": \"save\", \"type\": \"dictionary\", \"id\": \"%s\", \"content\":"
             " {\"batch\": %u}, \"word\": \"w\", \"provider\": \"p\"},"
             " {\"op\": \"save\", \"type\": \"dictionary\", \"id\": \"%s\", \"content\":"
             " {\"batch\": %u, \"s\": \"%s\"}, \"word\": \"w\", \"provider\": \"p\"}%s]}",
             R[a].id, rnd(&x->seed), R[b].id, big ? 0u : rnd(&x->seed), big ? jpool[k] : "", dbuf);
    http_resp r;
    int p;
    size_t di = victim.res >= 0 ? del_begin(victim.res, victim.version) : 0;
    atomic_store(&hot[x->w], a);
    int64_t t0 = now_ns();
    int rc = send_req(x, "POST", "/batch", JSON_CT, body, strlen(body), &r, &p);
    free(body);
    if (rc != 0) {
        if (victim.res >= 0)
            del_end(di, rc == -1 ? D_UNKNOWN : D_VOID);
        return;
    }
    int del_state = D_VOID;
    int64_t t1 = now_ns();
    if (r.status == 200) {
        atomic_fetch_add(&n_batches, 1);
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        size_t i;
        json_t *it;
        uint64_t own_key = 0;
        char own_version[24] = "";
        json_array_foreach(json_object_get(j, "results"), i, it)
        {
            const char *op = json_string_value(json_object_get(it, "op"));
            const char *v = json_string_value(json_object_get(it, "version"));
            long st = (long)json_integer_value(json_object_get(it, "status"));
            json_int_t ix = json_integer_value(json_object_get(it, "index"));
            int res = ix == 0 ? a : ix == 1 ? b : victim.res;
            if (op && strcmp(op, "save") == 0 && (st == 200 || st == 201)) {
                record_ack(res, v, json_string_value(json_object_get(it, "data_hash")),
                           ix == 1 && big, t0, t1);
                remember(x, res, v);
                if (ix == 0 && v) {
                    own_key = vkey_of(v);
                    snprintf(own_version, sizeof own_version, "%s", v);
                }
            } else if (op && strcmp(op, "delete") == 0 && st == 204 && victim.res >= 0) {
                del_state = D_DONE;
                atomic_fetch_add(&n_del_version, 1);
            }
        }
        json_decref(j);
        if (victim.res >= 0)
            del_end(di, del_state);
        if (own_key != 0)
            freshness(x, a, own_key, own_version, p);
    } else if (victim.res >= 0) {
        del_end(di, r.status >= 500 ? D_UNKNOWN : D_VOID);
    }
    http_resp_free(&r);
}

static void delete_version(writer_ctx *x, int res, const char *version)
{
    own o = {.res = res};
    snprintf(o.version, sizeof o.version, "%s", version);
    char path[160];
    snprintf(path, sizeof path, "/%s/%s/versions/%s", R[o.res].type, R[o.res].id, o.version);
    http_resp r;
    int p;
    size_t di = del_begin(o.res, o.version);
    int rc = send_req(x, "DELETE", path, NULL, NULL, 0, &r, &p);
    if (rc != 0) {
        del_end(di, rc == -1 ? D_UNKNOWN : D_VOID);
        return;
    }
    /* a 5xx may have come after the commit; through nginx, a 404 or 410
     * may answer its retry of a DELETE that took effect on a node that
     * died before it answered */
    del_end(di, r.status == 204                                                          ? D_DONE
                : r.status >= 500 || (x->via_lb && (r.status == 404 || r.status == 410)) ? D_UNKNOWN
                                                                                         : D_VOID);
    if (r.status == 204)
        atomic_fetch_add(&n_del_version, 1);
    http_resp_free(&r);
}

static void op_delete_version(writer_ctx *x)
{
    if (x->nmine == 0)
        return;
    int k = (int)(rnd(&x->seed) % (unsigned)x->nmine);
    own o = x->mine[k];
    x->mine[k] = x->mine[--x->nmine];
    delete_version(x, o.res, o.version);
}

static void op_delete_resource(writer_ctx *x)
{
    int res = rnd(&x->seed) % 2 ? pick_dict(x) : pick_lit(x);
    char path[96];
    snprintf(path, sizeof path, "/%s/%s", R[res].type, R[res].id);
    http_resp r;
    int p;
    size_t di = del_begin(res, NULL);
    int rc = send_req(x, "DELETE", path, NULL, NULL, 0, &r, &p);
    if (rc != 0) {
        del_end(di, rc == -1 ? D_UNKNOWN : D_VOID);
        return;
    }
    del_end(di, r.status == 200                                                          ? D_DONE
                : r.status >= 500 || (x->via_lb && (r.status == 404 || r.status == 410)) ? D_UNKNOWN
                                                                                         : D_VOID);
    if (r.status == 200)
        atomic_fetch_add(&n_del_resource, 1);
    http_resp_free(&r);
}

static void op_attach(writer_ctx *x)
{
    int c = (int)(rnd(&x->seed) % NCHILD);
    for (int k = 0; k < NCHILD && atomic_load(&child_master[c]) >= 0; k++)
        c = (c + 1) % NCHILD; /* prefer a child without a master */
    int m = (int)(rnd(&x->seed) % NMASTER);
    char path[96], body[64];
    snprintf(path, sizeof path, "/trees/%s/children", R[R_MASTER + m].id);
    snprintf(body, sizeof body, "{\"id\": \"%s\"}", R[R_CHILD + c].id);
    http_resp r;
    int p;
    if (send_req(x, "POST", path, JSON_CT, body, strlen(body), &r, &p) != 0)
        return;
    if (r.status == 201) {
        atomic_fetch_add(&n_attach, 1);
        atomic_store(&child_master[c], m);
    }
    http_resp_free(&r);
}

static void op_detach(writer_ctx *x)
{
    int c = (int)(rnd(&x->seed) % NCHILD);
    int m = atomic_load(&child_master[c]);
    if (m < 0)
        m = (int)(rnd(&x->seed) % NMASTER);
    char path[96];
    snprintf(path, sizeof path, "/trees/%s/children/%s", R[R_MASTER + m].id, R[R_CHILD + c].id);
    http_resp r;
    int p;
    if (send_req(x, "DELETE", path, NULL, NULL, 0, &r, &p) != 0)
        return;
    if (r.status == 200) {
        atomic_fetch_add(&n_detach, 1);
        atomic_store(&child_master[c], -1);
    } else if (r.status == 404) {
        int expected = m;
        atomic_compare_exchange_strong(&child_master[c], &expected, -1);
    }
    http_resp_free(&r);
}

static void op_read(writer_ctx *x)
{
    /* fills the caches of every process with what will soon be stale */
    int res = (int)(rnd(&x->seed) % NRES);
    int q = pick_live((int)(rnd(&x->seed) % (unsigned)NP), -1);
    test_server s;
    if (q < 0 || !route(q, &x->seed, &s, NULL))
        return;
    char path[128];
    if (R[res].type[0] == 'l' && rnd(&x->seed) % 3 == 0)
        snprintf(path, sizeof path, "/literature/%s/versions/latest/content", R[res].id);
    else
        snprintf(path, sizeof path, "/%s/%s", R[res].type, R[res].id);
    http_resp r;
    if (http_client_do(x->c, &s, "GET", path, NULL, NULL, 0, &r) == 0)
        http_resp_free(&r);
}

/* Cluster mode: cache entries of the writer's own (PUT or DELETE on any
 * node, then GET on any node). Each value names the sequence number of the
 * write that put it; once a PUT or DELETE of sequence A is acknowledged,
 * no node may answer a value older than A (a miss is allowed: a cache may
 * lose entries, as when redis-server restarts empty). */

static long cache_value_seq(const http_resp *r, int w, int k)
{
    char want[32], got[64];
    int n = snprintf(want, sizeof want, "w%d-k%d-", w, k);
    size_t len = r->body_len < sizeof got - 1 ? r->body_len : sizeof got - 1;
    memcpy(got, r->body ? r->body : "", len);
    got[len] = '\0';
    if (strncmp(got, want, (size_t)n) != 0)
        return -1;
    char *end = NULL;
    long v = strtol(got + n, &end, 10);
    return end == got + n || *end != '\0' ? -1 : v;
}

static void op_cache(writer_ctx *x)
{
    static const char *const OCTET[] = {"Content-Type: application/octet-stream", NULL};
    int k = (int)(rnd(&x->seed) % CKEYS);
    char path[96], value[48];
    snprintf(path, sizeof path, "/cache/default/mp-w%d-k%d", x->w, k);
    long seq = ++x->cache_seq;
    x->cache_tried[k] = seq;
    bool is_del = rnd(&x->seed) % 4 == 0;
    http_resp r;
    int p;
    int len = snprintf(value, sizeof value, "w%d-k%d-%ld", x->w, k, seq);
    int rc = is_del ? send_req(x, "DELETE", path, NULL, NULL, 0, &r, &p)
                    : send_req(x, "PUT", path, OCTET, value, (size_t)len, &r, &p);
    if (rc != 0)
        return;
    if (r.status / 100 == 2 || (is_del && r.status == 404)) {
        x->cache_acked[k] = seq;
        atomic_fetch_add(is_del ? &n_cache_del : &n_cache_put, 1);
    }
    http_resp_free(&r);
    /* and read on a node */
    int q = pick_live((int)(rnd(&x->seed) % (unsigned)NP), -1);
    test_server s;
    if (q < 0 || !route(q, &x->seed, &s, NULL) ||
        http_client_do(x->c, &s, "GET", path, NULL, NULL, 0, &r) != 0)
        return;
    atomic_fetch_add(&n_cache_reads, 1);
    if (r.status == 200) {
        long v = cache_value_seq(&r, x->w, k);
        if (v < 0 || v > x->cache_tried[k])
            report(&n_errors, "GET %s answers a value never put: %.60s", path, r.body);
        else if (v < x->cache_acked[k])
            report(&n_cache_stale,
                   "stale cache entry: GET %s on process %d answers the value of write %ld after "
                   "write %ld was acknowledged",
                   path, q, v, x->cache_acked[k]);
    } else if (r.status != 404 && r.status != 503) {
        report(&n_errors, "GET %s on process %d answers %ld: %.200s", path, q, r.status, r.body);
    }
    http_resp_free(&r);
}

static void *writer(void *arg)
{
    writer_ctx *x = arg;
    x->c = http_client_new();
    while (!atomic_load(&stop_writers)) {
        unsigned op = rnd(&x->seed) % 100;
        if (op < 22)
            op_inline_save(x);
        else if (op < 36)
            op_text_save(x);
        else if (op < 42)
            op_json_blob_save(x);
        else if (op < 50)
            op_batch(x);
        else if (op < 61)
            op_delete_version(x);
        else if (op < 62)
            op_delete_resource(x);
        else if (op < 70)
            op_child_save(x);
        else if (op < 76)
            op_attach(x);
        else if (op < 80)
            op_detach(x);
        else if (cluster && op < 88)
            op_cache(x);
        else
            op_read(x);
    }
    http_client_free(x->c);
    return NULL;
}

/* ---- the auditor: acknowledged contents read back during the run -------- */

/* A later save of the same content rewrites a blob found missing, so a
 * blob collected under a save can heal before the end: recent
 * acknowledged versions are read back while the writers run. */
static atomic_long n_audits, n_audit_deleted, n_lost_run;

/* Is a version found gone explained by a delete sent before now? */
static bool delete_may_explain(const ack *a)
{
    bool may = false, must = false;
    pthread_mutex_lock(&book_mu);
    for (size_t i = 0; i < ndels && !may; i++)
        cover_one(a, &dels[i], &may, &must);
    pthread_mutex_unlock(&book_mu);
    return may;
}

static void *auditor(void *arg)
{
    unsigned seed = *(unsigned *)arg;
    http_client *c = http_client_new();
    while (!atomic_load(&stop_writers)) {
        ack a;
        bool have = false;
        pthread_mutex_lock(&book_mu);
        if (nacks > 0) {
            size_t window = nacks < 4000 ? nacks : 4000;
            a = acks[nacks - 1 - rnd(&seed) % window];
            have = true;
        }
        pthread_mutex_unlock(&book_mu);
        int q = pick_live((int)(rnd(&seed) % (unsigned)NP), -1);
        test_server s;
        if (!have || q < 0 || !route(q, &seed, &s, NULL)) {
            sleep_ms(10);
            continue;
        }
        if (!a.blob && rnd(&seed) % 4 != 0)
            continue; /* mostly blobs */
        char path[256];
        snprintf(path, sizeof path, "/%s/%s/versions/%s/content", R[a.res].type, R[a.res].id,
                 a.version);
        http_resp r;
        if (http_client_do(c, &s, "GET", path, NULL, NULL, 0, &r) != 0)
            continue; /* q was killed under the read */
        char hex[SHA256_HEX_LEN + 1] = "";
        if (r.status == 200) {
            if (hash_hex(r.body, r.body_len, hex) != 0 || strcmp(hex, a.hash) != 0)
                report(&n_changed,
                       "GET %s on process %d: %zu bytes hashing to %.16s, "
                       "acknowledged %.16s",
                       path, q, r.body_len, hex, a.hash);
            else
                atomic_fetch_add(&n_audits, 1);
        } else if (r.status == 404 || r.status == 410 || is_corrupt(&r)) {
            if (delete_may_explain(&a))
                atomic_fetch_add(&n_audit_deleted, 1);
            else
                report(&n_lost_run,
                       "LOST during the run: GET %s on process %d answers %ld, %.1f s after the "
                       "save was acknowledged, with no delete that could remove it: %.200s",
                       path, q, r.status, (double)(now_ns() - a.t_done) / 1e9, r.body);
        } else if (cluster && r.status == 503) {
            atomic_fetch_add(&n_unavailable, 1);
        } else {
            report(&n_errors, "GET %s on process %d answers %ld: %.200s", path, q, r.status,
                   r.body);
        }
        http_resp_free(&r);
    }
    http_client_free(c);
    return NULL;
}

/* ---- the collector: blob collection forced all along ------------------- */

/* Maintenance collects once a second on the process holding its lease;
 * POST /admin/gc on any process (409 while another holds the lease)
 * collects far more often, so that blobs leave while saves come back to
 * them. */
static atomic_long n_gc_runs, n_gc_busy;

static void *collector(void *arg)
{
    unsigned seed = *(unsigned *)arg;
    http_client *c = http_client_new();
    while (!atomic_load(&stop_writers)) {
        int q = pick_live((int)(rnd(&seed) % (unsigned)NP), -1);
        test_server s;
        http_resp r;
        if (q >= 0 && route(q, &seed, &s, NULL) &&
            http_client_do(c, &s, "POST", "/admin/gc", NULL, NULL, 0, &r) == 0) {
            if (r.status == 200)
                atomic_fetch_add(&n_gc_runs, 1);
            else if (r.status == 409)
                atomic_fetch_add(&n_gc_busy, 1);
            else if (cluster && r.status == 503)
                atomic_fetch_add(&n_unavailable, 1);
            else
                report(&n_errors, "POST /admin/gc on process %d answers %ld: %.200s", q, r.status,
                       r.body);
            http_resp_free(&r);
        }
        sleep_ms(20);
    }
    http_client_free(c);
    return NULL;
}

/* ---- readers: latest records loaded on every process all along --------- */

/* A read that loads a latest record while another process commits a newer
 * one is what could leave a stale copy behind: the writers' own resources,
 * mostly the ones being saved, are read without pause on every process. */
#define MAX_READERS 8
static int n_readers = 2;

static atomic_long n_reads;

static void *reader(void *arg)
{
    unsigned seed = *(unsigned *)arg;
    http_client *c = http_client_new();
    while (!atomic_load(&stop_writers)) {
        int w = (int)(rnd(&seed) % WRITERS), k = (int)(rnd(&seed) % (OWN_D + OWN_L));
        int res = k < OWN_D ? own_dict(w, k) : own_lit(w, k - OWN_D);
        if (rnd(&seed) % 4 != 0)
            res = atomic_load(&hot[w]);
        int q = pick_live((int)(rnd(&seed) % (unsigned)NP), -1);
        test_server s;
        if (q < 0 || !route(q, &seed, &s, NULL)) {
            sleep_ms(10);
            continue;
        }
        char path[128];
        snprintf(path, sizeof path, "/%s/%s", R[res].type, R[res].id);
        http_resp r;
        if (http_client_do(c, &s, "GET", path, NULL, NULL, 0, &r) == 0) {
            atomic_fetch_add(&n_reads, 1);
            http_resp_free(&r);
        }
    }
    http_client_free(c);
    return NULL;
}

/* ---- setup --------------------------------------------------------------- */

static long call(http_client *c, const test_server *s, const char *method, const char *path,
                 const char *json)
{
    http_resp r;
    if (http_client_do(c, s, method, path, json ? JSON_CT : NULL, json, json ? strlen(json) : 0,
                       &r) != 0)
        return -1;
    long st = r.status;
    if (st >= 300)
        fprintf(stderr, "multiproc: setup %s %s answers %ld: %.300s\n", method, path, st, r.body);
    http_resp_free(&r);
    return st;
}

/* The children, each with a first version, and the masters, each with
 * two of them. */
static bool seed_trees(void)
{
    http_client *c = http_client_new();
    bool ok = true;
    for (int k = 0; k < NCHILD && ok; k++) {
        char path[96];
        size_t cap = strlen(vpool[k % VPOOL]) + 128;
        char *body = malloc(cap);
        snprintf(path, sizeof path, "/corpus/%s/versions", R[R_CHILD + k].id);
        snprintf(body, cap, "{\"content\": %s, \"corpus_type\": \"base\", \"language\": \"en\"}",
                 vpool[k % VPOOL]);
        test_server s = P[k % NP].s;
        int64_t t0 = now_ns();
        http_resp r;
        ok = http_client_do(c, &s, "POST", path, JSON_CT, body, strlen(body), &r) == 0;
        free(body);
        if (ok && r.status != 201) {
            fprintf(stderr, "multiproc: setup POST %s answers %ld: %.300s\n", path, r.status,
                    r.body);
            ok = false;
        } else if (ok) {
            json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
            record_ack(R_CHILD + k, vi_field(j, "version"), vi_field(j, "data_hash"), false, t0,
                       now_ns());
            json_decref(j);
        }
        http_resp_free(&r); /* zeroed when no answer came */
        atomic_store(&child_master[k], -1);
    }
    for (int m = 0; m < NMASTER && ok; m++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"master\": \"%s\", \"language\": \"en\", \"children\": [\"%s\", \"%s\"]}",
                 R[R_MASTER + m].id, R[R_CHILD + 2 * m].id, R[R_CHILD + 2 * m + 1].id);
        ok = call(c, &P[m % NP].s, "POST", "/trees", body) == 201;
        atomic_store(&child_master[2 * m], m);
        atomic_store(&child_master[2 * m + 1], m);
    }
    http_client_free(c);
    return ok;
}

/* ---- the kills ------------------------------------------------------------ */

static void restart(int i)
{
    test_server s = P[i].s; /* only this thread changes a process */
    for (int attempt = 0; attempt < 5; attempt++) {
        /* a node that started but never became ready still runs */
        if (cluster && attempt > 0)
            mp_cluster_kill(&CL, i);
        if (cluster ? mp_cluster_restart(&CL, i, &s) == 0 : server_restart(&s, server_args) == 0) {
            set_up(i, &s);
            atomic_fetch_add(&n_restarts, 1);
            return;
        }
        sleep_ms(200);
    }
    report(&n_errors, "process %d did not restart (log %s)", i, s.log_path);
}

/* A process that died unasked (a crash, a sanitizer) is a failure; it is
 * restarted so that the run goes on. (Only this thread changes P[i].s; the
 * others copy it under the lock.) */
static void watch_deaths(void)
{
    for (int i = 0; i < NP; i++) {
        test_server s = P[i].s;
        if (!proc_get(i, &s))
            continue;
        int code = cluster ? (mp_cluster_alive(&s) ? -1 : 1) : server_reap(&s);
        if (code < 0)
            continue;
        set_down(i);
        pthread_mutex_lock(&procs_mu);
        P[i].s = s;
        pthread_mutex_unlock(&procs_mu);
        report(&n_deaths, "process %d exited on its own with %d (log %s)", i, code, s.log_path);
        restart(i);
    }
}

/* In cluster mode the first kill is of the maintenance lease's holder (its
 * logs show the lease moving on), the others of any node. */
static long n_holder_kills, n_redis_restarts, n_s3_stops; /* the main thread's */
static uint64_t killed_holder_token; /* the newest token when its holder was killed */

static void kill_one(unsigned *seed)
{
    int i = (int)(rnd(seed) % (unsigned)NP);
    if (cluster && atomic_load(&n_kills) == 0) {
        test_server nodes[MAXP];
        mp_lease_history h;
        pthread_mutex_lock(&procs_mu);
        for (int k = 0; k < NP; k++)
            nodes[k] = P[k].s;
        pthread_mutex_unlock(&procs_mu);
        int holder =
            mp_cluster_lease_history(&CL, &h) == 0 ? mp_cluster_node_of(nodes, NP, h.holder) : -1;
        if (holder >= 0) {
            i = holder;
            n_holder_kills++;
            killed_holder_token = h.newest;
        }
    }
    test_server s = P[i].s;
    set_down(i);
    bool died_before = cluster && !mp_cluster_alive(&s);
    if (cluster && mp_cluster_kill(&CL, i) != 0)
        report(&n_errors, "node %d could not be killed (see %s/cluster.log)", i, CL.dir);
    else if (died_before || (!cluster && server_kill9(&s) != 0))
        report(&n_deaths, "process %d had died before its kill -9 (log %s)", i, s.log_path);
    pthread_mutex_lock(&procs_mu);
    P[i].s = s;
    pthread_mutex_unlock(&procs_mu);
    atomic_fetch_add(&n_kills, 1);
    restart(i);
}

/* kill_s later, ±50% at random, or exactly with STRATA_MP_KILL_JITTER=0 */
static int64_t next_kill_at(unsigned *seed, int kill_s, bool jitter)
{
    int64_t ms = jitter ? kill_s * 500 + (int64_t)(rnd(seed) % (unsigned)(kill_s * 1000 + 1))
                        : (int64_t)kill_s * 1000;
    return now_ns() + ms * 1000000;
}

/* ---- checking --------------------------------------------------------------- */

static json_t *get_json(http_client *c, const test_server *s, const char *path, long *st)
{
    http_resp r;
    if (http_client_do(c, s, "GET", path, NULL, NULL, 0, &r) != 0) {
        *st = -1;
        return NULL;
    }
    *st = r.status;
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    return j;
}

/* Deletes per resource, for the cover of each acknowledged version. */
static size_t *del_idx[NRES];
static size_t del_n[NRES];

static void index_dels(void)
{
    for (size_t i = 0; i < ndels; i++) {
        int r = dels[i].res;
        del_idx[r] = realloc(del_idx[r], (del_n[r] + 1) * sizeof *del_idx[r]);
        ck_assert_ptr_nonnull(del_idx[r]);
        del_idx[r][del_n[r]++] = i;
    }
}

/* May a delete have removed this version? Must one have? */
static void delete_cover(const ack *a, bool *may, bool *must)
{
    *may = *must = false;
    for (size_t k = 0; k < del_n[a->res]; k++)
        cover_one(a, &dels[del_idx[a->res][k]], may, must);
}

static uint64_t *newest_alive; /* per resource, of the acknowledged versions alive */
static pthread_mutex_t alive_mu = PTHREAD_MUTEX_INITIALIZER;

/* Check 2 for one acknowledged version, on process p. */
static void check_ack(http_client *c, const ack *a, int p)
{
    test_server s;
    if (!proc_get(p, &s)) {
        report(&n_errors, "process %d is down during the checks", p);
        return;
    }
    const resource *res = &R[a->res];
    bool may, must;
    delete_cover(a, &may, &must);
    char path[256];
    snprintf(path, sizeof path, "/%s/%s/versions/%s", res->type, res->id, a->version);
    long st;
    json_t *rec = get_json(c, &s, path, &st);
    const char *h = st == 200 ? vi_field(rec, "data_hash") : NULL;
    if (st == 200 && must) {
        report(&n_undeleted, "%s/%s %s answers 200 after an acknowledged delete removed it",
               res->type, res->id, a->version);
    } else if (st == 200 && (h == NULL || strcmp(h, a->hash) != 0)) {
        report(&n_changed, "%s/%s %s: acknowledged with hash %.16s, now %.16s", res->type, res->id,
               a->version, a->hash, h ? h : "?");
    } else if (st == 200) {
        pthread_mutex_lock(&alive_mu);
        if (a->vkey > newest_alive[a->res])
            newest_alive[a->res] = a->vkey;
        pthread_mutex_unlock(&alive_mu);
        /* its content on every process: a blob copy cached by one of them
         * must not hide a blob gone from the store */
        snprintf(path, sizeof path, "/%s/%s/versions/%s/content", res->type, res->id, a->version);
        bool whole = true;
        for (int q = 0; q < NP && whole; q++) {
            http_resp r;
            char hex[SHA256_HEX_LEN + 1] = "";
            if (!proc_get(q, &s) || http_client_do(c, &s, "GET", path, NULL, NULL, 0, &r) != 0) {
                report(&n_errors, "GET %s on process %d: no answer", path, q);
                json_decref(rec);
                return;
            }
            if (r.status == 404 || r.status == 410 || is_corrupt(&r)) {
                report(&n_lost, "LOST: GET %s on process %d answers %ld: %.200s", path, q, r.status,
                       r.body);
                whole = false;
            } else if (r.status != 200) {
                report(&n_errors, "GET %s on process %d answers %ld: %.200s", path, q, r.status,
                       r.body);
                whole = false;
            } else if (hash_hex(r.body, r.body_len, hex) != 0 || strcmp(hex, a->hash) != 0) {
                report(&n_changed,
                       "GET %s on process %d: %zu bytes hashing to %.16s, acknowledged %.16s", path,
                       q, r.body_len, hex, a->hash);
                whole = false;
            }
            http_resp_free(&r);
        }
        if (whole)
            atomic_fetch_add(&n_verified, 1);
    } else if (st == 410 && may) {
        atomic_fetch_add(&n_gone_ok, 1);
    } else if (st == 404 || st == 410) {
        report(&n_lost, "LOST: %s/%s %s answers %ld with no delete that could remove it: %.200s",
               res->type, res->id, a->version, st,
               json_string_value(json_object_get(rec, "detail")));
    } else {
        report(&n_errors, "%s/%s %s answers %ld", res->type, res->id, a->version, st);
    }
    json_decref(rec);
}

/* Acknowledged version deletes stay deleted. */
static void check_del(http_client *c, const del *d, int p)
{
    test_server s;
    if (d->state != D_DONE || d->vkey == 0 || !proc_get(p, &s))
        return;
    char path[256];
    snprintf(path, sizeof path, "/%s/%s/versions/%s", R[d->res].type, R[d->res].id, d->version);
    long st;
    json_t *j = get_json(c, &s, path, &st);
    atomic_fetch_add(&n_del_checked, 1);
    if (st != 410)
        report(&n_undeleted, "%s/%s %s was deleted (204) but answers %ld on process %d",
               R[d->res].type, R[d->res].id, d->version, st, p);
    json_decref(j);
}

typedef struct verifier {
    int k;
} verifier;

static void *verify_versions(void *arg)
{
    int k = ((verifier *)arg)->k;
    http_client *c = http_client_new();
    for (size_t i = (size_t)k; i < nacks; i += VERIFIERS)
        check_ack(c, &acks[i], (int)(i % (size_t)NP));
    for (size_t i = (size_t)k; i < ndels; i += VERIFIERS)
        check_del(c, &dels[i], (int)(i % (size_t)NP));
    http_client_free(c);
    return NULL;
}

/* Check 3 for one resource on process p. */
static void check_latest(http_client *c, int res, int p)
{
    test_server s;
    if (!proc_get(p, &s)) {
        report(&n_errors, "process %d is down during the checks", p);
        return;
    }
    const resource *rs = &R[res];
    char path[256];
    snprintf(path, sizeof path, "/%s/%s", rs->type, rs->id);
    long lst;
    json_t *latest = get_json(c, &s, path, &lst);
    const char *lv = lst == 200 ? vi_field(latest, "version") : NULL;
    atomic_fetch_add(&n_latest_checks, 1);
    int marked = 0;
    size_t n = 0;
    char marked_v[24] = "", first_v[24] = "";
    char cursor[128] = "";
    long vst = 0;
    for (;;) {
        snprintf(path, sizeof path, "/%s/%s/versions?limit=1000%s%s", rs->type, rs->id,
                 cursor[0] ? "&cursor=" : "", cursor);
        json_t *page = get_json(c, &s, path, &vst);
        if (vst != 200) {
            json_decref(page);
            break;
        }
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(page, "items"), i, it)
        {
            const char *v = vi_field(it, "version");
            if (n++ == 0)
                snprintf(first_v, sizeof first_v, "%s", v ? v : "?");
            if (json_is_true(json_object_get(json_object_get(it, "version_info"), "is_latest"))) {
                marked++;
                snprintf(marked_v, sizeof marked_v, "%s", v ? v : "?");
            }
        }
        const char *next = json_string_value(json_object_get(page, "next"));
        bool more = next != NULL && strlen(next) < sizeof cursor;
        if (more)
            snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(page);
        if (!more)
            break;
    }
    if (lst == 200) {
        if (vst != 200 || marked != 1 || lv == NULL || strcmp(marked_v, lv) != 0 ||
            strcmp(first_v, lv) != 0)
            report(&n_latest_bad,
                   "%s/%s on process %d: latest answers %s; its list (%ld) has %zu versions, %d "
                   "marked latest (%s), the newest %s",
                   rs->type, rs->id, p, lv ? lv : "?", vst, n, marked, marked_v, first_v);
        else if (vkey_of(lv) < newest_alive[res])
            report(&n_latest_bad,
                   "%s/%s on process %d: latest %s is older than a surviving "
                   "acknowledged version",
                   rs->type, rs->id, p, lv);
    } else if (lst == 404 || lst == 410) {
        if (!(vst == 404 || vst == 410 || (vst == 200 && n == 0)))
            report(&n_latest_bad,
                   "%s/%s on process %d: latest answers %ld, its list %ld with %zu versions (%d "
                   "marked latest)",
                   rs->type, rs->id, p, lst, vst, n, marked);
        else if (newest_alive[res] != 0)
            report(&n_latest_bad,
                   "%s/%s on process %d: latest answers %ld, yet acknowledged "
                   "versions survive",
                   rs->type, rs->id, p, lst);
    } else {
        report(&n_errors, "%s/%s on process %d: latest answers %ld", rs->type, rs->id, p, lst);
    }
    json_decref(latest);
}

/* A corpus content as word -> count. */
static void add_content(json_t *want, json_t *content)
{
    json_t *freq = json_object_get(content, "frequencies");
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(content, "words"), i, w)
    {
        const char *word = json_string_value(w);
        if (word == NULL)
            continue;
        json_t *f = json_object_get(freq, word);
        json_int_t add = f ? json_integer_value(f) : 1;
        json_t *cur = json_object_get(want, word);
        json_int_t sum = cur ? json_integer_value(json_array_get(cur, 0)) : 0;
        json_int_t kids = cur ? json_integer_value(json_array_get(cur, 1)) : 0;
        json_object_set_new(want, word, json_pack("[I, I]", sum + add, kids + 1));
    }
}

/* Check 4 for one master on process p; describes the first difference in
 * why and returns false on a mismatch. */
static bool master_matches(http_client *c, int m, int p, char *why, size_t cap)
{
    test_server s;
    if (!proc_get(p, &s)) {
        snprintf(why, cap, "process %d is down", p);
        return false;
    }
    const char *mid = R[R_MASTER + m].id;
    char path[2400];
    long st;
    snprintf(path, sizeof path, "/trees/%s/children", mid);
    json_t *kids = get_json(c, &s, path, &st);
    bool ok = st == 200;
    if (!ok)
        snprintf(why, cap, "its children answer %ld", st);
    json_t *want = json_object();
    size_t i;
    json_t *kid;
    json_array_foreach(json_object_get(kids, "items"), i, kid)
    {
        if (!ok)
            break;
        const char *id = json_string_value(json_object_get(kid, "id"));
        const char *agg = json_string_value(json_object_get(kid, "aggregated_version"));
        snprintf(path, sizeof path, "/corpus/%s", id ? id : "?");
        json_t *rec = get_json(c, &s, path, &st);
        const char *v = st == 200 ? vi_field(rec, "version") : NULL;
        if (v == NULL || agg == NULL || strcmp(v, agg) != 0) {
            snprintf(why, cap, "child %s: latest %s (%ld), aggregated %s", id ? id : "?",
                     v ? v : "?", st, agg ? agg : "?");
            ok = false;
        } else {
            snprintf(path, sizeof path, "/corpus/%s/versions/%s/content", id, v);
            json_t *content = get_json(c, &s, path, &st);
            if (st != 200) {
                snprintf(why, cap, "child %s %s: content answers %ld", id, v, st);
                ok = false;
            } else {
                add_content(want, content);
            }
            json_decref(content);
        }
        json_decref(rec);
    }
    json_decref(kids);
    /* the vocabulary, every page, against the union */
    char cursor[2100] = "", prev[1100] = "";
    size_t seen = 0;
    while (ok) {
        snprintf(path, sizeof path, "/trees/%s/vocabulary?limit=10000%s%s", mid,
                 cursor[0] ? "&cursor=" : "", cursor);
        json_t *page = get_json(c, &s, path, &st);
        if (st != 200) {
            snprintf(why, cap, "its vocabulary answers %ld", st);
            ok = false;
        }
        json_t *it;
        json_array_foreach(json_object_get(page, "items"), i, it)
        {
            if (!ok)
                break;
            const char *word = json_string_value(json_object_get(it, "word"));
            json_int_t f = json_integer_value(json_object_get(it, "frequency"));
            json_int_t k = json_integer_value(json_object_get(it, "children"));
            json_t *w = word ? json_object_get(want, word) : NULL;
            if (word == NULL || (seen > 0 && strcmp(prev, word) >= 0)) {
                snprintf(why, cap, "vocabulary out of order at %s", word ? word : "?");
                ok = false;
            } else if (w == NULL) {
                snprintf(why, cap, "%s (frequency %lld, %lld children) is in no child", word,
                         (long long)f, (long long)k);
                ok = false;
            } else if (json_integer_value(json_array_get(w, 0)) != f ||
                       json_integer_value(json_array_get(w, 1)) != k) {
                snprintf(why, cap,
                         "%s: frequency %lld in %lld children, the children say %lld in "
                         "%lld",
                         word, (long long)f, (long long)k,
                         (long long)json_integer_value(json_array_get(w, 0)),
                         (long long)json_integer_value(json_array_get(w, 1)));
                ok = false;
            }
            if (word)
                snprintf(prev, sizeof prev, "%s", word);
            seen++;
        }
        const char *next = json_string_value(json_object_get(page, "next"));
        bool more = ok && next != NULL && strlen(next) < sizeof cursor;
        if (more)
            snprintf(cursor, sizeof cursor, "%s", next);
        json_decref(page);
        if (!more)
            break;
    }
    if (ok && seen != json_object_size(want)) {
        snprintf(why, cap, "%zu words, the children have %zu", seen, json_object_size(want));
        ok = false;
    }
    json_decref(want);
    return ok;
}

static void check_masters(int settle_s)
{
    http_client *c = http_client_new();
    int64_t deadline = now_ns() + (int64_t)settle_s * 1000000000;
    for (int m = 0; m < NMASTER; m++) {
        for (int p = 0; p < NP; p++) {
            char why[512] = "";
            bool ok;
            /* a master left behind by a killed process is rolled forward by
             * maintenance, once the dead holder's lease lapses */
            while (!(ok = master_matches(c, m, p, why, sizeof why)) && now_ns() < deadline)
                sleep_ms(500);
            atomic_fetch_add(&n_master_checks, 1);
            if (!ok)
                report(&n_master_bad, "master %s on process %d: %s", R[R_MASTER + m].id, p, why);
        }
    }
    http_client_free(c);
}

/* The logs of a failed run: kept, with their errors shown. */
static void show_logs(void)
{
    for (int i = 0; i < NP && P[i].s.log_path[0]; i++) {
        char cmd[800];
        fprintf(stderr, "multiproc: the log of process %d is kept at %s; its last errors:\n", i,
                P[i].s.log_path);
        snprintf(cmd, sizeof cmd,
                 "grep -E ' (ERROR|WARN) ' '%s' | grep -v 'access control is off' | tail -n 8 >&2",
                 P[i].s.log_path);
        if (system(cmd) != 0)
            fprintf(stderr, "  (none)\n");
    }
}

/* ---- the test ------------------------------------------------------------- */

START_TEST(processes_sharing_a_data_directory_lose_nothing_and_agree)
{
    NP = env_int("STRATA_MP_PROCS", 3);
    int seconds = env_int("STRATA_MP_SECONDS", 120);
    int kill_s = env_int("STRATA_MP_KILL_S", 10);
    int settle_s = env_int("STRATA_MP_SETTLE_S", 20);
    int min_rate = env_int("STRATA_MP_MIN_RATE", 10);
    bool jitter = env_int("STRATA_MP_KILL_JITTER", 1) != 0;
    cluster = env_int("STRATA_MP_CLUSTER", 0) != 0;
    n_readers = env_int("STRATA_MP_READERS", 2);
    ck_assert_msg(n_readers >= 1 && n_readers <= MAX_READERS, "STRATA_MP_READERS must be 1 to %d",
                  MAX_READERS);
    unsigned seed = (unsigned)env_int("STRATA_TEST_SEED", (int)time(NULL));
    ck_assert_msg(NP >= 1 && NP <= MAXP, "STRATA_MP_PROCS must be 1 to %d", MAXP);
    ck_assert_int_ge(seconds, 1);
    ck_assert_int_ge(kill_s, 0);
    fprintf(stderr, "multiproc: %d %s, %d s, a kill every %d s%s, seed %u\n", NP,
            cluster ? "cluster nodes behind nginx" : "processes", seconds, kill_s,
            jitter ? " on average" : "", seed);
    make_resources();
    for (int w = 0; w < WRITERS; w++)
        atomic_store(&hot[w], own_dict(w, 0));
    make_pools(seed);
    newest_alive = calloc(NRES, sizeof *newest_alive);
    int a = 0;
    server_args[a++] = "--gc-grace";
    server_args[a++] = "0";
    server_args[a++] = "--maintenance-interval";
    server_args[a++] = "1";
    server_args[a++] = "--inline-threshold";
    server_args[a++] = "1K";
    server_args[a++] = "--retention"; /* only deletes remove versions */
    server_args[a++] = "dictionary:keep=1000000;literature:keep=1000000;corpus:keep=1000000";
    if (getenv("STRATA_KEEP_LOGS") == NULL) {
        server_args[a++] = "--access-log";
        server_args[a++] = "off";
    }
    server_args[a] = NULL;

    bool started;
    if (cluster) {
        /* scripts/cluster: the servers, the nodes on them, nginx */
        test_server nodes[MAXP];
        started = mp_cluster_start(&CL, NP, server_args, nodes, &LB) == 0;
        if (!started)
            fprintf(stderr, "multiproc: the cluster did not start; its logs are in %s\n", CL.dir);
        for (int i = 0; i < NP && started; i++) {
            P[i].s = nodes[i];
            P[i].up = true;
        }
    } else {
        /* process 0 makes the data directory; the others share it */
        started = server_start(&P[0].s, server_args) == 0;
        snprintf(data_dir, sizeof data_dir, "%s", P[0].s.data_dir);
        P[0].up = started;
        for (int i = 1; i < NP && started; i++)
            P[i].up = started = server_start_shared(&P[i].s, data_dir, server_args) == 0;
    }
    bool seeded = started && seed_trees();

    int64_t t_begin = now_ns(), t_end = t_begin + (int64_t)seconds * 1000000000;
    pthread_t th[WRITERS], audit_th, gc_th, read_th[MAX_READERS];
    static writer_ctx ctx[WRITERS];
    if (seeded) {
        for (int i = 0; i < WRITERS; i++) {
            memset(&ctx[i], 0, sizeof ctx[i]);
            ctx[i].w = i;
            ctx[i].seed = seed ^ (unsigned)(i * 104729 + 1);
            pthread_create(&th[i], NULL, writer, &ctx[i]);
        }
        unsigned aseed = seed ^ 0x5bd1e995u;
        pthread_create(&audit_th, NULL, auditor, &aseed);
        unsigned gseed = seed ^ 0x9e3779b9u;
        pthread_create(&gc_th, NULL, collector, &gseed);
        unsigned rseed[MAX_READERS];
        for (int i = 0; i < n_readers; i++) {
            rseed[i] = seed ^ (unsigned)(i * 40503 + 7);
            pthread_create(&read_th[i], NULL, reader, &rseed[i]);
        }
        /* kill -9 one process at random every kill_s (±50%), restart it */
        unsigned kseed = seed * 7919u + 1;
        int64_t next_kill = kill_s > 0 ? next_kill_at(&kseed, kill_s, jitter) : INT64_MAX;
        /* cluster mode: redis-server restarted (empty) at 40% of the run,
         * versitygw stopped for 5 s at 60% */
        int64_t redis_at = cluster ? t_begin + (int64_t)seconds * 400000000 : INT64_MAX;
        int64_t s3_at = cluster ? t_begin + (int64_t)seconds * 600000000 : INT64_MAX;
        int64_t s3_back_at = INT64_MAX;
        while (now_ns() < t_end) {
            sleep_ms(50);
            watch_deaths();
            if (now_ns() >= next_kill && now_ns() < t_end) {
                kill_one(&kseed);
                next_kill = next_kill_at(&kseed, kill_s, jitter);
            }
            if (now_ns() >= redis_at) {
                redis_at = INT64_MAX;
                if (mp_cluster_redis_restart(&CL) == 0)
                    n_redis_restarts++;
                else
                    report(&n_errors, "redis-server did not restart (see %s)", CL.dir);
            }
            if (now_ns() >= s3_at) {
                s3_at = INT64_MAX;
                if (mp_cluster_s3_stop(&CL) != 0)
                    report(&n_errors, "versitygw did not stop (see %s)", CL.dir);
                s3_back_at = now_ns() + (int64_t)5000000000;
            }
            if (now_ns() >= s3_back_at) {
                s3_back_at = INT64_MAX;
                if (mp_cluster_s3_start(&CL) == 0)
                    n_s3_stops++;
                else
                    report(&n_errors, "versitygw did not start again (see %s)", CL.dir);
            }
        }
        atomic_store(&stop_writers, 1);
        for (int i = 0; i < WRITERS; i++)
            pthread_join(th[i], NULL);
        pthread_join(audit_th, NULL);
        pthread_join(gc_th, NULL);
        for (int i = 0; i < n_readers; i++)
            pthread_join(read_th[i], NULL);
        if (s3_back_at != INT64_MAX && mp_cluster_s3_start(&CL) != 0)
            report(&n_errors, "versitygw did not start again (see %s)", CL.dir);
        watch_deaths();
    }
    double run_s = (double)(now_ns() - t_begin) / 1e9;

    /* the checks, with every process up and the writers stopped */
    if (seeded) {
        sleep_ms(3000); /* maintenance runs every second */
        index_dels();
        pthread_t vt[VERIFIERS];
        verifier vs[VERIFIERS];
        for (int k = 0; k < VERIFIERS; k++) {
            vs[k].k = k;
            pthread_create(&vt[k], NULL, verify_versions, &vs[k]);
        }
        for (int k = 0; k < VERIFIERS; k++)
            pthread_join(vt[k], NULL);
        /* masters first: one a killed process left behind moves when
         * maintenance rolls it forward */
        check_masters(settle_s);
        http_client *c = http_client_new();
        for (int p = 0; p < NP; p++)
            for (int r = 0; r < NRES; r++)
                check_latest(c, r, p);
        http_client_free(c);
        watch_deaths();
    }

    /* cluster mode: who held the maintenance lease, from the nodes' logs */
    mp_lease_history lease = {0};
    int lease_rc = cluster && started ? mp_cluster_lease_history(&CL, &lease) : 0;
    long cache_stale = atomic_load(&n_cache_stale);
    if (cluster)
        printf("cluster: %d nodes behind nginx, %d readers, %ld node kills (%ld of the lease's "
               "holder), %ld redis-server restarts, %ld versitygw stops of 5 s, %ld answers 503 "
               "while a server was down, cache PUT %ld / DELETE %ld acked, cache reads %ld stale "
               "%ld, maintenance lease taken %d times, moved %d times, tokens held twice %d\n",
               NP, n_readers, atomic_load(&n_kills), n_holder_kills, n_redis_restarts, n_s3_stops,
               atomic_load(&n_unavailable), atomic_load(&n_cache_put), atomic_load(&n_cache_del),
               atomic_load(&n_cache_reads), cache_stale, lease.takes, lease.moves, lease.shared);

    long del_unknown = 0;
    for (size_t i = 0; i < ndels; i++)
        del_unknown += dels[i].state == D_UNKNOWN;
    long lost_end = atomic_load(&n_lost), lost_run = atomic_load(&n_lost_run);
    long stale = atomic_load(&n_stale), changed = atomic_load(&n_changed);
    long undeleted = atomic_load(&n_undeleted), latest_bad = atomic_load(&n_latest_bad);
    long master_bad = atomic_load(&n_master_bad), deaths = atomic_load(&n_deaths);
    long errors = atomic_load(&n_errors), kills = atomic_load(&n_kills);
    long inline_acks = atomic_load(&n_inline), blob_acks = atomic_load(&n_blob);
    printf("multiproc: %d processes, %.0f s, %ld kills, %ld restarts, saves acked %ld (inline %ld "
           "/ blob %ld), batches acked %ld, deletes acked %ld version / %ld resource, tree attach "
           "%ld / detach %ld acked, children re-saved %ld, freshness checks %ld stale %ld, "
           "versions verified %ld (%ld gone by a delete) lost %ld (%ld at the end, %ld during the "
           "run in %ld read-backs), latest-uniqueness checks %ld bad %ld, masters checked %ld "
           "mismatched %ld\n",
           NP, run_s, kills, atomic_load(&n_restarts), inline_acks + blob_acks, inline_acks,
           blob_acks, atomic_load(&n_batches), atomic_load(&n_del_version),
           atomic_load(&n_del_resource), atomic_load(&n_attach), atomic_load(&n_detach),
           atomic_load(&n_child_saves), atomic_load(&n_fresh), stale, atomic_load(&n_verified),
           atomic_load(&n_gone_ok), lost_end + lost_run, lost_end, lost_run,
           atomic_load(&n_audits) + atomic_load(&n_audit_deleted) + lost_run,
           atomic_load(&n_latest_checks), latest_bad, atomic_load(&n_master_checks), master_bad);
    fflush(stdout);
    fprintf(stderr,
            "multiproc: %ld requests, %ld cut by a kill (outcome unknown; %ld of them deletes), "
            "%ld freshness checks skipped, %ld reads by the readers, %ld deletes re-checked, %ld "
            "read-backs found a "
            "version deleted, %ld forced collections (%ld refused: another held the lease), %ld "
            "changed, %ld undeleted, %ld unexpected deaths, %ld other errors\n",
            atomic_load(&n_sent), atomic_load(&n_unknown), del_unknown,
            atomic_load(&n_fresh_skipped), atomic_load(&n_reads), atomic_load(&n_del_checked),
            atomic_load(&n_audit_deleted), atomic_load(&n_gc_runs), atomic_load(&n_gc_busy),
            changed, undeleted, deaths, errors);
    fprintf(stderr, "multiproc: answers other than 2xx during the run:");
    for (int st = 300; st < 600; st++)
        if (atomic_load(&status_hist[st]) > 0)
            fprintf(stderr, " %d x%ld", st, atomic_load(&status_hist[st]));
    fprintf(stderr, "\n");

    char fails[512] = "";
    size_t fl = 0;
#define FAIL_IF(cond, ...)                                                                         \
    do {                                                                                           \
        if ((cond) && fl < sizeof fails)                                                           \
            fl += (size_t)snprintf(fails + fl, sizeof fails - fl, __VA_ARGS__);                    \
    } while (0)
    FAIL_IF(!started, "the processes did not start; ");
    FAIL_IF(started && !seeded, "the trees could not be set up; ");
    FAIL_IF(lost_end + lost_run > 0, "%ld acknowledged versions lost; ", lost_end + lost_run);
    FAIL_IF(stale > 0, "%ld stale latest reads; ", stale);
    FAIL_IF(changed > 0, "%ld contents changed; ", changed);
    FAIL_IF(undeleted > 0, "%ld deleted versions back; ", undeleted);
    FAIL_IF(latest_bad > 0, "%ld resources without exactly one right latest; ", latest_bad);
    FAIL_IF(master_bad > 0, "%ld master vocabularies wrong; ", master_bad);
    FAIL_IF(deaths > 0, "%ld processes died unasked; ", deaths);
    FAIL_IF(errors > 0, "%ld other errors; ", errors);
    FAIL_IF(cache_stale > 0, "%ld stale cache entries served; ", cache_stale);
    FAIL_IF(lease_rc != 0, "the nodes' logs could not be read; ");
    FAIL_IF(lease.shared > 0, "%d maintenance lease tokens taken twice; ", lease.shared);
    bool failed = fails[0] != '\0';
    if (failed)
        show_logs();
    /* every process stopped, the directory removed, before any assertion:
     * a failed one ends this process */
    if (cluster && started)
        FAIL_IF(mp_cluster_stop(&CL) != 0, "the cluster did not stop cleanly; ");
    for (int i = NP - 1; i >= 0 && !cluster; i--) {
        int code = P[i].s.pid > 0 ? server_stop(&P[i].s, 60) : 0;
        FAIL_IF(code != 0, "process %d exited with %d on SIGTERM; ", i, code);
        if (i > 0) {
            if (!failed)
                server_forget_log(&P[i].s);
        } else {
            if (failed)
                setenv("STRATA_KEEP_LOGS", "1", 1); /* server_cleanup keeps the log */
            server_cleanup(&P[0].s);
        }
    }
    /* and the run did what it is there for: a test that cannot fail is none */
    FAIL_IF(seeded && nacks < (size_t)(min_rate * seconds), "only %zu saves acknowledged; ", nacks);
    FAIL_IF(seeded && (inline_acks == 0 || blob_acks == 0 || atomic_load(&n_batches) == 0 ||
                       atomic_load(&n_del_version) == 0 || atomic_load(&n_del_resource) == 0 ||
                       atomic_load(&n_attach) == 0 || atomic_load(&n_detach) == 0 ||
                       atomic_load(&n_child_saves) == 0 || atomic_load(&n_fresh) == 0 ||
                       atomic_load(&n_verified) == 0 || atomic_load(&n_audits) == 0),
            "some kind of operation or check never happened; ");
    FAIL_IF(seeded && atomic_load(&n_master_checks) != NMASTER * NP, "masters left unchecked; ");
    FAIL_IF(seeded && kill_s > 0 && seconds * 2 >= kill_s * 3 + 2 && kills == 0,
            "no process was killed; ");
    FAIL_IF(atomic_load(&n_restarts) < kills, "killed processes not restarted; ");
    FAIL_IF(cluster && seeded &&
                (atomic_load(&n_cache_put) == 0 || atomic_load(&n_cache_del) == 0 ||
                 atomic_load(&n_cache_reads) == 0 || n_redis_restarts == 0 || n_s3_stops == 0 ||
                 lease.takes == 0),
            "some cache operation, server fault or lease taking never happened; ");
    FAIL_IF(cluster && seeded && n_holder_kills > 0 && lease.newest <= killed_holder_token,
            "no node took the maintenance lease after its holder was killed; ");
    FAIL_IF(cluster && seeded && kills > 0 && n_holder_kills == 0,
            "no node was known to hold the maintenance lease when the first was killed; ");
    /* 503s are expected while a server is down or a dead node's leases and
     * reservations lapse, not as the common answer */
    FAIL_IF(cluster && seeded && atomic_load(&n_fresh_skipped) * 10 > atomic_load(&n_fresh),
            "%ld of %ld freshness checks found no node answering; ", atomic_load(&n_fresh_skipped),
            atomic_load(&n_fresh));
    FAIL_IF(cluster && seeded && atomic_load(&n_unavailable) * 5 > atomic_load(&n_sent),
            "%ld answers 503 of %ld requests; ", atomic_load(&n_unavailable), atomic_load(&n_sent));
    if (cluster && started) {
        if (fails[0] != '\0')
            fprintf(stderr, "multiproc: the cluster's logs are kept in %s\n", CL.dir);
        else
            mp_cluster_remove(&CL);
    }
#undef FAIL_IF
    free_pools();
    free(newest_alive);
    for (int r = 0; r < NRES; r++)
        free(del_idx[r]);
    free(acks);
    free(dels);
    ck_assert_msg(fails[0] == '\0', "%s", fails);
}
END_TEST

static Suite *multiproc_suite(void)
{
    Suite *s = suite_create("multiproc");
    TCase *t = tcase_create("multiproc");
    tcase_set_timeout(t,
                      env_int("STRATA_MP_SECONDS", 120) + env_int("STRATA_MP_SETTLE_S", 20) + 900);
    tcase_add_test(t, processes_sharing_a_data_directory_lose_nothing_and_agree);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return run_suite(multiproc_suite());
}
