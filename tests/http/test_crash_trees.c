/* Issue 14's crash acceptance: kill -9 of strata during batches and tree
 * changes, STRATA_CRASH_TREES_CYCLES times (else STRATA_TEST_CYCLES, else
 * 20), each time restarted on the same
 * data directory (the same store: SQLite, or MongoDB with
 * STRATA_TEST_STORE). While it runs, writers send
 * (a) POST /batch of 2 or 3 saves on distinct resources that nothing
 *     deletes (dictionaries, a quarter of them past the inline threshold,
 *     so blobs; corpora in no tree), the saves of one batch sharing a
 *     token that no other batch uses;
 * (b) tree changes over GROUPS small trees (a root master gN-r, a nested
 *     master gN-n under it, KIDS corpora): a child re-saved with a new word
 *     list (its masters follow), attached (half of the time with words: a
 *     new version and an attach in one change), detached, and the nested
 *     master detached from its root and attached again.
 * After every restart:
 * (1) all or nothing: a token found in any version is found, in exactly
 *     one version, in every resource of its batch; a refused (4xx) batch
 *     left it nowhere; an acknowledged batch's versions hold it, at the
 *     versions and with the hashes its answer gave; a batch found nowhere
 *     after its own cycle never appears later; a version once listed stays
 *     listed with its hash; the latest is the newest listed; a blob's
 *     content hashes to its version's hash (read when first listed, and
 *     again at the end);
 * (2) 0 acknowledged versions lost: (1) holds every acknowledged batch
 *     version at every check; every child save's version and every master
 *     version a tree change answered is read back by number after its
 *     cycle (with its hash), and found listed at the end;
 * (3) every master's vocabulary (per word: children holding it, summed
 *     frequency, as GET /trees/{m}/vocabulary reports them) equals the
 *     union recomputed from its children's latest versions (a nested
 *     master brings its own union), and it records every child at that
 *     child's latest version.
 * (3) need not hold at the first look: a change cut midway leaves its tree
 * in doubt until the dead holder's lease expires (15 s, MongoDB) and the
 * next holder (a change, or the maintenance sweep) rebuilds it, and a
 * child save committed before its master followed is rolled forward by
 * the sweep once the dead node's maintenance lease has expired (15 s,
 * either store), or by the child's next save. So a tree found off its
 * children is noted (and reported when no change of the test's was caught
 * in it: a rebuild under way shows its intermediate states), and after the
 * last kill every tree must be whole within CONVERGE_S. On a store with
 * tree leases, writers keep out of a tree for SETTLE_MS after a change in
 * it was cut (or answered 5xx), or it was found off, so that they do not
 * spend the cycle waiting out a dead holder's lease.
 * Retention is out of reach; blob collection runs every second with no
 * grace. */
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

#define BATCH_WRITERS 3
#define TREE_WRITERS  2
#define WRITERS       (BATCH_WRITERS + TREE_WRITERS)
#define NBD           6 /* dictionaries bd0.. */
#define NBC           4 /* corpora bc0.., in no tree */
#define NBR           (NBD + NBC)
#define GROUPS        10
#define KIDS          4
#define POOLW         24
#define MAX_BATCHES   50000
#define MAX_ACKS      200000
#define SETTLE_MS     16000 /* past a dead holder's tree lease (15 s) */
#define CONVERGE_S    60
#define VLEN          24
#define HLEN          (SHA256_HEX_LEN + 1)

static test_server S;
static const char *const ARGS[] = {"--threads",
                                   "8", /* writers waiting out a dead transaction leave room */
                                   "--gc-grace",
                                   "0",
                                   "--maintenance-interval",
                                   "1",
                                   "--inline-threshold",
                                   "1K",
                                   "--retention",
                                   "dictionary:keep=1000000;corpus:keep=1000000",
                                   NULL};
static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};

/* sorted, so that a vocabulary in pool order is in the server's order */
static const char *const pool[POOLW] = {"amber", "birch",  "cedar", "delta",   "ember",  "fjord",
                                        "grove", "heron",  "inlet", "juniper", "kelp",   "larch",
                                        "maple", "nettle", "oak",   "pine",    "quartz", "reed",
                                        "sedge", "thyme",  "umber", "vale",    "willow", "yarrow"};

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

static int word_index(const char *w)
{
    for (int i = 0; i < POOLW; i++)
        if (w != NULL && strcmp(pool[i], w) == 0)
            return i;
    return POOLW; /* not a pool word: counted apart, and never expected */
}

/* ---- resources --------------------------------------------------------------- */

static const char *bres_type(int r)
{
    return r < NBD ? "dictionary" : "corpus";
}

static void bres_id(int r, char *out, size_t cap)
{
    if (r < NBD)
        snprintf(out, cap, "bd%d", r);
    else
        snprintf(out, cap, "bc%d", r - NBD);
}

enum { FREE = 0, UNDER_R = 1, UNDER_N = 2 };

static void kid_id(int g, int k, char *out, size_t cap)
{
    snprintf(out, cap, "g%d-k%d", g, k);
}

static void master_id(int g, int which, char *out, size_t cap)
{
    snprintf(out, cap, "g%d-%c", g, which == UNDER_R ? 'r' : 'n');
}

/* ---- what the writers sent and were told ------------------------------------------ */

typedef struct batch {
    int nres;
    int res[3];
    int status; /* the answer's; -1: none came (the kill) */
    char version[3][VLEN];
    char hash[3][HLEN];
    int cycle;
    unsigned found;     /* slots whose resource holds the token (each check recomputes it) */
    bool absent_after;  /* found nowhere at its own cycle's check */
    bool late_reported; /* appeared after that: reported once */
    bool partial_reported;
} batch;

typedef struct ack {
    bool batch; /* a batch's: the token check holds it (every check, by listing) */
    char type[12];
    char id[24];
    char version[VLEN];
    char hash[HLEN]; /* "": only the version's existence is known (a master) */
    int cycle;
} ack;

static batch batches[MAX_BATCHES];
static ack acks[MAX_ACKS];
static atomic_int nbatches, nacks;
static atomic_int stop_writers;
static int cycle_no;
static _Thread_local bool server_gone; /* this writer saw a request die */

/* counts for the report */
static atomic_long b_ok, b_refused, b_failed, b_unanswered;
static atomic_long t_ok, t_refused, t_busy, t_other, t_unanswered;
static atomic_long t_saves, t_attaches, t_detaches, t_moves;
static atomic_long status_hist[600];
static long b_committed_unanswered, b_absent_unanswered;

static void count_status(long st)
{
    if (st >= 0 && st < 600)
        atomic_fetch_add(&status_hist[st], 1);
}

