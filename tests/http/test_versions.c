/* The versions API over real HTTP against the strata binary: dedupe and
 * blob sharing, concurrent writers, compressed bodies passed through,
 * corruption refused, restarts, and the bad-input table. */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/codec/compress.h"
#include "../../src/codec/sha256.h"
#include "../support/harness.h"

static test_server S;
static const char *const START_ARGS[] = {"--max-body", "8M", "--max-decoded-body", "64M", NULL};

static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};

static void start(void)
{
    ck_assert_int_eq(server_start(&S, START_ARGS), 0);
}

static void stop(void)
{
    int code = server_stop(&S, 30);
    server_cleanup(&S);
    if (code != 0) {
        fprintf(stderr, "server exited with %d\n", code);
        exit(1);
    }
}

/* Restarts a server on its data with its L2 emptied. */
static void restart_without_cache(test_server *t)
{
    ck_assert_int_eq(server_stop(t, 30), 0);
    ck_assert_int_eq(server_l2_wipe(t), 0);
    ck_assert_int_eq(server_restart(t, START_ARGS), 0);
}

static json_t *parse(const http_resp *r)
{
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON (status %ld): %.300s", r->status, r->body);
    return j;
}

/* POSTs a JSON envelope; returns the status and (optionally) the record. */
static long post_json(const char *path, const char *body, json_t **record)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, "POST", path, JSON_CT, body, strlen(body), &r), 0);
    long status = r.status;
    if (record)
        *record = parse(&r);
    http_resp_free(&r);
    return status;
}

static const char *version_of(const json_t *rec)
{
    return json_string_value(json_object_get(json_object_get(rec, "version_info"), "version"));
}

static int count_blob_files(void)
{
    int n = server_blob_count(&S);
    ck_assert_int_ge(n, 0);
    return n;
}

static void assert_problem(const http_resp *r, long lo, long hi)
{
    char ct[128] = "";
    http_header(r, "Content-Type", ct, sizeof ct);
    ck_assert_msg(r->status >= lo && r->status <= hi, "status %ld: %.300s", r->status, r->body);
    ck_assert_str_eq(ct, "application/problem+json");
    json_t *j = parse(r);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), r->status);
    json_decref(j);
}

static void assert_alive(void)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/health", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
}

/* ---- deduplication ---------------------------------------------------------- */

START_TEST(same_content_twice_is_one_version)
{
    const char *body = "{\"content\": {\"senses\": [\"a fruit\"]}, \"word\": \"apple\","
                       " \"provider\": \"wiktionary\"}";
    json_t *a, *b;
    ck_assert_int_eq(post_json("/dictionary/apple/versions", body, &a), 201);
    /* the same content with its keys in another order is the same content */
    ck_assert_int_eq(post_json("/dictionary/apple/versions",
                               "{\"provider\": \"wiktionary\", \"word\": \"apple\","
                               " \"content\": {\"senses\":[\"a fruit\"]}}",
                               &b),
                     200);
    ck_assert_str_eq(version_of(a), "1.0.0");
    ck_assert_str_eq(version_of(b), "1.0.0");
    json_decref(a);
    json_decref(b);
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/apple/versions", NULL, NULL, 0, &r), 0);
    json_t *list = parse(&r);
    ck_assert_uint_eq(json_array_size(json_object_get(list, "items")), 1);
    ck_assert(json_is_null(json_object_get(list, "next")));
    json_decref(list);
    http_resp_free(&r);
}
END_TEST

START_TEST(a_b_a_is_three_versions_sharing_one_blob)
{
    /* semantic content always lives in a blob */
    const char *q =
        "/semantic/vecs/"
        "versions?corpus_id=en&model_name=minilm&embedding_dimension=4&corpus_version=1.0.0";
    const char *ct[] = {"Content-Type: application/octet-stream", NULL};
    static char a[5000], b[5000];
    memset(a, 'a', sizeof a);
    memset(b, 'b', sizeof b);
    const char *bodies[] = {a, b, a};
    json_t *recs[3];
    int before = count_blob_files();
    for (int i = 0; i < 3; i++) {
        http_resp r;
        ck_assert_int_eq(http_do(&S, "POST", q, ct, bodies[i], sizeof a, &r), 0);
        ck_assert_int_eq(r.status, 201);
        recs[i] = parse(&r);
        http_resp_free(&r);
    }
    ck_assert_str_eq(version_of(recs[0]), "1.0.0");
    ck_assert_str_eq(version_of(recs[1]), "1.0.1");
    ck_assert_str_eq(version_of(recs[2]), "1.0.2");
    const char *k0 =
        json_string_value(json_object_get(json_object_get(recs[0], "content_location"), "key"));
    const char *k2 =
        json_string_value(json_object_get(json_object_get(recs[2], "content_location"), "key"));
    ck_assert_str_eq(k0, k2);
    ck_assert_int_eq(count_blob_files() - before, 2); /* a and b, once each */
    for (int i = 0; i < 3; i++)
        json_decref(recs[i]);
}
END_TEST

/* ---- concurrent writers -------------------------------------------------------- */

#define WRITERS    8
#define PER_WRITER 200

