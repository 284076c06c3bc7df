/* Corpus trees changed by two strata processes on one store, and a tree
 * whose last changer died mid-change.
 *
 * 1. Leases: a lease that expired without release is reported abandoned
 *    to its next holder, and one that was released is not (both stores).
 * 2. A dead holder: with the server stopped, a master's aggregate is
 *    spoiled and its tree's lease left taken, unreleased, by a holder that
 *    never comes back (what a kill -9 mid-change leaves on a store without
 *    transactions). The next change of the tree must wait the lease out,
 *    rebuild the tree from its children and then apply itself: the spoiled
 *    word is gone. On a store with transactions no change can stop midway,
 *    so this part runs only without them (it says so on stderr).
 * 3. Two nodes, one tree: two processes on one data directory (one store)
 *    attach, detach and re-save children and move a nested master between
 *    two trees, from four threads, for STRATA_TN_SECONDS (15); then every
 *    child is saved once more, one at a time, with known words, and every
 *    master's vocabulary must be exactly the union of its children's
 *    (words, children counts, frequencies), nested master included. A
 *    double-counted or lost delta from the concurrent phase stays in the
 *    aggregate and fails it. */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/common/semver.h"
#include "../../src/store/store.h"
#include "../support/harness.h"

static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};

static long call(const test_server *s, const char *method, const char *path, const char *json,
                 json_t **out)
{
    http_resp r;
    if (http_do(s, method, path, json ? JSON_CT : NULL, json, json ? strlen(json) : 0, &r) != 0)
        return -1;
    long status = r.status;
    if (out) {
        *out = json_loadb(r.body, r.body_len, 0, NULL);
        ck_assert_msg(*out != NULL, "not JSON (%ld): %.300s", status, r.body);
    }
    if (status >= 500 && status != 503)
        fprintf(stderr, "%s %s: %ld %.300s\n", method, path, status, r.body ? r.body : "");
    http_resp_free(&r);
    return status;
}

static void stop(test_server *s)
{
    int code = server_stop(s, 60);
    ck_assert_msg(code == 0, "server exited with %d", code);
}

static store *open_store(const test_server *s)
{
    char url[600];
    if (s->store_url[0] != '\0')
        snprintf(url, sizeof url, "%s", s->store_url);
    else
        snprintf(url, sizeof url, "sqlite:%s/strata.db", s->data_dir);
    strata_error err;
    store *st = store_open(url, &err);
    ck_assert_msg(st != NULL, "open %s: %s", url, err.detail);
    return st;
}

static void save_words(const test_server *s, const char *id, const char *words_json)
{
    char body[8192], path[128];
    snprintf(
        body, sizeof body,
        "{\"content\": {\"words\": %s}, \"corpus_type\": \"literature\", \"language\": \"en\"}",
        words_json);
    snprintf(path, sizeof path, "/corpus/%s/versions", id);
    long st = call(s, "POST", path, body, NULL);
    ck_assert_msg(st == 201 || st == 200, "save %s: %ld", id, st);
}

/* The vocabulary as "word:children:frequency " items, in order. */
static void vocabulary_text(const test_server *s, const char *master, char *out, size_t cap)
{
    char path[160];
    snprintf(path, sizeof path, "/trees/%s/vocabulary?limit=1000", master);
    json_t *page;
    long st = call(s, "GET", path, NULL, &page);
    ck_assert_msg(st == 200, "vocabulary of %s: %ld", master, st);
    size_t n = 0, i;
    json_t *it;
    out[0] = '\0';
    json_array_foreach(json_object_get(page, "items"), i, it)
    {
        int w = snprintf(out + n, cap - n, "%s:%lld:%lld ",
                         json_string_value(json_object_get(it, "word")),
                         (long long)json_integer_value(json_object_get(it, "children")),
                         (long long)json_integer_value(json_object_get(it, "frequency")));
        ck_assert(w > 0 && (size_t)w < cap - n);
        n += (size_t)w;
    }
    json_decref(page);
}

/* ---- 1. leases ----------------------------------------------------------------- */