static void record_ack(bool in_batch, const char *type, const char *id, const char *version,
                       const char *hash)
{
    if (type == NULL || id == NULL || version == NULL)
        return;
    int k = atomic_fetch_add(&nacks, 1);
    if (k >= MAX_ACKS)
        return;
    ack *a = &acks[k];
    a->batch = in_batch;
    snprintf(a->type, sizeof a->type, "%s", type);
    snprintf(a->id, sizeof a->id, "%s", id);
    snprintf(a->version, sizeof a->version, "%s", version);
    snprintf(a->hash, sizeof a->hash, "%s", hash ? hash : "");
    a->cycle = cycle_no;
}

/* ---- the trees, as the test believes them --------------------------------------- */

typedef struct group {
    int parent[KIDS]; /* FREE, UNDER_R, UNDER_N */
    bool n_under_r;
    int64_t closed_until; /* lease stores: writers keep out until then (a dead holder's lease) */
    bool caught;          /* since the last check, a change here was cut by the kill or failed */
    bool off;             /* the last check found it off its children */
    int64_t off_since;    /* the kill before the check that first found it off */
} group;

static group groups[GROUPS];
static pthread_mutex_t gm = PTHREAD_MUTEX_INITIALIZER;
static long caught_n, caught_whole, off_n, off_uncaught, came_back;
static double slowest_s;
static bool lease_store; /* tree changes under leases (MongoDB), not one transaction */

/* A change in group g was cut (at `when`) or answered 5xx: it may be in doubt. */
static void mark_caught(int g, int64_t when)
{
    pthread_mutex_lock(&gm);
    groups[g].caught = true;
    if (lease_store && when + (int64_t)SETTLE_MS * 1000000 > groups[g].closed_until)
        groups[g].closed_until = when + (int64_t)SETTLE_MS * 1000000;
    pthread_mutex_unlock(&gm);
}

/* ---- writers ------------------------------------------------------------------ */

typedef struct wctx {
    int w;
    unsigned seed;
    int lost; /* the group of the tree change the kill cut, or -1 */
} wctx;

/* One request; -1 when no answer came (the server died under it). */
static int do_req(http_client *c, const char *method, const char *path, const char *body,
                  http_resp *r)
{
    if (http_client_do(c, &S, method, path, body ? JSON_CT : NULL, body, body ? strlen(body) : 0,
                       r) != 0) {
        server_gone = true;
        return -1;
    }
    return 0;
}

static json_t *words_array(unsigned *seed, int min, int span)
{
    json_t *a = json_array();
    int n = min + (int)(rnd(seed) % (unsigned)span);
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(pool[rnd(seed) % POOLW]));
    return a;
}

static void op_batch(http_client *c, wctx *x)
{
    int k = atomic_fetch_add(&nbatches, 1);
    if (k >= MAX_BATCHES) {
        sleep_ms(20);
        return;
    }
    batch *b = &batches[k];
    b->nres = 2 + (int)(rnd(&x->seed) % 2);
    b->status = -1;
    b->cycle = cycle_no;
    for (int i = 0; i < b->nres; i++) {
        int r;
        bool dup;
        do {
            r = (int)(rnd(&x->seed) % NBR);
            dup = false;
            for (int j = 0; j < i; j++)
                dup |= b->res[j] == r;
        } while (dup);
        b->res[i] = r;
    }
    char tok[16];
    snprintf(tok, sizeof tok, "tk%06d", k);
    json_t *ops = json_array();
    for (int i = 0; i < b->nres; i++) {
        char id[16];
        bres_id(b->res[i], id, sizeof id);
        bool big = rnd(&x->seed) % 4 == 0; /* past --inline-threshold: a blob */
        json_t *op;
        if (b->res[i] < NBD) {
            json_t *content = json_pack("{s:s, s:i}", "tok", tok, "n", (int)rnd(&x->seed));
            if (big) {
                char pad[1400];
                size_t len = 1100 + rnd(&x->seed) % 250;
                for (size_t j = 0; j < len; j++)
                    pad[j] = (char)('a' + rnd(&x->seed) % 26);
                pad[len] = '\0';
                json_object_set_new(content, "pad", json_string(pad));
            }
            op = json_pack("{s:s, s:s, s:s, s:o, s:s, s:s}", "op", "save", "type", "dictionary",
                           "id", id, "content", content, "word", "w", "provider", "p");
        } else {
            json_t *words = words_array(&x->seed, 1, 6);
            json_array_append_new(words, json_string(tok));
            for (int j = 0; big && j < 160; j++) {
                char pw[16];
                snprintf(pw, sizeof pw, "pw%04u", rnd(&x->seed) % 10000);
                json_array_append_new(words, json_string(pw));
            }
            op = json_pack("{s:s, s:s, s:s, s:{s:o}, s:s, s:s}", "op", "save", "type", "corpus",
                           "id", id, "content", "words", words, "corpus_type", "literature",
                           "language", "en");
        }
        json_array_append_new(ops, op);
    }
    json_t *req = json_pack("{s:o}", "operations", ops);
    char *body = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    http_resp r;
    if (do_req(c, "POST", "/batch", body, &r) != 0) {
        atomic_fetch_add(&b_unanswered, 1);
        free(body);
        return;
    }
    free(body);
    count_status(r.status);
    b->status = (int)r.status;
    if (r.status == 200) {
        atomic_fetch_add(&b_ok, 1);
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        size_t i;
        json_t *res;
        json_array_foreach(json_object_get(j, "results"), i, res)
        {
            const char *v = json_string_value(json_object_get(res, "version"));
            const char *h = json_string_value(json_object_get(res, "data_hash"));
            if (i < 3) {
                snprintf(b->version[i], VLEN, "%s", v ? v : "");
                snprintf(b->hash[i], HLEN, "%s", h ? h : "");
            }
            record_ack(true, json_string_value(json_object_get(res, "type")),
                       json_string_value(json_object_get(res, "id")), v, h);
        }
        json_decref(j);
    } else if (r.status >= 400 && r.status < 500) {
        atomic_fetch_add(&b_refused, 1);
    } else {
        atomic_fetch_add(&b_failed, 1);
    }
    http_resp_free(&r);
}

/* A tree change's answer: counted; a master's version in it remembered;
 * after a 5xx the change may have stopped midway. */
static bool tree_answered(int g, http_resp *r, bool master_answer)
{
    count_status(r->status);
    if (r->status == 200 || r->status == 201) {
        atomic_fetch_add(&t_ok, 1);
        if (master_answer) {
            json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
            record_ack(false, "corpus", json_string_value(json_object_get(j, "id")),
                       json_string_value(json_object_get(j, "version")), NULL);
            json_decref(j);
        }
        return true;
    }
    if (r->status == 404 || r->status == 409)
        atomic_fetch_add(&t_refused, 1); /* the test's picture was stale */
    else if (r->status == 503)
        atomic_fetch_add(&t_busy, 1);
    else
        atomic_fetch_add(&t_other, 1);
    if (r->status >= 500)
        mark_caught(g, now_ns());
    return false;
}

