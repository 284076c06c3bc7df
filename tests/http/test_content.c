/* Content over real HTTP: byte ranges (206, 416, If-Range), Repr-Digest,
 * content streamed from the blob store and verified as it passes (a
 * damaged blob ends the transfer short), and byte saves streamed into
 * the blob store as they arrive (shared, passed through, or dropped when
 * the client goes away), each byte hashed once on the way in yet every
 * stored blob named by and carrying the hashes of what it holds. */
#include <check.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "../../src/codec/blob_format.h"
#include "../../src/codec/compress.h"
#include "../../src/codec/sha256.h"
#include "../../src/common/base64.h"
#include "../support/harness.h"

#define BIG (9u << 20) /* past the 4 MiB at which content streams */
#define LIT "?title=T&authors=A&source=s"

static test_server S;
static const char *const BYTES_CT[] = {"Content-Type: application/octet-stream", NULL};

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

/* Text that compresses (so the stored blob is zstd and reads decode). */
static unsigned char *text(size_t len, unsigned seed)
{
    unsigned char *b = malloc(len);
    ck_assert_ptr_nonnull(b);
    unsigned x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        b[i] = (unsigned char)('a' + (x >> 16) % 16);
    }
    return b;
}

static void digest_header(const void *data, size_t len, char *out, size_t cap)
{
    unsigned char d[SHA256_LEN];
    strata_error err;
    ck_assert_int_eq(sha256_oneshot(data, len, d, &err), 0);
    char b64[BASE64_LEN(SHA256_LEN) + 1];
    base64_encode(d, SHA256_LEN, b64);
    snprintf(out, cap, "sha-256=:%s:", b64);
}

static void save(const char *id, const void *data, size_t len)
{
    char path[160];
    snprintf(path, sizeof path, "/literature/%s/versions" LIT, id);
    http_resp r;
    long st = call("POST", path, BYTES_CT, data, len, &r);
    ck_assert_msg(st == 201 || st == 200, "save of %zu bytes answered %ld: %.300s", len, st,
                  r.body);
    http_resp_free(&r);
}

static long get(const char *id, const char *const *headers, http_resp *out)
{
    char path[160];
    snprintf(path, sizeof path, "/literature/%s/versions/latest/content", id);
    return call("GET", path, headers, NULL, 0, out);
}

static void check_range(const char *id, const unsigned char *data, size_t len, const char *range,
                        long want_status, size_t first, size_t last)
{
    char h[96];
    snprintf(h, sizeof h, "Range: %s", range);
    const char *hdrs[] = {h, NULL};
    http_resp r;
    long st = get(id, hdrs, &r);
    ck_assert_msg(st == want_status, "%s answered %ld", range, st);
    char cr[96] = "", want[96];
    if (want_status == 206) {
        ck_assert_uint_eq(r.body_len, last - first + 1);
        ck_assert_msg(memcmp(r.body, data + first, r.body_len) == 0, "%s: wrong bytes", range);
        ck_assert_int_eq(http_header(&r, "Content-Range", cr, sizeof cr), 0);
        snprintf(want, sizeof want, "bytes %zu-%zu/%zu", first, last, len);
        ck_assert_str_eq(cr, want);
    } else if (want_status == 416) {
        ck_assert_int_eq(http_header(&r, "Content-Range", cr, sizeof cr), 0);
        snprintf(want, sizeof want, "bytes */%zu", len);
        ck_assert_str_eq(cr, want);
    } else {
        ck_assert_uint_eq(r.body_len, len);
    }
    http_resp_free(&r);
}

