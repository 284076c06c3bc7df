/* Version numbers are never issued twice over real HTTP: not after a
 * version is deleted, not after the whole resource is deleted and created
 * again (also across a restart and inside a batch); the old numbers keep
 * answering 410. */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/harness.h"

static test_server S;
static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};

static void start(void)
{
    ck_assert_int_eq(server_start(&S, NULL), 0);
}

static void stop(void)
{
    int code = server_stop(&S, 60);
    server_cleanup(&S);
    if (code != 0) {
        fprintf(stderr, "server exited with %d\n", code);
        exit(1);
    }
}

/* One request; the status, and the body as JSON when out is given. */
static long call(const char *method, const char *path, const char *json, json_t **out)
{
    http_resp r;
    ck_assert_int_eq(
        http_do(&S, method, path, json ? JSON_CT : NULL, json, json ? strlen(json) : 0, &r), 0);
    long status = r.status;
    if (out) {
        *out = json_loadb(r.body, r.body_len, 0, NULL);
        ck_assert_msg(*out != NULL, "not JSON (%ld): %.300s", status, r.body);
    }
    http_resp_free(&r);
    return status;
}

static const char *version_of(const json_t *rec)
{
    return json_string_value(json_object_get(json_object_get(rec, "version_info"), "version"));
}

/* Saves content n to /dictionary/id; expects 201, the version and its Location. */
static void save_expect(const char *id, int n, const char *version)
{
    char body[200], path[128], want[160], loc[160] = "";
    snprintf(body, sizeof body, "{\"content\": {\"n\": %d}, \"word\": \"%s\", \"provider\": \"p\"}",
             n, id);
    snprintf(path, sizeof path, "/dictionary/%s/versions", id);
    http_resp r;
    ck_assert_int_eq(http_do(&S, "POST", path, JSON_CT, body, strlen(body), &r), 0);
    ck_assert_msg(r.status == 201, "save %s (%d): %ld %.300s", id, n, r.status, r.body);
    json_t *rec = json_loadb(r.body, r.body_len, 0, NULL);
    ck_assert_ptr_nonnull(rec);
    ck_assert_str_eq(version_of(rec), version);
    json_decref(rec);
    ck_assert_int_eq(http_header(&r, "Location", loc, sizeof loc), 0);
    snprintf(want, sizeof want, "/dictionary/%s/versions/%s", id, version);
    ck_assert_str_eq(loc, want);
    http_resp_free(&r);
}

static long get_version(const char *id, const char *version)
{
    char path[160];
    snprintf(path, sizeof path, "/dictionary/%s/versions/%s", id, version);
    return call("GET", path, NULL, NULL);
}

/* The latest record of /dictionary/id: its version and content n. */
static void expect_latest(const char *id, const char *version, int n)
{
    char path[128];
    snprintf(path, sizeof path, "/dictionary/%s", id);
    json_t *rec;
    ck_assert_int_eq(call("GET", path, NULL, &rec), 200);
    ck_assert_str_eq(version_of(rec), version);
    json_decref(rec);
    snprintf(path, sizeof path, "/dictionary/%s/versions/latest/content", id);
    json_t *content;
    ck_assert_int_eq(call("GET", path, NULL, &content), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(content, "n")), n);
    json_decref(content);
}

/* How often id appears in GET /dictionary?limit=1000. */
static int listed(const char *id)
{
    json_t *list;
    ck_assert_int_eq(call("GET", "/dictionary?limit=1000", NULL, &list), 200);
    int seen = 0;
    size_t i;
    json_t *rec;
    json_array_foreach(json_object_get(list, "items"), i, rec)
    {
        if (strcmp(json_string_value(json_object_get(rec, "resource_id")), id) == 0)
            seen++;
    }
    json_decref(list);
    return seen;
}