static void op_tree(http_client *c, wctx *x)
{
    int cand[GROUPS], nc = 0;
    int64_t now = now_ns();
    pthread_mutex_lock(&gm);
    for (int g = 0; g < GROUPS; g++)
        if (groups[g].closed_until <= now)
            cand[nc++] = g;
    if (nc == 0) {
        pthread_mutex_unlock(&gm);
        sleep_ms(20); /* every tree closed: wait */
        return;
    }
    int g = cand[rnd(&x->seed) % (unsigned)nc];
    group snap = groups[g];
    pthread_mutex_unlock(&gm);

    int freek[KIDS], nfree = 0, tiedk[KIDS], ntied = 0;
    for (int k = 0; k < KIDS; k++) {
        if (snap.parent[k] == FREE)
            freek[nfree++] = k;
        else
            tiedk[ntied++] = k;
    }
    unsigned op = rnd(&x->seed) % 100;
    if (op >= 45 && op < 65 && nfree == 0)
        op = 70; /* nothing to attach: detach */
    else if (op >= 65 && op < 88 && ntied == 0)
        op = 50; /* nothing to detach: attach */
    char path[128], id[24], mid[24];
    char *body = NULL;
    http_resp r;
    x->lost = g; /* until the answer comes */
    if (op < 45) {
        /* a child's new word list; its masters follow */
        int k = (int)(rnd(&x->seed) % KIDS);
        kid_id(g, k, id, sizeof id);
        json_t *req =
            json_pack("{s:{s:o}, s:s, s:s}", "content", "words", words_array(&x->seed, 1, 8),
                      "corpus_type", "literature", "language", "en");
        body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        snprintf(path, sizeof path, "/corpus/%s/versions", id);
        atomic_fetch_add(&t_saves, 1);
        if (do_req(c, "POST", path, body, &r) != 0)
            goto unanswered;
        if (tree_answered(g, &r, false)) {
            json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
            json_t *vi = json_object_get(j, "version_info");
            record_ack(false, "corpus", id, json_string_value(json_object_get(vi, "version")),
                       json_string_value(json_object_get(vi, "data_hash")));
            json_decref(j);
        }
    } else if (op < 65) {
        int k = freek[rnd(&x->seed) % (unsigned)nfree];
        int to = rnd(&x->seed) % 2 ? UNDER_R : UNDER_N;
        kid_id(g, k, id, sizeof id);
        master_id(g, to, mid, sizeof mid);
        json_t *req = json_pack("{s:s}", "id", id);
        if (rnd(&x->seed) % 2) { /* a new version of the child, attached in one change */
            json_object_set_new(req, "words", words_array(&x->seed, 1, 8));
            json_object_set_new(req, "corpus_type", json_string("literature"));
        }
        body = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        snprintf(path, sizeof path, "/trees/%s/children", mid);
        atomic_fetch_add(&t_attaches, 1);
        if (do_req(c, "POST", path, body, &r) != 0)
            goto unanswered;
        if (tree_answered(g, &r, true)) {
            pthread_mutex_lock(&gm);
            groups[g].parent[k] = to;
            pthread_mutex_unlock(&gm);
        }
    } else if (op < 88) {
        int k = tiedk[rnd(&x->seed) % (unsigned)ntied];
        kid_id(g, k, id, sizeof id);
        master_id(g, snap.parent[k], mid, sizeof mid);
        snprintf(path, sizeof path, "/trees/%s/children/%s", mid, id);
        atomic_fetch_add(&t_detaches, 1);
        if (do_req(c, "DELETE", path, NULL, &r) != 0)
            goto unanswered;
        if (tree_answered(g, &r, true)) {
            pthread_mutex_lock(&gm);
            groups[g].parent[k] = FREE;
            pthread_mutex_unlock(&gm);
        }
    } else {
        /* the nested master leaves its root, or comes back under it */
        char root[24], nested[24];
        master_id(g, UNDER_R, root, sizeof root);
        master_id(g, UNDER_N, nested, sizeof nested);
        atomic_fetch_add(&t_moves, 1);
        int rc;
        if (snap.n_under_r) {
            snprintf(path, sizeof path, "/trees/%s/children/%s", root, nested);
            rc = do_req(c, "DELETE", path, NULL, &r);
        } else {
            snprintf(path, sizeof path, "/trees/%s/children", root);
            json_t *req = json_pack("{s:s}", "id", nested);
            body = json_dumps(req, JSON_COMPACT);
            json_decref(req);
            rc = do_req(c, "POST", path, body, &r);
        }
        if (rc != 0)
            goto unanswered;
        if (tree_answered(g, &r, true)) {
            pthread_mutex_lock(&gm);
            groups[g].n_under_r = !snap.n_under_r;
            pthread_mutex_unlock(&gm);
        }
    }
    http_resp_free(&r);
    x->lost = -1;
    free(body);
    return;
unanswered:
    atomic_fetch_add(&t_unanswered, 1);
    free(body);
}

static void *writer(void *arg)
{
    wctx *x = arg;
    http_client *c = http_client_new();
    server_gone = false;
    /* after the kill each writer sees its request in flight fail, and stops */
    while (!atomic_load(&stop_writers) && !server_gone) {
        if (x->w < BATCH_WRITERS)
            op_batch(c, x);
        else
            op_tree(c, x);
    }
    http_client_free(c);
    return NULL;
}

/* ---- checking ------------------------------------------------------------------ */

static atomic_long failures, checks;
static long verified_records, verified_blobs, retried_503;

__attribute__((format(printf, 1, 2))) static void violation(const char *fmt, ...)
{
    long n = atomic_fetch_add(&failures, 1);
    if (n >= 60)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "crash_trees FAIL (cycle %d): ", cycle_no);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void counted(void)
{
    atomic_fetch_add(&checks, 1);
}

/* GET; a 503 (a store still recovering) is asked again a few times. The
 * body stays in r (free it). -1: no answer. */
static int get(http_client *c, const char *path, http_resp *r)
{
    for (int i = 0;; i++) {
        if (http_client_do(c, &S, "GET", path, NULL, NULL, 0, r) != 0)
            return -1;
        if (r->status != 503 || i == 10)
            return 0;
        http_resp_free(r);
        retried_503++;
        sleep_ms(300);
    }
}