/* Ranges on small (in memory) and large (streamed) content, decoded. */
static void ranges_on(const char *id, size_t len)
{
    unsigned char *data = text(len, (unsigned)len);
    save(id, data, len);
    check_range(id, data, len, "bytes=0-0", 206, 0, 0);
    check_range(id, data, len, "bytes=10-99", 206, 10, 99);
    check_range(id, data, len, "bytes=-7", 206, len - 7, len - 1);
    check_range(id, data, len, "bytes=100-", 206, 100, len - 1);
    check_range(id, data, len, "bytes=5-999999999999", 206, 5, len - 1);
    char past[64];
    snprintf(past, sizeof past, "bytes=%zu-", len);
    check_range(id, data, len, past, 416, 0, 0);
    check_range(id, data, len, "bytes=0-1,5-6", 200, 0, 0); /* several: ignored */
    check_range(id, data, len, "bytes=9-3", 200, 0, 0);     /* malformed: ignored */
    check_range(id, data, len, "items=0-3", 200, 0, 0);     /* another unit */
    /* If-Range with another validator: the whole content */
    const char *ifr[] = {"Range: bytes=0-3", "If-Range: \"0000\"", NULL};
    http_resp r;
    ck_assert_int_eq(get(id, ifr, &r), 200);
    ck_assert_uint_eq(r.body_len, len);
    char etag[80], hdr[120];
    ck_assert_int_eq(http_header(&r, "ETag", etag, sizeof etag), 0);
    ck_assert_int_eq(http_header(&r, "Accept-Ranges", hdr, sizeof hdr), 0);
    ck_assert_str_eq(hdr, "bytes");
    http_resp_free(&r);
    char ifr_ok[120];
    snprintf(ifr_ok, sizeof ifr_ok, "If-Range: %s", etag);
    const char *ifr2[] = {"Range: bytes=0-3", ifr_ok, NULL};
    ck_assert_int_eq(get(id, ifr2, &r), 206);
    ck_assert_uint_eq(r.body_len, 4);
    http_resp_free(&r);
    free(data);
}

START_TEST(ranges_of_small_content)
{
    ranges_on("small", 100000);
}
END_TEST

START_TEST(ranges_of_streamed_content)
{
    ranges_on("large", BIG);
}
END_TEST

/* Repr-Digest is the SHA-256 of what was sent: the content, or the stored
 * zstd bytes when they are passed through (also on a 206). */
START_TEST(repr_digest_names_what_was_sent)
{
    size_t lens[] = {100000, BIG};
    for (int i = 0; i < 2; i++) {
        char id[16];
        snprintf(id, sizeof id, "d%d", i);
        unsigned char *data = text(lens[i], 7u + (unsigned)i);
        save(id, data, lens[i]);
        http_resp r;
        char got[128], want[128];
        ck_assert_int_eq(get(id, NULL, &r), 200);
        ck_assert_uint_eq(r.body_len, lens[i]);
        ck_assert_msg(memcmp(r.body, data, lens[i]) == 0, "%s: wrong content", id);
        ck_assert_int_eq(http_header(&r, "Repr-Digest", got, sizeof got), 0);
        digest_header(data, lens[i], want, sizeof want);
        ck_assert_str_eq(got, want);
        http_resp_free(&r);

        const char *zh[] = {"Accept-Encoding: zstd", NULL};
        ck_assert_int_eq(get(id, zh, &r), 200);
        ck_assert_int_eq(http_header(&r, "Content-Encoding", got, sizeof got), 0);
        ck_assert_str_eq(got, "zstd");
        ck_assert_int_eq(http_header(&r, "Repr-Digest", got, sizeof got), 0);
        digest_header(r.body, r.body_len, want, sizeof want);
        ck_assert_str_eq(got, want);
        unsigned long long n = ZSTD_getFrameContentSize(r.body, r.body_len);
        unsigned char *back = malloc(lens[i]);
        size_t dn = ZSTD_decompress(back, lens[i], r.body, r.body_len);
        ck_assert_msg(!ZSTD_isError(dn) && dn == lens[i] && memcmp(back, data, dn) == 0,
                      "%s: passed-through bytes do not decode to the content (%llu)", id, n);
        free(back);
        http_resp_free(&r);

        const char *zr[] = {"Accept-Encoding: zstd", "Range: bytes=0-9", NULL};
        ck_assert_int_eq(get(id, zr, &r), 206);
        ck_assert_uint_eq(r.body_len, 10);
        char whole[128];
        ck_assert_int_eq(http_header(&r, "Repr-Digest", whole, sizeof whole), 0);
        ck_assert_str_eq(whole, want); /* the whole representation's */
        http_resp_free(&r);
        free(data);
    }
}
END_TEST

