/* Integrity against hostile clients, over real HTTP: the versioned store's
 * own cache entries are out of reach of /cache, cache namespaces are not
 * created by reads and cannot crowd out the resource types, and a save
 * never shares a damaged blob. */
#include <check.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/cache/l2.h"
#include "../../src/codec/blob_format.h"
#include "../../src/codec/sha256.h"
#include "../support/harness.h"

static test_server S;
static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};
static const char *const TEXT_CT[] = {"Content-Type: text/plain", NULL};

static void start(void)
{
    ck_assert_int_eq(server_start(&S, NULL), 0);
}

static void stop(void)
{
    int code = server_stop(&S, 30);
    server_cleanup(&S);
    ck_assert_int_eq(code, 0);
}

static long call(const char *method, const char *path, const char *const *headers, const void *body,
                 size_t len, http_resp *out)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, method, path, headers, body, len, &r), 0);
    long status = r.status;
    if (out)
        *out = r;
    else
        http_resp_free(&r);
    return status;
}

static long post_json(const char *path, const char *json)
{
    return call("POST", path, JSON_CT, json, strlen(json), NULL);
}

/* The odyssey text: large enough to be a blob; `variant` changes it. */
static char *text_body(size_t len, int variant)
{
    char *b = malloc(len);
    ck_assert_ptr_nonnull(b);
    for (size_t i = 0; i < len; i++)
        b[i] = (char)('a' + (i * 7 + (size_t)variant) % 26);
    return b;
}

static void sha_hex(const void *data, size_t len, char out[SHA256_HEX_LEN + 1])
{
    unsigned char d[SHA256_LEN];
    ck_assert_int_eq(sha256_oneshot(data, len, d, NULL), 0);
    sha256_to_hex(d, out);
}

/* What a route serves, as bytes; records lose the two fields that every
 * read changes (access_count, last_accessed), nothing else. */
static char *served(const char *path, const char *const *headers)
{
    http_resp r;
    long status = call("GET", path, headers, NULL, 0, &r);
    char ctype[128] = "";
    http_header(&r, "Content-Type", ctype, sizeof ctype);
    char *out = NULL;
    json_t *j = strstr(ctype, "json") ? json_loadb(r.body, r.body_len, 0, NULL) : NULL;
    if (j != NULL) {
        json_t *items = json_object_get(j, "items");
        size_t i;
        json_t *it;
        json_array_foreach(items, i, it)
        {
            json_object_del(it, "access_count");
            json_object_del(it, "last_accessed");
        }
        json_object_del(j, "access_count");
        json_object_del(j, "last_accessed");
        char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        ck_assert_int_ne(asprintf(&out, "%ld %s", status, s), -1);
        free(s);
    } else {
        char hex[SHA256_HEX_LEN + 1];
        sha_hex(r.body, r.body_len, hex);
        ck_assert_int_ne(asprintf(&out, "%ld %s %zu %s", status, ctype, r.body_len, hex), -1);
    }
    http_resp_free(&r);
    return out;
}

#define BIG_LEN 100000

static const char *const ZSTD[] = {"Accept-Encoding: zstd, gzip, lz4", NULL};
static const char *const READ_ROUTES[] = {
    "/dictionary/apple",
    "/dictionary/apple/versions",
    "/dictionary/apple/versions/latest",
    "/dictionary/apple/versions/1.0.0",
    "/dictionary/apple/versions/latest/content",
    "/dictionary",
    "/literature/big",
    "/literature/big/versions/latest",
    "/literature/big/versions/latest/content",
    "/literature/big/versions/1.0.0/content",
};
#define NROUTES (sizeof READ_ROUTES / sizeof READ_ROUTES[0])

/* Snapshot of every read route, plain and with Accept-Encoding. */
static void snapshot(char *out[2 * NROUTES])
{
    for (size_t i = 0; i < NROUTES; i++) {
        out[2 * i] = served(READ_ROUTES[i], NULL);
        out[2 * i + 1] = served(READ_ROUTES[i], ZSTD);
    }
}

/* Any PUT of any key and Content-Type to /cache, and any client DELETE
 * there, changes no byte of what the /{type} routes serve. */