static json_t *get_json(http_client *c, const char *path, long *st)
{
    http_resp r;
    if (get(c, path, &r) != 0) {
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

static int hash_hex(const void *data, size_t len, char *hex)
{
    unsigned char d[SHA256_LEN];
    if (sha256_oneshot(data, len, d, NULL) != 0)
        return -1;
    sha256_to_hex(d, hex);
    return 0;
}

/* GET a version's content, checked against hash; the parsed JSON, or NULL
 * after a violation. */
static json_t *content_checked(http_client *c, const char *type, const char *id,
                               const char *version, const char *hash, const char *why)
{
    char path[200];
    snprintf(path, sizeof path, "/%s/%s/versions/%s/content", type, id, version);
    http_resp r;
    counted();
    if (get(c, path, &r) != 0) {
        violation("GET %s (%s): no answer", path, why);
        return NULL;
    }
    char hex[HLEN] = "";
    json_t *j = NULL;
    if (r.status != 200)
        violation("GET %s (%s) answers %ld: %.200s", path, why, r.status, r.body);
    else if (hash_hex(r.body, r.body_len, hex) != 0 || strcmp(hex, hash) != 0)
        violation("GET %s (%s): %zu bytes hashing to %.16s, its hash is %.16s", path, why,
                  r.body_len, hex, hash);
    else if ((j = json_loadb(r.body, r.body_len, 0, NULL)) == NULL)
        violation("GET %s (%s): not JSON", path, why);
    http_resp_free(&r);
    return j;
}

/* (1) ---------------------------------------------------------------------------- */

typedef struct seen_v {
    char version[VLEN];
    char hash[HLEN];
    int token; /* the batch whose token it holds, -1 none */
    int cycle; /* first listed after this cycle's kill */
    bool listed;
    bool blob; /* listed without its content: stored as a blob */
} seen_v;

static struct {
    seen_v *v;
    size_t n, cap;
} seen[NBR];

static int token_of_content(const json_t *content, int r)
{
    const char *t = NULL;
    if (r < NBD) {
        t = json_string_value(json_object_get(content, "tok"));
    } else {
        size_t i;
        json_t *w;
        json_array_foreach(json_object_get(content, "words"), i, w)
        {
            const char *s = json_string_value(w);
            if (s && strncmp(s, "tk", 2) == 0)
                t = s;
        }
    }
    int k = -1;
    int nb = atomic_load(&nbatches);
    if (t == NULL || sscanf(t, "tk%d", &k) != 1 || k < 0 || k >= nb || k >= MAX_BATCHES)
        return -1;
    return k;
}

/* Lists resource r's versions: new ones remembered with their token, old
 * ones still there with their hash, the latest the newest listed. With
 * reread, the content of every version stored as a blob is read again. */
static void list_resource(http_client *c, int r, bool reread)
{
    char id[16], path[200];
    bres_id(r, id, sizeof id);
    for (size_t i = 0; i < seen[r].n; i++)
        seen[r].v[i].listed = false;
    snprintf(path, sizeof path, "/%s/%s", bres_type(r), id);
    long lst;
    json_t *latest = get_json(c, path, &lst);
    char newest[VLEN] = "";
    snprintf(path, sizeof path, "/%s/%s/versions?limit=1000", bres_type(r), id);
    for (bool first = true;; first = false) {
        long st;
        json_t *list = get_json(c, path, &st);
        counted();
        if (st == 404 && first && seen[r].n == 0) {
            json_decref(list);
            break; /* no batch reached it yet */
        }
        if (st != 200) {
            violation("%s/%s: its versions answer %ld", bres_type(r), id, st);
            json_decref(list);
            break;
        }
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(list, "items"), i, it)
        {
            const char *v = vi_field(it, "version"), *h = vi_field(it, "data_hash");
            if (v == NULL || h == NULL) {
                violation("%s/%s: a listed version without version or hash", bres_type(r), id);
                continue;
            }
            if (first && i == 0)
                snprintf(newest, sizeof newest, "%s", v);
            seen_v *sv = NULL;
            for (size_t k = 0; k < seen[r].n && sv == NULL; k++)
                if (strcmp(seen[r].v[k].version, v) == 0)
                    sv = &seen[r].v[k];
            counted();
            if (sv != NULL) {
                sv->listed = true;
                if (strcmp(sv->hash, h) != 0)
                    violation("%s/%s %s: listed with hash %.16s after cycle %d, now %.16s",
                              bres_type(r), id, v, sv->hash, sv->cycle, h);
                if (reread && sv->blob) {
                    json_decref(content_checked(c, bres_type(r), id, v, h, "a blob, read again"));
                    verified_blobs++;
                }
                continue;
            }
            /* new: its token, from the listed content or (a blob) the content itself */
            json_t *content = json_object_get(it, "content");
            json_t *fetched = NULL;
            bool blob = content == NULL;
            if (blob) {
                fetched = content_checked(c, bres_type(r), id, v, h, "a batch's save");
                content = fetched;
                verified_blobs++;
            }
            int tok = content ? token_of_content(content, r) : -1;
            json_decref(fetched);
            if (content != NULL && tok < 0)
                violation("%s/%s %s holds no batch's token", bres_type(r), id, v);
            if (seen[r].n == seen[r].cap) {
                seen[r].cap = seen[r].cap ? seen[r].cap * 2 : 64;
                seen_v *nv = realloc(seen[r].v, seen[r].cap * sizeof *seen[r].v);
                ck_assert_ptr_nonnull(nv);
                seen[r].v = nv;
            }
            sv = &seen[r].v[seen[r].n++];
            snprintf(sv->version, sizeof sv->version, "%s", v);
            snprintf(sv->hash, sizeof sv->hash, "%s", h);
            sv->token = tok;
            sv->cycle = cycle_no;
            sv->listed = true;
            sv->blob = blob;
        }
        const char *next = json_string_value(json_object_get(list, "next"));
        if (next == NULL) {
            json_decref(list);
            break;
        }
        snprintf(path, sizeof path, "/%s/%s/versions?limit=1000&cursor=%s", bres_type(r), id, next);
        json_decref(list);
    }
    for (size_t i = 0; i < seen[r].n; i++)
        if (!seen[r].v[i].listed)
            violation("%s/%s %s (token of batch %d, listed after cycle %d) is listed no more",
                      bres_type(r), id, seen[r].v[i].version, seen[r].v[i].token,
                      seen[r].v[i].cycle);
    counted();
    const char *lv = lst == 200 ? vi_field(latest, "version") : NULL;
    if (newest[0] != '\0' && (lv == NULL || strcmp(lv, newest) != 0))
        violation("%s/%s: the latest answers %ld %s, the newest listed is %s", bres_type(r), id,
                  lst, lv ? lv : "-", newest);
    else if (newest[0] == '\0' && lst != 404 && seen[r].n == 0)
        violation("%s/%s: no version listed, but the latest answers %ld", bres_type(r), id, lst);
    json_decref(latest);
}

static int slot_of(const batch *b, int r)
{
    for (int i = 0; i < b->nres; i++)
        if (b->res[i] == r)
            return i;
    return -1;
}

static void check_batches(bool final)
{
    int nb = atomic_load(&nbatches);
    if (nb > MAX_BATCHES)
        nb = MAX_BATCHES;
    for (int k = 0; k < nb; k++)
        batches[k].found = 0;
    /* which resources hold each token, and in which version */
    static const seen_v *where[MAX_BATCHES][3];
    memset(where, 0, sizeof where);
    for (int r = 0; r < NBR; r++) {
        char id[16];
        bres_id(r, id, sizeof id);
        for (size_t i = 0; i < seen[r].n; i++) {
            const seen_v *sv = &seen[r].v[i];
            if (sv->token < 0)
                continue;
            batch *b = &batches[sv->token];
            int s = slot_of(b, r);
            counted();
            if (s < 0) {
                violation("%s/%s %s holds the token of batch %d, which did not save it",
                          bres_type(r), id, sv->version, sv->token);
                continue;
            }
            if (b->found & (1u << s))
                violation("%s/%s holds the token of batch %d twice: %s and %s (applied twice)",
                          bres_type(r), id, sv->token, where[sv->token][s]->version, sv->version);
            b->found |= 1u << s;
            where[sv->token][s] = sv;
        }
    }
    for (int k = 0; k < nb; k++) {
        batch *b = &batches[k];
        unsigned all = (1u << b->nres) - 1;
        char ids[3][16];
        for (int i = 0; i < b->nres; i++)
            bres_id(b->res[i], ids[i], sizeof ids[i]);
        counted();
        if (b->found != 0 && b->found != all && !b->partial_reported) {
            b->partial_reported = true;
            char in[128] = "", out[128] = "";
            for (int i = 0; i < b->nres; i++) {
                char *dst = b->found & (1u << i) ? in : out;
                size_t at = strlen(dst);
                snprintf(dst + at, 128 - at, " %s/%s%s%s", bres_type(b->res[i]), ids[i],
                         b->found & (1u << i) ? "@" : "",
                         b->found & (1u << i) ? where[k][i]->version : "");
            }
            violation("batch %d (sent in cycle %d, answered %d) is partly there: in%s; not in%s", k,
                      b->cycle, b->status, in, out);
        }
        if (b->status >= 400 && b->status < 500 && b->found != 0)
            violation("batch %d was refused with %d in cycle %d, yet some of it is there", k,
                      b->status, b->cycle);
        if (b->status == 200) {
            for (int i = 0; i < b->nres; i++) {
                const seen_v *sv = where[k][i];
                if (sv == NULL)
                    violation("batch %d (acknowledged in cycle %d) is not in %s/%s (was %s)", k,
                              b->cycle, bres_type(b->res[i]), ids[i], b->version[i]);
                else if (strcmp(sv->version, b->version[i]) != 0 ||
                         strcmp(sv->hash, b->hash[i]) != 0)
                    violation("batch %d: %s/%s acknowledged as %s (%.12s), its token is in %s "
                              "(%.12s)",
                              k, bres_type(b->res[i]), ids[i], b->version[i], b->hash[i],
                              sv->version, sv->hash);
            }
        }
        if (!final && b->cycle == cycle_no && (b->status < 0 || b->status >= 500)) {
            if (b->found == 0) {
                b_absent_unanswered++;
                b->absent_after = true;
            } else {
                b_committed_unanswered++;
            }
        }
        if (b->absent_after && b->found != 0 && !b->late_reported) {
            b->late_reported = true;
            violation("batch %d (cycle %d, answered %d) was nowhere after its cycle, and is there "
                      "now",
                      k, b->cycle, b->status);
        }
    }
}

/* (2) ----------------------------------------------------------------------------- */

/* An acknowledged version read back by its number: there, with its hash
 * (its content: the listing of batch resources reads blobs, see above). */
static void check_ack(http_client *c, const ack *a)
{
    char path[200];
    snprintf(path, sizeof path, "/%s/%s/versions/%s", a->type, a->id, a->version);
    long st;
    json_t *rec = get_json(c, path, &st);
    counted();
    const char *h = vi_field(rec, "data_hash");
    if (st != 200)
        violation("%s/%s %s (acknowledged in cycle %d) answers %ld: %.200s", a->type, a->id,
                  a->version, a->cycle, st, json_string_value(json_object_get(rec, "detail")));
    else if (a->hash[0] != '\0' && (h == NULL || strcmp(h, a->hash) != 0))
        violation("%s/%s %s: acknowledged with hash %.16s in cycle %d, now %.16s", a->type, a->id,
                  a->version, a->hash, a->cycle, h ? h : "?");
    else
        verified_records++;
    json_decref(rec);
}

/* At the end, every acknowledged version of the trees' corpora at once,
 * one listing per corpus (the batch resources' are held by the token
 * check: an acknowledged batch's versions carry its token and hashes). */
static void check_tree_acks_listed(http_client *c)
{
    int na = atomic_load(&nacks);
    if (na > MAX_ACKS)
        na = MAX_ACKS;
    for (int g = 0; g < GROUPS; g++) {
        for (int k = 0; k < KIDS + 2; k++) {
            char id[24], path[200];
            if (k < KIDS)
                kid_id(g, k, id, sizeof id);
            else
                master_id(g, k == KIDS ? UNDER_R : UNDER_N, id, sizeof id);
            /* every version of it, newest first */
            json_t *all = json_array();
            snprintf(path, sizeof path, "/corpus/%s/versions?limit=1000", id);
            for (;;) {
                long st;
                json_t *list = get_json(c, path, &st);
                counted();
                if (st != 200) {
                    violation("corpus/%s: its versions answer %ld", id, st);
                    json_decref(list);
                    break;
                }
                json_array_extend(all, json_object_get(list, "items"));
                const char *next = json_string_value(json_object_get(list, "next"));
                if (next != NULL)
                    snprintf(path, sizeof path, "/corpus/%s/versions?limit=1000&cursor=%s", id,
                             next);
                json_decref(list);
                if (next == NULL)
                    break;
            }
            for (int a = 0; a < na; a++) {
                if (strcmp(acks[a].type, "corpus") != 0 || strcmp(acks[a].id, id) != 0)
                    continue;
                size_t i;
                json_t *it;
                const char *h = NULL;
                bool there = false;
                json_array_foreach(all, i, it)
                {
                    if (strcmp(vi_field(it, "version") ? vi_field(it, "version") : "",
                               acks[a].version) == 0) {
                        there = true;
                        h = vi_field(it, "data_hash");
                    }
                }
                counted();
                if (!there)
                    violation("corpus/%s %s (acknowledged in cycle %d) is not listed at the end",
                              id, acks[a].version, acks[a].cycle);
                else if (acks[a].hash[0] != '\0' && (h == NULL || strcmp(h, acks[a].hash) != 0))
                    violation("corpus/%s %s: acknowledged with hash %.16s, listed with %.16s", id,
                              acks[a].version, acks[a].hash, h ? h : "?");
                else
                    verified_records++;
            }
            json_decref(all);
        }
    }
}

/* (3) ----------------------------------------------------------------------------- */

typedef struct agg {
    long kids[POOLW + 1], freq[POOLW + 1];
} agg;

/* A plain corpus's words at one version (immutable: kept). */
typedef struct leaf {
    char id[24], version[VLEN];
    long freq[POOLW + 1];
} leaf;

static leaf *leaves;
static size_t nleaves, capleaves;

static const leaf *leaf_at(http_client *c, const char *id, const char *version, char *why,
                           size_t cap)
{
    for (size_t i = 0; i < nleaves; i++)
        if (strcmp(leaves[i].id, id) == 0 && strcmp(leaves[i].version, version) == 0)
            return &leaves[i];
    char path[200];
    snprintf(path, sizeof path, "/corpus/%s/versions/%s/content", id, version);
    long st;
    json_t *j = get_json(c, path, &st);
    if (st != 200 || j == NULL) {
        snprintf(why, cap, "GET %s answers %ld", path, st);
        json_decref(j);
        return NULL;
    }
    if (nleaves == capleaves) {
        capleaves = capleaves ? capleaves * 2 : 256;
        leaf *nl = realloc(leaves, capleaves * sizeof *leaves);
        ck_assert_ptr_nonnull(nl);
        leaves = nl;
    }
    leaf *l = &leaves[nleaves++];
    memset(l, 0, sizeof *l);
    snprintf(l->id, sizeof l->id, "%s", id);
    snprintf(l->version, sizeof l->version, "%s", version);
    /* stored content: unique words, and frequencies for those above 1 */
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(j, "words"), i, w)
    {
        int x = word_index(json_string_value(w));
        long f = (long)json_integer_value(
            json_object_get(json_object_get(j, "frequencies"), json_string_value(w)));
        l->freq[x] += f > 0 ? f : 1;
    }
    json_decref(j);
    return l;
}

