/* Retention, blob collection, batches and tombstones over real HTTP. */
#include <check.h>
#include <dirent.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../../src/codec/sha256.h"
#include "../support/harness.h"

static test_server S;
static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};

static void start(void)
{
    /* every content in a blob, and blobs collectable three seconds after
     * they were last written or shared */
    const char *args[] = {"--inline-threshold", "0", "--gc-grace", "3", NULL};
    ck_assert_int_eq(server_start(&S, args), 0);
}

static void start_no_grace(void)
{
    const char *args[] = {"--inline-threshold", "0", "--gc-grace", "0", NULL};
    ck_assert_int_eq(server_start(&S, args), 0);
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

static long call(http_client *c, const char *method, const char *path, const char *json,
                 json_t **out)
{
    http_resp r;
    int rc =
        c ? http_client_do(c, &S, method, path, json ? JSON_CT : NULL, json,
                           json ? strlen(json) : 0, &r)
          : http_do(&S, method, path, json ? JSON_CT : NULL, json, json ? strlen(json) : 0, &r);
    ck_assert_int_eq(rc, 0);
    long status = r.status;
    if (out) {
        *out = json_loadb(r.body, r.body_len, 0, NULL);
        ck_assert_msg(*out != NULL, "not JSON (%ld): %.300s", status, r.body);
    }
    http_resp_free(&r);
    return status;
}

static int blob_files(void)
{
    int n = server_blob_count(&S);
    ck_assert_int_ge(n, 0);
    return n;
}

/* Sleeps past --gc-grace 3 for blobs written just before. S3 gives
 * Last-Modified in whole seconds, which the store rounds up (its grace errs
 * long, never short): one second more there. */
static void past_grace(void)
{
    usleep((strncmp(S.blobs_url, "s3://", 5) == 0 ? 4200 : 3200) * 1000);
}

static void save_text(const char *id, int n)
{
    char body[256], path[128];
    snprintf(body, sizeof body,
             "{\"content\": \"definition number %d\", \"word\": \"%s\", \"provider\": \"p\"}", n,
             id);
    snprintf(path, sizeof path, "/dictionary/%s/versions", id);
    ck_assert_int_eq(call(NULL, "POST", path, body, NULL), 201);
}

START_TEST(cleanup_keeps_five_and_collection_frees_the_rest)
{
    int before = blob_files();
    for (int i = 0; i < 19; i++)
        save_text("pear", i);
    save_text("pear", 2); /* 1.0.19 shares the blob of 1.0.2, which retention removes */
    ck_assert_int_eq(blob_files() - before, 19);
    json_t *report;
    ck_assert_int_eq(call(NULL, "POST", "/dictionary/pear/cleanup", NULL, &report), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(report, "removed")), 15);
    json_decref(report);
    json_t *list;
    ck_assert_int_eq(call(NULL, "GET", "/dictionary/pear/versions", NULL, &list), 200);
    json_t *items = json_object_get(list, "items");
    ck_assert_uint_eq(json_array_size(items), 5);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_array_get(items, 4), "version_info"), "version")),
                     "1.0.15");
    json_decref(list);
    /* removed versions are gone, saying why */
    json_t *gone;
    ck_assert_int_eq(call(NULL, "GET", "/dictionary/pear/versions/1.0.2", NULL, &gone), 410);
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(gone, "detail")), "retention (keep newest 5)"));
    json_decref(gone);
    /* blobs are collected only after the grace period */
    json_t *gc;
    ck_assert_int_eq(call(NULL, "POST", "/admin/gc", NULL, &gc), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(gc, "blobs_removed")), 0);
    json_decref(gc);
    past_grace();
    ck_assert_int_eq(call(NULL, "POST", "/admin/gc", NULL, &gc), 200);
    ck_assert_int_eq(json_integer_value(json_object_get(gc, "blobs_removed")), 14);
    ck_assert_int_gt(json_integer_value(json_object_get(gc, "bytes_freed")), 0);
    json_decref(gc);
    ck_assert_int_eq(blob_files() - before, 5);
    /* the shared blob survived: 1.0.19's content is intact */
    http_resp r;
    ck_assert_int_eq(
        http_do(&S, "GET", "/dictionary/pear/versions/1.0.19/content", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "\"definition number 2\"");
    http_resp_free(&r);
}
END_TEST