START_TEST(cache_writes_never_change_what_the_store_serves)
{
    ck_assert_int_eq(post_json("/dictionary/apple/versions",
                               "{\"content\": {\"senses\": [\"a fruit\"]}, \"word\": \"apple\","
                               " \"provider\": \"p\"}"),
                     201);
    char *big = text_body(BIG_LEN, 0);
    ck_assert_int_eq(call("POST", "/literature/big/versions?title=Big&authors=A&source=s", TEXT_CT,
                          big, BIG_LEN, NULL),
                     201);
    char hash[SHA256_HEX_LEN + 1];
    sha_hex(big, BIG_LEN, hash);
    free(big);

    char *before[2 * NROUTES], *after[2 * NROUTES];
    snapshot(before); /* also fills every cache tier */
    /* the store's entries are not client entries */
    ck_assert_int_eq(call("GET", "/cache/dictionary/latest:apple", NULL, NULL, 0, NULL), 404);
    char path[1024];
    snprintf(path, sizeof path, "/cache/literature/blob:%s", hash);
    ck_assert_int_eq(call("GET", path, NULL, NULL, 0, NULL), 404);
    /* reserved names cannot be addressed at all */
    ck_assert_int_eq(call("GET", "/cache/@dictionary/latest:apple", NULL, NULL, 0, NULL), 400);
    ck_assert_int_eq(call("PUT", "/cache/@dictionary/latest:apple", NULL, "x", 1, NULL), 400);
    ck_assert_int_eq(call("GET", "/cache/%40dictionary", NULL, NULL, 0, NULL), 400);

    static const char *const nss[] = {"dictionary", "corpus", "literature", "semantic",
                                      "trie",       "search", "default"};
    static const char *const ctypes[] = {
        "Content-Type: application/x-strata-record", "Content-Type: application/x-strata-blob",
        "Content-Type: application/octet-stream", "Content-Type: application/json"};
    char keys[4][200];
    snprintf(keys[0], sizeof keys[0], "latest:apple");
    snprintf(keys[1], sizeof keys[1], "latest:big");
    snprintf(keys[2], sizeof keys[2], "blob:%s", hash);
    snprintf(keys[3], sizeof keys[3], "apple");
    for (size_t n = 0; n < sizeof nss / sizeof *nss; n++)
        for (size_t k = 0; k < 4; k++)
            for (size_t c = 0; c < sizeof ctypes / sizeof *ctypes; c++) {
                const char *h[] = {ctypes[c], NULL};
                const char *forged = c == 3 ? "{\"resource_id\": \"apple\"}" : "garbage\x01\x02";
                snprintf(path, sizeof path, "/cache/%s/%s", nss[n], keys[k]);
                ck_assert_int_eq(call("PUT", path, h, forged, strlen(forged), NULL), 201);
            }
    snapshot(after);
    for (size_t i = 0; i < 2 * NROUTES; i++) {
        ck_assert_msg(strcmp(before[i], after[i]) == 0, "%s changed:\n%s\n%s", READ_ROUTES[i / 2],
                      before[i], after[i]);
        free(after[i]);
    }
    /* client deletes and patterns reach only client entries */
    for (size_t n = 0; n < sizeof nss / sizeof *nss; n++) {
        snprintf(path, sizeof path, "/cache/%s?pattern=*", nss[n]);
        http_resp r;
        ck_assert_int_eq(call("DELETE", path, NULL, NULL, 0, &r), 200);
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "deleted")), 4);
        json_decref(j);
        http_resp_free(&r);
    }
    snapshot(after);
    for (size_t i = 0; i < 2 * NROUTES; i++) {
        ck_assert_msg(strcmp(before[i], after[i]) == 0, "%s changed after DELETE:\n%s\n%s",
                      READ_ROUTES[i / 2], before[i], after[i]);
        free(before[i]);
        free(after[i]);
    }
}
END_TEST

static bool stats_list(const char *ns)
{
    http_resp r;
    ck_assert_int_eq(call("GET", "/cache", NULL, NULL, 0, &r), 200);
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    bool found = json_object_get(json_object_get(j, "namespaces"), ns) != NULL;
    json_decref(j);
    return found;
}

/* Reads, deletes and stats of unknown namespaces create nothing; PUTs
 * create at most their own quota; the resource types keep working. */
