/* Group commit in the SQLite store (sqlite_internal.h): concurrent writers
 * share commits, every acknowledged write is in the file, and a writer
 * that fails takes only its own changes with it. */
#include <check.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/common/semver.h"
#include "../../src/store/store_sqlite.h"
#include "../support/harness.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    test_tmpdir("strata-group", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/strata.db", dir);
}

static void teardown(void)
{
    test_rmtree(dir);
}

static int put(store *s, store_txn *txn, const char *id, int n, strata_error *err)
{
    store_head h;
    if (s->ops->get_head(s, txn, "trie", id, &h, err) != 0)
        return -1;
    store_version v;
    memset(&v, 0, sizeof v);
    snprintf(v.type, sizeof v.type, "trie");
    snprintf(v.id, sizeof v.id, "%s", id);
    snprintf(v.ns, sizeof v.ns, "t");
    snprintf(v.data_hash, sizeof v.data_hash, "%s-%d", id, n);
    v.vkey = semver_next(h.max_vkey, BUMP_PATCH);
    v.doc = json_pack("{s:i}", "n", n);
    int rc = s->ops->put_version(s, txn, &v, h.latest_vkey, h.max_vkey, NULL, 0, 0, err);
    store_version_clear(&v);
    return rc;
}

#define THREADS 16
#define PER     100

typedef struct worker {
    store *s;
    int idx;
    bool in_txn; /* each put in a transaction of its own (a member that runs itself) */
    int ok, failed;
    strata_error last;
} worker;

struct put_call {
    store *s;
    const char *id;
    int n;
};

static int put_body(store_txn *txn, void *ctx, strata_error *err)
{
    struct put_call *c = ctx;
    return put(c->s, txn, c->id, c->n, err);
}

static void *write_own(void *arg)
{
    worker *w = arg;
    char id[32];
    snprintf(id, sizeof id, "w%d", w->idx);
    for (int i = 0; i < PER; i++) {
        strata_error err;
        struct put_call c = {w->s, id, i};
        if ((w->in_txn ? w->s->ops->transact(w->s, put_body, &c, &err)
                       : put(w->s, NULL, id, i, &err)) == 0)
            w->ok++;
        else {
            w->failed++;
            w->last = err;
        }
    }
    return NULL;
}

START_TEST(concurrent_writers_share_commits_and_all_land)
{
    strata_error err;
    store *s = store_sqlite_open(path, &err);
    ck_assert_ptr_nonnull(s);
    worker w[THREADS];
    pthread_t th[THREADS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < THREADS; i++) {
        w[i].s = s;
        w[i].idx = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, write_own, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < THREADS; i++)
        ck_assert_msg(w[i].ok == PER, "writer %d: %d ok, %d failed (%s)", i, w[i].ok, w[i].failed,
                      w[i].failed ? w[i].last.detail : "");
    uint64_t commits, writes;
    store_sqlite_commit_stats(s, &commits, &writes);
    /* each put is one write; the reads are not */
    ck_assert_uint_eq(writes, (uint64_t)THREADS * PER);
    ck_assert_msg(commits < writes, "%llu commits for %llu writes: no group formed",
                  (unsigned long long)commits, (unsigned long long)writes);
    fprintf(stderr, "group commit: %llu writes in %llu commits\n", (unsigned long long)writes,
            (unsigned long long)commits);
    store_close(s);
    /* a fresh handle finds every acknowledged version */
    s = store_sqlite_open(path, &err);
    ck_assert_ptr_nonnull(s);
    for (int i = 0; i < THREADS; i++) {
        char id[32];
        snprintf(id, sizeof id, "w%d", i);
        store_head h;
        ck_assert_int_eq(s->ops->get_head(s, NULL, "trie", id, &h, &err), 0);
        store_version v;
        ck_assert_int_eq(s->ops->get_version(s, NULL, "trie", id, h.latest_vkey, &v, &err), 0);
        ck_assert_int_eq(json_integer_value(json_object_get(v.doc, "n")), PER - 1);
        store_version_clear(&v);
        store_page p;
        store_list_opts o = {.limit = STORE_LIST_MAX, .stale = -1};
        ck_assert_int_eq(s->ops->list_versions(s, "trie", id, &o, &p, &err), 0);
        ck_assert_uint_eq(p.count, PER);
        store_page_free(&p);
    }
    store_close(s);
}
END_TEST

/* A transaction that writes, waits while others queue up behind it (so
 * they share its group), then fails: its write is gone, theirs are not. */
struct failing {
    store *s;
    int ran;
};

static int write_then_fail(store_txn *txn, void *ctx, strata_error *err)
{
    struct failing *f = ctx;
    f->ran++;
    if (put(f->s, txn, "doomed", f->ran, err) != 0)
        return -1;
    struct timespec ts = {0, 200 * 1000000L};
    nanosleep(&ts, NULL);
    return serr_set(err, SERR_INVALID, "the body says no");
}