static void take(store *st, const char *name, const char *holder, uint64_t ttl, bool want_held,
                 bool want_abandoned)
{
    bool held = true, abandoned = true;
    uint64_t token = 0;
    strata_error err;
    ck_assert_msg(st->ops->lease_acquire(st, name, holder, ttl, &held, &token, &abandoned, &err) ==
                      0,
                  "%s", err.detail);
    ck_assert_msg(held == want_held && abandoned == want_abandoned,
                  "%s by %s: held %d abandoned %d, wanted %d %d", name, holder, held, abandoned,
                  want_held, want_abandoned);
}

START_TEST(leases_tell_an_abandoned_one)
{
    test_server s;
    ck_assert_int_eq(server_start(&s, NULL), 0);
    stop(&s);
    store *st = open_store(&s);
    take(st, "t1", "a", 200, true, false);  /* new */
    take(st, "t1", "a", 200, true, false);  /* renewed */
    take(st, "t1", "b", 200, false, false); /* busy */
    usleep(400 * 1000);
    take(st, "t1", "b", 200, true, true); /* a let it expire */
    strata_error err;
    ck_assert_int_eq(st->ops->lease_release(st, "t1", "b", &err), 0);
    take(st, "t1", "c", 200, true, false); /* b released it */
    usleep(400 * 1000);
    take(st, "t1", "c", 200, true, false); /* its own, expired: not abandoned */
    store_close(st);
    server_cleanup(&s);
}
END_TEST

/* ---- 2. a dead holder ------------------------------------------------------------ */