START_TEST(unknown_namespaces_are_404_and_capped)
{
    ck_assert_int_eq(call("GET", "/cache/nsx/k", NULL, NULL, 0, NULL), 404);
    ck_assert_int_eq(call("HEAD", "/cache/nsx/k", NULL, NULL, 0, NULL), 404);
    ck_assert_int_eq(call("DELETE", "/cache/nsx/k", NULL, NULL, 0, NULL), 404);
    ck_assert_int_eq(call("DELETE", "/cache/nsx?pattern=*", NULL, NULL, 0, NULL), 404);
    ck_assert_int_eq(call("GET", "/cache/nsx", NULL, NULL, 0, NULL), 404);
    ck_assert(!stats_list("nsx"));
    /* every configured namespace exists from the start */
    ck_assert(stats_list("trie"));
    ck_assert(stats_list("default"));

    int created = 0, refused = 0;
    for (int i = 0; i < 60; i++) {
        char path[64];
        snprintf(path, sizeof path, "/cache/ns%d/k", i);
        http_resp r;
        long st = call("PUT", path, NULL, "v", 1, &r);
        if (st == 201)
            created++;
        else {
            ck_assert_int_eq(st, 409);
            char ctype[64];
            http_header(&r, "Content-Type", ctype, sizeof ctype);
            ck_assert_str_eq(ctype, "application/problem+json");
            refused++;
        }
        http_resp_free(&r);
    }
    ck_assert_int_eq(created, 32);
    ck_assert_int_eq(refused, 28);
    /* a namespace clients made stays usable */
    ck_assert_int_eq(call("GET", "/cache/ns3/k", NULL, NULL, 0, NULL), 200);
    ck_assert_int_eq(call("GET", "/cache/ns3", NULL, NULL, 0, NULL), 200);
    /* and a resource type not used yet is cached and invalidated */
    ck_assert_int_eq(post_json("/trie/t1/versions",
                               "{\"content\": 1, \"corpus_ids\": [\"c\"], \"node_count\": 1,"
                               " \"max_depth\": 1}"),
                     201);
    http_resp r;
    ck_assert_int_eq(call("GET", "/trie/t1", NULL, NULL, 0, NULL), 200);
    ck_assert_int_eq(post_json("/trie/t1/versions",
                               "{\"content\": 2, \"corpus_ids\": [\"c\"], \"node_count\": 1,"
                               " \"max_depth\": 1}"),
                     201);
    ck_assert_int_eq(call("GET", "/trie/t1", NULL, NULL, 0, &r), 200);
    json_t *rec = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(rec, "version_info"), "version")),
        "1.0.1");
    json_decref(rec);
}
END_TEST

/* Damages the stored blob: a flipped byte in the middle of its payload,
 * or its last byte cut (the file on disk, or the object on S3). */
static void damage_blob(const char *hash, bool truncate)
{
    ck_assert_int_eq(server_blob_damage(&S, hash, SERVER_BLOB_MIDDLE, truncate), 0);
}

/* Re-saving content whose blob is damaged in the store rewrites the blob from
 * the bytes in hand: the new version (and the old ones) read back. */
START_TEST(a_save_never_shares_a_damaged_blob)
{
    char *a = text_body(BIG_LEN, 1), *b = text_body(BIG_LEN, 2);
    char ha[SHA256_HEX_LEN + 1];
    sha_hex(a, BIG_LEN, ha);
    for (int round = 0; round < 2; round++) {
        char path[128];
        snprintf(path, sizeof path, "/literature/ody%d/versions?title=O&authors=H&source=s", round);
        ck_assert_int_eq(call("POST", path, TEXT_CT, a, BIG_LEN, NULL), 201);
        ck_assert_int_eq(call("POST", path, TEXT_CT, b, BIG_LEN, NULL), 201);
        damage_blob(ha, round == 1);
        /* A -> B -> A: a new version sharing A's blob, which is damaged */
        http_resp r;
        ck_assert_int_eq(call("POST", path, TEXT_CT, a, BIG_LEN, &r), 201);
        http_resp_free(&r);
        for (int v = 0; v <= 2; v += 2) {
            char cpath[128];
            snprintf(cpath, sizeof cpath, "/literature/ody%d/versions/1.0.%d/content", round, v);
            ck_assert_int_eq(call("GET", cpath, NULL, NULL, 0, &r), 200);
            ck_assert_uint_eq(r.body_len, BIG_LEN);
            ck_assert_int_eq(memcmp(r.body, a, BIG_LEN), 0);
            http_resp_free(&r);
        }
    }
    free(a);
    free(b);
}
END_TEST

/* ---- cached blob copies from outside the process --------------------- */

#define L2_BLOB_LEN 100000

/* The server's L2, opened by this process as another node would. */
static l2_cache *open_server_l2(void)
{
    l2_config cfg = {.max_bytes = UINT64_C(4) << 30, .fence_ttl_ms = 60000};
    strata_error err;
    l2_cache *c = l2_open(S.l2_url, &cfg, &err);
    ck_assert_msg(c != NULL, "cannot open the server's L2 %s: %s", S.l2_url, err.detail);
    return c;
}