static void agg_text(const agg *a, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int x = 0; x <= POOLW && n + 1 < cap; x++)
        if (a->kids[x] > 0 || a->freq[x] != 0) {
            int w = snprintf(out + n, cap - n, "%s:%ld:%ld ", x < POOLW ? pool[x] : "(other)",
                             a->kids[x], a->freq[x]);
            if (w < 0 || (size_t)w >= cap - n)
                break;
            n += (size_t)w;
        }
}

/* The node's union from its children, compared with what the server
 * reports for it (and, first, every master below it). Returns false with
 * why set at the first difference. */
static bool node_whole(http_client *c, json_t *node, agg *out, char *why, size_t cap)
{
    memset(out, 0, sizeof *out);
    const char *id = json_string_value(json_object_get(node, "id"));
    size_t i;
    json_t *kid;
    json_array_foreach(json_object_get(node, "children"), i, kid)
    {
        const char *kidv = json_string_value(json_object_get(kid, "id"));
        const char *v = json_string_value(json_object_get(kid, "version"));
        const char *held = json_string_value(json_object_get(kid, "aggregated_version"));
        if (kidv == NULL || v == NULL) {
            snprintf(why, cap, "%s: a child without id or version", id);
            return false;
        }
        if (held == NULL || strcmp(held, v) != 0) {
            snprintf(why, cap, "%s records child %s at %s, its latest is %s", id, kidv,
                     held ? held : "-", v);
            return false;
        }
        if (json_array_size(json_object_get(kid, "children")) > 0) {
            agg sub;
            if (!node_whole(c, kid, &sub, why, cap))
                return false;
            for (int x = 0; x <= POOLW; x++)
                if (sub.kids[x] > 0) {
                    out->kids[x]++;
                    out->freq[x] += sub.freq[x];
                }
        } else {
            const leaf *l = leaf_at(c, kidv, v, why, cap);
            if (l == NULL)
                return false;
            for (int x = 0; x <= POOLW; x++)
                if (l->freq[x] > 0) {
                    out->kids[x]++;
                    out->freq[x] += l->freq[x];
                }
        }
    }
    char path[160];
    snprintf(path, sizeof path, "/trees/%s/vocabulary?limit=10000", id);
    long st;
    json_t *page = get_json(c, path, &st);
    counted();
    if (st != 200) {
        snprintf(why, cap, "GET %s answers %ld", path, st);
        json_decref(page);
        return false;
    }
    agg got;
    memset(&got, 0, sizeof got);
    json_t *it;
    json_array_foreach(json_object_get(page, "items"), i, it)
    {
        int x = word_index(json_string_value(json_object_get(it, "word")));
        got.kids[x] += (long)json_integer_value(json_object_get(it, "children"));
        got.freq[x] += (long)json_integer_value(json_object_get(it, "frequency"));
    }
    json_decref(page);
    if (memcmp(&got, out, sizeof got) != 0) {
        char want_t[1024], got_t[1024];
        agg_text(out, want_t, sizeof want_t);
        agg_text(&got, got_t, sizeof got_t);
        snprintf(why, cap, "%s (version %s): want %s| got %s", id,
                 json_string_value(json_object_get(node, "version")), want_t, got_t);
        return false;
    }
    return true;
}