static void *writer(void *arg)
{
    long w = (long)arg;
    http_client *c = http_client_new();
    for (int i = 0; i < PER_WRITER; i++) {
        char body[200];
        snprintf(body, sizeof body,
                 "{\"content\": {\"writer\": %ld, \"n\": %d}, \"corpus_ids\": [\"en\"], "
                 "\"node_count\": 1, \"max_depth\": 1}",
                 w, i);
        http_resp r;
        if (http_client_do(c, &S, "POST", "/trie/shared/versions", JSON_CT, body, strlen(body),
                           &r) != 0 ||
            r.status != 201) {
            fprintf(stderr, "writer %ld: status %ld %s\n", w, r.status, r.body);
            http_resp_free(&r);
            http_client_free(c);
            return (void *)1;
        }
        http_resp_free(&r);
    }
    http_client_free(c);
    return NULL;
}

START_TEST(concurrent_writers_get_gapless_versions)
{
    pthread_t t[WRITERS];
    for (long w = 0; w < WRITERS; w++)
        pthread_create(&t[w], NULL, writer, (void *)w);
    int failures = 0;
    for (int w = 0; w < WRITERS; w++) {
        void *rv;
        pthread_join(t[w], &rv);
        failures += rv != NULL;
    }
    ck_assert_int_eq(failures, 0);
    /* read the whole chain back, newest first, page by page */
    static char seen[WRITERS * PER_WRITER];
    memset(seen, 0, sizeof seen);
    int total = 0, latest = 0;
    char path[256] = "/trie/shared/versions?limit=1000";
    char prev_supersedes[32] = "";
    for (;;) {
        http_resp r;
        ck_assert_int_eq(http_do(&S, "GET", path, NULL, NULL, 0, &r), 0);
        ck_assert_int_eq(r.status, 200);
        json_t *page = parse(&r);
        http_resp_free(&r);
        size_t i;
        json_t *item;
        json_array_foreach(json_object_get(page, "items"), i, item)
        {
            json_t *vi = json_object_get(item, "version_info");
            const char *v = json_string_value(json_object_get(vi, "version"));
            unsigned a, b, p;
            ck_assert_int_eq(sscanf(v, "%u.%u.%u", &a, &b, &p), 3);
            ck_assert(a == 1 && b == 0 && p < WRITERS * PER_WRITER);
            ck_assert_int_eq(seen[p], 0);
            seen[p] = 1;
            total++;
            latest += json_is_true(json_object_get(vi, "is_latest"));
            /* the chain: this version is what the newer one superseded */
            if (prev_supersedes[0])
                ck_assert_str_eq(prev_supersedes, v);
            const json_t *sup = json_object_get(vi, "supersedes");
            snprintf(prev_supersedes, sizeof prev_supersedes, "%s",
                     json_is_string(sup) ? json_string_value(sup) : "");
            const json_t *by = json_object_get(vi, "superseded_by");
            ck_assert(p == WRITERS * PER_WRITER - 1 ? json_is_null(by) : json_is_string(by));
        }
        const char *next = json_string_value(json_object_get(page, "next"));
        if (next == NULL) {
            json_decref(page);
            break;
        }
        snprintf(path, sizeof path, "/trie/shared/versions?limit=1000&cursor=%s", next);
        json_decref(page);
    }
    ck_assert_int_eq(total, WRITERS * PER_WRITER);
    ck_assert_int_eq(latest, 1);
    ck_assert_str_eq(prev_supersedes, ""); /* 1.0.0 supersedes nothing */
}
END_TEST

/* ---- compressed bodies ------------------------------------------------------------ */

START_TEST(zstd_body_is_stored_and_passed_through)
{
    /* 50 MiB of compressible text, sent as zstd frames */
    size_t raw_len = 50u << 20;
    unsigned char *raw = malloc(raw_len);
    for (size_t i = 0; i < raw_len; i++)
        raw[i] = (unsigned char)("lexicon corpus trie "[(i * 7 + i / 4096) % 20]);
    unsigned char raw_sha[SHA256_LEN];
    sha256_oneshot(raw, raw_len, raw_sha, NULL);
    strata_buf z;
    sbuf_init(&z, 0);
    sencoder *e = sencoder_new(SCODEC_ZSTD, 3, raw_len, NULL);
    ck_assert_int_eq(sencoder_feed(e, raw, raw_len, buf_sink, &z, NULL), 0);
    ck_assert_int_eq(sencoder_finish(e, buf_sink, &z, NULL), 0);
    sencoder_free(e);
    free(raw);
    const char *h[] = {"Content-Type: application/octet-stream", "Content-Encoding: zstd", NULL};
    http_resp r;
    ck_assert_int_eq(
        http_do(&S, "POST",
                "/semantic/big/"
                "versions?corpus_id=en&model_name=m&embedding_dimension=8&corpus_version=1.0.0",
                h, z.data, z.len, &r),
        0);
    ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body);
    json_t *rec = parse(&r);
    json_t *loc = json_object_get(rec, "content_location");
    ck_assert_int_eq(json_integer_value(json_object_get(loc, "size_bytes")), (json_int_t)raw_len);
    ck_assert_str_eq(json_string_value(json_object_get(loc, "compression")), "zstd");
    json_decref(rec);
    http_resp_free(&r);
    /* with Accept-Encoding: zstd, the stored frames, byte for byte */
    const char *az[] = {"Accept-Encoding: zstd", NULL};
    ck_assert_int_eq(http_do(&S, "GET", "/semantic/big/versions/latest/content", az, NULL, 0, &r),
                     0);
    ck_assert_int_eq(r.status, 200);
    char ce[32] = "";
    http_header(&r, "Content-Encoding", ce, sizeof ce);
    ck_assert_str_eq(ce, "zstd");
    ck_assert_uint_eq(r.body_len, z.len);
    ck_assert_int_eq(memcmp(r.body, z.data, z.len), 0);
    http_resp_free(&r);
    /* without it, the decompressed bytes with the original SHA-256 */
    ck_assert_int_eq(http_do(&S, "GET", "/semantic/big/versions/latest/content", NULL, NULL, 0, &r),
                     0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, raw_len);
    unsigned char got[SHA256_LEN];
    sha256_oneshot(r.body, r.body_len, got, NULL);
    ck_assert_int_eq(memcmp(got, raw_sha, SHA256_LEN), 0);
    ck_assert_int_ne(http_header(&r, "Content-Encoding", ce, sizeof ce), 0);
    http_resp_free(&r);
    sbuf_free(&z);
}
END_TEST