/* Writes bytes into the L2 where the server keeps its copy of blob hash
 * for resource type type (an unconditional write: every node's L1 copy
 * of the key is stale from here on). */
static void l2_put_blob(l2_cache *c, const char *type, const char *hash, const void *data,
                        size_t len)
{
    char ns[L2_NS_MAX + 1], key[SHA256_HEX_LEN + 8];
    snprintf(ns, sizeof ns, "@%s", type);
    snprintf(key, sizeof key, "blob:%s", hash);
    l2_meta m = {0};
    snprintf(m.content_type, sizeof m.content_type, "application/x-strata-blob");
    m.raw_size = len;
    strata_error err;
    ck_assert_msg(c->ops->set(c, ns, key, data, len, &m, 0, NULL, NULL, NULL, &err) == 0,
                  "L2 set: %s", err.detail);
}

/* Whether the L2 holds a copy of blob hash for type. */
static bool l2_has_blob(l2_cache *c, const char *type, const char *hash)
{
    char ns[L2_NS_MAX + 1], key[SHA256_HEX_LEN + 8];
    snprintf(ns, sizeof ns, "@%s", type);
    snprintf(key, sizeof key, "blob:%s", hash);
    strata_buf b;
    sbuf_init(&b, 0);
    l2_meta m = {0};
    strata_error err;
    int rc = c->ops->get(c, ns, key, 16u << 20, &b, &m, &err);
    ck_assert_msg(rc == 0 || err.kind == SERR_NOT_FOUND, "L2 get: %s", err.detail);
    sbuf_free(&b);
    return rc == 0;
}

static int log_count(const char *needle)
{
    FILE *log = fopen(S.log_path, "r");
    ck_assert_ptr_nonnull(log);
    char line[2048];
    int seen = 0;
    while (fgets(line, sizeof line, log))
        seen += strstr(line, needle) != NULL;
    fclose(log);
    return seen;
}

/* A copy of a blob found in the L2 came from outside the process (another
 * node, the disk, anyone who can write there): each kind of damage is
 * caught before a byte of it is served, with and without the stored codec
 * passed through, and the blob store answers instead. */
START_TEST(a_damaged_l2_copy_is_never_served)
{
    static const char *const types[] = {"semantic", "literature"};
    static const char *const paths[] = {
        "/semantic/emb/versions?corpus_id=c&corpus_version=1.0.0&model_name=m"
        "&embedding_dimension=4",
        "/literature/lit/versions?title=T&authors=A&source=s"};
    static const char *const contents[] = {"/semantic/emb/versions/latest/content",
                                           "/literature/lit/versions/latest/content"};
    static const char *const plain[] = {NULL};
    static const char *const zstd[] = {"Accept-Encoding: zstd", NULL};
    l2_cache *c = open_server_l2();
    int forged = 0;
    for (int t = 0; t < 2; t++) {
        char *data = text_body(L2_BLOB_LEN, 10 + t), *other = text_body(L2_BLOB_LEN, 20 + t);
        char hash[SHA256_HEX_LEN + 1];
        sha_hex(data, L2_BLOB_LEN, hash);
        ck_assert_int_eq(call("POST", paths[t], TEXT_CT, data, L2_BLOB_LEN, NULL), 201);
        strata_buf good, bad, alien;
        sbuf_init(&good, 0);
        sbuf_init(&bad, 0);
        sbuf_init(&alien, 0);
        ck_assert_int_eq(server_blob_read(&S, hash, &good), 0);
        blob_header h;
        ck_assert_int_eq(blob_header_decode(good.data, good.len, &h, NULL), 0);
        ck_assert_int_eq(h.codec, t == 0 ? SCODEC_NONE : SCODEC_ZSTD);
        /* well formed, of other content (its own hashes all agree) */
        ck_assert_int_eq(blob_encode(other, L2_BLOB_LEN, h.codec, &alien, &h, NULL), 0);
        struct {
            const char *what;
            const unsigned char *data;
            size_t len;
        } forgeries[4];
        ck_assert_int_eq(sbuf_append(&bad, good.data, good.len, NULL), 0);
        bad.data[BLOB_HEADER_SIZE + (bad.len - BLOB_HEADER_SIZE) / 2] ^= 1;
        forgeries[0].what = "a flipped payload bit";
        forgeries[0].data = bad.data;
        forgeries[0].len = bad.len;
        forgeries[1].what = "a cut payload";
        forgeries[1].data = good.data;
        forgeries[1].len = good.len - 1;
        forgeries[2].what = "another blob";
        forgeries[2].data = alien.data;
        forgeries[2].len = alien.len;
        forgeries[3].what = "no blob at all";
        forgeries[3].data = (const unsigned char *)other;
        forgeries[3].len = L2_BLOB_LEN;
        for (int f = 0; f < 4; f++) {
            /* the server's copy is hot (in L1, verified) before each forgery */
            for (int k = 0; k < 2; k++)
                ck_assert_int_eq(call("GET", contents[t], NULL, NULL, 0, NULL), 200);
            l2_put_blob(c, types[t], hash, forgeries[f].data, forgeries[f].len);
            forged++;
            for (int e = 0; e < 2; e++) {
                http_resp r;
                ck_assert_int_eq(call("GET", contents[t], e ? zstd : plain, NULL, 0, &r), 200);
                char enc[32] = "";
                http_header(&r, "Content-Encoding", enc, sizeof enc);
                if (enc[0] == '\0') {
                    ck_assert_uint_eq(r.body_len, L2_BLOB_LEN);
                    ck_assert_msg(memcmp(r.body, data, L2_BLOB_LEN) == 0, "%s: %s was served (%s)",
                                  types[t], forgeries[f].what, e ? "zstd" : "plain");
                } else {
                    ck_assert_str_eq(enc, "zstd");
                    ck_assert_msg(r.body_len == good.len - BLOB_HEADER_SIZE &&
                                      memcmp(r.body, good.data + BLOB_HEADER_SIZE, r.body_len) == 0,
                                  "%s: %s was passed through", types[t], forgeries[f].what);
                }
                http_resp_free(&r);
            }
        }
        sbuf_free(&good);
        sbuf_free(&bad);
        sbuf_free(&alien);
        free(data);
        free(other);
    }
    c->ops->close(c);
    /* each forgery was read, and caught, once (it was dropped then) */
    ck_assert_int_eq(log_count("is damaged"), forged);
}
END_TEST