START_TEST(a_pinned_version_is_kept)
{
    for (int i = 0; i < 4; i++)
        save_text("fig", i);
    /* a trie whose latest version depends on fig 1.0.0 exactly */
    ck_assert_int_eq(call(NULL, "POST", "/trie/figs/versions",
                          "{\"content\": 1, \"corpus_ids\": [\"c\"], \"node_count\": 1, "
                          "\"max_depth\": 1, \"dependencies\":"
                          " [{\"type\": \"dictionary\", \"id\": \"fig\", \"version\": \"1.0.0\"}]}",
                          NULL),
                     201);
    json_t *report;
    ck_assert_int_eq(call(NULL, "POST", "/dictionary/fig/cleanup?keep=1", NULL, &report), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(report, "removed")), 2); /* 1.0.1, 1.0.2 */
    json_t *prot = json_array_get(json_object_get(report, "protected"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(prot, "version")), "1.0.0");
    ck_assert_str_eq(json_string_value(json_object_get(prot, "depended_on_by")), "trie/figs");
    json_decref(report);
    ck_assert_int_eq(call(NULL, "GET", "/dictionary/fig/versions/1.0.0", NULL, NULL), 200);
    ck_assert_int_eq(call(NULL, "GET", "/dictionary/fig/versions/1.0.3", NULL, NULL), 200);
    ck_assert_int_eq(call(NULL, "GET", "/dictionary/fig/versions/1.0.1", NULL, NULL), 410);
    ck_assert_int_eq(call(NULL, "POST", "/dictionary/fig/cleanup?keep=0", NULL, NULL), 400);
}
END_TEST

/* ---- dry runs ---------------------------------------------------------- */