/* The blob key of content: its SHA-256 in hex. */
static void blob_key(const void *data, size_t len, char hex[SHA256_HEX_LEN + 1])
{
    unsigned char d[SHA256_LEN];
    strata_error err;
    ck_assert_int_eq(sha256_oneshot(data, len, d, &err), 0);
    sha256_to_hex(d, hex);
}

START_TEST(a_damaged_blob_ends_the_transfer_short)
{
    unsigned char *data = text(BIG, 99);
    save("hurt", data, BIG);
    char key[SHA256_HEX_LEN + 1];
    blob_key(data, BIG, key);
    /* near the end (the file, or the object on S3): most of the body is out already */
    ck_assert_int_eq(server_blob_damage(&S, key, -100, 0), 0);
    const char *plain[] = {NULL};
    const char *zh[] = {"Accept-Encoding: zstd", NULL};
    const char *rng[] = {"Range: bytes=0-99", NULL};
    const char *const *cases[] = {plain, zh, rng};
    for (int i = 0; i < 3; i++) {
        http_resp r;
        int rc =
            http_do(&S, "GET", "/literature/hurt/versions/latest/content", cases[i], NULL, 0, &r);
        /* never a complete answer: the connection ends before the last byte */
        ck_assert_msg(rc != 0, "case %d: a damaged blob was served whole (status %ld, %zu bytes)",
                      i, r.status, r.body_len);
        if (rc == 0)
            http_resp_free(&r);
    }
    /* the server is fine and says why in its log */
    ck_assert_int_eq(call("GET", "/health", NULL, NULL, 0, NULL), 200);
    FILE *log = fopen(S.log_path, "r");
    ck_assert_ptr_nonnull(log);
    char line[1024];
    int seen = 0;
    while (fgets(line, sizeof line, log))
        seen += strstr(line, "aborted mid-transfer") != NULL;
    fclose(log);
    ck_assert_int_ge(seen, 3);
    free(data);
}
END_TEST

/* A streamed save of content already stored shares its blob; a client's
 * zstd body is stored as sent and served back byte for byte. */
START_TEST(streamed_saves_share_and_pass_through)
{
    unsigned char *data = text(BIG, 5);
    save("s1", data, BIG);
    save("s2", data, BIG);
    char key[SHA256_HEX_LEN + 1];
    blob_key(data, BIG, key);
    strata_buf stored;
    sbuf_init(&stored, 0);
    ck_assert_int_eq(server_blob_read(&S, key, &stored), 0);
    sbuf_free(&stored);
    ck_assert_int_eq(server_blob_count(&S), 1);
    ck_assert_int_eq(server_blob_staged(&S), 0);

    /* a zstd body past the threshold (incompressible content keeps it big) */
    size_t n = BIG;
    unsigned char *rnd = malloc(n);
    unsigned x = 12345;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        rnd[i] = (unsigned char)x;
    }
    size_t cap = ZSTD_compressBound(n);
    unsigned char *z = malloc(cap);
    size_t zn = ZSTD_compress(z, cap, rnd, n, 3);
    ck_assert(!ZSTD_isError(zn) && zn > (5u << 20));
    const char *zct[] = {"Content-Type: application/octet-stream", "Content-Encoding: zstd", NULL};
    http_resp r;
    ck_assert_int_eq(call("POST", "/literature/z/versions" LIT, zct, z, zn, &r), 201);
    http_resp_free(&r);
    const char *zh[] = {"Accept-Encoding: zstd", NULL};
    ck_assert_int_eq(get("z", zh, &r), 200);
    ck_assert_uint_eq(r.body_len, zn);
    ck_assert_msg(memcmp(r.body, z, zn) == 0, "the client's frames were not kept");
    http_resp_free(&r);
    ck_assert_int_eq(get("z", NULL, &r), 200);
    ck_assert_uint_eq(r.body_len, n);
    ck_assert_msg(memcmp(r.body, rnd, n) == 0, "wrong decoded content");
    http_resp_free(&r);
    /* a body that does not decode (cut short) is refused and leaves nothing */
    long stc = call("POST", "/literature/bad/versions" LIT, zct, z, zn - 1000, &r);
    ck_assert_msg(stc == 400, "a truncated zstd body answered %ld", stc);
    http_resp_free(&r);
    ck_assert_int_eq(call("GET", "/literature/bad", NULL, NULL, 0, NULL), 404);
    ck_assert_int_eq(server_blob_staged(&S), 0);
    free(z);
    free(rnd);
    free(data);
}
END_TEST