/* ---- corruption and restarts -------------------------------------------------------- */

START_TEST(flipped_byte_on_disk_is_never_served)
{
    /* its own server: the test restarts it */
    test_server T;
    ck_assert_int_eq(server_start(&T, START_ARGS), 0);
    static char body[100000];
    for (size_t i = 0; i < sizeof body; i++)
        body[i] = (char)('a' + i % 23);
    const char *ct[] = {"Content-Type: text/plain", NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&T, "POST",
                             "/literature/odyssey/versions?title=Odyssey&authors=A&source=s", ct,
                             body, sizeof body, &r),
                     0);
    ck_assert_int_eq(r.status, 201);
    json_t *rec = parse(&r);
    http_resp_free(&r);
    const char *key =
        json_string_value(json_object_get(json_object_get(rec, "content_location"), "key"));
    ck_assert_ptr_nonnull(key);
    char hash[SHA256_HEX_LEN + 1];
    snprintf(hash, sizeof hash, "%s", key);
    json_decref(rec);
    ck_assert_int_eq(
        http_do(&T, "GET", "/literature/odyssey/versions/latest/content", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, sizeof body);
    http_resp_free(&r);
    /* flip one byte in the middle of the payload (on disk, or on S3) */
    ck_assert_int_eq(server_blob_damage(&T, hash, SERVER_BLOB_MIDDLE, 0), 0);
    /* the cache still holds the verified copy: what it serves is right */
    ck_assert_int_eq(
        http_do(&T, "GET", "/literature/odyssey/versions/latest/content", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(memcmp(r.body, body, sizeof body), 0);
    http_resp_free(&r);
    /* without it (a restart with the L2 emptied: clients cannot reach the
     * store's own cache entries), the blob is read from disk,
     * and the flip is caught */
    restart_without_cache(&T);
    const char *variants[][2] = {{NULL, NULL}, {"Accept-Encoding: zstd, gzip, lz4", NULL}};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(http_do(&T, "GET", "/literature/odyssey/versions/latest/content",
                                 variants[i][0] ? variants[i] : NULL, NULL, 0, &r),
                         0);
        assert_problem(&r, 500, 599);
        http_resp_free(&r);
    }
    ck_assert_int_eq(http_do(&T, "GET", "/health", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    ck_assert_int_eq(server_stop(&T, 30), 0);
    server_cleanup(&T);
}
END_TEST

START_TEST(everything_survives_a_restart)
{
    ck_assert_int_eq(post_json("/corpus/en/versions",
                               "{\"content\": {\"words\": [\"b\", \"a\", \"c\", \"a\"]},"
                               " \"corpus_type\": \"language\", \"language\": \"en\"}",
                               NULL),
                     201);
    ck_assert_int_eq(post_json("/corpus/en/versions",
                               "{\"content\": {\"words\": [\"d\"]}, \"corpus_type\": \"language\","
                               " \"language\": \"en\", \"bump\": \"minor\"}",
                               NULL),
                     201);
    static char big[200000];
    memset(big, 'q', sizeof big);
    const char *ct[] = {"Content-Type: application/octet-stream", NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&S, "POST",
                             "/trie/tr/versions?corpus_ids=en,fr&node_count=20000&max_depth=9", ct,
                             big, sizeof big, &r),
                     0);
    ck_assert_int_eq(r.status, 201);
    http_resp_free(&r);

    ck_assert_int_eq(server_stop(&S, 30), 0);
    ck_assert_int_eq(server_restart(&S, NULL), 0);

    ck_assert_int_eq(http_do(&S, "GET", "/corpus/en", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    json_t *rec = parse(&r);
    ck_assert_str_eq(version_of(rec), "1.1.0");
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "vocabulary_size")), 1);
    json_decref(rec);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/corpus/en/versions/1.0.0", NULL, NULL, 0, &r), 0);
    rec = parse(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "vocabulary_size")), 3);
    json_decref(rec);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/trie/tr/versions/1.0.0/content", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_uint_eq(r.body_len, sizeof big);
    ck_assert_int_eq(memcmp(r.body, big, sizeof big), 0);
    http_resp_free(&r);
}
END_TEST

/* ---- conditional requests, deletes, lists -------------------------------------------- */

/* Fields the design gives no default and the server cannot compute are
 * required: 400 naming the field, nothing saved. */