static char *snapshot(void)
{
    /* every record (without access counts, which reads move) and every
     * blob file or object with its size and time */
    json_t *all = json_array();
    const char *types[] = {"dictionary", "trie"};
    for (int t = 0; t < 2; t++) {
        char path[128];
        snprintf(path, sizeof path, "/%s?limit=1000", types[t]);
        json_t *list;
        ck_assert_int_eq(call(NULL, "GET", path, NULL, &list), 200);
        size_t i;
        json_t *rec;
        json_array_foreach(json_object_get(list, "items"), i, rec)
        {
            char vp[300];
            snprintf(vp, sizeof vp, "/%s/%s/versions?limit=1000", types[t],
                     json_string_value(json_object_get(rec, "resource_id")));
            json_t *vl;
            ck_assert_int_eq(call(NULL, "GET", vp, NULL, &vl), 200);
            size_t k;
            json_t *v;
            json_array_foreach(json_object_get(vl, "items"), k, v)
            {
                json_object_del(v, "access_count");
                json_object_del(v, "last_accessed");
                json_array_append(all, v);
            }
            json_decref(vl);
        }
        json_decref(list);
    }
    char *records = json_dumps(all, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(all);
    strata_buf out;
    sbuf_init(&out, 0);
    ck_assert_int_eq(sbuf_append(&out, records, strlen(records), NULL), 0);
    free(records);
    ck_assert_int_eq(server_blob_listing(&S, &out), 0);
    return (char *)out.data; /* NUL-terminated by the listing */
}

START_TEST(dry_runs_change_nothing)
{
    for (int i = 0; i < 8; i++)
        save_text("plum", i);
    ck_assert_int_eq(call(NULL, "DELETE", "/dictionary/plum/versions/1.0.7", NULL, NULL), 204);
    past_grace(); /* the orphaned blob is now past its grace period */
    char *before = snapshot();
    json_t *r;
    ck_assert_int_eq(call(NULL, "POST", "/dictionary/plum/cleanup?dry_run=true", NULL, &r), 200);
    ck_assert_uint_gt(json_array_size(json_object_get(r, "removed")), 0); /* it would remove */
    json_decref(r);
    ck_assert_int_eq(call(NULL, "POST", "/admin/cleanup?dry_run", NULL, &r), 200);
    ck_assert_int_gt(json_integer_value(json_object_get(r, "removed_total")), 0);
    json_decref(r);
    ck_assert_int_eq(call(NULL, "POST", "/admin/gc?dry_run=1", NULL, &r), 200);
    ck_assert_int_gt(json_integer_value(json_object_get(r, "blobs_removed")), 0);
    json_decref(r);
    char *after = snapshot();
    size_t at = 0;
    while (before[at] && before[at] == after[at])
        at++;
    ck_assert_msg(strcmp(before, after) == 0, "state changed at byte %zu: %.120s // %.120s", at,
                  before + (at > 60 ? at - 60 : 0), after + (at > 60 ? at - 60 : 0));
    free(before);
    free(after);
}
END_TEST

/* ---- batches ----------------------------------------------------------- */

static void batch_body(char *out, size_t cap, int bad_index, const char *ns)
{
    size_t n = (size_t)snprintf(out, cap, "{\"operations\": [");
    for (int i = 0; i < 10; i++)
        n += (size_t)snprintf(out + n, cap - n,
                              "%s{\"op\": \"save\", \"type\": \"dictionary\", \"id\": \"b%d\","
                              " \"namespace\": \"%s\", \"content\": %d, \"word\": \"w\"%s}",
                              i ? ", " : "", i, ns, i,
                              i == bad_index ? "" : ", \"provider\": \"p\"");
    snprintf(out + n, cap - n, "]}");
}

static atomic_int stop_reader;
static atomic_int torn;
static atomic_int polls;

static void *batch_reader(void *arg)
{
    (void)arg;
    http_client *c = http_client_new();
    while (!atomic_load(&stop_reader)) {
        json_t *list;
        long st = call(c, "GET", "/dictionary?namespace=batch&limit=1000", NULL, &list);
        size_t n = json_array_size(json_object_get(list, "items"));
        if (st != 200 || (n != 0 && n != 10)) {
            atomic_fetch_add(&torn, 1);
            fprintf(stderr, "batch reader: %ld with %zu of the 10 items\n", st, n);
        }
        atomic_fetch_add(&polls, 1);
        json_decref(list);
    }
    http_client_free(c);
    return NULL;
}

START_TEST(a_batch_lands_whole_or_not_at_all)
{
    char body[8192];
    batch_body(body, sizeof body, 4, "batch");
    json_t *err;
    ck_assert_int_eq(call(NULL, "POST", "/batch", body, &err), 400);
    ck_assert_ptr_nonnull(
        strstr(json_string_value(json_object_get(err, "detail")), "operations[4]"));
    json_decref(err);
    for (int i = 0; i < 10; i++) {
        char path[64];
        snprintf(path, sizeof path, "/dictionary/b%d", i);
        ck_assert_int_eq(call(NULL, "GET", path, NULL, NULL), 404);
    }
    atomic_store(&stop_reader, 0);
    atomic_store(&torn, 0);
    pthread_t reader;
    pthread_create(&reader, NULL, batch_reader, NULL);
    usleep(100 * 1000);
    batch_body(body, sizeof body, -1, "batch");
    json_t *res;
    ck_assert_int_eq(call(NULL, "POST", "/batch", body, &res), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(res, "results")), 10);
    json_decref(res);
    usleep(100 * 1000);
    atomic_store(&stop_reader, 1);
    pthread_join(reader, NULL);
    ck_assert_int_gt(atomic_load(&polls), 2);
    ck_assert_int_eq(atomic_load(&torn), 0);
    json_t *list;
    ck_assert_int_eq(call(NULL, "GET", "/dictionary?namespace=batch", NULL, &list), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(list, "items")), 10);
    json_decref(list);
    /* deletes take part too; a failing one undoes the saves before it */
    ck_assert_int_eq(call(NULL, "POST", "/batch",
                          "{\"operations\": [{\"op\": \"save\", \"type\": \"dictionary\", \"id\":"
                          " \"b0\", \"content\": 99, \"word\": \"w\", \"provider\": \"p\"},"
                          " {\"op\": \"delete\", \"type\": \"dictionary\", \"id\": \"b1\","
                          " \"version\": \"9.9.9\"}]}",
                          NULL),
                     404);
    ck_assert_int_eq(call(NULL, "GET", "/dictionary/b0/versions/1.0.1", NULL, NULL), 404);
    ck_assert_int_eq(call(NULL, "POST", "/batch", "{\"operations\": []}", NULL), 400);
}
END_TEST