/* ---- a hot blob, served from the cache many times ---------------------- */

#define HOT_LEN     (1u << 20)
#define HOT_BLOBS   6 /* 1 MiB each, 3 semantic (stored raw) + 3 literature (zstd) */
#define HOT_READERS 4
#define HOT_ROUNDS  40

/* The server of this case keeps 3 MiB of L1: the blobs evict each other
 * while responses that still send them are in flight. */
static void start_small_l1(void)
{
    const char *args[] = {"--cache-l1-bytes", "3M", NULL};
    ck_assert_int_eq(server_start(&S, args), 0);
}

static unsigned char *hot_data[HOT_BLOBS];

static void hot_path(int i, char *out, size_t cap)
{
    snprintf(out, cap, "/%s/hot%d/versions/latest/content", i < 3 ? "semantic" : "literature", i);
}

/* What a response must be for a request with Accept-Encoding accept (NULL:
 * none) of hot blob i: the content, or for a literature blob asked with
 * zstd its stored frames, which decode to the content. NULL when right,
 * else what is wrong. */
static const char *hot_check(int i, const char *accept, const http_resp *r)
{
    static _Thread_local char why[160];
    if (r->status != 200) {
        snprintf(why, sizeof why, "status %ld", r->status);
        return why;
    }
    char enc[32] = "", dig[128], want[128];
    http_header(r, "Content-Encoding", enc, sizeof enc);
    bool zstd = i >= 3 && accept != NULL && strstr(accept, "zstd") != NULL;
    if (strcmp(enc, zstd ? "zstd" : "") != 0) {
        snprintf(why, sizeof why, "Content-Encoding '%s' for '%s'", enc, accept ? accept : "");
        return why;
    }
    if (http_header(r, "Repr-Digest", dig, sizeof dig) != 0)
        return "no Repr-Digest";
    digest_header(r->body, r->body_len, want, sizeof want);
    if (strcmp(dig, want) != 0)
        return "Repr-Digest is not the digest of the body";
    if (!zstd)
        return r->body_len == HOT_LEN && memcmp(r->body, hot_data[i], HOT_LEN) == 0 ? NULL
                                                                                    : "wrong bytes";
    unsigned char *back = malloc(HOT_LEN);
    size_t dn = back ? ZSTD_decompress(back, HOT_LEN, r->body, r->body_len) : 0;
    bool ok = back && !ZSTD_isError(dn) && dn == HOT_LEN && memcmp(back, hot_data[i], dn) == 0;
    free(back);
    return ok ? NULL : "the zstd frames do not decode to the content";
}

static const char *const HOT_ACCEPT[] = {NULL, "zstd", "gzip", "identity", "zstd, gzip"};
#define NACCEPT (sizeof HOT_ACCEPT / sizeof HOT_ACCEPT[0])

