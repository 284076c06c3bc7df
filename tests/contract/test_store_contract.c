/* The store contract: what every store backend must do (src/store/store.h),
 * run against real backends. Every case runs against each backend named in
 * STRATA_STORE_URL (URLs separated by spaces; by default a fresh SQLite
 * file), through a store opened from its URL: run_contract() below.
 *
 * Isolation: a case opens its own handles and names everything it makes
 * (ids, namespaces, hashes, blob keys, lease names, tree nodes) with a
 * prefix unique to it, so cases never see each other's data and any
 * number of them, or of runs, may share one backend. Operations that walk
 * the whole store (blob_refs, tree_edges, blob_collecting) are filtered to
 * the case's own names.
 *
 * Skips: a case that needs a capability the backend does not declare
 * (STORE_CAP_*), or a SQLite file, is not added to the run; it prints
 *   SKIP: store_contract/<backend>/<case>: <why>
 * which scripts/test-summary.py counts as skipped. STRATA_STORE_CAPS_MASK
 * (a number) hides capabilities of every backend, to exercise the skips.
 * A backend that cannot be opened is not skipped: its cases fail.
 *
 * MongoDB (mongodb://HOST:PORT/DB): each case runs in a database of its
 * own (DB_<prefix>, dropped when the case ends), so that collections stay
 * small. With STRATA_STORE_REQUIRE set (a URL scheme, as the meson test
 * store_contract_mongo sets mongodb://), a STRATA_STORE_URL of another
 * scheme, or none, fails the run; for mongodb:// an unset STRATA_STORE_URL
 * is taken from STRATA_MONGO_URL (the mongo suite's server) with the
 * database strata_sc. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/common/clock.h"
#include "../../src/common/mongo_conn.h"
#include "../../src/store/store.h"
#include "../support/harness.h"

#define MAX_BACKENDS 4
#define ALL_CAPS                                                                                   \
    (STORE_CAP_TRANSACTIONS | STORE_CAP_BLOB_CLAIMS | STORE_CAP_LEASES | STORE_CAP_TREE_TXN)

typedef struct backend {
    char url[600];
    char label[48];
    bool sqlite;
    bool mongo;
} backend;

static backend BK[MAX_BACKENDS];
static int nbk;

/* The case's backend, its handles (S2: a second one on the same URL, as
 * another process would open it) and its unique prefix. */
static const backend *CB;
static store *S, *S2;
static char P[40];
static char CASE_URL[700]; /* the backend's URL for this case */

/* url with its database name db (mongodb://HOST/DB[?opts] -> .../db?opts). */
static void mongo_url_with_db(const char *url, const char *db, char *out, size_t cap)
{
    const char *hosts = url + 10, *slash = strchr(hosts, '/');
    const char *q = strchr(url, '?');
    size_t head = slash ? (size_t)(slash - url) : strcspn(url, "?");
    snprintf(out, cap, "%.*s/%s%s", (int)head, url, db, q ? q : "");
}

/* The database of a mongodb:// URL ("" when none). */
static void mongo_db_of(const char *url, char *out, size_t cap)
{
    const char *slash = strchr(url + 10, '/');
    out[0] = '\0';
    if (slash != NULL)
        snprintf(out, cap, "%.*s", (int)strcspn(slash + 1, "?"), slash + 1);
}

static void open_case(int b)
{
    static unsigned seq;
    CB = &BK[b];
    snprintf(P, sizeof P, "k%x%llx%u", (unsigned)getpid(),
             (unsigned long long)(clock_mono_ns() & 0xffffffffffull), ++seq);
    snprintf(CASE_URL, sizeof CASE_URL, "%s", CB->url);
    if (CB->mongo) {
        char base[64], db[MONGO_DB_MAX + 1];
        mongo_db_of(CB->url, base, sizeof base);
        snprintf(db, sizeof db, "%.*s_%s", (int)(MONGO_DB_MAX - 1 - strlen(P)), base, P);
        mongo_url_with_db(CB->url, db, CASE_URL, sizeof CASE_URL);
    }
    strata_error err;
    S = store_open(CASE_URL, &err);
    ck_assert_msg(S != NULL, "cannot open the store %s: %s", CASE_URL, err.detail);
}

/* Drops the case's own database (MongoDB). */
static void drop_case_db(void)
{
    strata_error err;
    mongo_conn *c = mongo_conn_open(CASE_URL, "strata-store-contract", &err);
    if (c == NULL)
        return;
    mongoc_client_t *cl = mongo_conn_pop(c);
    mongoc_database_t *db = mongoc_client_get_database(cl, mongo_conn_db(c));
    bson_error_t be;
    if (!mongoc_database_drop(db, &be))
        fprintf(stderr, "store_contract: cannot drop %s: %s\n", mongo_conn_db(c), be.message);
    mongoc_database_destroy(db);
    mongo_conn_push(c, cl);
    mongo_conn_close(c);
}

static void close_case(void)
{
    store_close(S2);
    store_close(S);
    S = S2 = NULL;
    if (CB != NULL && CB->mongo)
        drop_case_db();
}

#define FIXTURE(n)                                                                                 \
    static void setup##n(void)                                                                     \
    {                                                                                              \
        open_case(n);                                                                              \
    }
FIXTURE(0)
FIXTURE(1)
FIXTURE(2)
FIXTURE(3)
static void (*const SETUPS[MAX_BACKENDS])(void) = {setup0, setup1, setup2, setup3};

static store *second(void)
{
    if (S2 == NULL) {
        strata_error err;
        S2 = store_open(CASE_URL, &err);
        ck_assert_msg(S2 != NULL, "cannot open a second handle on %s: %s", CASE_URL, err.detail);
    }
    return S2;
}

/* ---- names and helpers -------------------------------------------------------- */

/* "<prefix>-s", from a ring of buffers (main thread only). */
static const char *N(const char *s)
{
    static char ring[32][STORE_ID_MAX + 1];
    static unsigned k;
    char *o = ring[k++ % 32];
    snprintf(o, STORE_ID_MAX + 1, "%s-%s", P, s);
    return o;
}

/* A blob key (64 hex digits) unique to the case and label. */
static void K(const char *label, char out[SHA256_HEX_LEN + 1])
{
    const char *n = N(label);
    unsigned char d[SHA256_LEN];
    ck_assert_int_eq(sha256_oneshot(n, strlen(n), d, NULL), 0);
    sha256_to_hex(d, out);
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

/* A version record of the case's namespace (id and hash as given). */
static void mkv(store_version *v, const char *type, const char *id, uint64_t vkey, const char *hash)
{
    memset(v, 0, sizeof *v);
    snprintf(v->type, sizeof v->type, "%s", type);
    snprintf(v->id, sizeof v->id, "%s", id);
    snprintf(v->ns, sizeof v->ns, "%s", P);
    snprintf(v->data_hash, sizeof v->data_hash, "%s", hash);
    v->vkey = vkey;
    v->created_at_ms = 1000 + (int64_t)(vkey & 0xfffff);
    v->doc = json_object();
}

/* Writes a version with the head read first, as the service does; id and
 * hash are the case's names for the labels given. */
static int put_on(store *s, const char *type, const char *id, const char *version, const char *hash,
                  const char *tag, strata_error *err)
{
    store_head h;
    if (s->ops->get_head(s, NULL, type, id, &h, err) != 0)
        return -1;
    store_version v;
    mkv(&v, type, id, V(version), hash);
    if (tag != NULL)
        json_object_set_new(v.doc, "tags", json_pack("[s]", tag));
    int rc = s->ops->put_version(s, NULL, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, err);
    store_version_clear(&v);
    return rc;
}

static int put(const char *type, const char *id, const char *version, const char *hash,
               const char *tag, strata_error *err)
{
    return put_on(S, type, N(id), version, N(hash), tag, err);
}

/* A version whose content is blob `key` (its data hash), under claim. */
static int put_blob(store *s, const char *type, const char *id, const char *version,
                    const char *key, uint64_t claim, strata_error *err)
{
    store_head h;
    if (s->ops->get_head(s, NULL, type, id, &h, err) != 0)
        return -1;
    store_version v;
    mkv(&v, type, id, V(version), key);
    snprintf(v.blob_key, sizeof v.blob_key, "%s", key);
    int rc = s->ops->put_version(s, NULL, &v, h.latest_vkey, h.max_vkey, NULL, 0, claim, err);
    store_version_clear(&v);
    return rc;
}

static uint64_t claim_on(store *s, const char *key)
{
    uint64_t c = 0;
    strata_error err;
    ck_assert_msg(s->ops->blob_claim(s, NULL, key, &c, &err) == 0, "claim: %s", err.detail);
    ck_assert_uint_ne(c, 0);
    return c;
}

static void expect_version(const char *type, const char *id, const char *version, bool latest,
                           const char *prev, const char *next)
{
    store_version v;
    strata_error err;
    ck_assert_msg(S->ops->get_version(S, NULL, type, N(id), V(version), &v, &err) == 0,
                  "%s/%s %s: %s", type, id, version, err.detail);
    ck_assert_msg(v.is_latest == latest, "%s is_latest %d", version, v.is_latest);
    ck_assert_uint_eq(v.supersedes, prev ? V(prev) : 0);
    ck_assert_uint_eq(v.superseded_by, next ? V(next) : 0);
    store_version_clear(&v);
}

static void expect_head(const char *type, const char *id, uint64_t latest, uint64_t max)
{
    store_head h;
    strata_error err;
    ck_assert_int_eq(S->ops->get_head(S, NULL, type, N(id), &h, &err), 0);
    ck_assert(h.exists);
    ck_assert_uint_eq(h.latest_vkey, latest);
    ck_assert_uint_eq(h.max_vkey, max);
}

static void expect_absent(store *s, const char *type, const char *id)
{
    store_head h;
    store_version v;
    strata_error err;
    ck_assert_int_eq(s->ops->get_head(s, NULL, type, id, &h, &err), 0);
    ck_assert(!h.exists);
    ck_assert_int_eq(s->ops->get_version(s, NULL, type, id, 0, &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
}

/* All versions of a resource, newest first (one page). */
static void all_versions(const char *type, const char *id, store_page *p)
{
    store_list_opts o = {.limit = STORE_LIST_MAX, .stale = -1};
    strata_error err;
    ck_assert_msg(S->ops->list_versions(S, type, id, &o, p, &err) == 0, "%s", err.detail);
    ck_assert_ptr_null(p->next);
}

/* The chain invariants of a resource: keys strictly decreasing newest
 * first, exactly one latest (the newest), neighbours linked both ways. */
static size_t check_chain(const char *type, const char *id)
{
    store_page p;
    all_versions(type, id, &p);
    size_t latest = 0;
    for (size_t i = 0; i < p.count; i++) {
        const store_version *v = p.items[i];
        latest += v->is_latest;
        if (i > 0)
            ck_assert_uint_lt(v->vkey, p.items[i - 1]->vkey);
        ck_assert_uint_eq(v->superseded_by, i == 0 ? 0 : p.items[i - 1]->vkey);
        ck_assert_uint_eq(v->supersedes, i + 1 < p.count ? p.items[i + 1]->vkey : 0);
    }
    ck_assert_uint_eq(latest, p.count > 0 ? 1 : 0);
    if (p.count > 0)
        ck_assert(p.items[0]->is_latest);
    size_t n = p.count;
    store_page_free(&p);
    return n;
}

static size_t count_listed(const char *type, const char *id)
{
    store_list_opts o = {.limit = STORE_LIST_MAX, .stale = -1, .ns = P};
    store_page p;
    strata_error err;
    ck_assert_int_eq(S->ops->list_resources(S, type, &o, &p, &err), 0);
    size_t n = 0;
    for (size_t i = 0; i < p.count; i++)
        n += strcmp(p.items[i]->id, id) == 0;
    store_page_free(&p);
    return n;
}

/* ---- the vtable, ping ------------------------------------------------------------ */

START_TEST(vtable_is_complete_and_ping_answers)
{
    const store_ops *o = S->ops;
    ck_assert_ptr_nonnull(o->name);
    ck_assert_uint_eq(o->caps & ~(unsigned)ALL_CAPS, 0);
#define HAS(f) ck_assert_msg(o->f != NULL, "the %s store lacks " #f, o->name)
    HAS(ping);
    HAS(transact);
    HAS(get_head);
    HAS(get_version);
    HAS(put_version);
    HAS(list_versions);
    HAS(list_resources);
    HAS(delete_version);
    HAS(delete_resource);
    HAS(get_tombstone);
    HAS(version_pinned);
    HAS(blob_refs);
    HAS(blob_referenced);
    HAS(dependents);
    HAS(add_access);
    HAS(set_stale);
    HAS(tree_parent);
    HAS(tree_children);
    HAS(tree_link);
    HAS(tree_unlink);
    HAS(vocab_apply);
    HAS(vocab_clear);
    HAS(vocab_page);
    HAS(vocab_size);
    HAS(tree_edges);
    HAS(blob_claim);
    HAS(blob_release);
    HAS(blob_collect_begin);
    HAS(blob_collect_end);
    HAS(blob_collecting);
    HAS(lease_acquire);
    HAS(lease_release);
    HAS(close);
#undef HAS
    strata_error err;
    ck_assert_msg(o->ping(S, &err) == 0, "%s", err.detail);
    ck_assert_msg(second()->ops->ping(S2, &err) == 0, "%s", err.detail);
    ck_assert_ptr_eq(S2->ops, S->ops);
}
END_TEST

/* ---- versions and heads ----------------------------------------------------------- */

START_TEST(first_version_and_head)
{
    strata_error err;
    store_head h;
    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", N("t"), &h, &err), 0);
    ck_assert(!h.exists);
    ck_assert_uint_eq(h.latest_vkey, 0);
    ck_assert_uint_eq(h.max_vkey, 0);
    ck_assert_str_eq(h.latest_hash, "");

    static const unsigned char bytes[] = {'a', 0, 'b', 0xff, '\n'};
    store_version v;
    mkv(&v, "trie", N("t"), V("1.0.0"), N("aa"));
    v.created_at_ms = 1234567;
    json_object_set_new(v.doc, "metadata", json_pack("{s:i}", "n", 7));
    v.content = malloc(sizeof bytes);
    memcpy(v.content, bytes, sizeof bytes);
    v.content_len = sizeof bytes;
    ck_assert_msg(S->ops->put_version(S, NULL, &v, 0, 0, NULL, 0, 0, &err) == 0, "%s", err.detail);
    /* derived fields are set on success */
    ck_assert(v.is_latest);
    ck_assert_uint_eq(v.supersedes, 0);
    ck_assert_uint_eq(v.superseded_by, 0);
    store_version_clear(&v);

    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", N("t"), &h, &err), 0);
    ck_assert(h.exists);
    ck_assert_uint_eq(h.latest_vkey, V("1.0.0"));
    ck_assert_uint_eq(h.max_vkey, V("1.0.0"));
    ck_assert_str_eq(h.latest_hash, N("aa"));

    for (int by_key = 0; by_key < 2; by_key++) {
        ck_assert_int_eq(
            S->ops->get_version(S, NULL, "trie", N("t"), by_key ? V("1.0.0") : 0, &v, &err), 0);
        ck_assert_str_eq(v.type, "trie");
        ck_assert_str_eq(v.id, N("t"));
        ck_assert_str_eq(v.ns, P);
        ck_assert_uint_eq(v.vkey, V("1.0.0"));
        ck_assert_int_eq(v.created_at_ms, 1234567);
        ck_assert_str_eq(v.data_hash, N("aa"));
        ck_assert_str_eq(v.blob_key, "");
        ck_assert(v.is_latest);
        ck_assert_uint_eq(v.supersedes, 0);
        ck_assert_uint_eq(v.superseded_by, 0);
        ck_assert_int_eq(
            json_integer_value(json_object_get(json_object_get(v.doc, "metadata"), "n")), 7);
        ck_assert_uint_eq(v.content_len, sizeof bytes);
        ck_assert_int_eq(memcmp(v.content, bytes, sizeof bytes), 0);
        ck_assert_uint_eq(v.access_count, 0);
        ck_assert(!v.stale);
        store_version_clear(&v);
    }
    /* a version with no content at all */
    ck_assert_int_eq(put("trie", "t", "1.0.1", "bb", NULL, &err), 0);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), 0, &v, &err), 0);
    ck_assert_uint_eq(v.content_len, 0);
    ck_assert_uint_eq(v.supersedes, V("1.0.0"));
    store_version_clear(&v);

    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("nope"), 0, &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), V("1.0.2"), &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    /* the same id under another type is another resource */
    ck_assert_int_eq(S->ops->get_version(S, NULL, "corpus", N("t"), 0, &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    store_page p;
    store_list_opts o = {.limit = 10, .stale = -1};
    ck_assert_int_eq(S->ops->list_versions(S, "trie", N("nope"), &o, &p, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    store_tombstone tomb;
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), 0, &tomb, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), V("1.0.0"), &tomb, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
}
END_TEST

START_TEST(compare_and_swap_refuses_a_moved_head)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "aa", NULL, &err), 0);
    store_version v;
    mkv(&v, "trie", N("t"), V("1.0.1"), N("bb"));
    /* a writer that still believes there is no version */
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, 0, 0, NULL, 0, 0, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    /* the right latest but the wrong max, and the other way round */
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, V("1.0.0"), 0, NULL, 0, 0, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, 0, V("1.0.0"), NULL, 0, 0, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    /* a key not above the max is refused too */
    v.vkey = V("1.0.0");
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, V("1.0.0"), V("1.0.0"), NULL, 0, 0, &err),
                     -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    store_version_clear(&v);
    /* nothing was written */
    ck_assert_uint_eq(check_chain("trie", N("t")), 1);
    expect_head("trie", "t", V("1.0.0"), V("1.0.0"));
    store_version r;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), 0, &r, &err), 0);
    ck_assert_str_eq(r.data_hash, N("aa"));
    store_version_clear(&r);
    /* and the head read afresh works */
    ck_assert_int_eq(put("trie", "t", "1.0.1", "bb", NULL, &err), 0);
    expect_version("trie", "t", "1.0.1", true, "1.0.0", NULL);
}
END_TEST