static void *fail_txn(void *arg)
{
    struct failing *f = arg;
    strata_error err;
    int rc = f->s->ops->transact(f->s, write_then_fail, f, &err);
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    return NULL;
}

START_TEST(a_failing_member_takes_only_its_own_changes)
{
    strata_error err;
    store *s = store_sqlite_open(path, &err);
    ck_assert_ptr_nonnull(s);
    struct failing f = {s, 0};
    pthread_t ft;
    ck_assert_int_eq(pthread_create(&ft, NULL, fail_txn, &f), 0);
    struct timespec ts = {0, 50 * 1000000L};
    nanosleep(&ts, NULL); /* the failing body is running */
    worker w[4];
    pthread_t th[4];
    memset(w, 0, sizeof w);
    for (int i = 0; i < 4; i++) {
        w[i].s = s;
        w[i].idx = i;
        w[i].in_txn = true; /* transactions share its group; plain writes form their own */
        ck_assert_int_eq(pthread_create(&th[i], NULL, write_own, &w[i]), 0);
    }
    pthread_join(ft, NULL);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    ck_assert_int_eq(f.ran, 1); /* its own error: not run again */
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(w[i].ok, PER);
    store_close(s);
    s = store_sqlite_open(path, &err);
    ck_assert_ptr_nonnull(s);
    store_head h;
    ck_assert_int_eq(s->ops->get_head(s, NULL, "trie", "doomed", &h, &err), 0);
    ck_assert(!h.exists);
    uint64_t last = semver_next(0, BUMP_PATCH);
    for (int i = 1; i < PER; i++)
        last = semver_next(last, BUMP_PATCH);
    for (int i = 0; i < 4; i++) {
        char id[32];
        snprintf(id, sizeof id, "w%d", i);
        ck_assert_int_eq(s->ops->get_head(s, NULL, "trie", id, &h, &err), 0);
        ck_assert_uint_eq(h.latest_vkey, last);
    }
    store_close(s);
}
END_TEST

/* Writers racing on one resource: in a combined group the leader runs
 * every member's put, most of which find the head moved by an earlier
 * member and fail; each failure must take only its own savepoint with it,
 * and every success must land. */
#define RACERS    8
#define RACER_PUT 40

static void *race_one_key(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < RACER_PUT; i++) {
        for (;;) {
            strata_error err;
            if (put(w->s, NULL, "shared", w->idx * 1000 + i, &err) == 0) {
                w->ok++;
                break;
            }
            if (err.kind != SERR_CONFLICT) {
                w->last = err;
                return NULL;
            }
            w->failed++; /* a conflict: read the head again */
        }
    }
    return NULL;
}

START_TEST(conflicting_members_of_a_combined_group_fail_alone)
{
    strata_error err;
    store *s = store_sqlite_open(path, &err);
    ck_assert_ptr_nonnull(s);
    worker w[RACERS];
    pthread_t th[RACERS];
    memset(w, 0, sizeof w);
    for (int i = 0; i < RACERS; i++) {
        w[i].s = s;
        w[i].idx = i;
        ck_assert_int_eq(pthread_create(&th[i], NULL, race_one_key, &w[i]), 0);
    }
    int conflicts = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(w[i].ok == RACER_PUT, "racer %d: %d saved (%s)", i, w[i].ok,
                      w[i].last.detail);
        conflicts += w[i].failed;
    }
    fprintf(stderr, "one key: %d puts, %d conflicts\n", RACERS * RACER_PUT, conflicts);
    store_close(s);
    s = store_sqlite_open(path, &err);
    ck_assert_ptr_nonnull(s);
    store_head h;
    ck_assert_int_eq(s->ops->get_head(s, NULL, "trie", "shared", &h, &err), 0);
    uint64_t last = 0;
    for (int i = 0; i < RACERS * RACER_PUT; i++)
        last = semver_next(last, BUMP_PATCH);
    ck_assert_uint_eq(h.latest_vkey, last);
    store_page p;
    store_list_opts o = {.limit = STORE_LIST_MAX, .stale = -1};
    ck_assert_int_eq(s->ops->list_versions(s, "trie", "shared", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, RACERS * RACER_PUT);
    store_page_free(&p);
    store_close(s);
}
END_TEST

static Suite *suite(void)
{
    Suite *su = suite_create("sqlite_group");
    TCase *t = tcase_create("group");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_set_timeout(t, 120);
    tcase_add_test(t, concurrent_writers_share_commits_and_all_land);
    tcase_add_test(t, a_failing_member_takes_only_its_own_changes);
    tcase_add_test(t, conflicting_members_of_a_combined_group_fail_alone);
    suite_add_tcase(su, t);
    return su;
}

int main(void)
{
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