/* ---- collection racing writers ------------------------------------------ */

#define RACERS   8
#define MAX_ACKS 200000

typedef struct ack {
    char id[16];
    char version[24];
    char hash[65];
    bool deleted;
} ack;

static ack acks[MAX_ACKS];
static atomic_int nacks;
static atomic_int stop_race;
static atomic_int race_errors;

static void *racer(void *arg)
{
    long w = (long)arg;
    http_client *c = http_client_new();
    char id[16], path[128], body[512];
    snprintf(id, sizeof id, "r%ld", w);
    snprintf(path, sizeof path, "/dictionary/%s/versions", id);
    unsigned seed = (unsigned)w * 7919u + 1u;
    for (int i = 0; !atomic_load(&stop_race); i++) {
        seed = seed * 1103515245u + 12345u;
        /* a small pool of contents, so that saves keep reusing blobs that
         * deletes just orphaned: the collector's hardest case */
        snprintf(body, sizeof body,
                 "{\"content\": \"racer %ld content %u\", \"word\": \"w\", \"provider\": \"p\"}", w,
                 (seed >> 8) % 8);
        json_t *rec = NULL;
        long st = call(c, "POST", path, body, &rec);
        if (st == 201) {
            int k = atomic_fetch_add(&nacks, 1);
            if (k < MAX_ACKS) {
                json_t *vi = json_object_get(rec, "version_info");
                snprintf(acks[k].id, sizeof acks[k].id, "%s", id);
                snprintf(acks[k].version, sizeof acks[k].version, "%s",
                         json_string_value(json_object_get(vi, "version")));
                snprintf(acks[k].hash, sizeof acks[k].hash, "%s",
                         json_string_value(json_object_get(vi, "data_hash")));
                /* now and then, delete it again: its blob may become an orphan */
                if ((seed >> 4) % 2 == 0) {
                    char dp[160];
                    snprintf(dp, sizeof dp, "/dictionary/%s/versions/%s", id, acks[k].version);
                    if (call(c, "DELETE", dp, NULL, NULL) == 204)
                        acks[k].deleted = true;
                }
            }
        } else if (st != 200) {
            atomic_fetch_add(&race_errors, 1);
        }
        json_decref(rec);
    }
    http_client_free(c);
    return NULL;
}