START_TEST(numbering_continues_after_the_resource_is_deleted)
{
    save_expect("a", 0, "1.0.0");
    save_expect("a", 1, "1.0.1");
    save_expect("a", 2, "1.0.2");
    save_expect("other", 0, "1.0.0"); /* a neighbour in the list */
    json_t *res;
    ck_assert_int_eq(call("DELETE", "/dictionary/a", NULL, &res), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(res, "deleted_versions")), 3);
    json_decref(res);
    ck_assert_int_eq(call("GET", "/dictionary/a", NULL, NULL), 410);
    ck_assert_int_eq(call("DELETE", "/dictionary/a", NULL, NULL), 410); /* already gone */
    ck_assert_int_eq(listed("a"), 0);
    ck_assert_int_eq(listed("other"), 1);

    /* created again, with the content 1.0.0 had: a new number all the same */
    save_expect("a", 0, "1.0.3");
    for (int i = 0; i < 3; i++) {
        char v[16];
        snprintf(v, sizeof v, "1.0.%d", i);
        ck_assert_int_eq(get_version("a", v), 410);
    }
    expect_latest("a", "1.0.3", 0);
    ck_assert_int_eq(listed("a"), 1);
    ck_assert_int_eq(listed("other"), 1);
    json_t *vl;
    ck_assert_int_eq(call("GET", "/dictionary/a/versions", NULL, &vl), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(vl, "items")), 1);
    json_decref(vl);

    /* the highest number issued survives a restart */
    ck_assert_int_eq(server_stop(&S, 30), 0);
    ck_assert_int_eq(server_restart(&S, NULL), 0);
    save_expect("a", 4, "1.0.4");
    ck_assert_int_eq(get_version("a", "1.0.0"), 410);
    ck_assert_int_eq(get_version("a", "1.0.3"), 200);
    expect_latest("a", "1.0.4", 4);

    /* deleting the latest version does not free its number either */
    ck_assert_int_eq(call("DELETE", "/dictionary/a/versions/1.0.4", NULL, NULL), 204);
    expect_latest("a", "1.0.3", 0);
    save_expect("a", 5, "1.0.5");
    ck_assert_int_eq(get_version("a", "1.0.4"), 410);
    ck_assert_int_eq(listed("a"), 1);

    /* deleted again and restarted while deleted: still numbered past the max */
    ck_assert_int_eq(call("DELETE", "/dictionary/a", NULL, NULL), 200);
    ck_assert_int_eq(server_stop(&S, 30), 0);
    ck_assert_int_eq(server_restart(&S, NULL), 0);
    ck_assert_int_eq(call("GET", "/dictionary/a", NULL, NULL), 410);
    ck_assert_int_eq(listed("a"), 0);
    save_expect("a", 6, "1.0.6");
    ck_assert_int_eq(get_version("a", "1.0.5"), 410);
    expect_latest("a", "1.0.6", 6);
}
END_TEST

START_TEST(every_version_deleted_one_by_one)
{
    save_expect("b", 0, "1.0.0");
    save_expect("b", 1, "1.0.1");
    ck_assert_int_eq(call("DELETE", "/dictionary/b/versions/latest", NULL, NULL), 204);
    ck_assert_int_eq(call("DELETE", "/dictionary/b/versions/latest", NULL, NULL), 204);
    ck_assert_int_eq(listed("b"), 0);
    save_expect("b", 2, "1.0.2");
    ck_assert_int_eq(get_version("b", "1.0.0"), 410);
    ck_assert_int_eq(get_version("b", "1.0.1"), 410);
    expect_latest("b", "1.0.2", 2);
}
END_TEST

static const char *batch_version(const json_t *res, size_t i, long *status)
{
    const json_t *r = json_array_get(json_object_get(res, "results"), i);
    *status = (long)json_integer_value(json_object_get(r, "status"));
    return json_string_value(json_object_get(r, "version"));
}

START_TEST(batches_number_past_the_old_max)
{
    save_expect("c", 0, "1.0.0");
    save_expect("c", 1, "1.0.1");
    ck_assert_int_eq(call("DELETE", "/dictionary/c", NULL, NULL), 200);
    /* a batch saving the deleted resource again */
    json_t *res;
    long st;
    ck_assert_int_eq(
        call("POST", "/batch",
             "{\"operations\": [{\"op\": \"save\", \"type\": \"dictionary\", \"id\":"
             " \"c\", \"content\": {\"n\": 0}, \"word\": \"c\", \"provider\": \"p\"}]}",
             &res),
        200);
    ck_assert_str_eq(batch_version(res, 0, &st), "1.0.2");
    ck_assert_int_eq(st, 201);
    json_decref(res);
    ck_assert_int_eq(get_version("c", "1.0.0"), 410);
    expect_latest("c", "1.0.2", 0);
    ck_assert_int_eq(listed("c"), 1);
    /* one batch removes every version (the resource is empty inside it),
     * then saves twice: both above the highest ever issued */
    save_expect("c", 3, "1.0.3");
    ck_assert_int_eq(call("POST", "/batch",
                          "{\"operations\": ["
                          "{\"op\": \"delete\", \"type\": \"dictionary\", \"id\": \"c\","
                          " \"version\": \"latest\"},"
                          "{\"op\": \"delete\", \"type\": \"dictionary\", \"id\": \"c\","
                          " \"version\": \"latest\"},"
                          "{\"op\": \"save\", \"type\": \"dictionary\", \"id\": \"c\","
                          " \"content\": {\"n\": 3}, \"word\": \"c\", \"provider\": \"p\"},"
                          "{\"op\": \"save\", \"type\": \"dictionary\", \"id\": \"c\","
                          " \"content\": {\"n\": 4}, \"word\": \"c\", \"provider\": \"p\"}]}",
                          &res),
                     200);
    ck_assert_str_eq(batch_version(res, 2, &st), "1.0.4");
    ck_assert_int_eq(st, 201);
    ck_assert_str_eq(batch_version(res, 3, &st), "1.0.5");
    ck_assert_int_eq(st, 201);
    json_decref(res);
    ck_assert_int_eq(get_version("c", "1.0.2"), 410);
    ck_assert_int_eq(get_version("c", "1.0.3"), 410);
    ck_assert_int_eq(get_version("c", "1.0.4"), 200);
    expect_latest("c", "1.0.5", 4);
    /* a batch that fails leaves the deleted resource deleted, numbers unused */
    ck_assert_int_eq(call("DELETE", "/dictionary/c", NULL, NULL), 200);
    ck_assert_int_eq(call("POST", "/batch",
                          "{\"operations\": ["
                          "{\"op\": \"save\", \"type\": \"dictionary\", \"id\": \"c\","
                          " \"content\": {\"n\": 6}, \"word\": \"c\", \"provider\": \"p\"},"
                          "{\"op\": \"save\", \"type\": \"dictionary\", \"id\": \"c\","
                          " \"content\": {\"n\": 7}, \"word\": \"c\"}]}",
                          NULL),
                     400);
    ck_assert_int_eq(call("GET", "/dictionary/c", NULL, NULL), 410);
    ck_assert_int_eq(listed("c"), 0);
    save_expect("c", 6, "1.0.6");
}
END_TEST