START_TEST(required_fields_are_enforced)
{
    static const char *const cases[][3] = {
        {"/semantic/rq/versions",
         "{\"content\": 1, \"corpus_id\": \"c\", \"model_name\": \"m\", \"embedding_dimension\": "
         "2}",
         "corpus_version"},
        {"/literature/rq/versions", "{\"content\": 1, \"title\": \"t\", \"source\": \"s\"}",
         "authors"},
        {"/literature/rq/versions", "{\"content\": 1, \"title\": \"t\", \"authors\": [\"a\"]}",
         "source"},
        {"/trie/rq/versions", "{\"content\": 1, \"corpus_ids\": [\"c\"], \"max_depth\": 1}",
         "node_count"},
        {"/trie/rq/versions", "{\"content\": 1, \"corpus_ids\": [\"c\"], \"node_count\": 1}",
         "max_depth"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *out;
        ck_assert_int_eq(post_json(cases[i][0], cases[i][1], &out), 400);
        const char *detail = json_string_value(json_object_get(out, "detail"));
        ck_assert_msg(detail && strstr(detail, cases[i][2]), "%s: %s", cases[i][2], detail);
        json_decref(out);
    }
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/trie/rq", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 404);
    http_resp_free(&r);
}
END_TEST

START_TEST(etags_and_preconditions)
{
    json_t *rec;
    ck_assert_int_eq(
        post_json("/search/s/versions", "{\"content\": {\"q\": 1}, \"corpus_id\": \"en\"}", &rec),
        201);
    const char *hash =
        json_string_value(json_object_get(json_object_get(rec, "version_info"), "data_hash"));
    char etag[100], inm[140], im[140];
    snprintf(etag, sizeof etag, "\"%s\"", hash);
    json_decref(rec);
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/search/s/versions/latest/content", NULL, NULL, 0, &r), 0);
    char got[100];
    ck_assert_int_eq(http_header(&r, "ETag", got, sizeof got), 0);
    ck_assert_str_eq(got, etag);
    http_resp_free(&r);
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *h1[] = {inm, NULL};
    ck_assert_int_eq(http_do(&S, "GET", "/search/s/versions/latest/content", h1, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 304);
    http_resp_free(&r);
    /* records too: the latest and an exact version */
    ck_assert_int_eq(http_do(&S, "GET", "/search/s", h1, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 304);
    ck_assert_int_eq(http_header(&r, "ETag", got, sizeof got), 0);
    ck_assert_str_eq(got, etag);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/search/s/versions/1.0.0", h1, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 304);
    http_resp_free(&r);
    const char *other[] = {"If-None-Match: \"feed\"", NULL};
    ck_assert_int_eq(http_do(&S, "GET", "/search/s", other, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    /* If-Match with a stale ETag: 412, nothing written */
    const char *stale[] = {"Content-Type: application/json", "If-Match: \"0000\"", NULL};
    const char *b2 = "{\"content\": {\"q\": 2}, \"corpus_id\": \"en\"}";
    ck_assert_int_eq(http_do(&S, "POST", "/search/s/versions", stale, b2, strlen(b2), &r), 0);
    assert_problem(&r, 412, 412);
    http_resp_free(&r);
    snprintf(im, sizeof im, "If-Match: %s", etag);
    const char *fresh[] = {"Content-Type: application/json", im, NULL};
    ck_assert_int_eq(http_do(&S, "POST", "/search/s/versions", fresh, b2, strlen(b2), &r), 0);
    ck_assert_int_eq(r.status, 201);
    char loc[200];
    ck_assert_int_eq(http_header(&r, "Location", loc, sizeof loc), 0);
    ck_assert_str_eq(loc, "/search/s/versions/1.0.1");
    http_resp_free(&r);
}
END_TEST

START_TEST(deletes_repair_the_chain)
{
    for (int i = 0; i < 3; i++) {
        char body[120];
        snprintf(body, sizeof body, "{\"content\": %d, \"word\": \"pear\", \"provider\": \"p\"}",
                 i);
        ck_assert_int_eq(post_json("/dictionary/pear/versions", body, NULL), 201);
    }
    http_resp r;
    ck_assert_int_eq(http_do(&S, "DELETE", "/dictionary/pear/versions/1.0.2", NULL, NULL, 0, &r),
                     0);
    ck_assert_int_eq(r.status, 204);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/pear", NULL, NULL, 0, &r), 0);
    json_t *rec = parse(&r);
    ck_assert_str_eq(version_of(rec), "1.0.1");
    ck_assert(json_is_true(json_object_get(json_object_get(rec, "version_info"), "is_latest")));
    ck_assert(json_is_null(json_object_get(json_object_get(rec, "version_info"), "superseded_by")));
    json_decref(rec);
    http_resp_free(&r);
    /* a new save does not reuse 1.0.2 */
    json_t *nv;
    ck_assert_int_eq(post_json("/dictionary/pear/versions",
                               "{\"content\": 9, \"word\": \"pear\", \"provider\": \"p\"}", &nv),
                     201);
    ck_assert_str_eq(version_of(nv), "1.0.3");
    json_decref(nv);
    /* a removed version is gone, and says who removed it */
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/pear/versions/1.0.2", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 410, 410);
    ck_assert_ptr_nonnull(strstr(r.body, "removed by request at"));
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/pear/versions/1.0.9", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 404, 404); /* never existed */
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "DELETE", "/dictionary/pear", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    rec = parse(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "deleted_versions")), 3);
    json_decref(rec);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/pear", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 410, 410);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/pear/versions/1.0.0", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 410, 410);
    http_resp_free(&r);
}
END_TEST

START_TEST(resources_list_filters)
{
    ck_assert_int_eq(post_json("/dictionary/kiwi/versions",
                               "{\"content\": 1, \"word\": \"kiwi\", \"provider\": \"p\","
                               " \"tags\": [\"fruit\"], \"namespace\": \"food\"}",
                               NULL),
                     201);
    ck_assert_int_eq(post_json("/dictionary/oak/versions",
                               "{\"content\": 2, \"word\": \"oak\", \"provider\": \"p\","
                               " \"tags\": [\"tree\"]}",
                               NULL),
                     201);
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary?tag=fruit", NULL, NULL, 0, &r), 0);
    json_t *list = parse(&r);
    json_t *items = json_object_get(list, "items");
    ck_assert_uint_eq(json_array_size(items), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(items, 0), "resource_id")),
                     "kiwi");
    json_decref(list);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary?namespace=food", NULL, NULL, 0, &r), 0);
    list = parse(&r);
    ck_assert_uint_eq(json_array_size(json_object_get(list, "items")), 1);
    json_decref(list);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary?limit=5000", NULL, NULL, 0, &r), 0);
    assert_problem(&r, 400, 400);
    http_resp_free(&r);
}
END_TEST