static void *hot_reader(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    http_client *c = http_client_new();
    char *fail = NULL;
    for (int n = 0; n < HOT_ROUNDS && fail == NULL; n++) {
        seed = seed * 1103515245u + 12345u;
        int i = (int)((seed >> 16) % HOT_BLOBS);
        const char *accept = HOT_ACCEPT[(seed >> 8) % NACCEPT];
        char path[96], ae[64];
        hot_path(i, path, sizeof path);
        snprintf(ae, sizeof ae, "Accept-Encoding: %s", accept ? accept : "");
        const char *h[] = {accept ? ae : NULL, NULL};
        http_resp r;
        if (http_client_do(c, &S, "GET", path, h, NULL, 0, &r) != 0) {
            fail = strdup("the request failed");
            break;
        }
        const char *why = hot_check(i, accept, &r);
        if (why != NULL && asprintf(&fail, "%s with '%s': %s", path, accept ? accept : "", why) < 0)
            fail = NULL;
        http_resp_free(&r);
    }
    http_client_free(c);
    return fail;
}

static json_t *internal_ns_stats(const char *ns)
{
    http_resp r;
    ck_assert_int_eq(call("GET", "/cache", NULL, NULL, 0, &r), 200);
    json_t *all = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    ck_assert_ptr_nonnull(all);
    json_t *s = json_incref(json_object_get(json_object_get(all, "internal"), ns));
    json_decref(all);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* Hot blobs served many times, with every encoding a client may ask for,
 * by several readers at once while the small L1 evicts them: every body
 * is the content (or its stored frames), whole, each time. Under ASan a
 * response that outlived the cached copy it sends would be caught too. */
START_TEST(hot_blobs_served_many_times_stay_correct)
{
    for (int i = 0; i < HOT_BLOBS; i++) {
        hot_data[i] = text(HOT_LEN, 1000u + (unsigned)i);
        char path[160];
        snprintf(path, sizeof path, "/%s/hot%d/versions%s", i < 3 ? "semantic" : "literature", i,
                 i < 3 ? "?corpus_id=c&corpus_version=1.0.0&model_name=m&embedding_dimension=4"
                       : LIT);
        http_resp r;
        long st = call("POST", path, BYTES_CT, hot_data[i], HOT_LEN, &r);
        ck_assert_msg(st == 201, "save of %s answered %ld: %.300s", path, st, r.body);
        http_resp_free(&r);
    }
    /* one by one first: each encoding twice (a miss, then a hit), and a
     * range of the hot copy */
    for (int i = 0; i < HOT_BLOBS; i++)
        for (size_t a = 0; a < NACCEPT; a++)
            for (int k = 0; k < 2; k++) {
                char path[96], ae[64];
                hot_path(i, path, sizeof path);
                snprintf(ae, sizeof ae, "Accept-Encoding: %s", HOT_ACCEPT[a] ? HOT_ACCEPT[a] : "");
                const char *h[] = {HOT_ACCEPT[a] ? ae : NULL, NULL};
                http_resp r;
                call("GET", path, h, NULL, 0, &r);
                const char *why = hot_check(i, HOT_ACCEPT[a], &r);
                ck_assert_msg(why == NULL, "%s with '%s': %s", path, ae, why);
                http_resp_free(&r);
                const char *rh[] = {"Range: bytes=1000-1999", NULL};
                ck_assert_int_eq(call("GET", path, rh, NULL, 0, &r), 206);
                ck_assert_uint_eq(r.body_len, 1000);
                ck_assert_msg(memcmp(r.body, hot_data[i] + 1000, 1000) == 0, "%s: wrong range",
                              path);
                http_resp_free(&r);
            }
    pthread_t th[HOT_READERS];
    for (int t = 0; t < HOT_READERS; t++)
        ck_assert_int_eq(pthread_create(&th[t], NULL, hot_reader, (void *)(uintptr_t)(t + 1)), 0);
    char *fails[HOT_READERS];
    for (int t = 0; t < HOT_READERS; t++)
        pthread_join(th[t], (void **)&fails[t]);
    for (int t = 0; t < HOT_READERS; t++) {
        ck_assert_msg(fails[t] == NULL, "reader %d: %s", t, fails[t]);
    }
    /* the case did what it is for: blobs sat in L1 (the records beside
     * them are small), and were evicted */
    long long bytes = 0, evictions = 0;
    const char *nss[] = {"semantic", "literature"};
    for (int n = 0; n < 2; n++) {
        json_t *s = internal_ns_stats(nss[n]);
        bytes += json_integer_value(json_object_get(json_object_get(s, "l1"), "bytes"));
        evictions += json_integer_value(json_object_get(json_object_get(s, "l1"), "evictions"));
        json_decref(s);
    }
    ck_assert_int_ge(bytes, HOT_LEN / 4); /* (a literature blob: its zstd bytes) */
    ck_assert_int_gt(evictions, 0);
    for (int i = 0; i < HOT_BLOBS; i++)
        free(hot_data[i]);
}
END_TEST

/* Whatever a client sends (plain or in any Content-Encoding, held or
 * streamed), the blob is stored under the SHA-256 of the decoded content
 * and its header carries that hash, the size and the payload's hash: the
 * hashes taken as the body arrived are the content's. */
START_TEST(stored_blobs_carry_the_contents_hashes)
{
    static const char *const encodings[] = {NULL, "zstd", "gzip", "lz4"};
    static const enum scodec codecs[] = {SCODEC_NONE, SCODEC_ZSTD, SCODEC_GZIP, SCODEC_LZ4};
    /* held in memory (past the 64K kept inline), and streamed even once
     * compressed (16 letters: about half the size with entropy coding) */
    static const size_t sizes[] = {300u << 10, 12u << 20};
    for (size_t si = 0; si < 2; si++) {
        for (size_t e = 0; e < 4; e++) {
            size_t len = sizes[si];
            unsigned char *data = text(len, (unsigned)(100 + si * 4 + e));
            strata_buf wire;
            strata_error err;
            sbuf_init(&wire, 0);
            if (codecs[e] == SCODEC_NONE)
                ck_assert_int_eq(sbuf_append(&wire, data, len, &err), 0);
            else
                ck_assert_int_eq(
                    scodec_compress(codecs[e], SCODEC_DEFAULT_LEVEL, data, len, &wire, &err), 0);
            char ce[64], id[32], path[160];
            snprintf(ce, sizeof ce, "Content-Encoding: %s", encodings[e] ? encodings[e] : "");
            const char *hdrs[] = {"Content-Type: text/plain", encodings[e] ? ce : NULL, NULL};
            snprintf(id, sizeof id, "h%zu-%zu", si, e);
            snprintf(path, sizeof path, "/literature/%s/versions" LIT, id);
            http_resp r;
            long st = call("POST", path, hdrs, wire.data, wire.len, &r);
            ck_assert_msg(st == 201, "%s (%zu bytes) answered %ld: %.300s", id, len, st, r.body);
            char key[SHA256_HEX_LEN + 1], want[96];
            blob_key(data, len, key);
            snprintf(want, sizeof want, "\"checksum\":\"sha256:%s\"", key);
            ck_assert_msg(strstr(r.body, want) != NULL, "%s: record without %s", id, want);
            http_resp_free(&r);
            strata_buf stored, raw;
            sbuf_init(&stored, 0);
            sbuf_init(&raw, 0);
            ck_assert_msg(server_blob_read(&S, key, &stored) == 0, "%s: no blob %s", id, key);
            blob_header h;
            /* checks the header, the payload's hash and the raw hash */
            ck_assert_msg(blob_decode(stored.data, stored.len, len, &raw, &h, &err) == 0, "%s: %s",
                          id, err.detail);
            char named[SHA256_HEX_LEN + 1];
            sha256_to_hex(h.raw_sha256, named);
            ck_assert_str_eq(named, key);
            ck_assert_uint_eq(h.raw_size, len);
            ck_assert_uint_eq(raw.len, len);
            ck_assert_msg(memcmp(raw.data, data, len) == 0, "%s: other bytes stored", id);
            sbuf_free(&raw);
            sbuf_free(&stored);
            sbuf_free(&wire);
            free(data);
        }
    }
    ck_assert_int_eq(server_blob_staged(&S), 0);
}
END_TEST

/* A large plain body of a type stored raw is read into a page-aligned
 * buffer with room for the blob header before it, and written where it
 * lies: the stored blob is still whole and names the content, at sizes
 * around the direct-I/O threshold and off the page size. */
START_TEST(raw_blobs_written_in_place_are_whole)
{
    static const size_t sizes[] = {(256u << 10) - 1, 256u << 10, (1u << 20) + 123, 3u << 20};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t len = sizes[si];
        unsigned char *data = text(len, (unsigned)(200 + si));
        char path[160];
        snprintf(path, sizeof path,
                 "/semantic/raw%zu/versions?corpus_id=c&corpus_version=1.0.0&model_name=m"
                 "&embedding_dimension=4",
                 si);
        http_resp r;
        long st = call("POST", path, BYTES_CT, data, len, &r);
        ck_assert_msg(st == 201, "%zu bytes answered %ld: %.300s", len, st, r.body);
        http_resp_free(&r);
        char key[SHA256_HEX_LEN + 1];
        blob_key(data, len, key);
        strata_buf stored, raw;
        strata_error err;
        sbuf_init(&stored, 0);
        sbuf_init(&raw, 0);
        ck_assert_msg(server_blob_read(&S, key, &stored) == 0, "%zu bytes: no blob %s", len, key);
        ck_assert_uint_eq(stored.len, BLOB_HEADER_SIZE + len);
        blob_header h;
        ck_assert_msg(blob_decode(stored.data, stored.len, len, &raw, &h, &err) == 0, "%zu: %s",
                      len, err.detail);
        ck_assert_int_eq(h.codec, SCODEC_NONE);
        ck_assert_uint_eq(raw.len, len);
        ck_assert_msg(memcmp(raw.data, data, len) == 0, "%zu bytes: other bytes stored", len);
        snprintf(path, sizeof path, "/semantic/raw%zu/versions/latest/content", si);
        ck_assert_int_eq(call("GET", path, NULL, NULL, 0, &r), 200);
        ck_assert_uint_eq(r.body_len, len);
        ck_assert_msg(memcmp(r.body, data, len) == 0, "%zu bytes: other bytes served", len);
        http_resp_free(&r);
        sbuf_free(&raw);
        sbuf_free(&stored);
        free(data);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("content");
    TCase *tc = tcase_create("content");
    tcase_add_checked_fixture(tc, start, stop);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, ranges_of_small_content);
    tcase_add_test(tc, ranges_of_streamed_content);
    tcase_add_test(tc, repr_digest_names_what_was_sent);
    tcase_add_test(tc, a_damaged_blob_ends_the_transfer_short);
    tcase_add_test(tc, streamed_saves_share_and_pass_through);
    tcase_add_test(tc, stored_blobs_carry_the_contents_hashes);
    tcase_add_test(tc, raw_blobs_written_in_place_are_whole);
    suite_add_tcase(s, tc);
    TCase *hot = tcase_create("hot");
    tcase_add_checked_fixture(hot, start_small_l1, stop);
    tcase_set_timeout(hot, 300);
    tcase_add_test(hot, hot_blobs_served_many_times_stay_correct);
    suite_add_tcase(s, hot);
    return run_suite(s);
}