/* Racers read one head at the same moment and all try to move it:
 * exactly one wins per round, the others lose with SERR_CONFLICT. Even
 * rounds all want the same next key, odd rounds each its own. Half the
 * racers go through a second handle (as another process). */
#define RACERS 6
#define ROUNDS 10

typedef struct racer {
    store *s;
    char id[STORE_ID_MAX + 1];
    char prefix[40];
    int idx;
    int phase;
    pthread_barrier_t *bar;
    int rc[ROUNDS];
    enum strata_err_kind kind[ROUNDS];
    uint64_t key[ROUNDS];
    uint64_t seen_max[ROUNDS];
} racer;

static void *race_puts(void *arg)
{
    racer *r = arg;
    for (int round = 0; round < ROUNDS; round++) {
        store_head h = {0};
        strata_error err = {0};
        pthread_barrier_wait(r->bar);
        int hrc = r->s->ops->get_head(r->s, NULL, "trie", r->id, &h, &err);
        pthread_barrier_wait(r->bar); /* everyone holds the same head */
        if (hrc != 0) {
            r->rc[round] = -2;
            r->kind[round] = err.kind;
            continue;
        }
        uint64_t vkey = semver_next(h.max_vkey, BUMP_PATCH) + (uint64_t)(round % 2 ? r->idx : 0);
        store_version v;
        memset(&v, 0, sizeof v);
        snprintf(v.type, sizeof v.type, "trie");
        snprintf(v.id, sizeof v.id, "%s", r->id);
        snprintf(v.ns, sizeof v.ns, "%s", r->prefix);
        snprintf(v.data_hash, sizeof v.data_hash, "%.30s-p%d-r%d-%d", r->prefix, r->phase, round,
                 r->idx);
        v.vkey = vkey;
        v.created_at_ms = 1;
        v.doc = json_object();
        r->rc[round] =
            r->s->ops->put_version(r->s, NULL, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, &err);
        r->kind[round] = r->rc[round] == 0 ? SERR_OK : err.kind;
        r->key[round] = vkey;
        r->seen_max[round] = h.max_vkey;
        store_version_clear(&v);
    }
    return NULL;
}

/* Runs ROUNDS rounds; returns the winning keys in order. */
static void race_rounds(const char *id, int phase, uint64_t floor, uint64_t won[ROUNDS])
{
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, RACERS);
    racer *rs = calloc(RACERS, sizeof *rs);
    pthread_t th[RACERS];
    for (int i = 0; i < RACERS; i++) {
        rs[i].s = i % 2 ? second() : S;
        snprintf(rs[i].id, sizeof rs[i].id, "%s", id);
        snprintf(rs[i].prefix, sizeof rs[i].prefix, "%s", P);
        rs[i].idx = i;
        rs[i].phase = phase;
        rs[i].bar = &bar;
        ck_assert_int_eq(pthread_create(&th[i], NULL, race_puts, &rs[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&bar);
    uint64_t prev = floor;
    for (int round = 0; round < ROUNDS; round++) {
        int winners = 0;
        for (int i = 0; i < RACERS; i++) {
            if (rs[i].rc[round] == 0) {
                winners++;
                won[round] = rs[i].key[round];
            } else {
                ck_assert_msg(rs[i].rc[round] == -1 && rs[i].kind[round] == SERR_CONFLICT,
                              "round %d racer %d: rc %d kind %d (want SERR_CONFLICT)", round, i,
                              rs[i].rc[round], rs[i].kind[round]);
            }
        }
        ck_assert_msg(winners == 1, "round %d of phase %d: %d winners", round, phase, winners);
        /* strictly increasing, above everything ever issued */
        ck_assert_uint_gt(won[round], prev);
        prev = won[round];
    }
    free(rs);
}

START_TEST(concurrent_puts_one_winner_per_head)
{
    const char *id = N("race");
    uint64_t won[ROUNDS], again[ROUNDS];
    race_rounds(id, 0, 0, won);
    ck_assert_uint_eq(check_chain("trie", id), ROUNDS);
    store_page p;
    all_versions("trie", id, &p);
    for (int i = 0; i < ROUNDS; i++)
        ck_assert_uint_eq(p.items[ROUNDS - 1 - i]->vkey, won[i]);
    store_page_free(&p);
    expect_head("trie", "race", won[ROUNDS - 1], won[ROUNDS - 1]);

    /* deleted, and raced again from the empty head: numbering goes on
     * above every key ever issued */
    strata_error err;
    size_t n = 0;
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", id, "request", &n, &err), 0);
    ck_assert_uint_eq(n, ROUNDS);
    race_rounds(id, 1, won[ROUNDS - 1], again);
    ck_assert_uint_eq(check_chain("trie", id), ROUNDS);
    store_tombstone tomb;
    for (int i = 0; i < ROUNDS; i++) {
        ck_assert_uint_gt(again[i], won[ROUNDS - 1]);
        ck_assert_int_eq(S->ops->get_tombstone(S, "trie", id, won[i], &tomb, &err), 0);
    }
}
END_TEST

/* Writers that retry on SERR_CONFLICT until each wrote its share: every
 * version lands once, under a key of its own, in one chain. */
#define WRITERS    6
#define PER_WRITER 8

typedef struct writer {
    store *s;
    char id[STORE_ID_MAX + 1];
    char prefix[40];
    int idx;
    int written, conflicts, failures;
    enum strata_err_kind last_kind;
    uint64_t keys[PER_WRITER];
} writer;

static void *write_until_done(void *arg)
{
    writer *w = arg;
    for (int tries = 0; w->written < PER_WRITER && tries < 2000; tries++) {
        store_head h;
        strata_error err;
        if (w->s->ops->get_head(w->s, NULL, "trie", w->id, &h, &err) != 0) {
            w->failures++;
            w->last_kind = err.kind;
            continue;
        }
        store_version v;
        memset(&v, 0, sizeof v);
        snprintf(v.type, sizeof v.type, "trie");
        snprintf(v.id, sizeof v.id, "%s", w->id);
        snprintf(v.ns, sizeof v.ns, "%s", w->prefix);
        snprintf(v.data_hash, sizeof v.data_hash, "%s-w%d-%d", w->prefix, w->idx, w->written);
        v.vkey = semver_next(h.max_vkey, BUMP_PATCH);
        v.doc = json_pack("{s:i, s:i}", "writer", w->idx, "n", w->written);
        if (w->s->ops->put_version(w->s, NULL, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, &err) ==
            0)
            w->keys[w->written++] = v.vkey;
        else if (err.kind == SERR_CONFLICT)
            w->conflicts++;
        else {
            w->failures++;
            w->last_kind = err.kind;
        }
        store_version_clear(&v);
    }
    return NULL;
}

START_TEST(concurrent_writers_keep_one_chain)
{
    const char *id = N("busy");
    writer *ws = calloc(WRITERS, sizeof *ws);
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        ws[i].s = i % 2 ? second() : S;
        snprintf(ws[i].id, sizeof ws[i].id, "%s", id);
        snprintf(ws[i].prefix, sizeof ws[i].prefix, "%s", P);
        ws[i].idx = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, write_until_done, &ws[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < WRITERS; i++) {
        ck_assert_msg(ws[i].failures == 0, "writer %d: %d failures (last kind %d)", i,
                      ws[i].failures, ws[i].last_kind);
        ck_assert_int_eq(ws[i].written, PER_WRITER);
    }
    ck_assert_uint_eq(check_chain("trie", id), WRITERS * PER_WRITER);
    /* every acknowledged key holds what its writer wrote */
    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < PER_WRITER; k++) {
            store_version v;
            strata_error err;
            ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", id, ws[i].keys[k], &v, &err), 0);
            ck_assert_int_eq(json_integer_value(json_object_get(v.doc, "writer")), i);
            ck_assert_int_eq(json_integer_value(json_object_get(v.doc, "n")), k);
            store_version_clear(&v);
        }
    free(ws);
}
END_TEST

/* Records are immutable: deleting versions changes only what is derived
 * (latest, supersedes, superseded_by), never what was written. */
START_TEST(derived_fields_after_deletes)
{
    strata_error err;
    const char *vs[] = {"1.0.0", "1.0.1", "1.0.2", "1.0.3", "1.0.4"};
    char *written[5];
    for (int i = 0; i < 5; i++) {
        store_head h;
        ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", N("t"), &h, &err), 0);
        char hash[16];
        snprintf(hash, sizeof hash, "h%d", i);
        store_version v;
        mkv(&v, "trie", N("t"), V(vs[i]), N(hash));
        json_object_set_new(v.doc, "n", json_integer(i));
        v.content = (unsigned char *)strdup(hash);
        v.content_len = strlen(hash);
        ck_assert_int_eq(
            S->ops->put_version(S, NULL, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, &err), 0);
        ck_assert_uint_eq(v.supersedes, h.latest_vkey);
        written[i] = json_dumps(v.doc, JSON_SORT_KEYS | JSON_COMPACT);
        store_version_clear(&v);
    }
    /* the middle and the latest go */
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("t"), V("1.0.2"), "request", &err),
                     0);
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("t"), V("1.0.4"), "request", &err),
                     0);
    expect_version("trie", "t", "1.0.0", false, NULL, "1.0.1");
    expect_version("trie", "t", "1.0.1", false, "1.0.0", "1.0.3");
    expect_version("trie", "t", "1.0.3", true, "1.0.1", NULL);
    ck_assert_uint_eq(check_chain("trie", N("t")), 3);
    expect_head("trie", "t", V("1.0.3"), V("1.0.4"));
    /* what was written is unchanged */
    const int kept[] = {0, 1, 3};
    for (int k = 0; k < 3; k++) {
        int i = kept[k];
        store_version v;
        ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), V(vs[i]), &v, &err), 0);
        char *doc = json_dumps(v.doc, JSON_SORT_KEYS | JSON_COMPACT);
        ck_assert_str_eq(doc, written[i]);
        free(doc);
        char hash[16];
        snprintf(hash, sizeof hash, "h%d", i);
        ck_assert_str_eq(v.data_hash, N(hash));
        ck_assert_int_eq(v.created_at_ms, 1000 + (int64_t)(V(vs[i]) & 0xfffff));
        ck_assert_uint_eq(v.content_len, strlen(hash));
        ck_assert_int_eq(memcmp(v.content, hash, v.content_len), 0);
        store_version_clear(&v);
    }
    for (int i = 0; i < 5; i++)
        free(written[i]);
    /* the next version goes above the max, after the latest that remains */
    ck_assert_int_eq(put("trie", "t", "1.0.4", "again", NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    ck_assert_int_eq(put("trie", "t", "1.0.5", "h5", NULL, &err), 0);
    expect_version("trie", "t", "1.0.3", false, "1.0.1", "1.0.5");
    expect_version("trie", "t", "1.0.5", true, "1.0.3", NULL);
    /* the oldest goes */
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("t"), V("1.0.0"), "request", &err),
                     0);
    expect_version("trie", "t", "1.0.1", false, NULL, "1.0.3");
    ck_assert_uint_eq(check_chain("trie", N("t")), 3);
    /* a deleted version cannot be deleted again */
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("t"), V("1.0.2"), "request", &err),
                     -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    /* emptied one version at a time: the head stays with no latest */
    const char *rest[] = {"1.0.5", "1.0.1", "1.0.3"};
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(
            S->ops->delete_version(S, NULL, "trie", N("t"), V(rest[i]), "request", &err), 0);
    expect_head("trie", "t", 0, V("1.0.5"));
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), 0, &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    store_page p;
    store_list_opts o = {.limit = 10, .stale = -1};
    ck_assert_int_eq(S->ops->list_versions(S, "trie", N("t"), &o, &p, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_uint_eq(count_listed("trie", N("t")), 0);
    /* such a head is deleted with a count of 0, once */
    size_t n = 99;
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", N("t"), "request", &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", N("t"), "request", &n, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    expect_head("trie", "t", 0, V("1.0.5"));
}
END_TEST

START_TEST(chain_is_repaired_and_keys_never_reused)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.1", "b", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.2", "c", NULL, &err), 0);
    expect_version("trie", "t", "1.0.0", false, NULL, "1.0.1");
    expect_version("trie", "t", "1.0.1", false, "1.0.0", "1.0.2");
    expect_version("trie", "t", "1.0.2", true, "1.0.1", NULL);
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("t"), V("1.0.1"), "request", &err),
                     0);
    expect_version("trie", "t", "1.0.0", false, NULL, "1.0.2");
    expect_version("trie", "t", "1.0.2", true, "1.0.0", NULL);
    ck_assert_int_eq(
        S->ops->delete_version(S, NULL, "trie", N("t"), V("1.0.2"), "retention: keep 5", &err), 0);
    expect_version("trie", "t", "1.0.0", true, NULL, NULL);
    expect_head("trie", "t", V("1.0.0"), V("1.0.2"));
    store_tombstone tomb;
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), V("1.0.2"), &tomb, &err), 0);
    ck_assert_str_eq(tomb.removed_by, "retention: keep 5");
    ck_assert_int_gt(tomb.removed_at_ms, 0);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), V("1.0.1"), &tomb, &err), 0);
    ck_assert_str_eq(tomb.removed_by, "request");
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), V("1.0.0"), &tomb, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(put("trie", "t", "1.0.2", "d", NULL, &err), -1);
    ck_assert_int_eq(put("trie", "t", "1.0.3", "d", NULL, &err), 0);
    expect_version("trie", "t", "1.0.3", true, "1.0.0", NULL);
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("t"), V("1.0.1"), "request", &err),
                     -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("none"), V("1.0.0"), "x", &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
}
END_TEST

START_TEST(versions_page_newest_first)
{
    strata_error err;
    const char *vs[] = {"1.0.0", "1.0.1", "1.1.0", "2.0.0", "2.0.1"};
    for (int i = 0; i < 5; i++) {
        char hash[8];
        snprintf(hash, sizeof hash, "h%d", i);
        ck_assert_int_eq(put("trie", "t", vs[i], hash, NULL, &err), 0);
    }
    store_list_opts o = {.limit = 2, .stale = -1};
    const char *want[] = {"2.0.1", "2.0.0", "1.1.0", "1.0.1", "1.0.0"};
    int seen = 0;
    char *cursor = NULL;
    for (int page = 0; page < 3; page++) {
        store_page p;
        o.cursor = cursor;
        ck_assert_int_eq(S->ops->list_versions(S, "trie", N("t"), &o, &p, &err), 0);
        for (size_t i = 0; i < p.count; i++)
            ck_assert_uint_eq(p.items[i]->vkey, V(want[seen++]));
        free(cursor);
        cursor = p.next ? strdup(p.next) : NULL;
        store_page_free(&p);
    }
    ck_assert_int_eq(seen, 5);
    ck_assert_ptr_null(cursor);
    o.cursor = "garbage";
    store_page p;
    ck_assert_int_eq(S->ops->list_versions(S, "trie", N("t"), &o, &p, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
}
END_TEST

START_TEST(resources_filter_and_page_by_id)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "a", "1.0.0", "1", "hot", &err), 0);
    ck_assert_int_eq(put("trie", "b", "1.0.0", "2", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "b", "1.0.1", "2b", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "c", "1.0.0", "3", "hot", &err), 0);
    ck_assert_int_eq(put("corpus", "d", "1.0.0", "4", "hot", &err), 0);
    store_list_opts o = {.limit = 10, .stale = -1, .tag = "hot", .ns = P};
    store_page p;
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 2);
    ck_assert_str_eq(p.items[0]->id, N("a"));
    ck_assert_str_eq(p.items[1]->id, N("c"));
    store_page_free(&p);
    /* pages of two, by id, latest records only */
    o.tag = NULL;
    o.limit = 2;
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 2);
    ck_assert_str_eq(p.items[1]->id, N("b"));
    ck_assert_uint_eq(p.items[1]->vkey, V("1.0.1"));
    ck_assert(p.items[1]->is_latest);
    ck_assert_ptr_nonnull(p.next);
    o.cursor = p.next;
    store_page p2;
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p2, &err), 0);
    ck_assert_uint_eq(p2.count, 1);
    ck_assert_str_eq(p2.items[0]->id, N("c"));
    ck_assert_ptr_null(p2.next);
    store_page_free(&p2);
    store_page_free(&p);
    o.cursor = "r-not-hex";
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    o.cursor = NULL;
    o.ns = N("elsewhere");
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 0);
    store_page_free(&p);

    /* stale: reported on the latest record, with its reason; filterable */
    json_t *reason = json_pack("{s:s}", "dependency", "corpus/x");
    ck_assert_int_eq(S->ops->set_stale(S, NULL, "trie", N("b"), true, reason, &err), 0);
    json_decref(reason);
    o = (store_list_opts){.limit = 10, .stale = 1, .ns = P};
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 1);
    ck_assert_str_eq(p.items[0]->id, N("b"));
    ck_assert(p.items[0]->stale);
    store_page_free(&p);
    o.stale = 0;
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 2);
    store_page_free(&p);
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("b"), 0, &v, &err), 0);
    ck_assert(v.stale);
    ck_assert_ptr_nonnull(v.stale_reason);
    ck_assert_str_eq(json_string_value(json_object_get(v.stale_reason, "dependency")), "corpus/x");
    store_version_clear(&v);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("b"), V("1.0.0"), &v, &err), 0);
    ck_assert(!v.stale); /* not on an older version */
    store_version_clear(&v);
    ck_assert_int_eq(S->ops->set_stale(S, NULL, "trie", N("b"), false, NULL, &err), 0);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("b"), 0, &v, &err), 0);
    ck_assert(!v.stale);
    store_version_clear(&v);
    o.stale = 1;
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 0);
    store_page_free(&p);
    ck_assert_int_eq(S->ops->set_stale(S, NULL, "trie", N("never"), true, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
}
END_TEST

START_TEST(exact_version_pins)
{
    strata_error err;
    ck_assert_int_eq(put("corpus", "c", "1.0.0", "c1", NULL, &err), 0);
    ck_assert_int_eq(put("corpus", "c", "1.0.1", "c2", NULL, &err), 0);
    store_version v;
    mkv(&v, "trie", N("t"), V("1.0.0"), N("t1"));
    store_dep d[2] = {{"corpus", "", V("1.0.0")}, {"corpus", "", 0}};
    snprintf(d[0].id, sizeof d[0].id, "%s", N("c"));
    snprintf(d[1].id, sizeof d[1].id, "%s", N("other"));
    ck_assert_int_eq(put("corpus", "other", "1.0.0", "o1", NULL, &err), 0);
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, 0, 0, d, 2, 0, &err), 0);
    store_version_clear(&v);
    bool pinned = false;
    char by[300] = "";
    ck_assert_int_eq(
        S->ops->version_pinned(S, "corpus", N("c"), V("1.0.0"), &pinned, by, sizeof by, &err), 0);
    ck_assert(pinned);
    char want[300];
    snprintf(want, sizeof want, "trie/%s", N("t"));
    ck_assert_str_eq(by, want);
    ck_assert_int_eq(
        S->ops->version_pinned(S, "corpus", N("c"), V("1.0.1"), &pinned, NULL, 0, &err), 0);
    ck_assert(!pinned);
    /* a dependency on whatever is latest pins no version */
    ck_assert_int_eq(
        S->ops->version_pinned(S, "corpus", N("other"), V("1.0.0"), &pinned, NULL, 0, &err), 0);
    ck_assert(!pinned);
    /* only a latest version pins: a newer trie without the dependency frees it */
    ck_assert_int_eq(put("trie", "t", "1.0.1", "t2", NULL, &err), 0);
    ck_assert_int_eq(
        S->ops->version_pinned(S, "corpus", N("c"), V("1.0.0"), &pinned, NULL, 0, &err), 0);
    ck_assert(!pinned);
}
END_TEST