START_TEST(reads_are_counted_without_a_write_each)
{
    ck_assert_int_eq(post_json("/dictionary/fig/versions",
                               "{\"content\": 1, \"word\": \"fig\", \"provider\": \"p\"}", NULL),
                     201);
    http_resp r;
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(
            http_do(&S, "GET", "/dictionary/fig/versions/1.0.0/content", NULL, NULL, 0, &r), 0);
        http_resp_free(&r);
    }
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/fig", NULL, NULL, 0, &r), 0);
    json_t *rec = parse(&r);
    /* three content reads and this record read */
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "access_count")), 4);
    ck_assert(json_is_string(json_object_get(rec, "last_accessed")));
    json_decref(rec);
    http_resp_free(&r);
}
END_TEST

/* The internal latest-record namespace of dictionary: its L1 hits and
 * its loader calls (reads that went to the store). */
static void hot_stats(long long *l1_hits, long long *loads)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/cache", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    json_t *j = parse(&r);
    json_t *ns = json_object_get(json_object_get(j, "internal"), "dictionary");
    ck_assert_ptr_nonnull(ns);
    *l1_hits = json_integer_value(json_object_get(json_object_get(ns, "l1"), "hits"));
    *loads = json_integer_value(json_object_get(ns, "loader_calls"));
    json_decref(j);
    http_resp_free(&r);
}

/* Counting reads rewrites no record and drops no cached copy: a hot record
 * stays an L1 hit across access-count flushes (every 5 s), and its count
 * still grows with every read. */
START_TEST(hot_record_stays_cached_across_flushes)
{
    ck_assert_int_eq(post_json("/dictionary/hot/versions",
                               "{\"content\": 1, \"word\": \"hot\", \"provider\": \"p\"}", NULL),
                     201);
    http_resp r;
    /* fill the cache (a fill that begins in the same millisecond as the
     * save's fence is refused, so read twice, apart) */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(http_do(&S, "GET", "/dictionary/hot", NULL, NULL, 0, &r), 0);
        http_resp_free(&r);
        usleep(20 * 1000);
    }
    long long hits0, loads0;
    hot_stats(&hits0, &loads0);
    long long count = 0;
    int reads = 0;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 5; i++, reads++) {
            ck_assert_int_eq(http_do(&S, "GET", "/dictionary/hot", NULL, NULL, 0, &r), 0);
            ck_assert_int_eq(r.status, 200);
            json_t *rec = parse(&r);
            long long c = json_integer_value(json_object_get(rec, "access_count"));
            ck_assert_int_gt(c, count); /* each read counted, never going back */
            count = c;
            json_decref(rec);
            http_resp_free(&r);
        }
        sleep(3); /* three rounds span at least one flush */
    }
    long long hits1, loads1;
    hot_stats(&hits1, &loads1);
    ck_assert_int_eq(loads1, loads0);       /* never reloaded from the store */
    ck_assert_int_ge(hits1 - hits0, reads); /* every read an L1 hit */
    ck_assert_int_eq(count, 2 + reads);     /* the two fills' reads and the 15 after them */
}
END_TEST

/* ---- records rendered once ----------------------------------------------------------- */

/* A record's body with its access counts cut out ("access_count":N,
 * "last_accessed":X, the only part that changes from read to read);
 * malloc'd. The counts come after the content, so the last occurrence is
 * the record's own. */
static char *without_counts(const char *body)
{
    const char *at = NULL;
    for (const char *p = strstr(body, "\"access_count\":"); p;
         p = strstr(p + 1, "\"access_count\":"))
        at = p;
    const char *end = at ? strstr(at, ",\"stale\":") : NULL;
    if (end == NULL) {
        ck_abort_msg("no access counts before stale in %.300s", body);
        return NULL;
    }
    size_t n = (size_t)(at - body), rest = strlen(end + 1);
    char *out = malloc(n + rest + 1);
    memcpy(out, body, n);
    memcpy(out + n, end + 1, rest + 1);
    return out;
}

/* GET path: 200, a JSON record with an ETag; returns the body (malloc'd),
 * its access count and (optionally) its ETag. */