static bool has_node(json_t *node, const char *id)
{
    size_t i;
    json_t *kid;
    json_array_foreach(json_object_get(node, "children"), i, kid)
    {
        const char *kidv = json_string_value(json_object_get(kid, "id"));
        if ((kidv != NULL && strcmp(kidv, id) == 0) || has_node(kid, id))
            return true;
    }
    return false;
}

/* Notes where each child hangs (the writers' picture). */
static void note_parents(int g, json_t *node, int which, group *pic, char *why, size_t cap)
{
    size_t i;
    json_t *kid;
    json_array_foreach(json_object_get(node, "children"), i, kid)
    {
        const char *id = json_string_value(json_object_get(kid, "id"));
        char nested[24];
        master_id(g, UNDER_N, nested, sizeof nested);
        int k = -1;
        char pre[16];
        snprintf(pre, sizeof pre, "g%d-k", g);
        if (which == UNDER_R && strcmp(id, nested) == 0) {
            pic->n_under_r = true;
            note_parents(g, kid, UNDER_N, pic, why, cap);
        } else if (strncmp(id, pre, strlen(pre)) == 0 && sscanf(id + strlen(pre), "%d", &k) == 1 &&
                   k >= 0 && k < KIDS && pic->parent[k] == FREE) {
            pic->parent[k] = which;
        } else {
            snprintf(why, cap, "%s has a child %s it should not have (twice, or foreign)",
                     json_string_value(json_object_get(node, "id")), id);
        }
    }
}