START_TEST(dependencies_are_indexed_in_reverse)
{
    strata_error err;
    store_version v;
    mkv(&v, "corpus", N("c"), V("1.0.0"), N("c1"));
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, 0, 0, NULL, 0, 0, &err), 0);
    /* nothing depends on c yet: SQLite says so (others may not tell) */
    if (strcmp(S->ops->name, "sqlite") == 0)
        ck_assert(v.no_dependents);
    store_version_clear(&v);
    store_dep d = {"corpus", "", 0};
    snprintf(d.id, sizeof d.id, "%s", N("c"));
    mkv(&v, "trie", N("t"), V("1.0.0"), N("t1"));
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, 0, 0, &d, 1, 0, &err), 0);
    store_version_clear(&v);
    /* now the trie does: no backend may claim that nothing depends on c */
    mkv(&v, "corpus", N("c"), V("1.0.1"), N("c2"));
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, V("1.0.0"), V("1.0.0"), NULL, 0, 0, &err), 0);
    ck_assert(!v.no_dependents);
    store_version_clear(&v);
    store_page p;
    store_list_opts all = {.limit = STORE_LIST_MAX, .stale = -1};
    ck_assert_int_eq(S->ops->dependents(S, "corpus", N("c"), &all, &p, &err), 0);
    ck_assert_uint_eq(p.count, 1);
    ck_assert_str_eq(p.items[0]->id, N("t"));
    ck_assert(p.items[0]->is_latest);
    store_page_free(&p);
    /* a newer trie without the dependency is no longer a dependent */
    ck_assert_int_eq(put("trie", "t", "1.0.1", "t2", NULL, &err), 0);
    ck_assert_int_eq(S->ops->dependents(S, "corpus", N("c"), &all, &p, &err), 0);
    ck_assert_uint_eq(p.count, 0);
    store_page_free(&p);
    /* pages of two, in (type, id) order, every dependent once */
    const char *types[] = {"search", "trie", "trie", "semantic", "trie"};
    const char *ids[] = {"s1", "t3", "t0", "m1", "t2"};
    for (int i = 0; i < 5; i++) {
        char hash[8];
        snprintf(hash, sizeof hash, "h%d", i);
        mkv(&v, types[i], N(ids[i]), V("1.0.0"), N(hash));
        ck_assert_int_eq(S->ops->put_version(S, NULL, &v, 0, 0, &d, 1, 0, &err), 0);
        store_version_clear(&v);
    }
    char want[5][300];
    snprintf(want[0], sizeof want[0], "search/%s", N("s1"));
    snprintf(want[1], sizeof want[1], "semantic/%s", N("m1"));
    snprintf(want[2], sizeof want[2], "trie/%s", N("t0"));
    snprintf(want[3], sizeof want[3], "trie/%s", N("t2"));
    snprintf(want[4], sizeof want[4], "trie/%s", N("t3"));
    store_list_opts two = {.limit = 2, .stale = -1};
    char *cursor = NULL;
    int seen = 0, pages = 0;
    do {
        two.cursor = cursor;
        ck_assert_int_eq(S->ops->dependents(S, "corpus", N("c"), &two, &p, &err), 0);
        free(cursor);
        for (size_t i = 0; i < p.count; i++) {
            char got[300];
            snprintf(got, sizeof got, "%s/%s", p.items[i]->type, p.items[i]->id);
            ck_assert_int_lt(seen, 5);
            ck_assert_str_eq(got, want[seen++]);
        }
        cursor = p.next;
        p.next = NULL;
        store_page_free(&p);
        pages++;
    } while (cursor != NULL);
    ck_assert_int_eq(seen, 5);
    ck_assert_int_eq(pages, 3);
    two.cursor = "not-a-cursor";
    ck_assert_int_eq(S->ops->dependents(S, "corpus", N("c"), &two, &p, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    /* a cursor of another list is refused too */
    char *vcur = store_cursor_encode('v', V("1.0.0"));
    two.cursor = vcur;
    ck_assert_int_eq(S->ops->dependents(S, "corpus", N("c"), &two, &p, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    free(vcur);
    /* a resource deleted stops depending */
    size_t n;
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "search", N("s1"), "request", &n, &err), 0);
    ck_assert_int_eq(S->ops->dependents(S, "corpus", N("c"), &all, &p, &err), 0);
    ck_assert_uint_eq(p.count, 4);
    store_page_free(&p);
}
END_TEST

START_TEST(delete_resource_removes_every_version)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "same", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.1", "other", NULL, &err), 0);
    store_version v;
    size_t n = 0;
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", N("t"), "request", &n, &err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), 0, &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), V("1.0.0"), &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", N("t"), "request", &n, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", N("never"), "request", &n, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    store_tombstone tomb;
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), 0, &tomb, &err), 0);
    ck_assert_str_eq(tomb.removed_by, "request");
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), V("1.0.1"), &tomb, &err), 0);
    /* a new life continues the numbering: 1.0.0 is never issued again */
    ck_assert_int_eq(put("trie", "t", "1.0.0", "again", NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    ck_assert_int_eq(put("trie", "t", "1.0.2", "again", NULL, &err), 0);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), 0, &tomb, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), V("1.0.1"), &tomb, &err), 0);
    expect_version("trie", "t", "1.0.2", true, NULL, NULL);
}
END_TEST

START_TEST(a_deleted_resource_keeps_its_numbers)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.1", "b", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "2.0.0", "c", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "u", "1.0.0", "u", NULL, &err), 0);
    ck_assert_int_eq(S->ops->set_stale(S, NULL, "trie", N("t"), true, NULL, &err), 0);
    size_t n = 0;
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", N("t"), "request", &n, &err), 0);
    ck_assert_uint_eq(n, 3);
    expect_head("trie", "t", 0, V("2.0.0"));
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), 0, &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), V("1.0.1"), &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    store_list_opts o = {.limit = 10, .stale = -1};
    store_page p;
    ck_assert_int_eq(S->ops->list_versions(S, "trie", N("t"), &o, &p, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_uint_eq(count_listed("trie", N("t")), 0);
    ck_assert_uint_eq(count_listed("trie", N("u")), 1);
    o.stale = 1;
    o.ns = P;
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 0); /* not even as a stale one */
    store_page_free(&p);
    ck_assert_int_eq(S->ops->set_stale(S, NULL, "trie", N("t"), true, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", N("t"), "request", &n, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    /* a writer that read the head before the delete loses the race */
    store_version w;
    mkv(&w, "trie", N("t"), V("2.0.1"), N("late"));
    ck_assert_int_eq(S->ops->put_version(S, NULL, &w, V("2.0.0"), V("2.0.0"), NULL, 0, 0, &err),
                     -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    /* ... and one that thinks the resource never existed too */
    w.vkey = V("1.0.0");
    ck_assert_int_eq(S->ops->put_version(S, NULL, &w, 0, 0, NULL, 0, 0, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    store_version_clear(&w);
    /* created again from the head: above the old max; the old versions stay gone */
    ck_assert_int_eq(put("trie", "t", "2.0.0", "d", NULL, &err), -1);
    ck_assert_int_eq(put("trie", "t", "2.0.1", "a", NULL, &err), 0);
    expect_head("trie", "t", V("2.0.1"), V("2.0.1"));
    expect_version("trie", "t", "2.0.1", true, NULL, NULL);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), 0, &v, &err), 0);
    ck_assert_uint_eq(v.vkey, V("2.0.1"));
    ck_assert(!v.stale); /* the old life's flag does not come back */
    store_version_clear(&v);
    store_tombstone tomb;
    const char *old[] = {"1.0.0", "1.0.1", "2.0.0"};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), V(old[i]), &v, &err), -1);
        ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
        ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), V(old[i]), &tomb, &err), 0);
        ck_assert_str_eq(tomb.removed_by, "request");
    }
    ck_assert_uint_eq(count_listed("trie", N("t")), 1);
    ck_assert_uint_eq(check_chain("trie", N("t")), 1);
}
END_TEST

/* ---- access counts ------------------------------------------------------------------ */

typedef struct counter {
    store *s;
    const char *type, *id;
    uint64_t vkey;
    int calls, failures;
} counter;

static void *count_accesses(void *arg)
{
    counter *c = arg;
    for (int i = 0; i < c->calls; i++) {
        store_access a = {c->type, c->id, c->vkey, 1, 1000 + i, 0, 0};
        strata_error err;
        if (c->s->ops->add_access(c->s, &a, 1, &err) != 0)
            c->failures++;
    }
    return NULL;
}

START_TEST(add_access_in_bulk_fills_totals)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.1", "b", NULL, &err), 0);
    const char *t = N("t"), *nope = N("nope");
    store_version before;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", t, V("1.0.0"), &before, &err), 0);
    store_access items[] = {
        {"trie", t, V("1.0.0"), 3, 100, 0, 0},  {"trie", t, V("1.0.1"), 2, 200, 0, 0},
        {"trie", t, V("1.0.0"), 4, 50, 0, 0},   {"trie", t, V("9.9.9"), 5, 300, 0, 0},
        {"trie", nope, V("1.0.0"), 1, 1, 0, 0},
    };
    ck_assert_int_eq(S->ops->add_access(S, items, 5, &err), 0);
    ck_assert_uint_eq(items[0].total, 3);
    ck_assert_int_eq(items[0].total_last_ms, 100);
    ck_assert_uint_eq(items[1].total, 2);
    ck_assert_int_eq(items[1].total_last_ms, 200);
    /* the same version twice in one call: totals after each addition;
     * the last access is the latest given, not the last one added */
    ck_assert_uint_eq(items[2].total, 7);
    ck_assert_int_eq(items[2].total_last_ms, 100);
    /* versions that do not exist: nothing stored, totals 0 */
    ck_assert_uint_eq(items[3].total, 0);
    ck_assert_uint_eq(items[4].total, 0);
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", t, V("1.0.0"), &v, &err), 0);
    ck_assert_uint_eq(v.access_count, 7);
    ck_assert_int_eq(v.last_accessed_ms, 100);
    /* counts never change the record */
    char *d1 = json_dumps(before.doc, JSON_SORT_KEYS), *d2 = json_dumps(v.doc, JSON_SORT_KEYS);
    ck_assert_str_eq(d1, d2);
    free(d1);
    free(d2);
    ck_assert_int_eq(v.created_at_ms, before.created_at_ms);
    store_version_clear(&v);
    store_version_clear(&before);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", t, 0, &v, &err), 0);
    ck_assert_uint_eq(v.access_count, 2);
    ck_assert_int_eq(v.last_accessed_ms, 200);
    ck_assert(v.is_latest);
    store_version_clear(&v);
    expect_absent(S, "trie", nope);
    ck_assert_int_eq(S->ops->add_access(S, items, 0, &err), 0);
    /* counted from many threads and two handles: none lost */
    counter cs[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        cs[i] = (counter){i % 2 ? second() : S, "trie", t, V("1.0.1"), 40, 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, count_accesses, &cs[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(cs[i].failures, 0);
    }
    store_access one = {"trie", t, V("1.0.1"), 1, 5000, 0, 0};
    ck_assert_int_eq(S->ops->add_access(S, &one, 1, &err), 0);
    ck_assert_uint_eq(one.total, 2 + 4 * 40 + 1);
    ck_assert_int_eq(one.total_last_ms, 5000);
    /* a deleted version's counts go with it */
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", t, V("1.0.0"), "request", &err), 0);
    store_access gone = {"trie", t, V("1.0.0"), 1, 6000, 0, 0};
    ck_assert_int_eq(S->ops->add_access(S, &gone, 1, &err), 0);
    ck_assert_uint_eq(gone.total, 0);
}
END_TEST

/* ---- transactions ------------------------------------------------------------------- */

typedef struct txn_case {
    int calls;
    int retries;                    /* fail with SERR_RETRY this many times first */
    enum strata_err_kind fail_with; /* then fail with this, unless SERR_OK */
    bool write;                     /* write a version of id in each run */
    const char *id;
} txn_case;

static int txn_body(store_txn *txn, void *ctx, strata_error *err)
{
    txn_case *c = ctx;
    c->calls++;
    if (c->write) {
        store_head h;
        if (S->ops->get_head(S, txn, "trie", c->id, &h, err) != 0)
            return -1;
        char hash[64];
        snprintf(hash, sizeof hash, "%s-run%d", P, c->calls);
        store_version v;
        mkv(&v, "trie", c->id, semver_next(h.max_vkey, BUMP_PATCH), hash);
        int rc = S->ops->put_version(S, txn, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, err);
        store_version_clear(&v);
        if (rc != 0)
            return -1;
    }
    if (c->calls <= c->retries)
        return serr_set(err, SERR_RETRY, "not yet (run %d)", c->calls);
    if (c->fail_with != SERR_OK)
        return serr_set(err, c->fail_with, "the body failed");
    return 0;
}

START_TEST(transact_reruns_on_retry_then_commits)
{
    strata_error err;
    /* the runs before are rolled back where the backend is transactional;
     * without transactions the body writes only in the run that commits */
    bool atomic = S->ops->caps & STORE_CAP_TRANSACTIONS;
    txn_case c = {.retries = 2, .write = atomic, .id = N("t")};
    ck_assert_msg(S->ops->transact(S, txn_body, &c, &err) == 0, "%s", err.detail);
    ck_assert_int_eq(c.calls, 3);
    if (atomic) {
        ck_assert_uint_eq(check_chain("trie", N("t")), 1);
        store_version v;
        ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), 0, &v, &err), 0);
        ck_assert_str_eq(v.data_hash, N("run3"));
        ck_assert_uint_eq(v.vkey, V("1.0.0"));
        store_version_clear(&v);
    }
}
END_TEST

START_TEST(transact_gives_up_after_its_attempts)
{
    strata_error err;
    txn_case c = {.retries = 1000};
    ck_assert_int_eq(S->ops->transact(S, txn_body, &c, &err), -1);
    ck_assert_int_eq(err.kind, SERR_RETRY);
    ck_assert_int_eq(c.calls, STORE_TRANSACT_ATTEMPTS);
}
END_TEST