static char *get_record_body(const char *path, long long *count, char *etag, size_t cap)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", path, NULL, NULL, 0, &r), 0);
    ck_assert_msg(r.status == 200, "%s: %ld %.300s", path, r.status, r.body);
    char ct[64] = "", got[100] = "";
    http_header(&r, "Content-Type", ct, sizeof ct);
    ck_assert_str_eq(ct, "application/json");
    ck_assert_int_eq(http_header(&r, "ETag", got, sizeof got), 0);
    json_t *j = parse(&r);
    if (count)
        *count = json_integer_value(json_object_get(j, "access_count"));
    /* the ETag is the data hash of the version served */
    char want[100];
    snprintf(want, sizeof want, "\"%s\"",
             json_string_value(json_object_get(json_object_get(j, "version_info"), "data_hash")));
    ck_assert_str_eq(got, want);
    if (etag)
        snprintf(etag, cap, "%s", got);
    json_decref(j);
    char *body = strndup(r.body, r.body_len);
    http_resp_free(&r);
    return body;
}

static json_t *field_of(const char *body, const char *name)
{
    json_t *j = json_loads(body, 0, NULL);
    ck_assert_ptr_nonnull(j);
    json_t *v = json_incref(json_object_get(j, name));
    json_decref(j);
    return v;
}

static const char *info_str(json_t *rec, const char *name)
{
    return json_string_value(json_object_get(json_object_get(rec, "version_info"), name));
}

/* The latest record of /dictionary/rend read through its cached copy,
 * with every other way to the same record: the exact version and
 * "latest" (both rendered apart from the cached copy), and the list of
 * versions (rendered by another code path, record_json), byte for byte
 * but for the counts. Reads the latest twice first, apart, so that its
 * copy is cached (a fill in the save's millisecond is refused), then
 * checks the reads in between came from L1 and the store was not read. */
static char *latest_everywhere(const char *version)
{
    char *first = get_record_body("/dictionary/rend", NULL, NULL, 0);
    free(first);
    usleep(20 * 1000);
    first = get_record_body("/dictionary/rend", NULL, NULL, 0);
    free(first);
    long long hits0, loads0;
    hot_stats(&hits0, &loads0);
    long long c0;
    char etag[100];
    char *latest = get_record_body("/dictionary/rend", &c0, etag, sizeof etag);
    char *bare = without_counts(latest);
    /* every read counted once, the rest of the bytes the same */
    for (int i = 1; i <= 3; i++) {
        long long c;
        char *again = get_record_body("/dictionary/rend", &c, NULL, 0);
        ck_assert_int_eq(c, c0 + i);
        char *b = without_counts(again);
        ck_assert_str_eq(b, bare);
        free(b);
        free(again);
    }
    long long hits1, loads1;
    hot_stats(&hits1, &loads1);
    ck_assert_int_eq(loads1, loads0);   /* served from the cached copy */
    ck_assert_int_ge(hits1 - hits0, 4); /* ... in L1 */
    /* the same bytes, rendered apart */
    char path[64];
    snprintf(path, sizeof path, "/dictionary/rend/versions/%s", version);
    const char *others[] = {path, "/dictionary/rend/versions/latest"};
    for (size_t i = 0; i < 2; i++) {
        char *o = get_record_body(others[i], NULL, NULL, 0);
        char *b = without_counts(o);
        ck_assert_msg(strcmp(b, bare) == 0, "%s:\n%s\nlatest:\n%s", others[i], b, bare);
        free(b);
        free(o);
    }
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/rend/versions?limit=1", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    char *list = strndup(r.body, r.body_len);
    http_resp_free(&r);
    char *list_bare = without_counts(list);
    ck_assert_msg(strstr(list_bare, bare) != NULL, "list:\n%s\nlatest:\n%s", list_bare, bare);
    free(list_bare);
    free(list);
    /* the ETag: 304, and a HEAD answers as the GET */
    char inm[140];
    snprintf(inm, sizeof inm, "If-None-Match: %s", etag);
    const char *h[] = {inm, NULL};
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/rend", h, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 304);
    ck_assert_uint_eq(r.body_len, 0);
    char got[100];
    ck_assert_int_eq(http_header(&r, "ETag", got, sizeof got), 0);
    ck_assert_str_eq(got, etag);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "HEAD", "/dictionary/rend", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(http_header(&r, "ETag", got, sizeof got), 0);
    ck_assert_str_eq(got, etag);
    http_resp_free(&r);
    free(latest);
    return bare;
}

/* A latest record is rendered once per cached copy: whatever changes the
 * record (a new version, a stale mark from a dependency, a deleted
 * version) is served at once, in the same bytes as every other path, and
 * only the access counts change from read to read. */