START_TEST(a_tree_left_in_doubt_is_rebuilt)
{
    test_server s;
    ck_assert_int_eq(server_start(&s, NULL), 0);
    save_words(&s, "k1", "[\"apple\", \"bean\", \"bean\"]");
    save_words(&s, "k2", "[\"bean\", \"corn\"]");
    ck_assert_int_eq(call(&s, "POST", "/trees",
                          "{\"master\": \"root\", \"language\": \"en\", \"children\": [\"k1\"]}",
                          NULL),
                     201);
    ck_assert_int_eq(call(&s, "POST", "/trees",
                          "{\"master\": \"mid\", \"language\": \"en\", \"children\": [\"k2\"]}",
                          NULL),
                     201);
    ck_assert_int_eq(call(&s, "POST", "/trees/root/children", "{\"id\": \"mid\"}", NULL), 201);
    char v[4096];
    vocabulary_text(&s, "root", v, sizeof v);
    ck_assert_str_eq(v, "apple:1:1 bean:2:3 corn:1:1 ");
    stop(&s);

    store *st = open_store(&s);
    if (st->ops->caps & STORE_CAP_TREE_TXN) {
        fprintf(stderr,
                "trees_nodes: the %s store makes tree changes atomic: none can stop "
                "midway there, the dead-holder case does not apply\n",
                st->ops->name);
        store_close(st);
        server_cleanup(&s);
        return;
    }
    /* what a holder killed between two writes leaves: one master changed,
     * the one above not, and the lease taken, never released */
    vocab_delta d[1] = {{"zebra", 1, 7, 0}};
    strata_error err;
    ck_assert_int_eq(st->ops->vocab_apply(st, NULL, "mid", d, 1, NULL, &err), 0);
    take(st, "tree:root", "dead-node:1:0/tree/1", 1500, true, false);
    store_close(st);

    ck_assert_int_eq(server_restart(&s, NULL), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    save_words(&s, "k1", "[\"apple\", \"date\"]"); /* waits the lease out, rebuilds, applies */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    vocabulary_text(&s, "mid", v, sizeof v);
    ck_assert_str_eq(v, "bean:1:1 corn:1:1 ");
    vocabulary_text(&s, "root", v, sizeof v);
    ck_assert_str_eq(v, "apple:1:1 bean:1:1 corn:1:1 date:1:1 ");
    fprintf(stderr, "trees_nodes: the change after a dead holder took %.1f s\n",
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    stop(&s);
    server_cleanup(&s);
}
END_TEST

/* Stores with transactions for tree writes check a delete and change a
 * tree atomically: the cases below are about the lease path. */
static bool leased_store(store *st, const test_server *s, const char *what)
{
    if (!(st->ops->caps & STORE_CAP_TREE_TXN))
        return true;
    fprintf(stderr, "trees_nodes: the %s store makes tree changes atomic: %s does not apply\n",
            st->ops->name, what);
    store_close(st);
    server_cleanup((test_server *)s);
    return false;
}

static uint64_t latest_of(store *st, const char *id)
{
    store_head h;
    strata_error err;
    ck_assert_msg(st->ops->get_head(st, NULL, "corpus", id, &h, &err) == 0, "%s", err.detail);
    return h.latest_vkey;
}

/* A master that records a version deleted behind its back (a delete that
 * raced a tree change before deletes took the tree's lease) and a tree
 * left in doubt: the rebuild must not stop on the missing version (every
 * change of the tree would answer 503 for ever) but follow the child's
 * latest, and let go of a child that has no version left. */
START_TEST(a_rebuild_follows_a_deleted_child_version)
{
    test_server s;
    ck_assert_int_eq(server_start(&s, NULL), 0);
    save_words(&s, "j1", "[\"apple\"]");
    save_words(&s, "j2", "[\"corn\"]");
    save_words(&s, "j3", "[\"date\"]");
    ck_assert_int_eq(call(&s, "POST", "/trees",
                          "{\"master\": \"jr\", \"language\": \"en\", \"children\": [\"j1\", "
                          "\"j3\"]}",
                          NULL),
                     201);
    save_words(&s, "j1", "[\"bean\"]"); /* jr follows: j1 at its second version */
    stop(&s);
    store *st = open_store(&s);
    if (!leased_store(st, &s, "a delete racing a tree change"))
        return;
    strata_error err;
    size_t count = 0;
    /* j1's aggregated (latest) version and all of j3 deleted under the master */
    ck_assert_msg(
        st->ops->delete_version(st, NULL, "corpus", "j1", latest_of(st, "j1"), "test", &err) == 0,
        "%s", err.detail);
    ck_assert_msg(st->ops->delete_resource(st, NULL, "corpus", "j3", "test", &count, &err) == 0,
                  "%s", err.detail);
    take(st, "tree:jr", "dead-node:1:0/tree/9", 1500, true, false);
    store_close(st);

    ck_assert_int_eq(server_restart(&s, NULL), 0);
    /* waits the lease out, rebuilds jr (j1 back at its first version, j3
     * let go), then attaches j2 */
    ck_assert_int_eq(call(&s, "POST", "/trees/jr/children", "{\"id\": \"j2\"}", NULL), 201);
    char v[4096];
    vocabulary_text(&s, "jr", v, sizeof v);
    ck_assert_str_eq(v, "apple:1:1 corn:1:1 ");
    json_t *tree;
    ck_assert_int_eq(call(&s, "GET", "/trees/jr?depth=1", NULL, &tree), 200);
    ck_assert_int_eq(json_array_size(json_object_get(tree, "children")), 2);
    json_decref(tree);
    stop(&s);
    server_cleanup(&s);
}
END_TEST

/* A corpus deleted (its head stays, latest 0), then re-created as a
 * master by a creation that died after its first writes: the rebuild must
 * take it for the unfinished creation it is (let its children go), not
 * for a master to reaggregate (which has no version to build on). */
START_TEST(a_dead_creation_over_a_deleted_corpus)
{
    test_server s;
    ck_assert_int_eq(server_start(&s, NULL), 0);
    save_words(&s, "nm", "[\"old\"]");
    ck_assert_int_eq(call(&s, "DELETE", "/corpus/nm", NULL, NULL), 200);
    save_words(&s, "n5", "[\"elm\"]");
    save_words(&s, "n6", "[\"fir\"]");
    stop(&s);
    store *st = open_store(&s);
    if (!leased_store(st, &s, "a creation that died midway"))
        return;
    strata_error err;
    ck_assert_msg(st->ops->tree_link(st, NULL, "nm", "n5", latest_of(st, "n5"), &err) == 0, "%s",
                  err.detail);
    vocab_delta d[1] = {{"elm", 1, 1, 0}};
    ck_assert_int_eq(st->ops->vocab_apply(st, NULL, "nm", d, 1, NULL, &err), 0);
    take(st, "tree:nm", "dead-node:1:0/tree/10", 1500, true, false);
    store_close(st);

    ck_assert_int_eq(server_restart(&s, NULL), 0);
    long code = call(&s, "POST", "/trees",
                     "{\"master\": \"nm\", \"language\": \"en\", \"children\": [\"n6\"]}", NULL);
    ck_assert_int_eq(code, 201);
    char v[4096];
    vocabulary_text(&s, "nm", v, sizeof v);
    ck_assert_str_eq(v, "fir:1:1 ");
    json_t *tree;
    ck_assert_int_eq(call(&s, "GET", "/trees/nm?depth=1", NULL, &tree), 200);
    ck_assert_int_eq(json_array_size(json_object_get(tree, "children")), 1);
    json_decref(tree);
    /* n5 was let go: it may join a tree again */
    ck_assert_int_eq(call(&s, "POST", "/trees/nm/children", "{\"id\": \"n5\"}", NULL), 201);
    stop(&s);
    server_cleanup(&s);
}
END_TEST

/* A corpus delete's tree checks run under its tree's lease: with the lease
 * held by another node, the delete waits for it (here it expires, taken
 * over abandoned), instead of checking edges a tree change is moving. */
START_TEST(a_corpus_delete_takes_its_tree_lease)
{
    test_server s;
    ck_assert_int_eq(server_start(&s, NULL), 0);
    save_words(&s, "q1", "[\"apple\"]");
    store *st = open_store(&s);
    if (st->ops->caps & STORE_CAP_TREE_TXN) {
        fprintf(stderr,
                "trees_nodes: the %s store checks a delete in its transaction: the delete "
                "lease case does not apply\n",
                st->ops->name);
        store_close(st);
        stop(&s);
        server_cleanup(&s);
        return;
    }
    char first[SEMVER_STR_MAX], path[160];
    semver_format(latest_of(st, "q1"), first);
    save_words(&s, "q1", "[\"bean\"]");
    ck_assert_int_eq(call(&s, "POST", "/trees",
                          "{\"master\": \"qm\", \"language\": \"en\", \"children\": [\"q1\"]}",
                          NULL),
                     201);
    take(st, "tree:qm", "other-node:1:0/tree/1", 2500, true, false);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    snprintf(path, sizeof path, "/corpus/q1/versions/%s", first);
    long code = call(&s, "DELETE", path, NULL, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    fprintf(stderr, "trees_nodes: the delete under a busy tree lease took %.1f s\n", took);
    ck_assert_msg(code == 200 || code == 204, "delete: %ld", code);
    ck_assert_msg(took > 1.5, "the delete did not wait for the tree's lease (%.2f s)", took);
    /* the aggregated (latest) version stays refused */
    ck_assert_int_eq(call(&s, "DELETE", "/corpus/q1/versions/latest", NULL, NULL), 409);
    store_close(st);
    stop(&s);
    server_cleanup(&s);
}
END_TEST

/* ---- 3. two nodes, one tree ------------------------------------------------------ */

#define NKIDS    8
#define NMASTERS 3 /* m0, m1 roots; m2 nested, moved between them */
#define NTHREADS 4
#define POOLW    24

static test_server A, B;
static volatile bool running;

typedef struct counts {
    long saves, attaches, detaches, moves, busy, refused;
    long bad; /* statuses no operation may answer */
} counts;

/* sorted: a vocabulary in pool order is in the store's order */
static const char *const pool[POOLW] = {"amber", "birch",  "cedar", "delta",   "ember",  "fjord",
                                        "grove", "heron",  "inlet", "juniper", "kelp",   "larch",
                                        "maple", "nettle", "oak",   "pine",    "quartz", "reed",
                                        "sedge", "thyme",  "umber", "vale",    "willow", "yarrow"};

static const char *pick_word(unsigned *seed)
{
    return pool[rand_r(seed) % POOLW];
}

static void words_json(unsigned *seed, char *out, size_t cap)
{
    int n = 1 + rand_r(seed) % 8;
    size_t at = (size_t)snprintf(out, cap, "[");
    for (int i = 0; i < n; i++)
        at += (size_t)snprintf(out + at, cap - at, "%s\"%s\"", i ? ", " : "", pick_word(seed));
    snprintf(out + at, cap - at, "]");
}

static void tally(counts *c, long st, long *ok)
{
    if (st == 200 || st == 201)
        (*ok)++;
    else if (st == 503)
        c->busy++;
    else if (st == 404 || st == 409)
        c->refused++;
    else
        c->bad++;
}

typedef struct worker {
    const test_server *s;
    unsigned seed;
    counts c;
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    char path[160], body[1024];
    while (running) {
        int op = rand_r(&w->seed) % 100;
        int k = rand_r(&w->seed) % NKIDS, m = rand_r(&w->seed) % NMASTERS;
        if (op < 40) {
            char words[512];
            words_json(&w->seed, words, sizeof words);
            snprintf(body, sizeof body,
                     "{\"content\": {\"words\": %s}, \"corpus_type\": \"literature\", "
                     "\"language\": \"en\"}",
                     words);
            snprintf(path, sizeof path, "/corpus/k%d/versions", k);
            tally(&w->c, call(w->s, "POST", path, body, NULL), &w->c.saves);
        } else if (op < 65) {
            snprintf(path, sizeof path, "/trees/m%d/children", m);
            snprintf(body, sizeof body, "{\"id\": \"k%d\"}", k);
            tally(&w->c, call(w->s, "POST", path, body, NULL), &w->c.attaches);
        } else if (op < 88) {
            /* one of the master's children, so that most detaches name an edge */
            json_t *tree = NULL;
            snprintf(path, sizeof path, "/trees/m%d?depth=1", m);
            if (call(w->s, "GET", path, NULL, &tree) != 200) {
                json_decref(tree);
                continue;
            }
            json_t *kids = json_object_get(tree, "children");
            const char *kid = json_string_value(json_object_get(
                json_array_get(kids, (size_t)rand_r(&w->seed) % (json_array_size(kids) + 1)),
                "id"));
            snprintf(path, sizeof path, "/trees/m%d/children/%s", m,
                     kid && kid[0] == 'k' ? kid : "k0");
            json_decref(tree);
            tally(&w->c, call(w->s, "DELETE", path, NULL, NULL), &w->c.detaches);
        } else {
            /* m2 leaves one tree for the other: a change across two trees */
            int from = rand_r(&w->seed) % 2;
            snprintf(path, sizeof path, "/trees/m%d/children/m2", from);
            long st = call(w->s, "DELETE", path, NULL, NULL);
            if (st != 200) {
                tally(&w->c, st, &w->c.moves);
                continue;
            }
            snprintf(path, sizeof path, "/trees/m%d/children", 1 - from);
            tally(&w->c, call(w->s, "POST", path, "{\"id\": \"m2\"}", NULL), &w->c.moves);
        }
    }
    return NULL;
}

/* The union of a master's children, as vocabulary_text prints it. */
typedef struct agg {
    long children[POOLW + 1], freq[POOLW + 1];
} agg;

static int word_index(const char *w)
{
    for (int i = 0; i < POOLW; i++)
        if (strcmp(pool[i], w) == 0)
            return i;
    return POOLW;
}

static void expected_of(const test_server *s, const char *master, const char *final_words[NKIDS],
                        agg *out, char *text, size_t cap)
{
    memset(out, 0, sizeof *out);
    json_t *tree;
    char path[160];
    snprintf(path, sizeof path, "/trees/%s?depth=1", master);
    ck_assert_int_eq(call(s, "GET", path, NULL, &tree), 200);
    size_t i;
    json_t *kid;
    json_array_foreach(json_object_get(tree, "children"), i, kid)
    {
        const char *id = json_string_value(json_object_get(kid, "id"));
        if (id[0] == 'k') {
            /* one child: each distinct word once, its occurrences summed */
            json_t *words = json_loads(final_words[atoi(id + 1)], 0, NULL);
            bool seen[POOLW + 1] = {false};
            size_t j;
            json_t *w;
            json_array_foreach(words, j, w)
            {
                int x = word_index(json_string_value(w));
                out->freq[x]++;
                if (!seen[x])
                    out->children[x]++;
                seen[x] = true;
            }
            json_decref(words);
        } else {
            agg sub;
            char ignored[4096];
            expected_of(s, id, final_words, &sub, ignored, sizeof ignored);
            for (int x = 0; x <= POOLW; x++) {
                out->children[x] += sub.children[x] > 0;
                out->freq[x] += sub.freq[x];
            }
        }
    }
    json_decref(tree);
    size_t n = 0;
    text[0] = '\0';
    for (int x = 0; x < POOLW; x++) /* the pool is sorted: so is the text */
        if (out->children[x] > 0)
            n += (size_t)snprintf(text + n, cap - n, "%s:%ld:%ld ", pool[x], out->children[x],
                                  out->freq[x]);
}

START_TEST(two_nodes_change_one_tree)
{
    ck_assert_int_eq(server_start(&A, NULL), 0);
    ck_assert_int_eq(server_start_shared(&B, A.data_dir, NULL), 0);
    unsigned seed = (unsigned)time(NULL);
    const char *env = getenv("STRATA_TEST_SEED");
    if (env)
        seed = (unsigned)strtoul(env, NULL, 10);
    fprintf(stderr, "trees_nodes: seed %u\n", seed);
    char words[512];
    for (int k = 0; k < NKIDS; k++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", k);
        words_json(&seed, words, sizeof words);
        save_words(&A, id, words);
    }
    ck_assert_int_eq(call(&A, "POST", "/trees",
                          "{\"master\": \"m0\", \"language\": \"en\", \"children\": [\"k0\"]}",
                          NULL),
                     201);
    ck_assert_int_eq(call(&B, "POST", "/trees",
                          "{\"master\": \"m1\", \"language\": \"en\", \"children\": [\"k1\"]}",
                          NULL),
                     201);
    ck_assert_int_eq(call(&A, "POST", "/trees",
                          "{\"master\": \"m2\", \"language\": \"en\", \"children\": [\"k2\"]}",
                          NULL),
                     201);
    ck_assert_int_eq(call(&B, "POST", "/trees/m0/children", "{\"id\": \"m2\"}", NULL), 201);

    int seconds = getenv("STRATA_TN_SECONDS") ? atoi(getenv("STRATA_TN_SECONDS")) : 15;
    worker w[NTHREADS];
    pthread_t th[NTHREADS];
    running = true;
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (worker){i % 2 ? &B : &A, seed + 7919u * (unsigned)(i + 1), {0}};
        ck_assert_int_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    sleep((unsigned)seconds);
    running = false;
    counts total = {0};
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        total.saves += w[i].c.saves;
        total.attaches += w[i].c.attaches;
        total.detaches += w[i].c.detaches;
        total.moves += w[i].c.moves;
        total.busy += w[i].c.busy;
        total.refused += w[i].c.refused;
        total.bad += w[i].c.bad;
    }
    fprintf(stderr,
            "trees_nodes: %ld saves, %ld attaches, %ld detaches, %ld moves of m2, %ld refused "
            "(404/409), %ld busy (503), %ld bad\n",
            total.saves, total.attaches, total.detaches, total.moves, total.refused, total.busy,
            total.bad);
    ck_assert_int_eq(total.bad, 0);
    ck_assert(total.saves > 10 && total.attaches > 3 && total.detaches > 3);

    /* every child once more, alone, with known words: each master then
     * aggregates every child's latest */
    static char final_json[NKIDS][512];
    const char *final_words[NKIDS];
    for (int k = 0; k < NKIDS; k++) {
        char id[16];
        snprintf(id, sizeof id, "k%d", k);
        words_json(&seed, final_json[k], sizeof final_json[k]);
        save_words(k % 2 ? &B : &A, id, final_json[k]);
        final_words[k] = final_json[k];
    }
    for (int m = 0; m < NMASTERS; m++) {
        char id[16], want[4096], got[4096];
        snprintf(id, sizeof id, "m%d", m);
        agg a;
        expected_of(&A, id, final_words, &a, want, sizeof want);
        vocabulary_text(&A, id, got, sizeof got);
        ck_assert_msg(strcmp(want, got) == 0, "%s on A:\n want %s\n got  %s", id, want, got);
        vocabulary_text(&B, id, got, sizeof got);
        ck_assert_msg(strcmp(want, got) == 0, "%s on B:\n want %s\n got  %s", id, want, got);
    }
    stop(&B);
    server_forget_log(&B);
    stop(&A);
    server_cleanup(&A);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("trees_nodes");
    TCase *tc = tcase_create("trees_nodes");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, leases_tell_an_abandoned_one);
    tcase_add_test(tc, a_tree_left_in_doubt_is_rebuilt);
    tcase_add_test(tc, a_rebuild_follows_a_deleted_child_version);
    tcase_add_test(tc, a_dead_creation_over_a_deleted_corpus);
    tcase_add_test(tc, a_corpus_delete_takes_its_tree_lease);
    tcase_add_test(tc, two_nodes_change_one_tree);
    suite_add_tcase(s, tc);
    SRunner *r = srunner_create(s);
    srunner_set_fork_status(r, CK_NOFORK);
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
