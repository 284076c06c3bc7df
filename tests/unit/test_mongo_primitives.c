/* What Strata's MongoDB backends may build on, checked against the real
 * MongoDB-wire server of the 'mongo' suite (STRATA_MONGO_URL; without one
 * the run fails).
 *
 * FerretDB v1.24 on PostgreSQL runs an update or a findAndModify as a
 * query, then a write of the whole document by _id that does not check
 * the filter again: two conditional updates of one document may both
 * "succeed" and one is lost. Measured here: six threads each making 150
 * compare-and-swap increments (filter on the value read) counted about 600
 * successes while the value moved by about 180. So no agreement between
 * nodes may rest on a conditional update there. An insert that a unique
 * index refuses (code 11000) is decided by PostgreSQL's unique index, and
 * is atomic: that, and deletes by _id, are the primitives to build on.
 *
 * Checked: concurrent inserts of the same _ids succeed exactly once per
 * id, the losers get code 11000, and a unique secondary index is enforced
 * the same way. The compare-and-swap count is printed, not asserted: on
 * MongoDB proper it is exact, on FerretDB v1 it is not. */
#include <check.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREADS 6
#define IDS     150

static mongoc_client_pool_t *pool;
static char db[64];

typedef struct racer {
    const char *coll;
    int inserted, duplicates, other;
    int cas_ok;
} racer;

static mongoc_collection_t *coll_of(mongoc_client_t *cl, const char *name)
{
    return mongoc_client_get_collection(cl, db, name);
}

static void *insert_race(void *arg)
{
    racer *r = arg;
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_of(cl, r->coll);
    for (int i = 0; i < IDS; i++) {
        bson_t *d = strcmp(r->coll, "by_id") == 0 ? BCON_NEW("_id", BCON_INT32(i))
                                                  : BCON_NEW("k", BCON_INT32(i));
        bson_error_t e;
        if (mongoc_collection_insert_one(c, d, NULL, NULL, &e))
            r->inserted++;
        else if (e.code == 11000)
            r->duplicates++;
        else
            r->other++;
        bson_destroy(d);
    }
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
    return NULL;
}

static void run_insert_race(const char *coll)
{
    pthread_t t[THREADS];
    racer r[THREADS];
    memset(r, 0, sizeof r);
    for (int i = 0; i < THREADS; i++) {
        r[i].coll = coll;
        ck_assert_int_eq(pthread_create(&t[i], NULL, insert_race, &r[i]), 0);
    }
    int inserted = 0, duplicates = 0, other = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        inserted += r[i].inserted;
        duplicates += r[i].duplicates;
        other += r[i].other;
    }
    ck_assert_int_eq(other, 0);
    ck_assert_int_eq(inserted, IDS);
    ck_assert_int_eq(duplicates, (THREADS - 1) * IDS);
}

START_TEST(racing_inserts_of_one_id_succeed_once)
{
    run_insert_race("by_id");
}
END_TEST

START_TEST(a_unique_index_refuses_racing_inserts_but_one)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    bson_t *cmd =
        BCON_NEW("createIndexes", BCON_UTF8("by_key"), "indexes", "[", "{", "key", "{", "k",
                 BCON_INT32(1), "}", "name", BCON_UTF8("k_1"), "unique", BCON_BOOL(true), "}", "]");
    bson_error_t e;
    bool ok = mongoc_client_command_simple(cl, db, cmd, NULL, NULL, &e);
    bson_destroy(cmd);
    mongoc_client_pool_push(pool, cl);
    ck_assert_msg(ok, "createIndexes: %s", e.message);
    run_insert_race("by_key");
}
END_TEST