/* (3) for one group; its picture refreshed. */
static bool group_whole(http_client *c, int g, char *why, size_t cap)
{
    char root[24], nested[24], path[160];
    master_id(g, UNDER_R, root, sizeof root);
    master_id(g, UNDER_N, nested, sizeof nested);
    why[0] = '\0';
    snprintf(path, sizeof path, "/trees/%s?depth=8", root);
    long st;
    json_t *rt = get_json(c, path, &st), *nt = NULL;
    bool whole = false;
    agg a;
    if (st != 200) {
        snprintf(why, cap, "GET %s answers %ld", path, st);
        goto done;
    }
    if (!has_node(rt, nested)) {
        snprintf(path, sizeof path, "/trees/%s?depth=8", nested);
        nt = get_json(c, path, &st);
        if (st != 200) {
            snprintf(why, cap, "GET %s answers %ld", path, st);
            goto done;
        }
    }
    group pic;
    memset(&pic, 0, sizeof pic);
    note_parents(g, rt, UNDER_R, &pic, why, cap);
    if (nt != NULL)
        note_parents(g, nt, UNDER_N, &pic, why, cap);
    pthread_mutex_lock(&gm);
    memcpy(groups[g].parent, pic.parent, sizeof pic.parent);
    groups[g].n_under_r = pic.n_under_r;
    pthread_mutex_unlock(&gm);
    if (why[0] != '\0')
        goto done;
    whole = node_whole(c, rt, &a, why, cap) && (nt == NULL || node_whole(c, nt, &a, why, cap));
done:
    json_decref(rt);
    json_decref(nt);
    return whole;
}

/* Every group looked at after a restart (t_kill: the kill before it). */
static void check_groups(http_client *c, int64_t t_kill)
{
    for (int g = 0; g < GROUPS; g++) {
        char why[2400];
        bool whole = group_whole(c, g, why, sizeof why);
        counted();
        int64_t now = now_ns();
        pthread_mutex_lock(&gm);
        group *G = &groups[g];
        caught_n += G->caught;
        if (whole) {
            caught_whole += G->caught;
            if (G->off) {
                double s = (double)(now - G->off_since) / 1e9;
                slowest_s = s > slowest_s ? s : slowest_s;
                came_back++;
                G->off = false;
            }
        } else if (!G->off) {
            G->off = true;
            G->off_since = t_kill;
            off_n++;
            if (!G->caught) {
                off_uncaught++;
                fprintf(stderr,
                        "crash_trees: cycle %d: g%d is off its children with no change of the "
                        "test's caught in it (a rebuild under way?): %s\n",
                        cycle_no, g, why);
            }
            if (lease_store && now + (int64_t)SETTLE_MS * 1000000 > G->closed_until)
                G->closed_until = now + (int64_t)SETTLE_MS * 1000000;
        }
        G->caught = false;
        pthread_mutex_unlock(&gm);
    }
}

static void verify(int ack_from, int64_t t_kill, bool final)
{
    http_client *c = http_client_new();
    for (int r = 0; r < NBR; r++)
        list_resource(c, r, final);
    check_batches(final);
    int na = atomic_load(&nacks);
    if (!final) {
        for (int k = ack_from; k < na && k < MAX_ACKS; k++)
            if (!acks[k].batch)
                check_ack(c, &acks[k]);
    } else {
        check_tree_acks_listed(c);
    }
    if (!final) {
        check_groups(c, t_kill);
    } else {
        /* the last word: every tree whole, or it never came back */
        for (int g = 0; g < GROUPS; g++) {
            char why[2400];
            counted();
            if (!group_whole(c, g, why, sizeof why))
                violation("g%d is off its children at the end: %s", g, why);
        }
    }
    http_client_free(c);
}

/* After the last kill: the trees off their children get until CONVERGE_S
 * after it to come back. */
static void await_whole(int64_t t_kill)
{
    http_client *c = http_client_new();
    int64_t deadline = t_kill + (int64_t)CONVERGE_S * 1000000000;
    for (;;) {
        int left = 0;
        for (int g = 0; g < GROUPS; g++) {
            if (!groups[g].off)
                continue;
            char why[2400];
            if (group_whole(c, g, why, sizeof why)) {
                double s = (double)(now_ns() - groups[g].off_since) / 1e9;
                slowest_s = s > slowest_s ? s : slowest_s;
                came_back++;
                groups[g].off = false;
            } else {
                left++;
            }
        }
        if (left == 0 || now_ns() > deadline)
            break;
        sleep_ms(1000);
    }
    http_client_free(c);
}

/* ---- the trees at the start -------------------------------------------------------- */

static void must(const char *method, const char *path, const char *body, long want)
{
    http_resp r;
    ck_assert_int_eq(
        http_do(&S, method, path, body ? JSON_CT : NULL, body, body ? strlen(body) : 0, &r), 0);
    ck_assert_msg(r.status == want, "%s %s: %ld %.300s", method, path, r.status, r.body);
    http_resp_free(&r);
}

/* Each group: gN-n over gN-k2, gN-k3 (made by the create), gN-r over
 * gN-k0, gN-k1 and gN-n; any other kid is free. */
static void plant_trees(unsigned *seed)
{
    for (int g = 0; g < GROUPS; g++) {
        char root[24], nested[24];
        master_id(g, UNDER_R, root, sizeof root);
        master_id(g, UNDER_N, nested, sizeof nested);
        for (int m = UNDER_N; m >= UNDER_R; m--) {
            json_t *kids = json_array();
            for (int i = 0; i < 2; i++) {
                char id[24];
                kid_id(g, m == UNDER_R ? i : 2 + i, id, sizeof id);
                json_array_append_new(kids, json_pack("{s:s, s:o, s:s}", "id", id, "words",
                                                      words_array(seed, 1, 8), "corpus_type",
                                                      "literature"));
            }
            if (m == UNDER_R)
                json_array_append_new(kids, json_string(nested));
            json_t *req = json_pack("{s:s, s:s, s:o}", "master", m == UNDER_R ? root : nested,
                                    "language", "en", "children", kids);
            char *body = json_dumps(req, JSON_COMPACT);
            must("POST", "/trees", body, 201);
            free(body);
            json_decref(req);
        }
        memset(&groups[g], 0, sizeof groups[g]);
        groups[g].parent[0] = groups[g].parent[1] = UNDER_R;
        groups[g].parent[2] = groups[g].parent[3] = UNDER_N;
        groups[g].n_under_r = true;
    }
}

static void keep_log_on_failure(void)
{
    if (atomic_load(&failures) == 0)
        return;
    char kept[400], cmd[1400];
    snprintf(kept, sizeof kept, "%s.crash-trees-failure.log", S.data_dir);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s' && grep -E ' (ERROR|WARN) ' '%s' | tail -n 30 >&2",
             S.log_path, kept, kept);
    if (system(cmd) == 0)
        fprintf(stderr, "crash_trees: the server's log (every cycle) is kept at %s\n", kept);
}