/* With file: blobs beside a disk L2 the L2 keeps no second copy of a blob
 * (it would sit on the same disk, no nearer); its hot copy is served from
 * L1. Any other pairing caches blobs in the L2 as before. */
START_TEST(blobs_skip_a_disk_l2_beside_file_blobs)
{
    char *data = text_body(L2_BLOB_LEN, 30);
    char hash[SHA256_HEX_LEN + 1];
    sha_hex(data, L2_BLOB_LEN, hash);
    ck_assert_int_eq(call("POST",
                          "/semantic/e2/versions?corpus_id=c&corpus_version=1.0.0&model_name=m"
                          "&embedding_dimension=4",
                          TEXT_CT, data, L2_BLOB_LEN, NULL),
                     201);
    for (int k = 0; k < 5; k++) {
        http_resp r;
        ck_assert_int_eq(call("GET", "/semantic/e2/versions/latest/content", NULL, NULL, 0, &r),
                         200);
        ck_assert_uint_eq(r.body_len, L2_BLOB_LEN);
        ck_assert_int_eq(memcmp(r.body, data, L2_BLOB_LEN), 0);
        http_resp_free(&r);
    }
    bool local = strncmp(S.l2_url, "file:", 5) == 0 && strncmp(S.blobs_url, "file:", 5) == 0;
    l2_cache *c = open_server_l2();
    ck_assert_msg(l2_has_blob(c, "semantic", hash) != local, "L2 %s, blobs %s: the L2 %s the blob",
                  S.l2_url, S.blobs_url, local ? "holds" : "lacks");
    c->ops->close(c);
    /* the blob was loaded once; the other reads were L1 hits (the latest
     * record beside it was loaded once too) */
    http_resp r;
    ck_assert_int_eq(call("GET", "/cache", NULL, NULL, 0, &r), 200);
    json_t *all = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    json_t *sem = json_object_get(json_object_get(all, "internal"), "semantic");
    ck_assert_int_eq(json_integer_value(json_object_get(sem, "loader_calls")), 2);
    json_decref(all);
    free(data);
}
END_TEST

static Suite *integrity_suite(void)
{
    Suite *s = suite_create("integrity");
    TCase *t = tcase_create("integrity");
    tcase_set_timeout(t, 300);
    tcase_add_checked_fixture(t, start, stop);
    tcase_add_test(t, cache_writes_never_change_what_the_store_serves);
    tcase_add_test(t, unknown_namespaces_are_404_and_capped);
    tcase_add_test(t, a_save_never_shares_a_damaged_blob);
    tcase_add_test(t, a_damaged_l2_copy_is_never_served);
    tcase_add_test(t, blobs_skip_a_disk_l2_beside_file_blobs);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(integrity_suite());
}