START_TEST(transact_returns_other_errors_without_rerunning)
{
    strata_error err;
    txn_case c = {.fail_with = SERR_INVALID};
    ck_assert_int_eq(S->ops->transact(S, txn_body, &c, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    ck_assert_int_eq(c.calls, 1);
    /* a lost compare-and-swap inside is the body's error, not a rerun */
    c = (txn_case){.fail_with = SERR_CONFLICT};
    ck_assert_int_eq(S->ops->transact(S, txn_body, &c, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    ck_assert_int_eq(c.calls, 1);
}
END_TEST

/* Everything a failed body wrote is rolled back: versions, deletes,
 * tombstones, staleness, tree edges, vocabulary, claims. */
typedef struct rollback_ctx {
    int calls;
    char key[SHA256_HEX_LEN + 1];
    const char *r, *n, *x, *m, *c;
    int failed_step;
    char detail[STRATA_ERR_DETAIL_MAX];
} rollback_ctx;

static int rollback_body(store_txn *txn, void *ctx, strata_error *err)
{
    rollback_ctx *c = ctx;
    c->calls++;
    store_head h;
    store_version v;
    int step = 0;
#define STEP(call)                                                                                 \
    do {                                                                                           \
        step++;                                                                                    \
        if ((call) != 0) {                                                                         \
            c->failed_step = step;                                                                 \
            snprintf(c->detail, sizeof c->detail, "%s", err->detail);                              \
            return serr_set(err, SERR_INTERNAL, "step %d failed", step);                           \
        }                                                                                          \
    } while (0)
    /* a new resource, a new version of an existing one, a delete of its
     * older version, a whole resource deleted, a stale flag */
    STEP(S->ops->get_head(S, txn, "trie", c->n, &h, err));
    mkv(&v, "trie", c->n, V("1.0.0"), c->n);
    int rc = S->ops->put_version(S, txn, &v, 0, 0, NULL, 0, 0, err);
    store_version_clear(&v);
    STEP(rc);
    STEP(S->ops->get_head(S, txn, "trie", c->r, &h, err));
    mkv(&v, "trie", c->r, V("1.0.1"), c->r);
    rc = S->ops->put_version(S, txn, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, err);
    store_version_clear(&v);
    STEP(rc);
    STEP(S->ops->delete_version(S, txn, "trie", c->r, V("1.0.0"), "batch", err));
    size_t n = 0;
    STEP(S->ops->delete_resource(S, txn, "trie", c->x, "batch", &n, err));
    STEP(S->ops->set_stale(S, txn, "trie", c->r, true, NULL, err));
    /* a tree edge and a vocabulary, where tree writes are transactional */
    bool trees = S->ops->caps & STORE_CAP_TREE_TXN;
    vocab_delta d = {"word", 1, 3, 0};
    int64_t size_delta = 0;
    if (trees) {
        STEP(S->ops->tree_link(S, txn, c->m, c->c, 7, err));
        STEP(S->ops->vocab_apply(S, txn, c->m, &d, 1, &size_delta, err));
    }
    /* a claim on a blob */
    uint64_t claim = 0;
    if (S->ops->caps & STORE_CAP_BLOB_CLAIMS)
        STEP(S->ops->blob_claim(S, txn, c->key, &claim, err));
    /* the body sees its own writes */
    STEP(S->ops->get_head(S, txn, "trie", c->n, &h, err));
    if (!h.exists)
        return serr_set(err, SERR_INTERNAL, "the body does not see its own version");
    uint64_t words = 0;
    STEP(S->ops->vocab_size(S, txn, c->m, &words, err));
    if (words != (trees ? 1 : 0))
        return serr_set(err, SERR_INTERNAL, "the body does not see its own vocabulary");
#undef STEP
    return serr_set(err, SERR_PRECONDITION, "and then it failed");
}

START_TEST(transact_rolls_back_everything_on_error)
{
    strata_error err;
    rollback_ctx c = {.r = N("r"), .n = N("n"), .x = N("x"), .m = N("m"), .c = N("c")};
    K("blob", c.key);
    ck_assert_int_eq(put("trie", "r", "1.0.0", "r0", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "x", "1.0.0", "x0", NULL, &err), 0);
    int rc = S->ops->transact(S, rollback_body, &c, &err);
    ck_assert_msg(c.failed_step == 0, "step %d: %s", c.failed_step, c.detail);
    ck_assert_int_eq(rc, -1);
    ck_assert_msg(err.kind == SERR_PRECONDITION, "%s", err.detail);
    ck_assert_int_eq(c.calls, 1);
    /* nothing of it stayed */
    expect_absent(S, "trie", N("n"));
    expect_head("trie", "r", V("1.0.0"), V("1.0.0"));
    expect_version("trie", "r", "1.0.0", true, NULL, NULL);
    expect_head("trie", "x", V("1.0.0"), V("1.0.0"));
    store_tombstone tomb;
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("r"), V("1.0.0"), &tomb, &err), -1);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("x"), 0, &tomb, &err), -1);
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("r"), 0, &v, &err), 0);
    ck_assert(!v.stale);
    store_version_clear(&v);
    char parent[STORE_ID_MAX + 1];
    bool has_parent = true;
    ck_assert_int_eq(S->ops->tree_parent(S, NULL, N("c"), parent, sizeof parent, &has_parent, &err),
                     0);
    ck_assert(!has_parent);
    uint64_t words = 99;
    ck_assert_int_eq(S->ops->vocab_size(S, NULL, N("m"), &words, &err), 0);
    ck_assert_uint_eq(words, 0);
    vocab_item *items = NULL;
    size_t n = 9;
    ck_assert_int_eq(S->ops->vocab_page(S, NULL, N("m"), "", 10, &items, &n, &err), 0);
    ck_assert_uint_eq(n, 0);
    vocab_items_free(items, n);
    if (S->ops->caps & STORE_CAP_BLOB_CLAIMS) {
        /* the claim went too: a collector may doom the key */
        bool doomed = false;
        ck_assert_int_eq(
            S->ops->blob_collect_begin(S, c.key, 1, clock_wall_ms() - 3600000, &doomed, &err), 0);
        ck_assert(doomed);
        ck_assert_int_eq(S->ops->blob_collect_end(S, c.key, &err), 0);
    }
}
END_TEST

/* A body's reads see its own writes; outside readers see none of them
 * until the commit, then all. */
typedef struct batch_ctx {
    const char *ids[3];
    bool own, outside;
    int calls;
} batch_ctx;

static int batch_body(store_txn *txn, void *ctx, strata_error *err)
{
    batch_ctx *b = ctx;
    b->calls++;
    for (int i = 0; i < 3; i++) {
        store_version v;
        mkv(&v, "trie", b->ids[i], V("1.0.0"), b->ids[i]);
        int rc = S->ops->put_version(S, txn, &v, 0, 0, NULL, 0, 0, err);
        store_version_clear(&v);
        if (rc != 0)
            return -1;
    }
    store_head h;
    if (S->ops->get_head(S, txn, "trie", b->ids[1], &h, err) != 0)
        return -1;
    b->own = h.exists;
    if (S->ops->get_head(S, NULL, "trie", b->ids[1], &h, err) != 0)
        return -1;
    b->outside = h.exists;
    store_version v;
    if (S->ops->get_version(S, txn, "trie", b->ids[2], 0, &v, err) != 0)
        return -1;
    store_version_clear(&v);
    return 0;
}

START_TEST(transact_commits_whole)
{
    strata_error err;
    batch_ctx b = {.ids = {N("b0"), N("b1"), N("b2")}};
    ck_assert_msg(S->ops->transact(S, batch_body, &b, &err) == 0, "%s", err.detail);
    ck_assert_int_eq(b.calls, 1);
    ck_assert(b.own);
    ck_assert(!b.outside);
    for (int i = 0; i < 3; i++) {
        ck_assert_uint_eq(check_chain("trie", b.ids[i]), 1);
        store_version v;
        ck_assert_int_eq(second()->ops->get_version(S2, NULL, "trie", b.ids[i], 0, &v, &err), 0);
        store_version_clear(&v);
    }
}
END_TEST

typedef struct del_ctx {
    const char *id;
    uint64_t latest, max;
} del_ctx;

static int delete_and_resave(store_txn *txn, void *ctx, strata_error *err)
{
    del_ctx *d = ctx;
    size_t n = 0;
    if (S->ops->delete_resource(S, txn, "trie", d->id, "batch", &n, err) != 0)
        return -1;
    store_head h;
    if (S->ops->get_head(S, txn, "trie", d->id, &h, err) != 0)
        return -1;
    d->latest = h.latest_vkey;
    d->max = h.max_vkey;
    store_version v;
    mkv(&v, "trie", d->id, semver_next(h.max_vkey, BUMP_PATCH), d->id);
    int rc = S->ops->put_version(S, txn, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, err);
    store_version_clear(&v);
    return rc;
}

START_TEST(a_deleted_resource_in_a_transaction)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.1", "b", NULL, &err), 0);
    del_ctx d = {.id = N("t")};
    ck_assert_msg(S->ops->transact(S, delete_and_resave, &d, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(d.latest, 0);
    ck_assert_uint_eq(d.max, V("1.0.1"));
    expect_head("trie", "t", V("1.0.2"), V("1.0.2"));
    store_tombstone tomb;
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), V("1.0.0"), &tomb, &err), 0);
    ck_assert_str_eq(tomb.removed_by, "batch");
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("t"), 0, &tomb, &err), -1);
    ck_assert_uint_eq(count_listed("trie", N("t")), 1);
    ck_assert_uint_eq(check_chain("trie", N("t")), 1);
}
END_TEST

/* Read-check-write in transact() from many threads and two handles: the
 * check never goes stale, so no body ever loses its compare-and-swap. */
typedef struct rmw {
    store *s;
    const char *id;
    char prefix[40];
    int idx, done, failures;
    enum strata_err_kind kind;
    char detail[STRATA_ERR_DETAIL_MAX];
} rmw;

static int rmw_body(store_txn *txn, void *ctx, strata_error *err)
{
    rmw *r = ctx;
    store_head h;
    if (r->s->ops->get_head(r->s, txn, "trie", r->id, &h, err) != 0)
        return -1;
    store_version v;
    memset(&v, 0, sizeof v);
    snprintf(v.type, sizeof v.type, "trie");
    snprintf(v.id, sizeof v.id, "%s", r->id);
    snprintf(v.ns, sizeof v.ns, "%s", r->prefix);
    snprintf(v.data_hash, sizeof v.data_hash, "%s-%d-%d", r->prefix, r->idx, r->done);
    v.vkey = semver_next(h.max_vkey, BUMP_PATCH);
    v.doc = json_object();
    int rc = r->s->ops->put_version(r->s, txn, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, err);
    store_version_clear(&v);
    return rc;
}

static void *run_rmw(void *arg)
{
    rmw *r = arg;
    for (int i = 0; i < PER_WRITER; i++) {
        strata_error err;
        if (r->s->ops->transact(r->s, rmw_body, r, &err) == 0)
            r->done++;
        else {
            r->failures++;
            r->kind = err.kind;
            snprintf(r->detail, sizeof r->detail, "%s", err.detail);
        }
    }
    return NULL;
}

START_TEST(transact_read_check_write_never_goes_stale)
{
    rmw rs[WRITERS];
    pthread_t th[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        rs[i] = (rmw){.s = i % 2 ? second() : S, .id = N("rmw"), .idx = i};
        snprintf(rs[i].prefix, sizeof rs[i].prefix, "%s", P);
    }
    for (int i = 0; i < WRITERS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, run_rmw, &rs[i]), 0);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < WRITERS; i++)
        ck_assert_msg(rs[i].failures == 0, "writer %d: %d failures, kind %d: %s", i, rs[i].failures,
                      rs[i].kind, rs[i].detail);
    ck_assert_uint_eq(check_chain("trie", N("rmw")), WRITERS * PER_WRITER);
}
END_TEST

/* A transaction's writes to several heads are seen all or none by a
 * reader in another thread (another handle): each round writes round r to
 * three resources in one transaction, in the order the reader reads them,
 * so a reader that saw round r on the first must see at least r on the
 * next ones. */
#define AON_HEADS  3
#define AON_ROUNDS 25
typedef struct aon {
    store *s;
    char ids[AON_HEADS][STORE_ID_MAX + 1];
    char prefix[40];
    int round;
    atomic_int done, reads; /* shared by the writer and the reader */
    int torn, errors;       /* the reader's (read after the join) */
    char detail[STRATA_ERR_DETAIL_MAX + 2 * STORE_ID_MAX + 64];
} aon;

static int aon_body(store_txn *txn, void *ctx, strata_error *err)
{
    aon *a = ctx;
    for (int i = 0; i < AON_HEADS; i++) {
        store_head h;
        if (S->ops->get_head(S, txn, "trie", a->ids[i], &h, err) != 0)
            return -1;
        store_version v;
        char hash[64];
        snprintf(hash, sizeof hash, "%s-r%d", a->prefix, a->round);
        mkv(&v, "trie", a->ids[i], semver_next(h.max_vkey, BUMP_PATCH), hash);
        int rc = S->ops->put_version(S, txn, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, err);
        store_version_clear(&v);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static void *aon_reader(void *arg)
{
    aon *a = arg;
    while (!atomic_load(&a->done)) {
        int seen[AON_HEADS];
        for (int i = 0; i < AON_HEADS; i++) {
            store_version v;
            strata_error err;
            seen[i] = -1;
            if (a->s->ops->get_version(a->s, NULL, "trie", a->ids[i], 0, &v, &err) != 0) {
                if (err.kind != SERR_NOT_FOUND && a->errors++ == 0)
                    snprintf(a->detail, sizeof a->detail, "read: %s", err.detail);
                continue;
            }
            const char *r = strrchr(v.data_hash, 'r');
            seen[i] = r != NULL ? atoi(r + 1) : -2;
            store_version_clear(&v);
        }
        atomic_fetch_add(&a->reads, 1);
        for (int i = 1; i < AON_HEADS; i++)
            if (seen[i] < seen[i - 1] && a->torn++ == 0)
                snprintf(a->detail, sizeof a->detail, "torn: %s saw round %d, then %s round %d",
                         a->ids[i - 1], seen[i - 1], a->ids[i], seen[i]);
    }
    return NULL;
}

START_TEST(a_transaction_is_seen_all_or_none)
{
    aon a = {.s = second()};
    snprintf(a.prefix, sizeof a.prefix, "%s", P);
    for (int i = 0; i < AON_HEADS; i++) {
        char label[16];
        snprintf(label, sizeof label, "aon%d", i);
        snprintf(a.ids[i], sizeof a.ids[i], "%s", N(label));
    }
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, aon_reader, &a), 0);
    int failed = 0;
    char first[STRATA_ERR_DETAIL_MAX] = "";
    for (a.round = 1; a.round <= AON_ROUNDS; a.round++) {
        strata_error err;
        if (S->ops->transact(S, aon_body, &a, &err) != 0 && failed++ == 0)
            snprintf(first, sizeof first, "%s", err.detail);
    }
    while (atomic_load(&a.reads) < 5) /* a reader slower than every round still reads */
        sleep_ms(5);
    atomic_store(&a.done, 1);
    pthread_join(th, NULL);
    ck_assert_msg(failed == 0, "%d rounds failed; the first: %s", failed, first);
    ck_assert_msg(a.torn == 0 && a.errors == 0, "%d torn and %d failed of %d reads; %s", a.torn,
                  a.errors, atomic_load(&a.reads), a.detail);
    for (int i = 0; i < AON_HEADS; i++)
        ck_assert_uint_eq(check_chain("trie", a.ids[i]), AON_ROUNDS);
}
END_TEST

/* A transaction whose process dies inside the body (a crash): none of its
 * writes is ever visible, and the next writers of its heads go on. */
typedef struct crash_ctx {
    const char *ids[2];
    store *s;
} crash_ctx;

static int crash_body(store_txn *txn, void *ctx, strata_error *err)
{
    crash_ctx *c = ctx;
    for (int i = 0; i < 2; i++) {
        store_head h;
        if (c->s->ops->get_head(c->s, txn, "trie", c->ids[i], &h, err) != 0)
            _exit(3);
        store_version v;
        mkv(&v, "trie", c->ids[i], semver_next(h.max_vkey, BUMP_PATCH), "crashed");
        int rc = c->s->ops->put_version(c->s, txn, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, err);
        store_version_clear(&v);
        if (rc != 0)
            _exit(4);
    }
    size_t n = 0;
    if (c->s->ops->delete_resource(c->s, txn, "trie", c->ids[1], "crash", &n, err) != 0)
        _exit(5);
    _exit(0); /* dies holding the transaction */
}

static int resave_body(store_txn *txn, void *ctx, strata_error *err)
{
    crash_ctx *c = ctx;
    store_head h;
    if (S->ops->get_head(S, txn, "trie", c->ids[1], &h, err) != 0)
        return -1;
    store_version v;
    mkv(&v, "trie", c->ids[1], semver_next(h.max_vkey, BUMP_PATCH), "after");
    int rc = S->ops->put_version(S, txn, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, err);
    store_version_clear(&v);
    return rc;
}

START_TEST(an_abandoned_transaction_leaves_nothing)
{
    strata_error err;
    crash_ctx c = {.ids = {N("ca"), N("cb")}};
    ck_assert_int_eq(put("trie", "ca", "1.0.0", "a0", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "cb", "1.0.0", "b0", NULL, &err), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        c.s = store_open(CASE_URL, &err);
        if (c.s == NULL)
            _exit(2);
        c.s->ops->transact(c.s, crash_body, &c, &err);
        _exit(6); /* not reached: the body exits */
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child ended with %d", status);
    /* nothing of it is visible */
    expect_version("trie", "ca", "1.0.0", true, NULL, NULL);
    expect_version("trie", "cb", "1.0.0", true, NULL, NULL);
    ck_assert_uint_eq(count_listed("trie", N("ca")), 1);
    ck_assert_uint_eq(count_listed("trie", N("cb")), 1);
    store_tombstone tomb;
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("cb"), 0, &tomb, &err), -1);
    /* the next writers go on: one outside a transaction, one inside */
    ck_assert_msg(put("trie", "ca", "1.0.1", "a1", NULL, &err) == 0, "%s", err.detail);
    ck_assert_msg(S->ops->transact(S, resave_body, &c, &err) == 0, "%s", err.detail);
    expect_version("trie", "ca", "1.0.1", true, "1.0.0", NULL);
    expect_version("trie", "cb", "1.0.1", true, "1.0.0", NULL);
    ck_assert_uint_eq(check_chain("trie", N("ca")), 2);
    ck_assert_uint_eq(check_chain("trie", N("cb")), 2);
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("cb"), 0, &v, &err), 0);
    ck_assert_str_eq(v.data_hash, "after");
    store_version_clear(&v);
}
END_TEST