START_TEST(collection_racing_writers_loses_nothing)
{
    const char *env = getenv("STRATA_RACE_SECONDS");
    int seconds = env ? atoi(env) : 30;
    atomic_store(&nacks, 0);
    atomic_store(&stop_race, 0);
    pthread_t th[RACERS];
    for (long i = 0; i < RACERS; i++)
        pthread_create(&th[i], NULL, racer, (void *)i);
    /* collect as fast as the server allows, for the duration */
    time_t end = time(NULL) + seconds;
    int collections = 0;
    long long removed = 0;
    http_client *c = http_client_new();
    while (time(NULL) < end) {
        json_t *gc;
        ck_assert_int_eq(call(c, "POST", "/admin/gc", NULL, &gc), 200);
        removed += json_integer_value(json_object_get(gc, "blobs_removed"));
        json_decref(gc);
        collections++;
    }
    http_client_free(c);
    atomic_store(&stop_race, 1);
    for (int i = 0; i < RACERS; i++)
        pthread_join(th[i], NULL);
    fprintf(stderr, "race: %d versions acknowledged, %d collections removed %lld blobs\n",
            atomic_load(&nacks), collections, removed);
    ck_assert_int_eq(atomic_load(&race_errors), 0);
    ck_assert_int_gt(atomic_load(&nacks), 100);
    ck_assert_int_gt(removed, 0); /* the collector really ran against the writers */
    /* every acknowledged version is intact, unless the writer removed it
     * itself (then it answers 410, never wrong bytes) */
    int verified = 0, gone = 0;
    http_client *v = http_client_new();
    for (int k = 0; k < atomic_load(&nacks) && k < MAX_ACKS; k++) {
        char path[160];
        snprintf(path, sizeof path, "/dictionary/%s/versions/%s/content", acks[k].id,
                 acks[k].version);
        http_resp r;
        ck_assert_int_eq(http_client_do(v, &S, "GET", path, NULL, NULL, 0, &r), 0);
        if (r.status == 200) {
            unsigned char d[SHA256_LEN];
            char hex[SHA256_HEX_LEN + 1];
            sha256_oneshot(r.body, r.body_len, d, NULL);
            sha256_to_hex(d, hex);
            ck_assert_msg(strcmp(hex, acks[k].hash) == 0, "%s %s: content changed", acks[k].id,
                          acks[k].version);
            verified++;
        } else {
            ck_assert_msg(acks[k].deleted && r.status == 410, "%s %s: %ld %s", acks[k].id,
                          acks[k].version, r.status, r.body);
            gone++;
        }
        http_resp_free(&r);
    }
    http_client_free(v);
    fprintf(stderr, "race: %d verified, %d removed on purpose\n", verified, gone);
    ck_assert_int_gt(verified, 0);
}
END_TEST

static void start_scheduled(void)
{
    const char *args[] = {
        "--inline-threshold", "0", "--gc-grace", "0", "--maintenance-interval", "1", "--retention",
        "dictionary:keep=2",  NULL};
    ck_assert_int_eq(server_start(&S, args), 0);
}

START_TEST(the_scheduler_applies_retention_and_collects)
{
    int before = blob_files();
    for (int i = 0; i < 6; i++)
        save_text("kiwi", i);
    ck_assert_int_eq(blob_files() - before, 6);
    json_t *list = NULL;
    size_t n = 6;
    for (int tries = 0; tries < 50 && n != 2; tries++) {
        usleep(200 * 1000);
        json_decref(list);
        ck_assert_int_eq(call(NULL, "GET", "/dictionary/kiwi/versions", NULL, &list), 200);
        n = json_array_size(json_object_get(list, "items"));
    }
    json_decref(list);
    ck_assert_uint_eq(n, 2); /* --retention dictionary:keep=2, applied in the background */
    for (int tries = 0; tries < 50 && blob_files() - before != 2; tries++)
        usleep(200 * 1000);
    ck_assert_int_eq(blob_files() - before, 2);
}
END_TEST

static Suite *retention_suite(void)
{
    Suite *s = suite_create("retention");
    TCase *t = tcase_create("retention");
    tcase_set_timeout(t, 900);
    tcase_add_unchecked_fixture(t, start, stop);
    tcase_add_test(t, cleanup_keeps_five_and_collection_frees_the_rest);
    tcase_add_test(t, a_pinned_version_is_kept);
    tcase_add_test(t, dry_runs_change_nothing);
    tcase_add_test(t, a_batch_lands_whole_or_not_at_all);
    suite_add_tcase(s, t);
    /* grace 0: only the blob lock protocol stands between a save that
     * shares or writes a blob and the collector */
    t = tcase_create("race");
    tcase_set_timeout(t, 900);
    tcase_add_unchecked_fixture(t, start_no_grace, stop);
    tcase_add_test(t, collection_racing_writers_loses_nothing);
    suite_add_tcase(s, t);
    t = tcase_create("scheduler");
    tcase_set_timeout(t, 120);
    tcase_add_unchecked_fixture(t, start_scheduled, stop);
    tcase_add_test(t, the_scheduler_applies_retention_and_collects);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(retention_suite());
}