static void *cas_race(void *arg)
{
    racer *r = arg;
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_of(cl, "cas");
    for (int i = 0; i < IDS; i++) {
        bson_t *q = BCON_NEW("_id", BCON_UTF8("x"));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, q, NULL, NULL);
        const bson_t *d;
        int64_t v = -1;
        bson_iter_t it;
        if (mongoc_cursor_next(cur, &d) && bson_iter_init_find(&it, d, "v"))
            v = bson_iter_as_int64(&it);
        mongoc_cursor_destroy(cur);
        bson_destroy(q);
        bson_t *f = BCON_NEW("_id", BCON_UTF8("x"), "v", BCON_INT64(v));
        bson_t *u = BCON_NEW("$set", "{", "v", BCON_INT64(v + 1), "}");
        bson_t reply;
        bson_error_t e;
        if (mongoc_collection_update_one(c, f, u, NULL, &reply, &e) &&
            bson_iter_init_find(&it, &reply, "modifiedCount") && bson_iter_as_int64(&it) == 1)
            r->cas_ok++;
        bson_destroy(&reply);
        bson_destroy(f);
        bson_destroy(u);
    }
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
    return NULL;
}

START_TEST(conditional_updates_are_measured)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_collection_t *c = coll_of(cl, "cas");
    bson_t *d = BCON_NEW("_id", BCON_UTF8("x"), "v", BCON_INT64(0));
    bson_error_t e;
    ck_assert_msg(mongoc_collection_insert_one(c, d, NULL, NULL, &e), "%s", e.message);
    bson_destroy(d);
    pthread_t t[THREADS];
    racer r[THREADS];
    memset(r, 0, sizeof r);
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, cas_race, &r[i]), 0);
    int ok = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        ok += r[i].cas_ok;
    }
    bson_t *q = BCON_NEW("_id", BCON_UTF8("x"));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, q, NULL, NULL);
    const bson_t *doc;
    bson_iter_t it;
    int64_t v = -1;
    if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "v"))
        v = bson_iter_as_int64(&it);
    mongoc_cursor_destroy(cur);
    bson_destroy(q);
    mongoc_collection_destroy(c);
    mongoc_client_pool_push(pool, cl);
    ck_assert_int_gt(ok, 0);
    printf("mongo_primitives: %d compare-and-swap updates reported success, the value moved "
           "%lld (%s)\n",
           ok, (long long)v, ok == v ? "atomic" : "NOT atomic: lost updates");
}
END_TEST

static void setup(void)
{
    mongoc_client_t *cl = mongoc_client_pool_pop(pool);
    mongoc_database_t *d = mongoc_client_get_database(cl, db);
    bson_error_t e;
    mongoc_database_drop(d, &e); /* absent at first: fine */
    mongoc_database_destroy(d);
    mongoc_client_pool_push(pool, cl);
}

int main(void)
{
    const char *base = getenv("STRATA_MONGO_URL");
    if (base == NULL || strncmp(base, "mongodb://", 10) != 0) {
        fprintf(stderr, "mongo_primitives: STRATA_MONGO_URL (mongodb://HOST:PORT) is not set: "
                        "scripts/mongo-test-server starts a server\n");
        return 1;
    }
    snprintf(db, sizeof db, "primitives_%ld", (long)getpid());
    mongoc_init();
    mongoc_uri_t *uri = mongoc_uri_new(base);
    if (uri == NULL) {
        fprintf(stderr, "mongo_primitives: STRATA_MONGO_URL is not a valid URL\n");
        return 1;
    }
    mongoc_uri_set_option_as_int32(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
    pool = mongoc_client_pool_new(uri);
    mongoc_client_pool_set_error_api(pool, MONGOC_ERROR_API_VERSION_2);
    Suite *s = suite_create("mongo_primitives");
    TCase *tc = tcase_create("primitives");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, racing_inserts_of_one_id_succeed_once);
    tcase_add_test(tc, a_unique_index_refuses_racing_inserts_but_one);
    tcase_add_test(tc, conditional_updates_are_measured);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_NOFORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    setup(); /* leaves no database behind */
    mongoc_client_pool_destroy(pool);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    return failed ? 1 : 0;
}