/* A transaction whose body works longer than a waiter's patience between
 * its store calls (a large vocabulary change, an upload) is alive: a
 * writer that waits on its head meanwhile never gives it up, and the
 * body runs once. */
typedef struct slow_ctx {
    int calls;
    const char *id;
    atomic_int started; /* set by the transaction's body, read by the waiter */
} slow_ctx;

static int slow_body(store_txn *txn, void *ctx, strata_error *err)
{
    slow_ctx *c = ctx;
    c->calls++;
    store_head h;
    if (S->ops->get_head(S, txn, "trie", c->id, &h, err) != 0)
        return -1;
    atomic_store(&c->started, 1);
    sleep_ms(4500); /* beyond any waiter's grace (mongo: MH_GRACE_MS) */
    store_version v;
    mkv(&v, "trie", c->id, semver_next(h.max_vkey, BUMP_PATCH), c->id);
    int rc = S->ops->put_version(S, txn, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, err);
    store_version_clear(&v);
    return rc;
}

typedef struct waiter_ctx {
    store *s;
    const char *id;
    slow_ctx *slow;
} waiter_ctx;

static void *wait_and_put(void *arg)
{
    waiter_ctx *w = arg;
    while (!atomic_load(&w->slow->started))
        sleep_ms(10);
    sleep_ms(200);
    strata_error err;
    store_version v;
    mkv(&v, "trie", w->id, V("1.0.9"), "waiter");
    /* the head as it was: it fails once the transaction commits first */
    w->s->ops->put_version(w->s, NULL, &v, V("1.0.0"), V("1.0.0"), NULL, 0, 0, &err);
    store_version_clear(&v);
    return NULL;
}

START_TEST(a_slow_transaction_is_not_given_up)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "slow", "1.0.0", "a", NULL, &err), 0);
    slow_ctx c = {.id = N("slow")};
    waiter_ctx w = {second(), N("slow"), &c};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, wait_and_put, &w), 0);
    int rc = S->ops->transact(S, slow_body, &c, &err);
    pthread_join(th, NULL);
    ck_assert_msg(rc == 0, "%s", err.detail);
    ck_assert_int_eq(c.calls, 1);
    expect_version("trie", "slow", "1.0.1", true, "1.0.0", NULL);
    ck_assert_uint_eq(check_chain("trie", N("slow")), 2);
}
END_TEST

/* ---- trees and vocabularies ------------------------------------------------------------ */

static int cmp_child(const void *a, const void *b)
{
    return strcmp(((const tree_child *)a)->id, ((const tree_child *)b)->id);
}

/* children of parent, sorted, as "id@vkey,..." */
static void children_of(const char *parent, char *out, size_t cap)
{
    tree_child *kids = NULL;
    size_t n = 0;
    strata_error err;
    ck_assert_msg(S->ops->tree_children(S, NULL, parent, &kids, &n, &err) == 0, "%s", err.detail);
    if (n > 1)
        qsort(kids, n, sizeof *kids, cmp_child);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s@%llu", i ? "," : "", kids[i].id + strlen(P) + 1,
                 (unsigned long long)kids[i].vkey);
    }
    free(kids);
}

typedef struct edge_walk {
    const char *prefix;
    char seen[512];
    int calls, stop_after;
} edge_walk;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int note_edge(void *ctx, const char *parent, const char *child, uint64_t vkey)
{
    edge_walk *w = ctx;
    w->calls++;
    size_t pl = strlen(w->prefix);
    if (strncmp(parent, w->prefix, pl) == 0 && strncmp(child, w->prefix, pl) == 0) {
        size_t len = strlen(w->seen);
        snprintf(w->seen + len, sizeof w->seen - len, "%s>%s@%llu;", parent + pl + 1,
                 child + pl + 1, (unsigned long long)vkey);
    }
    return w->stop_after && w->calls >= w->stop_after;
}

/* "a;b;c;" sorted by entry */
static void sort_entries(char *s)
{
    char *parts[32] = {0};
    int n = 0;
    for (char *p = strtok(s, ";"); p && n < 32; p = strtok(NULL, ";"))
        parts[n++] = strdup(p);
    qsort(parts, (size_t)n, sizeof *parts, cmp_str);
    s[0] = '\0';
    for (int i = 0; i < n; i++) {
        strcat(s, parts[i]);
        strcat(s, ";");
        free(parts[i]);
    }
}

START_TEST(tree_links_parents_children_and_edges)
{
    strata_error err;
    char parent[STORE_ID_MAX + 1], got[512];
    bool has = true;
    ck_assert_int_eq(S->ops->tree_parent(S, NULL, N("c1"), parent, sizeof parent, &has, &err), 0);
    ck_assert(!has);
    ck_assert_int_eq(S->ops->tree_link(S, NULL, N("m"), N("c1"), 1, &err), 0);
    ck_assert_int_eq(S->ops->tree_link(S, NULL, N("m"), N("c2"), 2, &err), 0);
    ck_assert_int_eq(S->ops->tree_link(S, NULL, N("m2"), N("c3"), 3, &err), 0);
    children_of(N("m"), got, sizeof got);
    ck_assert_str_eq(got, "c1@1,c2@2");
    ck_assert_int_eq(S->ops->tree_parent(S, NULL, N("c1"), parent, sizeof parent, &has, &err), 0);
    ck_assert(has);
    ck_assert_str_eq(parent, N("m"));
    /* a child has at most one parent: linking it elsewhere moves it */
    ck_assert_int_eq(S->ops->tree_link(S, NULL, N("m2"), N("c2"), 5, &err), 0);
    children_of(N("m"), got, sizeof got);
    ck_assert_str_eq(got, "c1@1");
    children_of(N("m2"), got, sizeof got);
    ck_assert_str_eq(got, "c2@5,c3@3");
    ck_assert_int_eq(S->ops->tree_parent(S, NULL, N("c2"), parent, sizeof parent, &has, &err), 0);
    ck_assert_str_eq(parent, N("m2"));
    /* linked again: the version the parent aggregates moves */
    ck_assert_int_eq(S->ops->tree_link(S, NULL, N("m"), N("c1"), 7, &err), 0);
    children_of(N("m"), got, sizeof got);
    ck_assert_str_eq(got, "c1@7");
    /* unlinking from a parent it does not have leaves the edge alone */
    S->ops->tree_unlink(S, NULL, N("m"), N("c3"), &err);
    children_of(N("m2"), got, sizeof got);
    ck_assert_str_eq(got, "c2@5,c3@3");
    ck_assert_int_eq(S->ops->tree_unlink(S, NULL, N("m2"), N("c2"), &err), 0);
    ck_assert_int_eq(S->ops->tree_parent(S, NULL, N("c2"), parent, sizeof parent, &has, &err), 0);
    ck_assert(!has);
    children_of(N("m2"), got, sizeof got);
    ck_assert_str_eq(got, "c3@3");
    children_of(N("nobody"), got, sizeof got);
    ck_assert_str_eq(got, "");
    /* every edge, once (filtered to this case's) */
    edge_walk w = {.prefix = P};
    ck_assert_int_eq(S->ops->tree_edges(S, note_edge, &w, &err), 0);
    sort_entries(w.seen);
    ck_assert_str_eq(w.seen, "m2>c3@3;m>c1@7;");
    ck_assert_int_ge(w.calls, 2);
    /* fn returning non-zero stops the walk */
    edge_walk stop = {.prefix = P, .stop_after = 1};
    ck_assert_int_eq(S->ops->tree_edges(S, note_edge, &stop, &err), 0);
    ck_assert_int_eq(stop.calls, 1);
}
END_TEST

static void vocab_of(const char *master, const char *after, size_t limit, char *out, size_t cap)
{
    vocab_item *items = NULL;
    size_t n = 0;
    strata_error err;
    ck_assert_msg(S->ops->vocab_page(S, NULL, master, after, limit, &items, &n, &err) == 0, "%s",
                  err.detail);
    ck_assert_uint_le(n, limit);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s:%lld/%lld;", items[i].word, (long long)items[i].children,
                 (long long)items[i].frequency);
    }
    vocab_items_free(items, n);
}

START_TEST(vocabulary_aggregates_apply_page_and_clear)
{
    strata_error err;
    const char *m = N("m"), *m2 = N("m2");
    int64_t sd = 0;
    uint64_t size = 99;
    ck_assert_int_eq(S->ops->vocab_size(S, NULL, m, &size, &err), 0);
    ck_assert_uint_eq(size, 0);
    vocab_delta other = {"kept", 1, 1, 0};
    ck_assert_int_eq(S->ops->vocab_apply(S, NULL, m2, &other, 1, &sd, &err), 0);
    vocab_delta d1[] = {{"b", 1, 5, 9}, {"a", 1, 2, 9}, {"Z", 1, 1, 9}, {"\xc3\xa9", 1, 1, 9}};
    ck_assert_int_eq(S->ops->vocab_apply(S, NULL, m, d1, 4, &sd, &err), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(d1[i].presence, 1);
    ck_assert_int_eq(sd, 4);
    ck_assert_int_eq(S->ops->vocab_size(S, NULL, m, &size, &err), 0);
    ck_assert_uint_eq(size, 4);
    /* a word another child brings too stays; one whose count falls to 0 leaves */
    vocab_delta d2[] = {{"a", 1, 3, 9}, {"b", -1, -5, 9}, {"c", 0, 0, 9}};
    ck_assert_int_eq(S->ops->vocab_apply(S, NULL, m, d2, 3, &sd, &err), 0);
    ck_assert_int_eq(d2[0].presence, 0);
    ck_assert_int_eq(d2[1].presence, -1);
    ck_assert_int_eq(d2[2].presence, 0);
    ck_assert_int_eq(sd, -1);
    ck_assert_int_eq(S->ops->vocab_size(S, NULL, m, &size, &err), 0);
    ck_assert_uint_eq(size, 3);
    /* sorted bytewise: "Z" < "a" < "é" */
    char got[512];
    vocab_of(m, "", 10, got, sizeof got);
    ck_assert_str_eq(got, "Z:1/1;a:2/5;\xc3\xa9:1/1;");
    vocab_of(m, "", 2, got, sizeof got);
    ck_assert_str_eq(got, "Z:1/1;a:2/5;");
    vocab_of(m, "a", 2, got, sizeof got);
    ck_assert_str_eq(got, "\xc3\xa9:1/1;");
    vocab_of(m, "\xc3\xa9", 2, got, sizeof got);
    ck_assert_str_eq(got, "");
    /* a word leaving and coming back in one call's sequence */
    vocab_delta d3[] = {{"Z", -1, -1, 0}, {"Z", 1, 4, 0}};
    ck_assert_int_eq(S->ops->vocab_apply(S, NULL, m, d3, 2, &sd, &err), 0);
    ck_assert_int_eq(d3[0].presence, -1);
    ck_assert_int_eq(d3[1].presence, 1);
    ck_assert_int_eq(sd, 0);
    vocab_of(m, "", 1, got, sizeof got);
    ck_assert_str_eq(got, "Z:1/4;");
    /* cleared: empty and size 0; another master untouched */
    ck_assert_int_eq(S->ops->vocab_clear(S, NULL, m, &err), 0);
    ck_assert_int_eq(S->ops->vocab_size(S, NULL, m, &size, &err), 0);
    ck_assert_uint_eq(size, 0);
    vocab_of(m, "", 10, got, sizeof got);
    ck_assert_str_eq(got, "");
    ck_assert_int_eq(S->ops->vocab_clear(S, NULL, m, &err), 0);
    vocab_of(m2, "", 10, got, sizeof got);
    ck_assert_str_eq(got, "kept:1/1;");
    ck_assert_int_eq(S->ops->vocab_size(S, NULL, m2, &size, &err), 0);
    ck_assert_uint_eq(size, 1);
}
END_TEST

/* ---- blob references and claims ------------------------------------------------------ */

typedef struct ref_walk {
    const char (*keys)[SHA256_HEX_LEN + 1];
    int nkeys;
    int seen[8];
} ref_walk;

static int note_ref(void *ctx, const char *key)
{
    ref_walk *w = ctx;
    for (int i = 0; i < w->nkeys; i++)
        if (strcmp(key, w->keys[i]) == 0)
            w->seen[i]++;
    return 0;
}

static void refs(const char (*keys)[SHA256_HEX_LEN + 1], int n, int *seen)
{
    ref_walk w = {.keys = keys, .nkeys = n};
    strata_error err;
    ck_assert_msg(S->ops->blob_refs(S, note_ref, &w, &err) == 0, "%s", err.detail);
    memcpy(seen, w.seen, sizeof(int) * (size_t)n);
}

static bool referenced(const char *key)
{
    bool r = false;
    strata_error err;
    ck_assert_int_eq(S->ops->blob_referenced(S, key, &r, &err), 0);
    return r;
}

START_TEST(blob_references_follow_the_versions)
{
    strata_error err;
    char keys[3][SHA256_HEX_LEN + 1];
    K("k1", keys[0]);
    K("k2", keys[1]);
    K("k3", keys[2]);
    /* two versions share k1, another resource holds k2, nothing holds k3 */
    ck_assert_int_eq(put_blob(S, "trie", N("t"), "1.0.0", keys[0], claim_on(S, keys[0]), &err), 0);
    ck_assert_int_eq(put_blob(S, "trie", N("t"), "1.0.1", keys[0], claim_on(S, keys[0]), &err), 0);
    ck_assert_int_eq(put_blob(S, "corpus", N("u"), "1.0.0", keys[1], claim_on(S, keys[1]), &err),
                     0);
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), 0, &v, &err), 0);
    ck_assert_str_eq(v.blob_key, keys[0]);
    ck_assert_ptr_null(v.content);
    store_version_clear(&v);
    int seen[3];
    refs(keys, 3, seen);
    ck_assert_int_eq(seen[0], 1); /* once each */
    ck_assert_int_eq(seen[1], 1);
    ck_assert_int_eq(seen[2], 0);
    ck_assert(referenced(keys[0]));
    ck_assert(referenced(keys[1]));
    ck_assert(!referenced(keys[2]));
    /* references go with the versions */
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("t"), V("1.0.0"), "request", &err),
                     0);
    ck_assert(referenced(keys[0]));
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("t"), V("1.0.1"), "request", &err),
                     0);
    ck_assert(!referenced(keys[0]));
    size_t n;
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "corpus", N("u"), "request", &n, &err), 0);
    ck_assert(!referenced(keys[1]));
    refs(keys, 3, seen);
    ck_assert_int_eq(seen[0] + seen[1] + seen[2], 0);
}
END_TEST

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

static int doomed_times(store *s, const char *key, uint64_t *token)
{
    doomed_walk w = {.key = key};
    strata_error err;
    ck_assert_msg(s->ops->blob_collecting(s, note_doomed, &w, &err) == 0, "%s", err.detail);
    if (token)
        *token = w.token;
    return w.seen;
}

static bool collect_begin(store *s, const char *key, uint64_t token, int64_t before)
{
    bool doomed = false;
    strata_error err;
    ck_assert_msg(s->ops->blob_collect_begin(s, key, token, before, &doomed, &err) == 0, "%s",
                  err.detail);
    return doomed;
}

#define HOUR_AGO() (clock_wall_ms() - 3600000)

START_TEST(a_claim_blocks_collection_and_a_doomed_key_refuses_claims)
{
    strata_error err;
    char key[SHA256_HEX_LEN + 1];
    K("k", key);
    uint64_t c1 = claim_on(S, key), c2 = claim_on(S, key);
    ck_assert_uint_ne(c1, c2);
    ck_assert(!collect_begin(S, key, 7, HOUR_AGO()));
    ck_assert_int_eq(doomed_times(S, key, NULL), 0);
    /* one claim given back: the other still stands */
    ck_assert_int_eq(S->ops->blob_release(S, key, c1, &err), 0);
    ck_assert(!collect_begin(S, key, 7, HOUR_AGO()));
    ck_assert_int_eq(S->ops->blob_release(S, key, c2, &err), 0);
    /* no claim, no reference: doomed under the collector's token */
    ck_assert(collect_begin(S, key, 7, HOUR_AGO()));
    uint64_t token = 0;
    ck_assert_int_eq(doomed_times(S, key, &token), 1);
    ck_assert_uint_eq(token, 7);
    uint64_t c = 99;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(S->ops->blob_claim(S, NULL, key, &c, &err), -1);
        ck_assert_int_eq(err.kind, SERR_RETRY);
    }
    /* other keys are not affected */
    char other[SHA256_HEX_LEN + 1];
    K("other", other);
    uint64_t co = claim_on(S, other);
    ck_assert_int_eq(S->ops->blob_release(S, other, co, &err), 0);
    /* ended: claims are granted again, and the key is no longer doomed */
    ck_assert_int_eq(S->ops->blob_collect_end(S, key, &err), 0);
    ck_assert_int_eq(doomed_times(S, key, NULL), 0);
    uint64_t c3 = claim_on(S, key);
    ck_assert(!collect_begin(S, key, 8, HOUR_AGO()));
    ck_assert_int_eq(S->ops->blob_release(S, key, c3, &err), 0);
}
END_TEST