START_TEST(rendered_latest_follows_every_change)
{
    ck_assert_int_eq(post_json("/dictionary/rbase/versions",
                               "{\"content\": 1, \"word\": \"rbase\", \"provider\": \"p\"}", NULL),
                     201);
    const char *deps = "\"dependencies\": [{\"type\": \"dictionary\", \"id\": \"rbase\"}]";
    char body[512];
    snprintf(body, sizeof body,
             "{\"content\": {\"n\": 1, \"s\": \"caf\\u00e9 / \\\"q\\\"\", \"x\": [1.5, null]},"
             " \"word\": \"rend\", \"provider\": \"p\", \"tags\": [\"t1\"],"
             " \"metadata\": {\"m\": 1}, %s}",
             deps);
    ck_assert_int_eq(post_json("/dictionary/rend/versions", body, NULL), 201);
    char *v1 = latest_everywhere("1.0.0");
    json_t *n = field_of(v1, "content");
    ck_assert_int_eq(json_integer_value(json_object_get(n, "n")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(n, "s")), "caf\xc3\xa9 / \"q\"");
    json_decref(n);

    /* a new version: the cached copy of 1.0.0 is never served again */
    snprintf(body, sizeof body,
             "{\"content\": {\"n\": 2}, \"word\": \"rend\", \"provider\": \"p\", %s}", deps);
    ck_assert_int_eq(post_json("/dictionary/rend/versions", body, NULL), 201);
    char *v2 = latest_everywhere("1.0.1");
    json_t *rec = json_loads(v2, 0, NULL);
    ck_assert_str_eq(info_str(rec, "version"), "1.0.1");
    ck_assert_str_eq(info_str(rec, "supersedes"), "1.0.0");
    ck_assert(json_is_true(json_object_get(json_object_get(rec, "version_info"), "is_latest")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(rec, "content"), "n")), 2);
    ck_assert(json_is_false(json_object_get(rec, "stale")));
    ck_assert_ptr_null(json_object_get(rec, "stale_reason"));
    json_decref(rec);

    /* a new version of the dependency marks it stale (the cascade) */
    ck_assert_int_eq(post_json("/dictionary/rbase/versions",
                               "{\"content\": 2, \"word\": \"rbase\", \"provider\": \"p\"}", NULL),
                     201);
    char *v3 = latest_everywhere("1.0.1");
    rec = json_loads(v3, 0, NULL);
    ck_assert_str_eq(info_str(rec, "version"), "1.0.1");
    ck_assert(json_is_true(json_object_get(rec, "stale")));
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_object_get(json_object_get(rec, "stale_reason"), "cause"), "id")),
                     "rbase");
    json_decref(rec);

    /* the latest version deleted: 1.0.0 is the latest again */
    http_resp r;
    ck_assert_int_eq(http_do(&S, "DELETE", "/dictionary/rend/versions/1.0.1", NULL, NULL, 0, &r),
                     0);
    ck_assert_int_eq(r.status, 204);
    http_resp_free(&r);
    char *v4 = latest_everywhere("1.0.0");
    rec = json_loads(v4, 0, NULL);
    ck_assert_str_eq(info_str(rec, "version"), "1.0.0");
    ck_assert_ptr_null(info_str(rec, "superseded_by"));
    ck_assert(json_is_true(json_object_get(json_object_get(rec, "version_info"), "is_latest")));
    json_decref(rec);
    /* and the ETag of 1.0.1 no longer answers 304 */
    json_t *h2 = json_loads(v2, 0, NULL);
    char inm[140];
    snprintf(inm, sizeof inm, "If-None-Match: \"%s\"", info_str(h2, "data_hash"));
    json_decref(h2);
    const char *h[] = {inm, NULL};
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/rend", h, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);

    /* the resource deleted and created again (a save with no latest to
     * fence): the new record at once, never the cached copy of 1.0.0 */
    ck_assert_int_eq(http_do(&S, "DELETE", "/dictionary/rend", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/rend", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 410);
    http_resp_free(&r);
    snprintf(body, sizeof body,
             "{\"content\": {\"n\": 3}, \"word\": \"rend\", \"provider\": \"p\", %s}", deps);
    ck_assert_int_eq(post_json("/dictionary/rend/versions", body, NULL), 201);
    char *v5 = latest_everywhere("1.0.2");
    rec = json_loads(v5, 0, NULL);
    ck_assert_str_eq(info_str(rec, "version"), "1.0.2");
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(rec, "content"), "n")), 3);
    json_decref(rec);
    free(v1);
    free(v2);
    free(v3);
    free(v4);
    free(v5);
}
END_TEST

/* ---- bad input ------------------------------------------------------------------------- */

struct bad_case {
    const char *name;
    const char *method;
    const char *path;
    const char *headers[3];
    const char *body; /* NULL: generated by the case */
    long lo, hi;
    const char *detail; /* a word the detail must contain */
};

static char *deep_json(size_t depth)
{
    char *s = malloc(2 * depth + 64);
    size_t n = 0;
    n += (size_t)sprintf(s, "{\"content\": ");
    for (size_t i = 0; i < depth; i++)
        s[n++] = '[';
    for (size_t i = 0; i < depth; i++)
        s[n++] = ']';
    n += (size_t)sprintf(s + n, ", \"word\": \"w\", \"provider\": \"p\"}");
    return s;
}

static char long_id_path[10100];