START_TEST(kill_nine_during_batches_and_tree_changes)
{
    const char *env = getenv("STRATA_CRASH_TREES_CYCLES");
    if (env == NULL || atoi(env) <= 0)
        env = getenv("STRATA_TEST_CYCLES");
    int cycles = env && atoi(env) > 0 ? atoi(env) : 20;
    const char *senv = getenv("STRATA_TEST_SEED");
    unsigned seed = senv ? (unsigned)strtoul(senv, NULL, 10) : (unsigned)time(NULL);
    lease_store = S.store_url[0] != '\0';
    fprintf(stderr, "crash_trees: %d cycles, seed %u, store %s\n", cycles, seed,
            lease_store ? S.store_url : "sqlite (data dir)");
    int64_t t_begin = now_ns();
    plant_trees(&seed);
    double setup_s = (double)(now_ns() - t_begin) / 1e9;
    int ack_mark = 0;
    int64_t t_kill = 0;
    for (cycle_no = 1; cycle_no <= cycles; cycle_no++) {
        atomic_store(&stop_writers, 0);
        pthread_t th[WRITERS];
        static wctx ctx[WRITERS];
        for (int i = 0; i < WRITERS; i++) {
            ctx[i] = (wctx){i, seed ^ (unsigned)(cycle_no * 7919 + i * 104729), -1};
            ck_assert_int_eq(pthread_create(&th[i], NULL, writer, &ctx[i]), 0);
        }
        seed = seed * 1103515245u + 12345u;
        /* on MongoDB a write that meets a dead transaction's pending head
         * waits MH_GRACE_MS (3 s) before it voids it: the writers run past
         * that, so that the kill lands in live traffic again */
        long run_ms =
            lease_store ? 3000 + (long)((seed >> 8) % 1501) : 500 + (long)((seed >> 8) % 1001);
        sleep_ms(run_ms);
        /* kill -9 with the writers in full flight */
        ck_assert_int_eq(kill(S.pid, SIGKILL), 0);
        t_kill = now_ns();
        int status = 0;
        ck_assert_int_eq(waitpid(S.pid, &status, 0), S.pid);
        ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        S.pid = 0;
        atomic_store(&stop_writers, 1);
        for (int i = 0; i < WRITERS; i++)
            pthread_join(th[i], NULL);
        for (int i = BATCH_WRITERS; i < WRITERS; i++)
            if (ctx[i].lost >= 0)
                mark_caught(ctx[i].lost, t_kill);
        ck_assert_msg(server_restart(&S, ARGS) == 0, "cycle %d: the server did not restart",
                      cycle_no);
        int64_t t_check = now_ns();
        long bok = atomic_load(&b_ok), tok = atomic_load(&t_ok);
        verify(ack_mark, t_kill, false);
        int off = 0;
        for (int g = 0; g < GROUPS; g++)
            off += groups[g].off;
        fprintf(stderr,
                "crash_trees: cycle %d: killed after %ld ms; %ld batches, %ld tree changes "
                "acknowledged so far; checked in %.1f s; %d trees off their children\n",
                cycle_no, run_ms, bok, tok, (double)(now_ns() - t_check) / 1e9, off);
        ack_mark = atomic_load(&nacks);
    }
    cycle_no = 0;
    await_whole(t_kill);
    /* everything once more, against the final state */
    verify(0, t_kill, true);
    double secs = (double)(now_ns() - t_begin) / 1e9;
    int nbatch_acks = 0;
    for (int k = 0; k < atomic_load(&nacks) && k < MAX_ACKS; k++)
        nbatch_acks += acks[k].batch;
    fprintf(stderr,
            "crash_trees: %d cycles in %.1f s (trees planted in %.1f s); batches: %d sent, %ld "
            "acknowledged, %ld refused (4xx), %ld failed (5xx), %ld unanswered; of the "
            "unanswered or failed, %ld found whole and %ld found nowhere\n",
            cycles, secs, setup_s, atomic_load(&nbatches), atomic_load(&b_ok),
            atomic_load(&b_refused), atomic_load(&b_failed), atomic_load(&b_unanswered),
            b_committed_unanswered, b_absent_unanswered);
    fprintf(stderr,
            "crash_trees: tree changes: %ld child saves, %ld attaches, %ld detaches, %ld moves of "
            "a nested master; %ld acknowledged, %ld refused (404/409: stale picture), %ld busy "
            "(503), %ld other, %ld unanswered\n",
            atomic_load(&t_saves), atomic_load(&t_attaches), atomic_load(&t_detaches),
            atomic_load(&t_moves), atomic_load(&t_ok), atomic_load(&t_refused),
            atomic_load(&t_busy), atomic_load(&t_other), atomic_load(&t_unanswered));
    fprintf(stderr,
            "crash_trees: trees with a change cut by a kill or failed: %ld (%ld whole at the next "
            "check); found off their children at a check: %ld (%ld with no change caught); "
            "came back: %ld, the slowest %.1f s after the kill before it was found off\n",
            caught_n, caught_whole, off_n, off_uncaught, came_back, slowest_s);
    fprintf(stderr,
            "crash_trees: %ld checks; %d acknowledged versions: %d of batches (held by the token "
            "check at every check), %d of tree changes (%ld reads found them with their hash); "
            "%ld blob contents read and hashed; %ld GETs asked again after a 503; %ld "
            "failures\n",
            atomic_load(&checks), atomic_load(&nacks), nbatch_acks,
            atomic_load(&nacks) - nbatch_acks, verified_records, verified_blobs, retried_503,
            atomic_load(&failures));
    fprintf(stderr, "crash_trees: answers other than 2xx during the run:");
    for (int st = 300; st < 600; st++)
        if (atomic_load(&status_hist[st]) > 0)
            fprintf(stderr, " %d x%ld", st, atomic_load(&status_hist[st]));
    fprintf(stderr, "\n");
    keep_log_on_failure();
    int code = server_stop(&S, 60); /* before any assertion: a failed one ends this process */
    for (int r = 0; r < NBR; r++)
        free(seen[r].v);
    free(leaves);
    ck_assert_int_lt(atomic_load(&nacks), MAX_ACKS);
    ck_assert_int_lt(atomic_load(&nbatches), MAX_BATCHES);
    ck_assert_int_gt(atomic_load(&b_ok), cycles); /* the writers really wrote */
    ck_assert_int_gt(atomic_load(&t_ok), cycles);
    ck_assert_int_eq(atomic_load(&failures), 0);
    ck_assert_msg(code == 0, "the server exited with %d on SIGTERM", code);
}
END_TEST

static Suite *crash_trees_suite(void)
{
    Suite *s = suite_create("crash_trees");
    TCase *t = tcase_create("crash_trees");
    tcase_set_timeout(t, 900);
    tcase_add_checked_fixture(t, start, stop);
    tcase_add_test(t, kill_nine_during_batches_and_tree_changes);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(crash_trees_suite());
}