/* Runs sql on the stopped server's database. */
static void on_database(const char *sql)
{
    char path[400];
    snprintf(path, sizeof path, "%s/strata.db", S.data_dir);
    test_sqlite_exec(path, sql);
}

START_TEST(a_database_from_before_keeps_its_numbers)
{
    save_expect("d", 0, "1.0.0");
    save_expect("d", 1, "1.0.1");
    save_expect("d", 2, "1.0.2");
    save_expect("e", 0, "1.0.0");
    ck_assert_int_eq(server_stop(&S, 30), 0);
    /* d deleted as the store did before heads outlived their resources
     * (schema version 0): versions and head gone, tombstones left */
    on_database("BEGIN;"
                "INSERT OR REPLACE INTO tombstones(resource_type, resource_id, vkey, removed_at,"
                " removed_by) SELECT resource_type, resource_id, vkey, 1000, 'request'"
                " FROM versions WHERE resource_type = 'dictionary' AND resource_id = 'd';"
                "INSERT INTO tombstones VALUES('dictionary', 'd', 0, 1000, 'request');"
                "DELETE FROM versions WHERE resource_type = 'dictionary' AND resource_id = 'd';"
                "DELETE FROM resources WHERE resource_type = 'dictionary' AND resource_id = 'd';"
                "PRAGMA user_version = 0;"
                "COMMIT;");
    ck_assert_int_eq(server_restart(&S, NULL), 0);
    ck_assert_int_eq(call("GET", "/dictionary/d", NULL, NULL), 410);
    ck_assert_int_eq(call("DELETE", "/dictionary/d", NULL, NULL), 410);
    ck_assert_int_eq(listed("d"), 0);
    expect_latest("e", "1.0.0", 0);
    save_expect("d", 3, "1.0.3");
    ck_assert_int_eq(get_version("d", "1.0.0"), 410);
    ck_assert_int_eq(get_version("d", "1.0.2"), 410);
    expect_latest("d", "1.0.3", 3);
    ck_assert_int_eq(listed("d"), 1);
    save_expect("e", 1, "1.0.1");
    /* a database from a newer build is refused, not misread */
    ck_assert_int_eq(server_stop(&S, 30), 0);
    on_database("PRAGMA user_version = 99;");
    ck_assert_int_ne(server_restart(&S, NULL), 0);
    on_database("PRAGMA user_version = 1;");
    ck_assert_int_eq(server_restart(&S, NULL), 0);
    expect_latest("d", "1.0.3", 3);
}
END_TEST

static Suite *numbering_suite(void)
{
    Suite *s = suite_create("numbering");
    TCase *t = tcase_create("numbering");
    tcase_set_timeout(t, 300);
    tcase_add_checked_fixture(t, start, stop);
    tcase_add_test(t, numbering_continues_after_the_resource_is_deleted);
    tcase_add_test(t, every_version_deleted_one_by_one);
    tcase_add_test(t, batches_number_past_the_old_max);
    /* it rewrites the SQLite file as an older schema left it: only where
     * the servers run on the embedded store */
    const char *store = getenv("STRATA_TEST_STORE");
    if (store == NULL || store[0] == '\0')
        tcase_add_test(t, a_database_from_before_keeps_its_numbers);
    else
        printf("SKIP: numbering/store/a_database_from_before_keeps_its_numbers: "
               "it rewrites the SQLite file, and the store is %.10s...\n",
               store);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(numbering_suite());
}
