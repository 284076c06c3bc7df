/* The collector and an in-flight save, interleaved on purpose: a blob the
 * collector marked as unreferenced is shared by a save before the
 * collector gets to it; the re-check under the exclusive lock keeps it.
 * Real SQLite store, real blob files, the real service. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/service/gc.h"
#include "../../src/service/versions.h"
#include "../support/harness.h"

static char dir[] = "/tmp/strata-gc-XXXXXX";
static store *st;
static blob_store *blobs;
static versions_svc *vs;

static void setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char url[300];
    strata_error err;
    snprintf(url, sizeof url, "sqlite:%s/strata.db", dir);
    st = store_open(url, &err);
    snprintf(url, sizeof url, "file:%s/blobs", dir);
    blobs = blobs_open(url, &err);
    versions_config cfg = {.inline_threshold = 0, .max_content = 1 << 20, .access_flush_ms = 1000};
    vs = versions_new(st, blobs, NULL, &cfg, &err);
    ck_assert_ptr_nonnull(vs);
}

static void teardown(void)
{
    versions_free(vs);
    blobs_close(blobs);
    store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static int save(const char *content, store_version *out)
{
    json_t *env = json_pack("{s:s, s:s, s:s}", "content", content, "word", "w", "provider", "p");
    save_request rq = {.type = "dictionary", .id = "w", .envelope = env};
    bool created;
    strata_error err;
    int rc = versions_save(vs, &rq, out, &created, &err);
    json_decref(env);
    return rc;
}

static json_t *gc_report;

static void *collect(void *arg)
{
    (void)arg;
    strata_error err;
    ck_assert_int_eq(gc_run(vs, 0, false, &gc_report, &err), 0);
    return NULL;
}

START_TEST(a_blob_shared_after_the_mark_is_kept)
{
    store_version v;
    strata_error err;
    ck_assert_int_eq(save("alpha", &v), 0);
    store_version_clear(&v);
    ck_assert_int_eq(save("beta", &v), 0);
    store_version_clear(&v);
    /* alpha's blob loses its only reference */
    ck_assert_int_eq(versions_delete(vs, "dictionary", "w", "1.0.0", NULL, "request", &err), 0);

    versions_blob_lock(vs, false); /* as a save that is placing its content */
    pthread_t gc;
    pthread_create(&gc, NULL, collect, NULL);
    usleep(300 * 1000); /* the collector marked alpha's blob and waits for the lock */
    ck_assert_int_eq(save("alpha", &v), 0); /* shares that blob and commits */
    versions_blob_unlock(vs);
    pthread_join(gc, NULL);

    /* the collector saw the blob as a candidate, and kept it on the re-check */
    ck_assert_int_eq(json_integer_value(json_object_get(gc_report, "blobs_kept_on_recheck")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(gc_report, "blobs_removed")), 0);
    json_decref(gc_report);
    content_out c;
    ck_assert_msg(versions_content(vs, &v, 0, &c, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(c.len, strlen("\"alpha\""));
    ck_assert_int_eq(memcmp(c.data, "\"alpha\"", c.len), 0);
    content_out_free(&c);
    store_version_clear(&v);
    /* and once nothing references it, it goes */
    ck_assert_int_eq(versions_delete(vs, "dictionary", "w", "1.0.2", NULL, "request", &err), 0);
    ck_assert_int_eq(gc_run(vs, 0, false, &gc_report, &err), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(gc_report, "blobs_removed")), 1);
    json_decref(gc_report);
}
END_TEST

START_TEST(nothing_referenced_at_all)
{
    /* the only version goes: no blob is referenced, one is on disk */
    store_version v;
    strata_error err;
    ck_assert_int_eq(save("lonely", &v), 0);
    store_version_clear(&v);
    ck_assert_int_eq(versions_delete(vs, "dictionary", "w", "1.0.0", NULL, "request", &err), 0);
    ck_assert_int_eq(gc_run(vs, 0, false, &gc_report, &err), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(gc_report, "blobs_referenced")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(gc_report, "blobs_removed")), 1);
    json_decref(gc_report);
}
END_TEST

static Suite *gc_suite(void)
{
    Suite *s = suite_create("gc_protocol");
    TCase *t = tcase_create("gc");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, a_blob_shared_after_the_mark_is_kept);
    tcase_add_test(t, nothing_referenced_at_all);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(gc_suite());
}
