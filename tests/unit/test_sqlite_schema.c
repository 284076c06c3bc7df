/* The SQLite store's layout (sqlite_schema.c): a file of layout 2 is
 * brought up to date when opened, its rows intact, and ends with exactly
 * the indexes a new file has: none a save would write for nothing. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/common/semver.h"
#include "../../src/store/store_sqlite.h"
#include "../support/harness.h"

static char dir[64];
static char path[128];

static void setup(void)
{
    test_tmpdir("strata-schema", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/strata.db", dir);
}

static void teardown(void)
{
    test_rmtree(dir);
}

/* The indexes of resources and versions, by name, comma-separated; and
 * the file's layout version. */
static int file_layout(const char *file, char *names, size_t cap)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(file, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT name FROM sqlite_master WHERE type = 'index'"
                                        " AND tbl_name IN ('resources', 'versions') ORDER BY name",
                                        -1, &st, NULL),
                     SQLITE_OK);
    names[0] = '\0';
    while (sqlite3_step(st) == SQLITE_ROW) {
        size_t n = strlen(names);
        snprintf(names + n, cap - n, "%s%s", n ? "," : "",
                 (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
    return version;
}

/* resources and versions as layout 2 had them, with one resource of two
 * versions (the other tables are made by the store when it opens) */
static const char LAYOUT_2[] =
    "CREATE TABLE resources("
    "  resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, namespace TEXT NOT NULL,"
    "  latest_vkey INTEGER, max_vkey INTEGER NOT NULL,"
    "  stale INTEGER NOT NULL DEFAULT 0, stale_reason TEXT, updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY(resource_type, resource_id)) WITHOUT ROWID;"
    "CREATE INDEX resources_ns_type ON resources(namespace, resource_type);"
    "CREATE TABLE versions("
    "  resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, vkey INTEGER NOT NULL,"
    "  version TEXT NOT NULL, namespace TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  data_hash TEXT NOT NULL, blob_key TEXT, is_latest INTEGER NOT NULL,"
    "  supersedes INTEGER, superseded_by INTEGER, doc TEXT NOT NULL, content BLOB,"
    "  access_count INTEGER NOT NULL DEFAULT 0, last_accessed INTEGER,"
    "  PRIMARY KEY(resource_type, resource_id, vkey),"
    "  UNIQUE(resource_type, resource_id, version));"
    "CREATE INDEX versions_ns_type ON versions(namespace, resource_type);"
    "CREATE INDEX versions_created ON versions(created_at DESC);"
    "CREATE INDEX versions_hash ON versions(data_hash);"
    "CREATE INDEX versions_blob ON versions(blob_key) WHERE blob_key IS NOT NULL;";

START_TEST(a_layout_2_file_keeps_its_rows_and_loses_the_indexes_no_query_uses)
{
    uint64_t v1 = semver_next(0, BUMP_PATCH), v2 = semver_next(v1, BUMP_PATCH);
    char s1[SEMVER_STR_MAX], s2[SEMVER_STR_MAX], sql[4096];
    semver_format(v1, s1);
    semver_format(v2, s2);
    snprintf(sql, sizeof sql,
             "BEGIN;%s"
             "INSERT INTO resources VALUES('trie', 'a', 'ns', %llu, %llu, 0, NULL, 1000);"
             "INSERT INTO versions VALUES('trie', 'a', %llu, '%s', 'ns', 1000, 'h1', NULL, 0,"
             "  NULL, NULL, '{\"n\":1}', X'616263', 0, NULL);"
             "INSERT INTO versions VALUES('trie', 'a', %llu, '%s', 'ns', 2000, 'h2', 'k2', 0,"
             "  NULL, NULL, '{\"n\":2}', NULL, 0, NULL);"
             "PRAGMA user_version = 2; COMMIT;",
             LAYOUT_2, (unsigned long long)v2, (unsigned long long)v2, (unsigned long long)v1, s1,
             (unsigned long long)v2, s2);
    test_sqlite_exec(path, sql);
    char before[512];
    ck_assert_int_eq(file_layout(path, before, sizeof before), 2);
    ck_assert_ptr_nonnull(strstr(before, "versions_hash"));

    strata_error err;
    store *s = store_sqlite_open(path, &err);
    ck_assert_msg(s != NULL, "%s", err.detail);
    store_head h;
    ck_assert_int_eq(s->ops->get_head(s, NULL, "trie", "a", &h, &err), 0);
    ck_assert_uint_eq(h.latest_vkey, v2);
    ck_assert_uint_eq(h.max_vkey, v2);
    ck_assert_str_eq(h.latest_hash, "h2");
    store_version v;
    ck_assert_int_eq(s->ops->get_version(s, NULL, "trie", "a", v1, &v, &err), 0);
    ck_assert_str_eq(v.data_hash, "h1");
    ck_assert_str_eq(v.ns, "ns");
    ck_assert_int_eq(json_integer_value(json_object_get(v.doc, "n")), 1);
    ck_assert_uint_eq(v.content_len, 3);
    ck_assert_mem_eq(v.content, "abc", 3);
    store_version_clear(&v);
    ck_assert_int_eq(s->ops->get_version(s, NULL, "trie", "a", v2, &v, &err), 0);
    ck_assert_str_eq(v.blob_key, "k2");
    store_version_clear(&v);

    /* and it takes a new version on top */
    uint64_t v3 = semver_next(v2, BUMP_PATCH);
    memset(&v, 0, sizeof v);
    snprintf(v.type, sizeof v.type, "trie");
    snprintf(v.id, sizeof v.id, "a");
    snprintf(v.ns, sizeof v.ns, "ns");
    snprintf(v.data_hash, sizeof v.data_hash, "h3");
    v.vkey = v3;
    v.doc = json_pack("{s:i}", "n", 3);
    ck_assert_int_eq(s->ops->put_version(s, NULL, &v, v2, v2, NULL, 0, 0, &err), 0);
    store_version_clear(&v);
    ck_assert_int_eq(s->ops->get_head(s, NULL, "trie", "a", &h, &err), 0);
    ck_assert_uint_eq(h.latest_vkey, v3);
    store_close(s);

    char after[512], fresh[512], fresh_path[160];
    ck_assert_int_eq(file_layout(path, after, sizeof after), 3);
    snprintf(fresh_path, sizeof fresh_path, "%s/fresh.db", dir);
    s = store_sqlite_open(fresh_path, &err);
    ck_assert_msg(s != NULL, "%s", err.detail);
    store_close(s);
    ck_assert_int_eq(file_layout(fresh_path, fresh, sizeof fresh), 3);
    /* the primary key's own index and the blob keys', nothing else */
    ck_assert_str_eq(after, "sqlite_autoindex_versions_1,versions_blob");
    ck_assert_str_eq(fresh, after);

    /* opening it again changes nothing */
    s = store_sqlite_open(path, &err);
    ck_assert_msg(s != NULL, "%s", err.detail);
    store_close(s);
    ck_assert_int_eq(file_layout(path, after, sizeof after), 3);
    ck_assert_str_eq(after, fresh);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sqlite_schema");
    TCase *t = tcase_create("layout");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, a_layout_2_file_keeps_its_rows_and_loses_the_indexes_no_query_uses);
    suite_add_tcase(s, t);
    return run_suite(s);
}