START_TEST(a_referenced_key_is_never_doomed)
{
    strata_error err;
    char key[SHA256_HEX_LEN + 1];
    K("k", key);
    ck_assert_int_eq(put_blob(S, "trie", N("t"), "1.0.0", key, claim_on(S, key), &err), 0);
    /* even with every claim dropped as abandoned */
    ck_assert(!collect_begin(S, key, 3, clock_wall_ms() + 60000));
    ck_assert_int_eq(doomed_times(S, key, NULL), 0);
    uint64_t c = claim_on(S, key); /* a save sharing it is not refused */
    ck_assert_int_eq(S->ops->blob_release(S, key, c, &err), 0);
    /* once its only version is gone, it may be collected */
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("t"), V("1.0.0"), "request", &err),
                     0);
    ck_assert(collect_begin(S, key, 3, HOUR_AGO()));
    ck_assert_int_eq(S->ops->blob_collect_end(S, key, &err), 0);
}
END_TEST

START_TEST(old_claims_are_dropped_by_the_collector)
{
    strata_error err;
    char key[SHA256_HEX_LEN + 1];
    K("k", key);
    uint64_t c = claim_on(S, key);
    /* a young claim stands */
    ck_assert(!collect_begin(S, key, 5, HOUR_AGO()));
    sleep_ms(5);
    /* a claim made before claims_before_ms is an abandoned save: dropped */
    ck_assert(collect_begin(S, key, 5, clock_wall_ms() + 1));
    ck_assert_int_eq(S->ops->blob_collect_end(S, key, &err), 0);
    /* and the save that held it cannot use it: SERR_RETRY, nothing written */
    ck_assert_int_eq(put_blob(S, "trie", N("t"), "1.0.0", key, c, &err), -1);
    ck_assert_int_eq(err.kind, SERR_RETRY);
    expect_absent(S, "trie", N("t"));
    ck_assert(!referenced(key));
    /* claimed again, it goes in */
    ck_assert_int_eq(put_blob(S, "trie", N("t"), "1.0.0", key, claim_on(S, key), &err), 0);
    ck_assert(referenced(key));
}
END_TEST

START_TEST(put_version_consumes_its_claim)
{
    strata_error err;
    char key[SHA256_HEX_LEN + 1], k2[SHA256_HEX_LEN + 1], k3[SHA256_HEX_LEN + 1];
    K("k", key);
    K("k2", k2);
    K("k3", k3);
    uint64_t c = claim_on(S, key);
    ck_assert_int_eq(put_blob(S, "trie", N("a"), "1.0.0", key, c, &err), 0);
    /* consumed: the key is held by the version now, not by a claim */
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", N("a"), V("1.0.0"), "request", &err),
                     0);
    ck_assert(collect_begin(S, key, 4, HOUR_AGO()));
    ck_assert_int_eq(S->ops->blob_collect_end(S, key, &err), 0);
    /* a consumed claim cannot be used again */
    ck_assert_int_eq(put_blob(S, "trie", N("b"), "1.0.0", key, c, &err), -1);
    ck_assert_int_eq(err.kind, SERR_RETRY);
    /* nor a released one, an unknown one, or one on another key */
    uint64_t r = claim_on(S, k2);
    ck_assert_int_eq(S->ops->blob_release(S, k2, r, &err), 0);
    ck_assert_int_eq(put_blob(S, "trie", N("b"), "1.0.0", k2, r, &err), -1);
    ck_assert_int_eq(err.kind, SERR_RETRY);
    ck_assert_int_eq(put_blob(S, "trie", N("b"), "1.0.0", k2, 0x5eed5eed5eedull, &err), -1);
    ck_assert_int_eq(err.kind, SERR_RETRY);
    uint64_t c3 = claim_on(S, k3);
    ck_assert_int_eq(put_blob(S, "trie", N("b"), "1.0.0", k2, c3, &err), -1);
    ck_assert_int_eq(err.kind, SERR_RETRY);
    /* no claim at all for a version in a blob: refused */
    ck_assert_int_eq(put_blob(S, "trie", N("b"), "1.0.0", k2, 0, &err), -1);
    /* none of these wrote anything */
    expect_absent(S, "trie", N("b"));
    ck_assert(!referenced(k2));
    /* the claim on k3 was not consumed by the failed write */
    ck_assert(!collect_begin(S, k3, 4, HOUR_AGO()));
    ck_assert_int_eq(put_blob(S, "trie", N("b"), "1.0.0", k3, c3, &err), 0);
    ck_assert(referenced(k3));
}
END_TEST

typedef struct claim_txn {
    const char *key;
    uint64_t claim;
    bool fail;
    const char *id; /* when set, a version using the claim in the same transaction */
} claim_txn;

static int claim_body(store_txn *txn, void *ctx, strata_error *err)
{
    claim_txn *c = ctx;
    if (S->ops->blob_claim(S, txn, c->key, &c->claim, err) != 0)
        return -1;
    if (c->id != NULL) {
        store_version v;
        mkv(&v, "trie", c->id, V("1.0.0"), c->key);
        snprintf(v.blob_key, sizeof v.blob_key, "%s", c->key);
        int rc = S->ops->put_version(S, txn, &v, 0, 0, NULL, 0, c->claim, err);
        store_version_clear(&v);
        if (rc != 0)
            return -1;
    }
    return c->fail ? serr_set(err, SERR_INVALID, "rolled back") : 0;
}

START_TEST(claims_in_transactions)
{
    strata_error err;
    char k1[SHA256_HEX_LEN + 1], k2[SHA256_HEX_LEN + 1], k3[SHA256_HEX_LEN + 1];
    K("k1", k1);
    K("k2", k2);
    K("k3", k3);
    /* rolled back: the claim never stood */
    claim_txn a = {.key = k1, .fail = true};
    ck_assert_int_eq(S->ops->transact(S, claim_body, &a, &err), -1);
    ck_assert(collect_begin(S, k1, 2, HOUR_AGO()));
    /* a doomed key refuses the claim inside a transaction too; transact
     * runs the body again and gives up with SERR_RETRY */
    claim_txn d = {.key = k1};
    ck_assert_int_eq(S->ops->transact(S, claim_body, &d, &err), -1);
    ck_assert_int_eq(err.kind, SERR_RETRY);
    ck_assert_int_eq(S->ops->blob_collect_end(S, k1, &err), 0);
    /* committed: it stands */
    claim_txn b = {.key = k2};
    ck_assert_int_eq(S->ops->transact(S, claim_body, &b, &err), 0);
    ck_assert(!collect_begin(S, k2, 2, HOUR_AGO()));
    ck_assert_int_eq(S->ops->blob_release(S, k2, b.claim, &err), 0);
    ck_assert(collect_begin(S, k2, 2, HOUR_AGO()));
    ck_assert_int_eq(S->ops->blob_collect_end(S, k2, &err), 0);
    /* claimed and consumed in one transaction */
    claim_txn c = {.key = k3, .id = N("t")};
    ck_assert_msg(S->ops->transact(S, claim_body, &c, &err) == 0, "%s", err.detail);
    ck_assert(referenced(k3));
    ck_assert_uint_eq(check_chain("trie", N("t")), 1);
}
END_TEST

/* ---- leases ------------------------------------------------------------------------------ */

static bool lease(store *s, const char *name, const char *holder, uint64_t ttl, uint64_t *token)
{
    bool held = false;
    uint64_t t = 0;
    strata_error err;
    ck_assert_msg(s->ops->lease_acquire(s, name, holder, ttl, &held, &t, NULL, &err) == 0, "%s",
                  err.detail);
    if (held && token)
        *token = t;
    return held;
}

START_TEST(a_live_lease_excludes_others_and_release_frees_it)
{
    strata_error err;
    const char *l = N("lease"), *a = N("A"), *b = N("B"), *c = N("C");
    uint64_t ta = 0, tb = 0, t = 0;
    ck_assert(lease(S, l, a, 10000, &ta));
    ck_assert_uint_gt(ta, 0);
    ck_assert(!lease(S, l, b, 10000, NULL));
    /* the holder renews without a new token */
    ck_assert(lease(S, l, a, 10000, &t));
    ck_assert_uint_eq(t, ta);
    /* releasing a lease one does not hold does nothing */
    ck_assert_int_eq(S->ops->lease_release(S, l, b, &err), 0);
    ck_assert(!lease(S, l, c, 10000, NULL));
    /* released: free for the next holder, under a greater token */
    ck_assert_int_eq(S->ops->lease_release(S, l, a, &err), 0);
    ck_assert(lease(S, l, b, 10000, &tb));
    ck_assert_uint_gt(tb, ta);
    ck_assert(!lease(S, l, a, 10000, NULL));
    /* leases are independent by name */
    uint64_t to = 0;
    ck_assert(lease(S, N("other"), a, 10000, &to));
    ck_assert_int_eq(S->ops->lease_release(S, l, b, &err), 0);
    ck_assert_int_eq(S->ops->lease_release(S, N("other"), a, &err), 0);
    /* released by a holder that has nothing: harmless */
    ck_assert_int_eq(S->ops->lease_release(S, N("never"), a, &err), 0);
}
END_TEST

START_TEST(an_expired_lease_passes_to_another_holder)
{
    const char *l = N("lease"), *a = N("A"), *b = N("B");
    uint64_t ta = 0, tb = 0, t = 0;
    /* 1.5 s: the second ask must come within it even on a loaded machine */
    ck_assert(lease(S, l, a, 1500, &ta));
    ck_assert(!lease(S, l, b, 1500, NULL));
    sleep_ms(1650);
    ck_assert(lease(S, l, b, 10000, &tb));
    ck_assert_uint_gt(tb, ta); /* fences the holder that lost it */
    ck_assert(!lease(S, l, a, 10000, &t));
}
END_TEST

START_TEST(renewing_a_lease_extends_it)
{
    const char *l = N("lease"), *a = N("A"), *b = N("B");
    uint64_t ta = 0, t = 0, tb = 0;
    uint64_t t0 = clock_mono_ms();
    ck_assert(lease(S, l, a, 600, &ta));
    sleep_ms(300);
    ck_assert(lease(S, l, a, 600, &t)); /* until ~900 ms */
    ck_assert_uint_eq(t, ta);
    sleep_ms(450); /* past the first expiry (600), before the renewed one */
    bool taken = lease(S, l, b, 600, NULL);
    if (clock_mono_ms() - t0 < 850) /* (a slow machine proves nothing here) */
        ck_assert_msg(!taken, "a renewed lease was taken at its first expiry");
    sleep_ms(500);
    ck_assert(lease(S, l, b, 600, &tb));
    ck_assert_uint_gt(tb, ta);
}
END_TEST

typedef struct lease_racer {
    store *s;
    const char *name;
    char holder[64];
    bool held;
    int failed;
    pthread_barrier_t *bar;
} lease_racer;

static void *race_lease(void *arg)
{
    lease_racer *r = arg;
    uint64_t token = 0;
    strata_error err;
    pthread_barrier_wait(r->bar);
    r->failed =
        r->s->ops->lease_acquire(r->s, r->name, r->holder, 10000, &r->held, &token, NULL, &err);
    return NULL;
}

START_TEST(one_holder_wins_a_raced_lease)
{
    enum { RIVALS = 8 };
    lease_racer rs[RIVALS];
    pthread_t th[RIVALS];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, RIVALS);
    const char *l = N("lease");
    for (int i = 0; i < RIVALS; i++) {
        rs[i] = (lease_racer){.s = i % 2 ? second() : S, .name = l, .bar = &bar};
        snprintf(rs[i].holder, sizeof rs[i].holder, "%s-h%d", P, i);
    }
    for (int i = 0; i < RIVALS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, race_lease, &rs[i]), 0);
    int winners = 0;
    for (int i = 0; i < RIVALS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_int_eq(rs[i].failed, 0);
        winners += rs[i].held;
    }
    pthread_barrier_destroy(&bar);
    ck_assert_int_eq(winners, 1);
}
END_TEST

/* ---- two handles, as two processes ------------------------------------------------------- */