static const struct bad_case BAD[] = {
    {"unknown type",
     "POST",
     "/widget/x/versions",
     {"Content-Type: application/json"},
     "{}",
     404,
     404,
     "type"},
    {"10,000-character id", "GET", long_id_path, {NULL}, NULL, 400, 414, NULL},
    {"id with ..", "GET", "/dictionary/a..b", {NULL}, NULL, 400, 400, ".."},
    {"id that is ..", "GET", "/dictionary/%2E%2E/versions", {NULL}, NULL, 400, 400, ".."},
    {"encoded / in id", "GET", "/dictionary/a%2Fb", {NULL}, NULL, 400, 400, "/"},
    {"NUL in id", "GET", "/dictionary/a%00b", {NULL}, NULL, 400, 400, NULL},
    {"control character", "GET", "/dictionary/a%01b", {NULL}, NULL, 400, 400, "control"},
    {"invalid JSON",
     "POST",
     "/dictionary/x/versions",
     {"Content-Type: application/json"},
     "{\"content\": ",
     400,
     400,
     "JSON"},
    {"JSON 10,000 deep",
     "POST",
     "/dictionary/x/versions",
     {"Content-Type: application/json"},
     NULL,
     400,
     400,
     "deeper"},
    {"body over the limit",
     "POST",
     "/dictionary/x/versions",
     /* Expect: the client waits for the verdict instead of sending 9 MiB
      * into a connection the server closes after its 413 */
     {"Content-Type: application/json", "Expect: 100-continue"},
     NULL,
     413,
     413,
     "limit"},
    {"Content-Encoding not matching",
     "POST",
     "/dictionary/x/versions",
     {"Content-Type: application/json", "Content-Encoding: zstd"},
     "{\"content\": 1}",
     400,
     400,
     "Content-Encoding"},
    {"zstd bomb",
     "POST",
     "/semantic/x/versions?corpus_id=c&model_name=m&embedding_dimension=1&corpus_version=1.0.0",
     {"Content-Type: application/octet-stream", "Content-Encoding: zstd"},
     NULL,
     413,
     413,
     "decompresses"},
    {"missing required field",
     "POST",
     "/dictionary/x/versions",
     {"Content-Type: application/json"},
     "{\"content\": 1, \"word\": \"x\"}",
     400,
     400,
     "provider"},
    {"wrong field type",
     "POST",
     "/semantic/x/versions",
     {"Content-Type: application/json"},
     "{\"content\": 1, \"corpus_id\": \"c\", \"model_name\": \"m\", \"embedding_dimension\": "
     "\"four\"}",
     400,
     400,
     "embedding_dimension"},
    {"unknown field",
     "POST",
     "/dictionary/x/versions",
     {"Content-Type: application/json"},
     "{\"content\": 1, \"word\": \"x\", \"provider\": \"p\", \"colour\": 1}",
     400,
     400,
     "colour"},
    {"bad version", "GET", "/dictionary/x/versions/1.0", {NULL}, NULL, 400, 400, "version"},
    {"bad cursor", "GET", "/dictionary/apple/versions?cursor=zzz", {NULL}, NULL, 400, 404, NULL},
    {"duplicate keys",
     "POST",
     "/dictionary/x/versions",
     {"Content-Type: application/json"},
     "{\"content\": 1, \"content\": 2, \"word\": \"x\", \"provider\": \"p\"}",
     400,
     400,
     "duplicate"},
    {"bad dependency",
     "POST",
     "/dictionary/x/versions",
     {"Content-Type: application/json"},
     "{\"content\": 1, \"word\": \"x\", \"provider\": \"p\", \"dependencies\": [{\"type\": "
     "\"nope\", \"id\": \"a\"}]}",
     400,
     400,
     "dependencies"},
};

START_TEST(bad_input_is_a_4xx_problem)
{
    const struct bad_case *c = &BAD[_i];
    memset(long_id_path, 'x', sizeof long_id_path - 1);
    memcpy(long_id_path, "/dictionary/", 12);
    long_id_path[10012] = '\0';
    char *body = (char *)c->body;
    size_t len = body ? strlen(body) : 0;
    strata_buf z;
    sbuf_init(&z, 0);
    if (strcmp(c->name, "JSON 10,000 deep") == 0) {
        body = deep_json(10000);
        len = strlen(body);
    } else if (strcmp(c->name, "body over the limit") == 0) {
        len = 9u << 20;
        body = malloc(len);
        memset(body, ' ', len);
    } else if (strcmp(c->name, "zstd bomb") == 0) {
        make_zstd_bomb(&z, 0);
        body = (char *)z.data;
        len = z.len;
    }
    http_resp r;
    ck_assert_int_eq(
        http_do(&S, c->method, c->path, c->headers[0] ? c->headers : NULL, body, len, &r), 0);
    assert_problem(&r, c->lo, c->hi);
    if (c->detail)
        ck_assert_msg(strstr(r.body, c->detail) != NULL, "%s: detail lacks '%s': %s", c->name,
                      c->detail, r.body);
    http_resp_free(&r);
    if (body != c->body && body != (char *)z.data)
        free(body);
    sbuf_free(&z);
    assert_alive();
    /* nothing was created by a failed save */
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary/x", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 404);
    http_resp_free(&r);
}
END_TEST

static Suite *versions_suite(void)
{
    Suite *s = suite_create("versions");
    TCase *t = tcase_create("versions");
    tcase_set_timeout(t, 600);
    tcase_add_unchecked_fixture(t, start, stop);
    tcase_add_test(t, same_content_twice_is_one_version);
    tcase_add_test(t, a_b_a_is_three_versions_sharing_one_blob);
    tcase_add_test(t, concurrent_writers_get_gapless_versions);
    tcase_add_test(t, zstd_body_is_stored_and_passed_through);
    tcase_add_test(t, flipped_byte_on_disk_is_never_served);
    tcase_add_test(t, etags_and_preconditions);
    tcase_add_test(t, required_fields_are_enforced);
    tcase_add_test(t, deletes_repair_the_chain);
    tcase_add_test(t, resources_list_filters);
    tcase_add_test(t, reads_are_counted_without_a_write_each);
    tcase_add_test(t, hot_record_stays_cached_across_flushes);
    tcase_add_test(t, rendered_latest_follows_every_change);
    tcase_add_loop_test(t, bad_input_is_a_4xx_problem, 0, sizeof BAD / sizeof BAD[0]);
    suite_add_tcase(s, t);
    /* the restart test stops and starts the shared server itself */
    t = tcase_create("restart");
    tcase_set_timeout(t, 300);
    tcase_add_checked_fixture(t, start, stop);
    tcase_add_test(t, everything_survives_a_restart);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(versions_suite());
}
