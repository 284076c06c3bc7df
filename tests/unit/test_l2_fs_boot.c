/* The disk L2's boot rule (l2_fs.c): an index last opened under another
 * boot of the machine is emptied by its next opener, since a crash of the
 * machine may have lost its last commits (open fences among them). */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../src/cache/l2.h"

static char dir[64];

static l2_cache *open_l2(void)
{
    l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
    strata_error err;
    char url[128];
    snprintf(url, sizeof url, "file:%s", dir);
    l2_cache *c = l2_open(url, &cfg, &err);
    ck_assert_msg(c != NULL, "open: %s", err.detail);
    return c;
}

static void put(l2_cache *c, const char *key, const char *val)
{
    strata_error err;
    l2_token t;
    ck_assert_int_eq(c->ops->token(c, "ns", key, &t, &err), 0);
    l2_meta m = {.content_type = "text/plain"};
    uint64_t wid;
    ck_assert_int_eq(c->ops->set(c, "ns", key, val, strlen(val), &m, 0, &t, NULL, &wid, &err), 0);
}

static bool has(l2_cache *c, const char *key)
{
    strata_error err;
    strata_buf out;
    sbuf_init(&out, 0);
    l2_meta m;
    int rc = c->ops->get(c, "ns", key, 1 << 20, &out, &m, &err);
    sbuf_free(&out);
    return rc == 0;
}

/* what the index says it was last opened under */
static void set_boot(const char *v)
{
    char path[128];
    snprintf(path, sizeof path, "%s/index.db", dir);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    char *sql = sqlite3_mprintf("UPDATE meta SET v = %Q WHERE k = 'boot'", v);
    ck_assert_int_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_changes(db), 1);
    sqlite3_free(sql);
    sqlite3_close(db);
}

static int count_files(void)
{
    char cmd[160];
    snprintf(cmd, sizeof cmd, "find '%s' -type f ! -name 'index.db*' ! -name generations | wc -l",
             dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    return n;
}

START_TEST(another_boot_empties_the_index_and_its_files)
{
    snprintf(dir, sizeof dir, "/tmp/strata-l2boot-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    l2_cache *c = open_l2();
    put(c, "a", "value a");
    put(c, "b", "value b");
    strata_error err;
    l2_fence_id f;
    ck_assert_int_eq(c->ops->fence_open(c, "ns", "c", 60000, &f, &err), 0);
    l2_close(c);
    ck_assert_int_eq(count_files(), 2);

    /* the same boot: everything stays, the fence still refuses fills */
    c = open_l2();
    ck_assert(has(c, "a"));
    ck_assert(has(c, "b"));
    l2_token t;
    ck_assert_int_eq(c->ops->token(c, "ns", "c", &t, &err), 0);
    l2_meta m = {.content_type = "text/plain"};
    uint64_t wid;
    ck_assert_int_eq(c->ops->set(c, "ns", "c", "x", 1, &m, 0, &t, NULL, &wid, &err), -1);
    l2_close(c);

    /* as if the machine had restarted since */
    set_boot("00000000-0000-0000-0000-000000000000");
    c = open_l2();
    ck_assert(!has(c, "a"));
    ck_assert(!has(c, "b"));
    ck_assert_int_eq(count_files(), 0);
    l2_stats st;
    ck_assert_int_eq(c->ops->stats(c, "ns", &st, &err), 0);
    ck_assert_uint_eq(st.bytes, 0);
    /* the fence went with the values it guarded: fills work */
    put(c, "c", "fresh");
    ck_assert(has(c, "c"));
    l2_close(c);

    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(void)
{
    Suite *su = suite_create("l2_fs_boot");
    TCase *t = tcase_create("boot");
    tcase_add_test(t, another_boot_empties_the_index_and_its_files);
    suite_add_tcase(su, t);
    SRunner *sr = srunner_create(su);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