START_TEST(two_handles_agree_on_heads)
{
    strata_error err;
    store *T = second();
    ck_assert_int_eq(put("trie", "t", "1.0.0", "a", NULL, &err), 0);
    store_head h;
    ck_assert_int_eq(T->ops->get_head(T, NULL, "trie", N("t"), &h, &err), 0);
    ck_assert_uint_eq(h.latest_vkey, V("1.0.0"));
    /* the head moves through S; a CAS through T from the old head fails */
    ck_assert_int_eq(put("trie", "t", "1.0.1", "b", NULL, &err), 0);
    store_version v;
    mkv(&v, "trie", N("t"), V("1.0.1"), N("late"));
    ck_assert_int_eq(T->ops->put_version(T, NULL, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, &err),
                     -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    store_version_clear(&v);
    /* T reads the new head and its write is seen through S */
    ck_assert_int_eq(put_on(T, "trie", N("t"), "1.0.2", N("c"), NULL, &err), 0);
    expect_version("trie", "t", "1.0.2", true, "1.0.1", NULL);
    ck_assert_int_eq(T->ops->get_version(T, NULL, "trie", N("t"), V("1.0.1"), &v, &err), 0);
    ck_assert_uint_eq(v.superseded_by, V("1.0.2"));
    store_version_clear(&v);
    /* a delete through T is seen through S */
    size_t n;
    ck_assert_int_eq(T->ops->delete_resource(T, NULL, "trie", N("t"), "request", &n, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.0", "again", NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    expect_head("trie", "t", 0, V("1.0.2"));
}
END_TEST

START_TEST(two_handles_agree_on_claims)
{
    strata_error err;
    store *T = second();
    char key[SHA256_HEX_LEN + 1];
    K("k", key);
    /* a claim through one blocks a collector through the other */
    uint64_t c = claim_on(S, key);
    ck_assert(!collect_begin(T, key, 11, HOUR_AGO()));
    ck_assert_int_eq(S->ops->blob_release(S, key, c, &err), 0);
    ck_assert(collect_begin(T, key, 11, HOUR_AGO()));
    /* the key doomed through the other refuses claims through this one */
    uint64_t c2 = 0;
    ck_assert_int_eq(S->ops->blob_claim(S, NULL, key, &c2, &err), -1);
    ck_assert_int_eq(err.kind, SERR_RETRY);
    uint64_t token = 0;
    ck_assert_int_eq(doomed_times(S, key, &token), 1);
    ck_assert_uint_eq(token, 11);
    ck_assert_int_eq(T->ops->blob_collect_end(T, key, &err), 0);
    c2 = claim_on(S, key);
    /* a version through T consumes a claim made through S */
    ck_assert_int_eq(put_blob(T, "trie", N("t"), "1.0.0", key, c2, &err), 0);
    ck_assert(referenced(key));
    ck_assert(!collect_begin(S, key, 12, clock_wall_ms() + 60000));
}
END_TEST

START_TEST(two_handles_agree_on_leases)
{
    strata_error err;
    store *T = second();
    const char *l = N("lease"), *a = N("A"), *b = N("B");
    uint64_t ta = 0, tb = 0;
    ck_assert(lease(S, l, a, 10000, &ta));
    ck_assert(!lease(T, l, b, 10000, NULL));
    ck_assert_int_eq(S->ops->lease_release(S, l, a, &err), 0);
    ck_assert(lease(T, l, b, 10000, &tb));
    ck_assert_uint_gt(tb, ta);
    ck_assert(!lease(S, l, a, 10000, NULL));
}
END_TEST

/* ---- SQLite only --------------------------------------------------------------------------- */

/* A failing step while reading rows is an error, never a short list: with
 * the pages of the tree and vocabulary tables damaged on disk, reading a
 * master's children or vocabulary fails where it used to answer "no
 * rows". It damages a file of its own. */
static void damage_pages_of(const char *path, const char *table)
{
    sqlite3 *x = NULL;
    ck_assert_int_eq(sqlite3_open(path, &x), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(x, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(x,
                                        "SELECT rootpage, (SELECT page_size FROM pragma_page_size)"
                                        " FROM sqlite_master WHERE tbl_name = ?1 AND rootpage > 0",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    int damaged = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        long page = sqlite3_column_int64(st, 0), size = sqlite3_column_int64(st, 1);
        static unsigned char junk[65536];
        memset(junk, 0xA5, sizeof junk);
        ck_assert_int_eq(fseek(f, (page - 1) * size, SEEK_SET), 0);
        ck_assert_uint_eq(fwrite(junk, 1, (size_t)size, f), (size_t)size);
        damaged++;
    }
    fclose(f);
    sqlite3_finalize(st);
    sqlite3_close(x);
    ck_assert_int_gt(damaged, 0);
}

typedef struct tree_seed {
    const char *m, *c;
} tree_seed;

static int seed_tree(store_txn *txn, void *ctx, strata_error *err)
{
    tree_seed *t = ctx;
    vocab_delta d = {"word", 1, 1, 0};
    int64_t size_delta = 0;
    if (S->ops->tree_link(S, txn, t->m, t->c, 1, err) != 0)
        return -1;
    return S->ops->vocab_apply(S, txn, t->m, &d, 1, &size_delta, err);
}

START_TEST(a_failing_read_is_an_error_not_an_empty_list)
{
    char dir[] = "/tmp/strata-damage-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256], url[300];
    snprintf(path, sizeof path, "%s/store.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", path);
    strata_error err;
    store *D = store_open(url, &err);
    ck_assert_msg(D != NULL, "%s", err.detail);
    store *shared = S;
    S = D; /* seed_tree writes through S */
    tree_seed t = {N("m"), N("c")};
    int rc = D->ops->transact(D, seed_tree, &t, &err);
    S = shared;
    ck_assert_msg(rc == 0, "%s", err.detail);
    store_close(D);
    /* fresh connections after the damage: nothing cached */
    damage_pages_of(path, "tree_edges");
    damage_pages_of(path, "vocab");
    D = store_open(url, &err);
    ck_assert_msg(D != NULL, "%s", err.detail);
    tree_child *kids = NULL;
    size_t n = 0;
    ck_assert_int_eq(D->ops->tree_children(D, NULL, N("m"), &kids, &n, &err), -1);
    ck_assert_uint_eq(n, 0);
    vocab_item *words = NULL;
    ck_assert_int_eq(D->ops->vocab_page(D, NULL, N("m"), "", 10, &words, &n, &err), -1);
    store_close(D);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* Processes that open one fresh SQLite file at the same moment (nodes
 * started together on a new data directory) all get a store. */
typedef struct open_result {
    int kind;
    char detail[STRATA_ERR_DETAIL_MAX];
} open_result;

START_TEST(fresh_file_opened_by_processes_at_once)
{
    enum { PROCS = 6, TIMES = 30 };
    int failures = 0, opens = 0;
    char first[STRATA_ERR_DETAIL_MAX + 32] = "";
    for (int round = 0; round < TIMES; round++) {
        char dir[] = "/tmp/strata-open-XXXXXX";
        ck_assert_ptr_nonnull(mkdtemp(dir));
        char url[300];
        snprintf(url, sizeof url, "sqlite:%s/store.db", dir);
        int go[2], res[2];
        ck_assert_int_eq(pipe(go), 0);
        ck_assert_int_eq(pipe(res), 0);
        pid_t pids[PROCS];
        for (int i = 0; i < PROCS; i++) {
            pids[i] = fork();
            ck_assert_int_ge(pids[i], 0);
            if (pids[i] == 0) {
                close(go[1]);
                char c;
                while (read(go[0], &c, 1) > 0) /* released all at once: EOF */
                    ;
                open_result r = {SERR_OK, ""};
                strata_error err;
                store *x = store_open(url, &err);
                if (x == NULL) {
                    r.kind = err.kind;
                    snprintf(r.detail, sizeof r.detail, "%s", err.detail);
                }
                store_close(x);
                _exit(write(res[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
            }
        }
        close(go[0]);
        close(res[1]);
        sleep_ms(20);
        close(go[1]);
        for (int i = 0; i < PROCS; i++) {
            open_result r;
            ck_assert_int_eq(read(res[0], &r, sizeof r), (ssize_t)sizeof r);
            opens++;
            if (r.kind != SERR_OK && failures++ == 0)
                snprintf(first, sizeof first, "kind %d: %s", r.kind, r.detail);
        }
        for (int i = 0; i < PROCS; i++) {
            int status = 0;
            ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
        }
        close(res[0]);
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        ck_assert_int_eq(system(cmd), 0);
    }
    ck_assert_msg(failures == 0, "%d of %d opens of a fresh file failed; the first: %s", failures,
                  opens, first);
}
END_TEST

/* ---- MongoDB only ---------------------------------------------------------------------------- */

/* A writer that died in the middle of a put leaves its reservation on the
 * head (src/store/mongo_internal.h). Made here by hand, as the dead
 * writer would have left it: whoever reads the head waits the grace out,
 * then rolls a sealed version forward and gives an unsealed key up, for
 * good: its document, written late, is never seen. */
/* A client of the case's database that goes around the store, as a node
 * that died half-way leaves things: raw_begin, raw_coll for each
 * collection (destroyed by the caller), raw_end. */
typedef struct raw_db {
    mongo_conn *c;
    mongoc_client_t *cl;
} raw_db;

static void raw_begin(raw_db *db)
{
    strata_error err;
    db->c = mongo_conn_open(CASE_URL, "strata-store-contract", &err);
    ck_assert_msg(db->c != NULL, "%s", err.detail);
    db->cl = mongo_conn_pop(db->c);
}

static mongoc_collection_t *raw_coll(raw_db *db, const char *name)
{
    return mongo_conn_collection(db->c, db->cl, name);
}

static void raw_end(raw_db *db)
{
    mongo_conn_push(db->c, db->cl);
    mongo_conn_close(db->c);
}

/* Leaves a reservation of vkey on the head of trie/id, as a dead writer
 * would; with `doc` its version written too, with `sealed` also sealed. */
static void dead_writer(const char *id, uint64_t vkey, bool doc, bool sealed)
{
    raw_db db;
    raw_begin(&db);
    mongoc_collection_t *ptrs = raw_coll(&db, "store_pointers");
    mongoc_collection_t *heads = raw_coll(&db, "store_heads");
    char hid[STORE_ID_MAX + 32], pid[STORE_ID_MAX + 40], sid[STORE_ID_MAX + 64];
    snprintf(hid, sizeof hid, "trie/%s", id);
    snprintf(pid, sizeof pid, "h:%s", hid);
    /* the current state: from the pointer on */
    bson_t *f = BCON_NEW("_id", BCON_UTF8(pid));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(ptrs, f, NULL, NULL);
    const bson_t *d = NULL;
    ck_assert(mongoc_cursor_next(cur, &d));
    bson_iter_t it;
    ck_assert(bson_iter_init_find(&it, d, "q"));
    int64_t q = bson_iter_as_int64(&it);
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    bson_t state;
    for (;; q++) {
        snprintf(sid, sizeof sid, "%s#%016llx", hid, (unsigned long long)q + 1);
        f = BCON_NEW("_id", BCON_UTF8(sid));
        cur = mongoc_collection_find_with_opts(heads, f, NULL, NULL);
        bool more = mongoc_cursor_next(cur, &d);
        mongoc_cursor_destroy(cur);
        bson_destroy(f);
        if (!more)
            break;
    }
    snprintf(sid, sizeof sid, "%s#%016llx", hid, (unsigned long long)q);
    f = BCON_NEW("_id", BCON_UTF8(sid));
    cur = mongoc_collection_find_with_opts(heads, f, NULL, NULL);
    ck_assert(mongoc_cursor_next(cur, &d));
    bson_init(&state);
    bson_copy_to_excluding_noinit(d, &state, "_id", "q", "m", "pk", "pn", NULL);
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    /* the reservation */
    snprintf(sid, sizeof sid, "%s#%016llx", hid, (unsigned long long)q + 1);
    BSON_APPEND_UTF8(&state, "_id", sid);
    BSON_APPEND_INT64(&state, "q", q + 1);
    BSON_APPEND_INT64(&state, "m", (int64_t)vkey);
    BSON_APPEND_INT64(&state, "pk", (int64_t)vkey);
    BSON_APPEND_UTF8(&state, "pn", "dead");
    bson_error_t be;
    ck_assert_msg(mongoc_collection_insert_one(heads, &state, NULL, NULL, &be), "%s", be.message);
    bson_destroy(&state);
    if (doc) {
        char vid[STORE_ID_MAX + 64];
        snprintf(vid, sizeof vid, "%s@%016llx", hid, (unsigned long long)vkey);
        bson_t *v = BCON_NEW("_id", BCON_UTF8(vid), "t", BCON_UTF8("trie"), "i", BCON_UTF8(id), "k",
                             BCON_INT64((int64_t)vkey), "ns", BCON_UTF8(P), "ca", BCON_INT64(1),
                             "h", BCON_UTF8("dead-writer"), "d", BCON_UTF8("{}"), "tags", "[", "]");
        mongoc_collection_t *vers = raw_coll(&db, "store_versions");
        ck_assert_msg(mongoc_collection_insert_one(vers, v, NULL, NULL, &be), "%s", be.message);
        mongoc_collection_destroy(vers);
        bson_destroy(v);
        if (sealed) {
            mongoc_collection_t *seals = raw_coll(&db, "store_seals");
            bson_t *sd = BCON_NEW("_id", BCON_UTF8(vid), "ok", BCON_BOOL(true));
            ck_assert_msg(mongoc_collection_insert_one(seals, sd, NULL, NULL, &be), "%s",
                          be.message);
            mongoc_collection_destroy(seals);
            bson_destroy(sd);
        }
    }
    mongoc_collection_destroy(ptrs);
    mongoc_collection_destroy(heads);
    raw_end(&db);
}

/* A voided transaction's writer, slow, inserted its version after the
 * rollback: the key is issued again and the next writer of it replaces
 * the leftover (marked with the voided transaction), in and out of a
 * transaction; a live document is never replaced. */
static void leftover_doc(const char *id, uint64_t vkey, const char *txn, bool voided)
{
    raw_db db;
    raw_begin(&db);
    bson_error_t be;
    char vid[STORE_ID_MAX + 64];
    snprintf(vid, sizeof vid, "trie/%s@%016llx", id, (unsigned long long)vkey);
    bson_t *v = BCON_NEW("_id", BCON_UTF8(vid), "t", BCON_UTF8("trie"), "i", BCON_UTF8(id), "k",
                         BCON_INT64((int64_t)vkey), "ns", BCON_UTF8(P), "ca", BCON_INT64(1), "h",
                         BCON_UTF8("leftover"), "d", BCON_UTF8("{}"), "tags", "[", "]", "x",
                         BCON_UTF8(txn));
    mongoc_collection_t *vers = raw_coll(&db, "store_versions");
    ck_assert_msg(mongoc_collection_insert_one(vers, v, NULL, NULL, &be), "%s", be.message);
    mongoc_collection_destroy(vers);
    bson_destroy(v);
    if (voided) {
        mongoc_collection_t *seals = raw_coll(&db, "store_seals");
        bson_t *sd = BCON_NEW("_id", BCON_UTF8(txn), "ok", BCON_BOOL(false));
        ck_assert_msg(mongoc_collection_insert_one(seals, sd, NULL, NULL, &be), "%s", be.message);
        mongoc_collection_destroy(seals);
        bson_destroy(sd);
    }
    raw_end(&db);
}

START_TEST(a_voided_transactions_late_version_is_replaced)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "lo", "1.0.0", "a", NULL, &err), 0);
    leftover_doc(N("lo"), V("1.0.1"), "txn:00000000000000aa", true);
    ck_assert_msg(put("trie", "lo", "1.0.1", "b", NULL, &err) == 0, "%s", err.detail);
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("lo"), 0, &v, &err), 0);
    ck_assert_str_eq(v.data_hash, N("b"));
    store_version_clear(&v);
    /* in a transaction */
    leftover_doc(N("lo"), V("1.0.2"), "txn:00000000000000bb", true);
    txn_case c = {.write = true, .id = N("lo")};
    ck_assert_msg(S->ops->transact(S, txn_body, &c, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(check_chain("trie", N("lo")), 3);
    /* a document of a transaction not voided is not touched */
    leftover_doc(N("lo"), V("1.0.3"), "txn:00000000000000cc", false);
    ck_assert_int_eq(put("trie", "lo", "1.0.3", "d", NULL, &err), -1);
    ck_assert_uint_eq(check_chain("trie", N("lo")), 3);
}
END_TEST

/* How many holes the newest state of the head trie/id lists. */
static int head_holes(const char *id)
{
    raw_db db;
    raw_begin(&db);
    mongoc_collection_t *heads = raw_coll(&db, "store_heads");
    char sid[STORE_ID_MAX + 64];
    int holes = -1;
    for (int64_t q = 1;; q++) {
        snprintf(sid, sizeof sid, "trie/%s#%016llx", id, (unsigned long long)q);
        bson_t *f = BCON_NEW("_id", BCON_UTF8(sid));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(heads, f, NULL, NULL);
        const bson_t *d = NULL;
        bool more = mongoc_cursor_next(cur, &d);
        if (more) {
            bson_iter_t it, a;
            holes = 0;
            if (bson_iter_init_find(&it, d, "holes") && BSON_ITER_HOLDS_ARRAY(&it) &&
                bson_iter_recurse(&it, &a))
                while (bson_iter_next(&a))
                    holes++;
        }
        mongoc_cursor_destroy(cur);
        bson_destroy(f);
        if (!more)
            break;
    }
    mongoc_collection_destroy(heads);
    raw_end(&db);
    return holes;
}

START_TEST(a_dead_writers_reservation_is_resolved)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "a", NULL, &err), 0);
    /* died before sealing: the key is given up, the head stays */
    dead_writer(N("t"), V("1.0.1"), true, false);
    uint64_t t0 = clock_mono_ms();
    expect_head("trie", "t", V("1.0.0"), V("1.0.1"));
    ck_assert_uint_ge(clock_mono_ms() - t0, 2000); /* waited the grace out */
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), V("1.0.1"), &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_uint_eq(check_chain("trie", N("t")), 1);
    ck_assert_int_eq(put("trie", "t", "1.0.1", "b", NULL, &err), -1); /* never issued again */
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    ck_assert_int_eq(put("trie", "t", "1.0.2", "c", NULL, &err), 0);
    expect_version("trie", "t", "1.0.2", true, "1.0.0", NULL);
    /* died after sealing: rolled forward */
    dead_writer(N("t"), V("1.0.3"), true, true);
    expect_head("trie", "t", V("1.0.3"), V("1.0.3"));
    expect_version("trie", "t", "1.0.3", true, "1.0.2", NULL);
    ck_assert_uint_eq(check_chain("trie", N("t")), 3);
    ck_assert_int_eq(head_holes(N("t")), 1); /* 1.0.1: a document no writer names */
    /* died right after reserving: the key is blocked, not holed (else a
     * resource whose writers died 64 times would refuse every save) */
    dead_writer(N("t"), V("1.0.4"), false, false);
    ck_assert_int_eq(put("trie", "t", "1.0.5", "d", NULL, &err), 0);
    expect_version("trie", "t", "1.0.5", true, "1.0.3", NULL);
    ck_assert_uint_eq(check_chain("trie", N("t")), 4);
    ck_assert_int_eq(head_holes(N("t")), 1);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("t"), V("1.0.4"), &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
}
END_TEST

/* Replaces fields of the current state of the head trie/id by hand (a
 * new state q + 1), as a node that failed half-way would have left it. */
static void edit_head(const char *id, const bson_t *set)
{
    raw_db db;
    raw_begin(&db);
    mongoc_collection_t *heads = raw_coll(&db, "store_heads");
    char hid[STORE_ID_MAX + 32], sid[STORE_ID_MAX + 64];
    snprintf(hid, sizeof hid, "trie/%s", id);
    const bson_t *d = NULL;
    int64_t q = 0;
    for (;; q++) {
        snprintf(sid, sizeof sid, "%s#%016llx", hid, (unsigned long long)q + 1);
        bson_t *f = BCON_NEW("_id", BCON_UTF8(sid));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(heads, f, NULL, NULL);
        bool more = mongoc_cursor_next(cur, &d);
        mongoc_cursor_destroy(cur);
        bson_destroy(f);
        if (!more)
            break;
    }
    ck_assert_int_gt(q, 0);
    snprintf(sid, sizeof sid, "%s#%016llx", hid, (unsigned long long)q);
    bson_t *f = BCON_NEW("_id", BCON_UTF8(sid));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(heads, f, NULL, NULL);
    ck_assert(mongoc_cursor_next(cur, &d));
    bson_t state = BSON_INITIALIZER;
    bson_iter_t it;
    ck_assert(bson_iter_init(&it, d));
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "_id") != 0 && strcmp(k, "q") != 0 && !bson_has_field(set, k))
            bson_append_iter(&state, k, -1, &it);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    bson_concat(&state, set);
    snprintf(sid, sizeof sid, "%s#%016llx", hid, (unsigned long long)q + 1);
    BSON_APPEND_UTF8(&state, "_id", sid);
    BSON_APPEND_INT64(&state, "q", q + 1);
    bson_error_t be;
    ck_assert_msg(mongoc_collection_insert_one(heads, &state, NULL, NULL, &be), "%s", be.message);
    bson_destroy(&state);
    mongoc_collection_destroy(heads);
    raw_end(&db);
}

/* A transaction's delete of a version hides it at once (a hole) and is
 * owed by the head until the document is gone; a node that failed after
 * the commit, before the removal, leaves it owed (made here by hand):
 * the version stays hidden, answers with a tombstone made from what the
 * head owes (410, not 404, for a delete that was acknowledged), and the
 * next writer removes it and leaves its tombstone. */
START_TEST(an_owed_removal_stays_hidden_and_is_completed)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "ow", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "ow", "1.0.1", "b", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "ow", "1.0.2", "c", NULL, &err), 0);
    bson_t *set = BCON_NEW("holes", "[", BCON_INT64((int64_t)V("1.0.1")), "]", "dh", "[", "{", "k",
                           BCON_INT64((int64_t)V("1.0.1")), "b", BCON_UTF8("txn"), "}", "]");
    edit_head(N("ow"), set);
    bson_destroy(set);
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("ow"), V("1.0.1"), &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    store_tombstone t;
    ck_assert_msg(S->ops->get_tombstone(S, "trie", N("ow"), V("1.0.1"), &t, &err) == 0,
                  "an owed removal has no tombstone: %s", err.detail);
    ck_assert_str_eq(t.removed_by, "txn");
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("ow"), V("1.0.2"), &t, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_uint_eq(check_chain("trie", N("ow")), 2);
    ck_assert_msg(put("trie", "ow", "1.0.3", "d", NULL, &err) == 0, "%s", err.detail);
    ck_assert_msg(S->ops->get_tombstone(S, "trie", N("ow"), V("1.0.1"), &t, &err) == 0,
                  "the owed removal was not completed: %s", err.detail);
    ck_assert_str_eq(t.removed_by, "txn");
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("ow"), V("1.0.1"), &v, &err), -1);
    ck_assert_uint_eq(check_chain("trie", N("ow")), 3);
    expect_version("trie", "ow", "1.0.2", false, "1.0.0", "1.0.3");
}
END_TEST

/* The documents of trie/id in store_versions, visible or not. */
static int64_t version_docs(const char *id)
{
    raw_db db;
    raw_begin(&db);
    mongoc_collection_t *versions = raw_coll(&db, "store_versions");
    bson_t *f = BCON_NEW("t", BCON_UTF8("trie"), "i", BCON_UTF8(id));
    bson_error_t be;
    int64_t n = mongoc_collection_count_documents(versions, f, NULL, NULL, NULL, &be);
    ck_assert_msg(n >= 0, "%s", be.message);
    bson_destroy(f);
    mongoc_collection_destroy(versions);
    raw_end(&db);
    return n;
}

/* A resource delete raises the head's floor first (the whole life hidden
 * at once), then puts the tombstones and removes the documents. A node
 * that died between the two (made here by hand: the head moved as the
 * delete moves it, nothing else) leaves the documents below the floor:
 * they stay hidden and answer with a tombstone made from the head (410,
 * not 404, for a delete that may have been acknowledged); a key below the
 * floor that was never issued still has none; a new life leaves them so;
 * and the next delete puts their tombstones and removes them. */
START_TEST(a_resource_delete_cut_short_answers_gone)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "cd", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "cd", "2.0.0", "b", NULL, &err), 0);
    bson_t *set =
        BCON_NEW("l", BCON_INT64(0), "f", BCON_INT64((int64_t)V("2.0.0")), "lh", BCON_UTF8(""),
                 "fb", BCON_UTF8("request"), "fa", BCON_INT64(1700000000000));
    edit_head(N("cd"), set);
    bson_destroy(set);
    store_version v;
    store_tombstone t;
    const char *left[] = {"1.0.0", "2.0.0"};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", N("cd"), V(left[i]), &v, &err), -1);
        ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
        ck_assert_msg(S->ops->get_tombstone(S, "trie", N("cd"), V(left[i]), &t, &err) == 0,
                      "%s of a delete cut short has no tombstone: %s", left[i], err.detail);
        ck_assert_str_eq(t.removed_by, "request");
        ck_assert_int_eq(t.removed_at_ms, 1700000000000);
    }
    ck_assert_msg(S->ops->get_tombstone(S, "trie", N("cd"), 0, &t, &err) == 0,
                  "the resource of a delete cut short has no tombstone: %s", err.detail);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("cd"), V("1.5.0"), &t, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    /* a new life: the resource is there again, the old versions still gone */
    ck_assert_msg(put("trie", "cd", "2.0.1", "c", NULL, &err) == 0, "%s", err.detail);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("cd"), 0, &t, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("cd"), V("2.0.0"), &t, &err), 0);
    ck_assert_int_eq(version_docs(N("cd")), 3);
    /* the next delete: its own version counted, every one tombstoned */
    size_t n = 0;
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", N("cd"), "again", &n, &err), 0);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(version_docs(N("cd")), 0);
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(S->ops->get_tombstone(S, "trie", N("cd"), V(left[i]), &t, &err), 0);
        ck_assert_str_eq(t.removed_by, "again");
    }
}
END_TEST

/* Saves that fail after their reservation (here: the exact version they
 * depend on does not exist) leave no hole behind, so that any number of
 * them never fills the head's list of holes: a later delete in a
 * transaction still hides its version. */
static int delete_and_read(store_txn *txn, void *ctx, strata_error *err)
{
    const char *id = ctx;
    if (S->ops->delete_version(S, txn, "trie", id, V("1.0.0"), "request", err) != 0)
        return -1;
    store_version v;
    if (S->ops->get_version(S, txn, "trie", id, V("1.0.0"), &v, err) == 0) {
        store_version_clear(&v);
        return serr_set(err, SERR_INTERNAL, "a deleted version is still seen in its transaction");
    }
    return err->kind == SERR_NOT_FOUND ? 0 : -1;
}

START_TEST(many_failed_saves_keep_deletes_hidden)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "fs", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "fs", "1.0.1", "b", NULL, &err), 0);
    store_dep dep = {.type = "trie", .vkey = V("1.0.0")};
    snprintf(dep.id, sizeof dep.id, "%s", N("nothing"));
    for (int i = 0; i < 70; i++) {
        store_head h;
        ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", N("fs"), &h, &err), 0);
        store_version v;
        mkv(&v, "trie", N("fs"), semver_next(h.max_vkey, BUMP_PATCH), N("x"));
        int rc = S->ops->put_version(S, NULL, &v, h.latest_vkey, h.max_vkey, &dep, 1, 0, &err);
        store_version_clear(&v);
        ck_assert_int_eq(rc, -1);
        ck_assert_msg(err.kind == SERR_INVALID, "save %d: %s", i, err.detail);
    }
    ck_assert_msg(S->ops->transact(S, delete_and_read, (void *)N("fs"), &err) == 0, "%s",
                  err.detail);
    ck_assert_uint_eq(check_chain("trie", N("fs")), 1);
    store_head h;
    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", N("fs"), &h, &err), 0);
    store_version v;
    mkv(&v, "trie", N("fs"), semver_next(h.max_vkey, BUMP_PATCH), N("y"));
    ck_assert_msg(S->ops->put_version(S, NULL, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, &err) ==
                      0,
                  "%s", err.detail);
    store_version_clear(&v);
    ck_assert_uint_eq(check_chain("trie", N("fs")), 2);
}
END_TEST

/* A dependency document left by a writer whose version does not stand
 * (a voided transaction's, upserted late; made here by hand) neither pins
 * the version it names nor lists its resource as a dependent. */
START_TEST(a_voided_writers_dependency_counts_for_nothing)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "dd", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "df", "1.0.0", "b", NULL, &err), 0);
    raw_db db;
    raw_begin(&db);
    mongoc_collection_t *deps = raw_coll(&db, "store_deps");
    char did[2 * STORE_ID_MAX + 96];
    snprintf(did, sizeof did, "trie/%s@%016llx>trie/%s#txn:00000000000000dd", N("df"),
             (unsigned long long)V("1.0.0"), N("dd"));
    bson_t *d = BCON_NEW("_id", BCON_UTF8(did), "ft", BCON_UTF8("trie"), "fi", BCON_UTF8(N("df")),
                         "fk", BCON_INT64((int64_t)V("1.0.0")), "tt", BCON_UTF8("trie"), "ti",
                         BCON_UTF8(N("dd")), "tk", BCON_INT64((int64_t)V("1.0.0")), "x",
                         BCON_UTF8("txn:00000000000000dd"), "w", BCON_UTF8("txn:00000000000000dd"));
    bson_error_t be;
    ck_assert_msg(mongoc_collection_insert_one(deps, d, NULL, NULL, &be), "%s", be.message);
    bson_destroy(d);
    mongoc_collection_destroy(deps);
    raw_end(&db);
    bool pinned = true;
    char by[256];
    ck_assert_int_eq(
        S->ops->version_pinned(S, "trie", N("dd"), V("1.0.0"), &pinned, by, sizeof by, &err), 0);
    ck_assert_msg(!pinned, "pinned by %s", by);
    store_page p;
    store_list_opts o = {.limit = 10, .stale = -1};
    ck_assert_int_eq(S->ops->dependents(S, "trie", N("dd"), &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 0);
    store_page_free(&p);
    /* a real one still counts */
    store_version v;
    mkv(&v, "trie", N("df"), V("1.0.1"), N("c"));
    store_dep dep = {.type = "trie", .vkey = V("1.0.0")};
    snprintf(dep.id, sizeof dep.id, "%s", N("dd"));
    ck_assert_msg(S->ops->put_version(S, NULL, &v, V("1.0.0"), V("1.0.0"), &dep, 1, 0, &err) == 0,
                  "%s", err.detail);
    store_version_clear(&v);
    ck_assert_int_eq(
        S->ops->version_pinned(S, "trie", N("dd"), V("1.0.0"), &pinned, by, sizeof by, &err), 0);
    ck_assert(pinned);
    ck_assert_int_eq(S->ops->dependents(S, "trie", N("dd"), &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 1);
    store_page_free(&p);
}
END_TEST

/* ---- the runner ------------------------------------------------------------------------------ */

typedef struct contract_case {
    const TTest *test;
    unsigned caps;    /* STORE_CAP_* it needs */
    bool sqlite_file; /* it works on the SQLite file itself */
    bool mongo_only;  /* it works on the MongoDB layout itself */
} contract_case;

static const char *cap_names(unsigned caps, char *out, size_t cap)
{
    out[0] = '\0';
    if (caps & STORE_CAP_TRANSACTIONS)
        snprintf(out + strlen(out), cap - strlen(out), "%stransactions", out[0] ? ", " : "");
    if (caps & STORE_CAP_BLOB_CLAIMS)
        snprintf(out + strlen(out), cap - strlen(out), "%sblob claims", out[0] ? ", " : "");
    if (caps & STORE_CAP_LEASES)
        snprintf(out + strlen(out), cap - strlen(out), "%sleases", out[0] ? ", " : "");
    if (caps & STORE_CAP_TREE_TXN)
        snprintf(out + strlen(out), cap - strlen(out), "%stree txn", out[0] ? ", " : "");
    return out;
}

/* Adds every contract case for backend b (declaring caps) to suite s as
 * a test case named after the backend; a case that cannot run there is
 * announced as skipped instead. Returns the number skipped. */
static size_t add_contract(Suite *s, int b, unsigned caps)
{
    const contract_case cases[] = {
        {vtable_is_complete_and_ping_answers, 0, false, false},
        {first_version_and_head, 0, false, false},
        {compare_and_swap_refuses_a_moved_head, 0, false, false},
        {concurrent_puts_one_winner_per_head, 0, false, false},
        {concurrent_writers_keep_one_chain, 0, false, false},
        {derived_fields_after_deletes, 0, false, false},
        {chain_is_repaired_and_keys_never_reused, 0, false, false},
        {versions_page_newest_first, 0, false, false},
        {resources_filter_and_page_by_id, 0, false, false},
        {exact_version_pins, 0, false, false},
        {dependencies_are_indexed_in_reverse, 0, false, false},
        {delete_resource_removes_every_version, 0, false, false},
        {a_deleted_resource_keeps_its_numbers, 0, false, false},
        {add_access_in_bulk_fills_totals, 0, false, false},
        {transact_reruns_on_retry_then_commits, 0, false, false},
        {transact_gives_up_after_its_attempts, 0, false, false},
        {transact_returns_other_errors_without_rerunning, 0, false, false},
        {transact_rolls_back_everything_on_error, STORE_CAP_TRANSACTIONS, false, false},
        {transact_commits_whole, STORE_CAP_TRANSACTIONS, false, false},
        {a_deleted_resource_in_a_transaction, STORE_CAP_TRANSACTIONS, false, false},
        {transact_read_check_write_never_goes_stale, STORE_CAP_TRANSACTIONS, false, false},
        {a_transaction_is_seen_all_or_none, STORE_CAP_TRANSACTIONS, false, false},
        {an_abandoned_transaction_leaves_nothing, STORE_CAP_TRANSACTIONS, false, false},
        {a_slow_transaction_is_not_given_up, STORE_CAP_TRANSACTIONS, false, false},
        {tree_links_parents_children_and_edges, 0, false, false},
        {vocabulary_aggregates_apply_page_and_clear, 0, false, false},
        {blob_references_follow_the_versions, 0, false, false},
        {a_claim_blocks_collection_and_a_doomed_key_refuses_claims, STORE_CAP_BLOB_CLAIMS, false,
         false},
        {a_referenced_key_is_never_doomed, STORE_CAP_BLOB_CLAIMS, false, false},
        {old_claims_are_dropped_by_the_collector, STORE_CAP_BLOB_CLAIMS, false, false},
        {put_version_consumes_its_claim, STORE_CAP_BLOB_CLAIMS, false, false},
        {claims_in_transactions, STORE_CAP_BLOB_CLAIMS | STORE_CAP_TRANSACTIONS, false, false},
        {a_live_lease_excludes_others_and_release_frees_it, STORE_CAP_LEASES, false, false},
        {an_expired_lease_passes_to_another_holder, STORE_CAP_LEASES, false, false},
        {renewing_a_lease_extends_it, STORE_CAP_LEASES, false, false},
        {one_holder_wins_a_raced_lease, STORE_CAP_LEASES, false, false},
        {two_handles_agree_on_heads, 0, false, false},
        {two_handles_agree_on_claims, STORE_CAP_BLOB_CLAIMS, false, false},
        {two_handles_agree_on_leases, STORE_CAP_LEASES, false, false},
        {a_failing_read_is_an_error_not_an_empty_list, STORE_CAP_TRANSACTIONS, true, false},
        {fresh_file_opened_by_processes_at_once, 0, true, false},
        {a_dead_writers_reservation_is_resolved, 0, false, true},
        {a_voided_transactions_late_version_is_replaced, 0, false, true},
        {an_owed_removal_stays_hidden_and_is_completed, 0, false, true},
        {a_resource_delete_cut_short_answers_gone, 0, false, true},
        {many_failed_saves_keep_deletes_hidden, 0, false, true},
        {a_voided_writers_dependency_counts_for_nothing, 0, false, true},
    };
    TCase *tc = tcase_create(BK[b].label);
    tcase_add_checked_fixture(tc, SETUPS[b], close_case);
    tcase_set_timeout(tc, 300);
    size_t skipped = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned missing = cases[i].caps & ~caps;
        char why[128];
        if (missing)
            snprintf(why, sizeof why, "the backend does not declare %s",
                     cap_names(missing, (char[96]){0}, 96));
        else if (cases[i].sqlite_file && !BK[b].sqlite)
            snprintf(why, sizeof why, "needs a SQLite file");
        else if (cases[i].mongo_only && !BK[b].mongo)
            snprintf(why, sizeof why, "needs a MongoDB store");
        else {
            tcase_add_test(tc, cases[i].test);
            continue;
        }
        printf("SKIP: store_contract/%s/%s: %s\n", BK[b].label, cases[i].test->name, why);
        skipped++;
    }
    suite_add_tcase(s, tc);
    return skipped;
}

/* Runs the whole contract against the backends named; returns the
 * process exit status. */
static int run_contract(void)
{
    const char *mask_env = getenv("STRATA_STORE_CAPS_MASK");
    unsigned mask = mask_env ? (unsigned)strtoul(mask_env, NULL, 0) : ~0u;
    Suite *s = suite_create("store_contract");
    size_t skipped = 0;
    for (int b = 0; b < nbk; b++) {
        /* the capabilities the backend declares; one that cannot be opened
         * gets every case, and they fail: never a quiet skip */
        unsigned caps = ALL_CAPS;
        strata_error err;
        store *probe = store_open(BK[b].url, &err);
        if (probe == NULL)
            printf("store_contract/%s: cannot open %s: %s\n", BK[b].label, BK[b].url, err.detail);
        else {
            caps = probe->ops->caps;
            store_close(probe);
        }
        skipped += add_contract(s, b, caps & mask);
    }
    printf("store_contract: %zu skipped\n", skipped);
    fflush(stdout);
    return run_suite(s);
}

int main(void)
{
    char tmp[] = "/tmp/strata-store-XXXXXX";
    bool own = false;
    const char *need = getenv("STRATA_STORE_REQUIRE"), *env = getenv("STRATA_STORE_URL");
    const char *mongo = getenv("STRATA_MONGO_URL");
    static char from_mongo[700];
    if (need != NULL && strcmp(need, "mongodb://") == 0 && (env == NULL || env[0] == '\0') &&
        mongo != NULL && strncmp(mongo, "mongodb://", 10) == 0) {
        /* the mongo suite's server, the database strata_sc */
        mongo_url_with_db(mongo, "strata_sc", from_mongo, sizeof from_mongo);
        env = from_mongo;
    }
    if (need != NULL && need[0] != '\0' && (env == NULL || strncmp(env, need, strlen(need)) != 0)) {
        printf("store_contract: STRATA_STORE_REQUIRE=%s but STRATA_STORE_URL is '%s'%s\n", need,
               env ? env : "",
               strcmp(need, "mongodb://") == 0 && env == NULL
                   ? " and STRATA_MONGO_URL names no server"
                   : "");
        return 1;
    }
    char urls[4096] = "";
    if (env != NULL && env[0] != '\0')
        snprintf(urls, sizeof urls, "%s", env);
    else {
        if (mkdtemp(tmp) == NULL) {
            perror("mkdtemp");
            return 1;
        }
        own = true;
        snprintf(urls, sizeof urls, "sqlite:%s/store.db", tmp);
    }
    for (char *save = NULL, *u = strtok_r(urls, " \t\n", &save); u && nbk < MAX_BACKENDS;
         u = strtok_r(NULL, " \t\n", &save)) {
        backend *b = &BK[nbk];
        snprintf(b->url, sizeof b->url, "%s", u);
        b->sqlite = strncmp(u, "sqlite:", 7) == 0;
        b->mongo = strncmp(u, "mongodb://", 10) == 0;
        int scheme = (int)strcspn(u, ":");
        if (nbk == 0)
            snprintf(b->label, sizeof b->label, "%.*s", scheme < 20 ? scheme : 20, u);
        else
            snprintf(b->label, sizeof b->label, "%.*s-%d", scheme < 20 ? scheme : 20, u, nbk);
        nbk++;
    }
    int rc = run_contract();
    if (own) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}
