/* The blob store contract: what every blob backend must do
 * (src/blobs/blobs.h), run against real backends. Every case runs against
 * each backend named in STRATA_BLOB_URL (URLs separated by spaces; by
 * default a fresh file: directory), through a blob store opened from its
 * URL: run_contract() below. An s3:// backend is added by naming it there.
 *
 * Isolation: the blobs of a case hold content unique to it (its prefix in
 * every byte string), so their keys, the SHA-256 of that content, are the
 * case's own; list() is filtered to them. Nothing is shared between cases.
 *
 * A gridfs:// backend gives every case a GridFS bucket of its own (the
 * URL's bucket= replaced by the case's prefix), dropped when it ends.
 *
 * Skips: a case that works on the file: directory itself (temp files,
 * stray names, traversal outside it), on an s3:// store's staging area,
 * or on a GridFS bucket's collections through libmongoc, prints
 *   SKIP: blob_contract/<backend>/<case>: <why>
 * on other backends, which scripts/test-summary.py counts as skipped. A
 * backend that cannot be opened is not skipped: its cases fail.
 *
 * With STRATA_BLOB_REQUIRE set to a scheme (the meson test
 * blob_contract_s3 sets s3://), the URLs come from STRATA_BLOB_URL or else
 * STRATA_S3_URL (its prefix + "blob-contract", the s3 suite's server with
 * AWS_* set), and no URL, or one of another scheme, fails the run. The
 * meson test blob_contract_gridfs sets gridfs://: there the URL comes
 * from STRATA_BLOB_URL or else STRATA_MONGO_URL (its host and options, a
 * database of the run's own, dropped at the end). */
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../src/blobs/blobs.h"
#include "../../src/blobs/blobs_gridfs.h"
#include "../../src/blobs/blobs_s3.h"
#include "../../src/blobs/s3_client.h"
#include "../../src/common/clock.h"
#include "../../src/common/fsutil.h"
#include "../../src/common/mongo_conn.h"
#include "../support/harness.h"

#define MAX_BACKENDS 4
#define MAX_BLOB     (64u << 20)

typedef struct backend {
    char url[600];
    char label[48];
    bool file;   /* file:DIR */
    bool s3;     /* s3://BUCKET[/PREFIX] */
    bool gridfs; /* gridfs://HOST/DB[?OPTIONS] */
} backend;

static backend BK[MAX_BACKENDS];
static int nbk;

static const backend *CB;
static blob_store *B, *B2;
static char P[40];
static char CASE_URL[700]; /* the case's store: the backend's, or a bucket of its own */

/* gridfs://... with bucket=NAME in place of any bucket= it has. */
static void gridfs_url_with_bucket(const char *url, const char *bucket, char *out, size_t cap)
{
    const char *q = strchr(url, '?');
    size_t len = (size_t)snprintf(out, cap, "%.*s", q ? (int)(q - url) : (int)strlen(url), url);
    char sep = '?';
    for (const char *p = q ? q + 1 : NULL; p != NULL && *p && len < cap;) {
        const char *end = strchr(p, '&');
        int plen = end ? (int)(end - p) : (int)strlen(p);
        if (plen > 0 && strncasecmp(p, "bucket=", 7) != 0) {
            len += (size_t)snprintf(out + len, cap - len, "%c%.*s", sep, plen, p);
            sep = '&';
        }
        p = end ? end + 1 : NULL;
    }
    if (len < cap)
        snprintf(out + len, cap - len, "%cbucket=%s", sep, bucket);
}

/* The case's GridFS bucket through libmongoc (gridfs:// backends). */
static mongo_conn *GC;

static mongo_conn *gridfs_conn(void)
{
    if (GC == NULL) {
        char murl[700], bucket[BLOBS_GRIDFS_BUCKET_MAX + 1];
        strata_error err;
        ck_assert_msg(blobs_gridfs_parse_url(CASE_URL, murl, sizeof murl, bucket, &err) == 0, "%s",
                      err.detail);
        GC = mongo_conn_open(murl, "strata-blob-contract", &err);
        ck_assert_msg(GC != NULL, "%s", err.detail);
    }
    return GC;
}

/* Drops the case's bucket: its collections go with the case. */
static void drop_case_bucket(void)
{
    static const char *const colls[] = {"files", "chunks", "staging", "meta"};
    mongo_conn *c = gridfs_conn();
    mongoc_client_t *cl = mongo_conn_pop(c);
    for (size_t i = 0; i < sizeof colls / sizeof *colls; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s.%s", P, colls[i]);
        mongoc_collection_t *coll = mongo_conn_collection(c, cl, name);
        bson_error_t be;
        if (!mongoc_collection_drop_with_opts(coll, NULL, &be) && be.code != 26 /* none */)
            fprintf(stderr, "blob_contract: cannot drop %s: %s\n", name, be.message);
        mongoc_collection_destroy(coll);
    }
    mongo_conn_push(c, cl);
}

static void open_case(int b)
{
    static unsigned seq;
    CB = &BK[b];
    snprintf(P, sizeof P, "b%x%llx%u", (unsigned)getpid(),
             (unsigned long long)(clock_mono_ns() & 0xffffffffffull), ++seq);
    if (CB->gridfs)
        gridfs_url_with_bucket(CB->url, P, CASE_URL, sizeof CASE_URL);
    else
        snprintf(CASE_URL, sizeof CASE_URL, "%s", CB->url);
    strata_error err;
    B = blobs_open(CASE_URL, &err);
    ck_assert_msg(B != NULL, "cannot open the blob store %s: %s", CASE_URL, err.detail);
}

static void close_case(void)
{
    blobs_close(B2);
    blobs_close(B);
    B = B2 = NULL;
    if (CB->gridfs)
        drop_case_bucket();
    mongo_conn_close(GC);
    GC = NULL;
}

#define FIXTURE(n)                                                                                 \
    static void setup##n(void)                                                                     \
    {                                                                                              \
        open_case(n);                                                                              \
    }
FIXTURE(0)
FIXTURE(1)
FIXTURE(2)
FIXTURE(3)
static void (*const SETUPS[MAX_BACKENDS])(void) = {setup0, setup1, setup2, setup3};

static blob_store *second(void)
{
    if (B2 == NULL) {
        strata_error err;
        B2 = blobs_open(CASE_URL, &err);
        ck_assert_msg(B2 != NULL, "cannot open a second handle on %s: %s", CASE_URL, err.detail);
    }
    return B2;
}

/* s3://BUCKET[/PREFIX][?QUERY] with sub appended to the prefix. */
static void s3_url_below(const char *url, const char *sub, char *out, size_t cap)
{
    const char *q = strchr(url, '?');
    int base = q ? (int)(q - url) : (int)strlen(url);
    const char *sep = base > 5 && url[base - 1] == '/' ? "" : "/";
    snprintf(out, cap, "%.*s%s%s%s", base, url, sep, sub, q ? q : "");
}

/* ---- blobs of the case ------------------------------------------------------------- */

/* A blob: raw content unique to the case and label (len bytes, repetitive
 * enough to compress), its key, and its encoding with codec. */
typedef struct tblob {
    char key[SHA256_HEX_LEN + 1];
    unsigned char *raw;
    size_t raw_len;
    strata_buf enc;
    blob_header h;
} tblob;

static void make_blob(tblob *t, const char *label, size_t len, enum scodec codec)
{
    memset(t, 0, sizeof *t);
    char seed[96];
    int n = snprintf(seed, sizeof seed, "%s-%s:", P, label);
    t->raw = malloc(len ? len : 1);
    for (size_t i = 0; i < len; i++)
        t->raw[i] = (unsigned char)seed[i % (size_t)n];
    if (len > 0 && len < (size_t)n) /* short content still names the case */
        memcpy(t->raw, seed, len);
    t->raw_len = len;
    unsigned char d[SHA256_LEN];
    strata_error err;
    ck_assert_int_eq(sha256_oneshot(t->raw, len, d, &err), 0);
    sha256_to_hex(d, t->key);
    sbuf_init(&t->enc, 0);
    ck_assert_msg(blob_encode(t->raw, len, codec, &t->enc, &t->h, &err) == 0, "%s", err.detail);
}

static void free_blob(tblob *t)
{
    free(t->raw);
    sbuf_free(&t->enc);
}

static void put_blob(blob_store *b, const tblob *t)
{
    strata_error err;
    ck_assert_msg(b->ops->put(b, t->key, t->enc.data, t->enc.len, &err) == 0, "put: %s",
                  err.detail);
}

/* Reads key and expects exactly these bytes. */
static void expect_bytes(blob_store *b, const char *key, const void *bytes, size_t len)
{
    strata_buf out;
    sbuf_init(&out, 0);
    strata_error err;
    ck_assert_msg(b->ops->get(b, key, MAX_BLOB, &out, &err) == 0, "get: %s", err.detail);
    ck_assert_uint_eq(out.len, len);
    ck_assert_int_eq(memcmp(out.data, bytes, len), 0);
    sbuf_free(&out);
}

static bool exists(blob_store *b, const char *key)
{
    bool e = true;
    strata_error err;
    ck_assert_msg(b->ops->exists(b, key, &e, &err) == 0, "exists: %s", err.detail);
    return e;
}

static void expect_missing(blob_store *b, const char *key)
{
    strata_error err;
    strata_buf out;
    sbuf_init(&out, 0);
    ck_assert(!exists(b, key));
    ck_assert_int_eq(b->ops->get(b, key, MAX_BLOB, &out, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_uint_eq(out.len, 0);
    sbuf_free(&out);
    blob_header h;
    ck_assert_int_eq(b->ops->head(b, key, &h, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    uint64_t size;
    int64_t mtime;
    ck_assert_int_eq(b->ops->stat(b, key, &size, &mtime, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
}

/* Content too short to hold the case's prefix (empty, one byte) is no
 * case's own: its key is the same in every case and run. A case that
 * needs it absent removes it first. */
static void forget_if_shared(blob_store *b, const tblob *t)
{
    strata_error err;
    if (t->raw_len <= strlen(P) && b->ops->remove(b, t->key, &err) != 0)
        ck_assert_msg(err.kind == SERR_NOT_FOUND, "remove: %s", err.detail);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}

/* list(), filtered to the keys given: how often each was listed, with
 * the last size and mtime seen. */
typedef struct listing {
    const tblob *blobs;
    int n;
    int seen[64];
    uint64_t size[64];
    int64_t mtime[64];
    int calls, stop_after;
} listing;

static int note_listed(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    listing *l = ctx;
    l->calls++;
    for (int i = 0; i < l->n; i++)
        if (strcmp(key, l->blobs[i].key) == 0) {
            l->seen[i]++;
            l->size[i] = size;
            l->mtime[i] = mtime_ms;
        }
    return l->stop_after && l->calls >= l->stop_after;
}

static void list_blobs(blob_store *b, listing *l)
{
    strata_error err;
    ck_assert_msg(b->ops->list(b, note_listed, l, &err) == 0, "list: %s", err.detail);
}

/* ---- cases ---------------------------------------------------------------------------- */

START_TEST(vtable_is_complete)
{
    const blob_store_ops *o = B->ops;
    ck_assert_ptr_nonnull(o->name);
#define HAS(f) ck_assert_msg(o->f != NULL, "the %s blob store lacks " #f, o->name)
    HAS(put);
    HAS(replace);
    HAS(get);
    HAS(exists);
    HAS(head);
    HAS(remove);
    HAS(touch);
    HAS(stat);
    HAS(list);
    HAS(open_read);
    HAS(begin_write);
    HAS(close);
#undef HAS
}
END_TEST

START_TEST(round_trips)
{
    strata_error err;
    const struct {
        size_t len;
        enum scodec codec;
    } shapes[] = {{0, SCODEC_NONE},       {1, SCODEC_NONE},      {1000, SCODEC_NONE},
                  {200000, SCODEC_ZSTD},  {200000, SCODEC_LZ4},  {200000, SCODEC_GZIP},
                  {3 << 20, SCODEC_NONE}, {3 << 20, SCODEC_ZSTD}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        char label[32];
        snprintf(label, sizeof label, "shape%zu", i);
        tblob t;
        make_blob(&t, label, shapes[i].len, shapes[i].codec);
        forget_if_shared(B, &t);
        ck_assert(!exists(B, t.key));
        int64_t before = clock_wall_ms();
        put_blob(B, &t);
        ck_assert(exists(B, t.key));
        expect_bytes(B, t.key, t.enc.data, t.enc.len);
        /* the header, read alone */
        blob_header h;
        ck_assert_int_eq(B->ops->head(B, t.key, &h, &err), 0);
        ck_assert_int_eq(h.codec, t.h.codec);
        ck_assert_uint_eq(h.raw_size, shapes[i].len);
        ck_assert_uint_eq(h.payload_size, t.enc.len - BLOB_HEADER_SIZE);
        ck_assert_int_eq(memcmp(h.raw_sha256, t.h.raw_sha256, SHA256_LEN), 0);
        ck_assert_int_eq(memcmp(h.payload_sha256, t.h.payload_sha256, SHA256_LEN), 0);
        /* size and last use */
        uint64_t size = 0;
        int64_t mtime = 0;
        ck_assert_int_eq(B->ops->stat(B, t.key, &size, &mtime, &err), 0);
        ck_assert_uint_eq(size, t.enc.len);
        ck_assert_int_ge(mtime, before - 2000); /* (coarse filesystem clocks) */
        ck_assert_int_le(mtime, clock_wall_ms() + 2000);
        /* verified and decoded back to the content */
        strata_buf out, raw;
        sbuf_init(&out, 0);
        sbuf_init(&raw, 0);
        ck_assert_msg(blobs_get_verified(B, t.key, MAX_BLOB, &out, &h, &err) == 0, "%s",
                      err.detail);
        ck_assert_msg(blob_decode(out.data, out.len, MAX_BLOB, &raw, &h, &err) == 0, "%s",
                      err.detail);
        ck_assert_uint_eq(raw.len, t.raw_len);
        if (t.raw_len > 0)
            ck_assert_int_eq(memcmp(raw.data, t.raw, t.raw_len), 0);
        sbuf_free(&out);
        sbuf_free(&raw);
        free_blob(&t);
    }
}
END_TEST

/* get() appends to what the buffer holds (the service reads into buffers
 * that already hold bytes) and honours max_len. */
START_TEST(get_appends_and_bounds_its_reads)
{
    strata_error err;
    tblob t;
    make_blob(&t, "a", 5000, SCODEC_NONE);
    put_blob(B, &t);
    strata_buf out;
    sbuf_init(&out, 0);
    ck_assert_int_eq(sbuf_append(&out, "xyz", 3, &err), 0);
    ck_assert_int_eq(B->ops->get(B, t.key, MAX_BLOB, &out, &err), 0);
    ck_assert_uint_eq(out.len, 3 + t.enc.len);
    ck_assert_int_eq(memcmp(out.data, "xyz", 3), 0);
    ck_assert_int_eq(memcmp(out.data + 3, t.enc.data, t.enc.len), 0);
    /* too large for max_len: refused, nothing appended */
    out.len = 3;
    ck_assert_int_eq(B->ops->get(B, t.key, t.enc.len - 1, &out, &err), -1);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
    ck_assert_uint_eq(out.len, 3);
    ck_assert_int_eq(B->ops->get(B, t.key, t.enc.len, &out, &err), 0);
    ck_assert_uint_eq(out.len, 3 + t.enc.len);
    /* blobs_get_verified appends too, and leaves the buffer as it was on failure */
    out.len = 3;
    blob_header h;
    ck_assert_int_eq(blobs_get_verified(B, t.key, MAX_BLOB, &out, &h, &err), 0);
    ck_assert_uint_eq(out.len, 3 + t.enc.len);
    sbuf_free(&out);
    free_blob(&t);
}
END_TEST

START_TEST(missing_keys_are_not_found)
{
    strata_error err;
    tblob t;
    make_blob(&t, "never", 100, SCODEC_NONE);
    expect_missing(B, t.key);
    ck_assert_int_eq(B->ops->touch(B, t.key, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    /* removing a key that is not there: SERR_NOT_FOUND (the collector
     * relies on it to finish a removal a dead collector began) */
    ck_assert_int_eq(B->ops->remove(B, t.key, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    /* and it wrote nothing */
    ck_assert(!exists(B, t.key));
    free_blob(&t);
}
END_TEST

START_TEST(put_is_idempotent)
{
    strata_error err;
    tblob t, other;
    make_blob(&t, "a", 10000, SCODEC_ZSTD);
    make_blob(&other, "a", 10000, SCODEC_NONE); /* same content, another encoding */
    ck_assert_str_eq(t.key, other.key);
    ck_assert(t.enc.len != other.enc.len);
    put_blob(B, &t);
    put_blob(B, &t);
    expect_bytes(B, t.key, t.enc.data, t.enc.len);
    /* a key that exists is kept as it is (same key, same content) */
    ck_assert_int_eq(B->ops->put(B, t.key, other.enc.data, other.enc.len, &err), 0);
    expect_bytes(B, t.key, t.enc.data, t.enc.len);
    /* through another handle too */
    put_blob(second(), &t);
    expect_bytes(B2, t.key, t.enc.data, t.enc.len);
    free_blob(&t);
    free_blob(&other);
}
END_TEST

START_TEST(replace_overwrites_or_creates)
{
    strata_error err;
    tblob z, n;
    make_blob(&z, "r", 50000, SCODEC_ZSTD);
    make_blob(&n, "r", 50000, SCODEC_NONE);
    /* creates when missing */
    ck_assert_int_eq(B->ops->replace(B, z.key, z.enc.data, z.enc.len, &err), 0);
    expect_bytes(B, z.key, z.enc.data, z.enc.len);
    /* replaces a damaged blob (the repair path) */
    strata_buf bad;
    sbuf_init(&bad, 0);
    ck_assert_int_eq(sbuf_append(&bad, z.enc.data, z.enc.len, &err), 0);
    bad.data[bad.len - 1] ^= 0x55;
    ck_assert_int_eq(B->ops->replace(B, z.key, bad.data, bad.len, &err), 0);
    strata_buf out;
    sbuf_init(&out, 0);
    blob_header h;
    ck_assert_int_eq(blobs_get_verified(B, z.key, MAX_BLOB, &out, &h, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_int_eq(B->ops->replace(B, z.key, n.enc.data, n.enc.len, &err), 0);
    expect_bytes(B, z.key, n.enc.data, n.enc.len);
    ck_assert_int_eq(blobs_get_verified(B, z.key, MAX_BLOB, &out, &h, &err), 0);
    uint64_t size = 0;
    int64_t mtime;
    ck_assert_int_eq(B->ops->stat(B, z.key, &size, &mtime, &err), 0);
    ck_assert_uint_eq(size, n.enc.len);
    sbuf_free(&out);
    sbuf_free(&bad);
    free_blob(&z);
    free_blob(&n);
}
END_TEST

START_TEST(remove_removes)
{
    strata_error err;
    tblob a, b;
    make_blob(&a, "a", 1000, SCODEC_NONE);
    make_blob(&b, "b", 1000, SCODEC_NONE);
    put_blob(B, &a);
    put_blob(B, &b);
    ck_assert_int_eq(B->ops->remove(B, a.key, &err), 0);
    expect_missing(B, a.key);
    expect_missing(second(), a.key);
    ck_assert(exists(B, b.key)); /* only that one */
    listing l = {.blobs = (tblob[]){a, b}, .n = 2};
    list_blobs(B, &l);
    ck_assert_int_eq(l.seen[0], 0);
    ck_assert_int_eq(l.seen[1], 1);
    ck_assert_int_eq(B->ops->remove(B, a.key, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    /* stored again after a removal */
    put_blob(B, &a);
    expect_bytes(B, a.key, a.enc.data, a.enc.len);
    free_blob(&a);
    free_blob(&b);
}
END_TEST

START_TEST(list_is_complete)
{
    enum { COUNT = 60 };
    tblob *ts = calloc(COUNT, sizeof *ts);
    for (int i = 0; i < COUNT; i++) {
        char label[16];
        snprintf(label, sizeof label, "l%d", i);
        make_blob(&ts[i], label, 100 + (size_t)i * 37, SCODEC_NONE);
        put_blob(i % 2 ? second() : B, &ts[i]);
    }
    listing *l = calloc(2, sizeof *l);
    /* listing holds at most 64 keys: two halves */
    for (int half = 0; half < 2; half++) {
        l[half] = (listing){.blobs = ts + half * (COUNT / 2), .n = COUNT / 2};
        list_blobs(half ? second() : B, &l[half]);
        for (int i = 0; i < COUNT / 2; i++) {
            const tblob *t = &ts[half * (COUNT / 2) + i];
            ck_assert_msg(l[half].seen[i] == 1, "%s listed %d times", t->key, l[half].seen[i]);
            ck_assert_uint_eq(l[half].size[i], t->enc.len);
            ck_assert_int_gt(l[half].mtime[i], 0);
        }
        ck_assert_int_ge(l[half].calls, COUNT / 2);
    }
    /* fn returning non-zero stops the walk */
    listing stop = {.blobs = ts, .n = 1, .stop_after = 1};
    list_blobs(B, &stop);
    ck_assert_int_eq(stop.calls, 1);
    for (int i = 0; i < COUNT; i++)
        free_blob(&ts[i]);
    free(ts);
    free(l);
}
END_TEST

START_TEST(touch_restarts_the_age)
{
    strata_error err;
    tblob t;
    make_blob(&t, "t", 100, SCODEC_NONE);
    put_blob(B, &t);
    uint64_t size;
    int64_t m1 = 0, m2 = 0;
    ck_assert_int_eq(B->ops->stat(B, t.key, &size, &m1, &err), 0);
    sleep_ms(1100); /* (a backend with whole-second times moves too) */
    ck_assert_int_eq(B->ops->touch(B, t.key, &err), 0);
    ck_assert_int_eq(B->ops->stat(B, t.key, &size, &m2, &err), 0);
    ck_assert_int_gt(m2, m1);
    ck_assert_uint_eq(size, t.enc.len);
    expect_bytes(B, t.key, t.enc.data, t.enc.len); /* content untouched */
    listing l = {.blobs = &t, .n = 1};
    list_blobs(B, &l);
    ck_assert_int_eq(l.seen[0], 1);
    ck_assert_int_eq(l.mtime[0], m2);
    free_blob(&t);
}
END_TEST

/* Readers never see a partial blob while it is replaced again and again
 * (two valid encodings of one content), nor a missing one. */
typedef struct reader {
    blob_store *b;
    const char *key;
    volatile int *stop;
    int reads, bad;
    char detail[STRATA_ERR_DETAIL_MAX];
} reader;

static void *read_while_replaced(void *arg)
{
    reader *r = arg;
    strata_buf out;
    sbuf_init(&out, 0);
    while (!__atomic_load_n(r->stop, __ATOMIC_ACQUIRE) || r->reads < 5) {
        strata_error err;
        blob_header h;
        out.len = 0;
        if (r->b->ops->get(r->b, r->key, MAX_BLOB, &out, &err) != 0 ||
            blob_check_copy(out.data, out.len, r->key, &h, &err) != 0) {
            if (r->bad++ == 0)
                snprintf(r->detail, sizeof r->detail, "%s", err.detail);
        }
        r->reads++;
    }
    sbuf_free(&out);
    return NULL;
}

START_TEST(replace_is_atomic_for_readers)
{
    strata_error err;
    tblob z, n;
    make_blob(&z, "big", 4 << 20, SCODEC_ZSTD);
    make_blob(&n, "big", 4 << 20, SCODEC_NONE);
    ck_assert(z.enc.len < n.enc.len);
    put_blob(B, &z);
    enum { READERS = 4 };
    volatile int stop = 0;
    reader rs[READERS];
    pthread_t th[READERS];
    for (int i = 0; i < READERS; i++) {
        rs[i] = (reader){.b = i % 2 ? second() : B, .key = z.key, .stop = &stop};
        ck_assert_int_eq(pthread_create(&th[i], NULL, read_while_replaced, &rs[i]), 0);
    }
    for (int i = 0; i < 40; i++) {
        const tblob *t = i % 2 ? &z : &n;
        ck_assert_msg(B->ops->replace(B, t->key, t->enc.data, t->enc.len, &err) == 0, "%s",
                      err.detail);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    int reads = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(rs[i].bad == 0, "reader %d: %d bad reads of %d (first: %s)", i, rs[i].bad,
                      rs[i].reads, rs[i].detail);
        reads += rs[i].reads;
    }
    ck_assert_int_gt(reads, 0);
    expect_bytes(B, z.key, z.enc.data, z.enc.len);
    free_blob(&z);
    free_blob(&n);
}
END_TEST

/* Many writers storing one key at once: all succeed, one whole blob. */
typedef struct putter {
    blob_store *b;
    const tblob *t;
    bool replace;
    int failed;
    char detail[STRATA_ERR_DETAIL_MAX]; /* the last failure's */
} putter;

static void *put_at_once(void *arg)
{
    putter *p = arg;
    strata_error err = {0};
    for (int i = 0; i < 5; i++)
        if ((p->replace ? p->b->ops->replace : p->b->ops->put)(p->b, p->t->key, p->t->enc.data,
                                                               p->t->enc.len, &err) != 0) {
            p->failed++;
            snprintf(p->detail, sizeof p->detail, "%s", err.detail);
        }
    return NULL;
}

START_TEST(concurrent_puts_of_one_key)
{
    tblob t;
    make_blob(&t, "same", 1 << 20, SCODEC_NONE);
    enum { PUTTERS = 6 };
    putter ps[PUTTERS];
    pthread_t th[PUTTERS];
    for (int i = 0; i < PUTTERS; i++) {
        ps[i] = (putter){.b = i % 2 ? second() : B, .t = &t, .replace = i % 3 == 0};
        ck_assert_int_eq(pthread_create(&th[i], NULL, put_at_once, &ps[i]), 0);
    }
    for (int i = 0; i < PUTTERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(ps[i].failed == 0, "putter %d: %d of 5 failed, the last: %s", i, ps[i].failed,
                      ps[i].detail);
    }
    expect_bytes(B, t.key, t.enc.data, t.enc.len);
    listing l = {.blobs = &t, .n = 1};
    list_blobs(B, &l);
    ck_assert_int_eq(l.seen[0], 1);
    free_blob(&t);
}
END_TEST

/* Only 64 lower-case hex digits reach a backend: every operation refuses
 * anything else with SERR_INVALID, and nothing is written anywhere. */
START_TEST(keys_are_validated)
{
    static const char *const bad[] = {
        "",
        "../x",
        "../../../../../../tmp/x",
        "/etc/passwd",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde",   /* 63 */
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0", /* 65 */
        "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",  /* upper case */
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde/",
        "../456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\n",
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg",
    };
    tblob t;
    make_blob(&t, "v", 100, SCODEC_NONE);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *k = bad[i];
        strata_error err;
        strata_buf out;
        sbuf_init(&out, 0);
        bool e;
        blob_header h;
        uint64_t size;
        int64_t mtime;
        ck_assert_msg(!blob_key_valid(k), "'%s' passes as a key", k);
#define REFUSED(call)                                                                              \
    do {                                                                                           \
        err.kind = SERR_OK;                                                                        \
        ck_assert_msg((call) == -1 && err.kind == SERR_INVALID, #call " with '%s': kind %d", k,    \
                      err.kind);                                                                   \
    } while (0)
        REFUSED(B->ops->put(B, k, t.enc.data, t.enc.len, &err));
        REFUSED(B->ops->replace(B, k, t.enc.data, t.enc.len, &err));
        REFUSED(B->ops->get(B, k, MAX_BLOB, &out, &err));
        REFUSED(B->ops->exists(B, k, &e, &err));
        REFUSED(B->ops->head(B, k, &h, &err));
        REFUSED(B->ops->remove(B, k, &err));
        REFUSED(B->ops->touch(B, k, &err));
        REFUSED(B->ops->stat(B, k, &size, &mtime, &err));
        REFUSED(blobs_get_verified(B, k, MAX_BLOB, &out, &h, &err));
        blob_reader *r = NULL;
        REFUSED(B->ops->open_read(B, k, 0, &r, &size, &err));
        blob_writer *w = NULL;
        ck_assert_int_eq(B->ops->begin_write(B, &w, &err), 0);
        ck_assert_int_eq(
            w->ops->write(w, t.enc.data + BLOB_HEADER_SIZE, t.enc.len - BLOB_HEADER_SIZE, &err), 0);
        REFUSED(w->ops->commit(w, k, t.enc.data, &err));
#undef REFUSED
        ck_assert_uint_eq(out.len, 0);
        sbuf_free(&out);
    }
    ck_assert(blob_key_valid(t.key));
    ck_assert(!blob_key_valid(NULL));
    free_blob(&t);
}
END_TEST

/* Reads verify: a blob holding another content, a damaged payload or
 * header, a truncated one: SERR_CORRUPT, never bytes. */
START_TEST(verified_reads_refuse_damage)
{
    strata_error err;
    tblob a, b;
    make_blob(&a, "a", 20000, SCODEC_ZSTD);
    make_blob(&b, "b", 20000, SCODEC_ZSTD);
    strata_buf out, bad;
    sbuf_init(&out, 0);
    sbuf_init(&bad, 0);
    blob_header h;
    /* b's bytes under a's key */
    ck_assert_int_eq(B->ops->put(B, a.key, b.enc.data, b.enc.len, &err), 0);
    ck_assert_int_eq(blobs_get_verified(B, a.key, MAX_BLOB, &out, &h, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    /* a damaged payload byte */
    ck_assert_int_eq(sbuf_append(&bad, a.enc.data, a.enc.len, &err), 0);
    bad.data[BLOB_HEADER_SIZE + 10] ^= 1;
    ck_assert_int_eq(B->ops->replace(B, a.key, bad.data, bad.len, &err), 0);
    ck_assert_int_eq(blobs_get_verified(B, a.key, MAX_BLOB, &out, &h, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    ck_assert_int_eq(B->ops->head(B, a.key, &h, &err), 0); /* the header alone is fine */
    /* a damaged header */
    bad.data[BLOB_HEADER_SIZE + 10] ^= 1;
    bad.data[9] ^= 1;
    ck_assert_int_eq(B->ops->replace(B, a.key, bad.data, bad.len, &err), 0);
    ck_assert_int_eq(B->ops->head(B, a.key, &h, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    ck_assert_int_eq(blobs_get_verified(B, a.key, MAX_BLOB, &out, &h, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    /* truncated, inside the header and inside the payload */
    bad.data[9] ^= 1;
    ck_assert_int_eq(B->ops->replace(B, a.key, bad.data, 40, &err), 0);
    ck_assert_int_eq(B->ops->head(B, a.key, &h, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    ck_assert_int_eq(B->ops->replace(B, a.key, bad.data, bad.len - 1, &err), 0);
    ck_assert_int_eq(blobs_get_verified(B, a.key, MAX_BLOB, &out, &h, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    ck_assert_uint_eq(out.len, 0);
    /* repaired */
    ck_assert_int_eq(B->ops->replace(B, a.key, a.enc.data, a.enc.len, &err), 0);
    ck_assert_int_eq(blobs_get_verified(B, a.key, MAX_BLOB, &out, &h, &err), 0);
    sbuf_free(&out);
    sbuf_free(&bad);
    free_blob(&a);
    free_blob(&b);
}
END_TEST

START_TEST(two_handles_agree)
{
    strata_error err;
    blob_store *C = second();
    tblob t;
    make_blob(&t, "x", 3000, SCODEC_NONE);
    put_blob(B, &t);
    ck_assert(exists(C, t.key));
    expect_bytes(C, t.key, t.enc.data, t.enc.len);
    ck_assert_int_eq(C->ops->remove(C, t.key, &err), 0);
    expect_missing(B, t.key);
    free_blob(&t);
}
END_TEST

/* ---- streaming: open_read and begin_write ------------------------------------------------ */

static void need_streaming(blob_store *b)
{
    ck_assert_msg(b->ops->open_read != NULL && b->ops->begin_write != NULL,
                  "the %s blob store does not stream", b->ops->name);
}

/* Streams t's payload into a writer in writes of uneven sizes (1 byte,
 * then about chunk), then commits it under t's key. With check_unseen,
 * the key must not be visible before the commit. */
static int stream_blob(blob_store *b, const tblob *t, size_t chunk, bool check_unseen,
                       strata_error *err)
{
    need_streaming(b);
    blob_writer *w = NULL;
    if (b->ops->begin_write(b, &w, err) != 0)
        return -1;
    ck_assert_ptr_nonnull(w);
    const unsigned char *p = t->enc.data + BLOB_HEADER_SIZE;
    size_t left = t->enc.len - BLOB_HEADER_SIZE, n = 1;
    while (left > 0) {
        size_t k = n < left ? n : left;
        if (w->ops->write(w, p, k, err) != 0) {
            w->ops->abort(w);
            return -1;
        }
        p += k;
        left -= k;
        n = chunk + left % 13;
    }
    if (check_unseen)
        ck_assert_msg(!exists(b, t->key), "a streamed blob is visible before its commit");
    return w->ops->commit(w, t->key, t->enc.data, err);
}

/* Reads key through open_read from offset to the end, in reads of at most
 * cap bytes, and expects exactly bytes[offset..len). */
static void expect_stream(blob_store *b, const char *key, const unsigned char *bytes, size_t len,
                          uint64_t offset, size_t cap)
{
    need_streaming(b);
    strata_error err;
    blob_reader *r = NULL;
    uint64_t total = 0;
    ck_assert_msg(b->ops->open_read(b, key, offset, &r, &total, &err) == 0, "open_read: %s",
                  err.detail);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(total, len);
    unsigned char *buf = malloc(cap);
    uint64_t at = offset;
    for (;;) {
        long n = r->ops->read(r, buf, cap, &err);
        ck_assert_msg(n >= 0, "read at %llu of %zu: %s", (unsigned long long)at, len, err.detail);
        if (n == 0)
            break;
        ck_assert_uint_le((size_t)n, cap);
        ck_assert_uint_le(at + (uint64_t)n, len);
        ck_assert_msg(memcmp(buf, bytes + at, (size_t)n) == 0, "bytes differ at %llu",
                      (unsigned long long)at);
        at += (uint64_t)n;
    }
    ck_assert_uint_eq(at, len);
    ck_assert_int_eq(r->ops->read(r, buf, cap, &err), 0); /* the end stays the end */
    r->ops->close(r);
    free(buf);
}

START_TEST(stream_reads_from_an_offset)
{
    tblob t, s;
    make_blob(&t, "rd", 9 << 20, SCODEC_NONE); /* several ranges on S3 */
    make_blob(&s, "rd", 700, SCODEC_NONE);     /* (another content) */
    put_blob(B, &t);
    put_blob(B, &s);
    const unsigned char *e = t.enc.data;
    expect_stream(B, t.key, e, t.enc.len, 0, 65537);
    expect_stream(B, t.key, e, t.enc.len, 0, 16 << 20); /* reads larger than the blob */
    expect_stream(B, t.key, e, t.enc.len, t.enc.len / 2 + 7, 100000);
    expect_stream(B, t.key, e, t.enc.len, BLOB_HEADER_SIZE, 1 << 20); /* just the payload */
    expect_stream(B, t.key, e, t.enc.len, t.enc.len - 1, 10);
    expect_stream(B, t.key, e, t.enc.len, t.enc.len, 10); /* at the end: nothing to read */
    /* past the end: a reader with nothing to read */
    strata_error err;
    blob_reader *r = NULL;
    uint64_t total = 0;
    unsigned char one;
    ck_assert_msg(B->ops->open_read(B, t.key, t.enc.len + 10, &r, &total, &err) == 0, "%s",
                  err.detail);
    ck_assert_uint_eq(total, t.enc.len);
    ck_assert_int_eq(r->ops->read(r, &one, 1, &err), 0);
    r->ops->close(r);
    expect_stream(second(), s.key, s.enc.data, s.enc.len, 0, 1);
    expect_stream(B2, s.key, s.enc.data, s.enc.len, 13, 4096);
    free_blob(&t);
    free_blob(&s);
}
END_TEST

START_TEST(stream_read_of_a_missing_key_is_not_found)
{
    need_streaming(B);
    strata_error err;
    tblob t;
    make_blob(&t, "never", 100, SCODEC_NONE);
    blob_reader *r = NULL;
    uint64_t total;
    ck_assert_int_eq(B->ops->open_read(B, t.key, 0, &r, &total, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(B->ops->open_read(B, t.key, 50, &r, &total, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    /* gone after a removal */
    put_blob(B, &t);
    expect_stream(B, t.key, t.enc.data, t.enc.len, 0, 64);
    ck_assert_int_eq(B->ops->remove(B, t.key, &err), 0);
    ck_assert_int_eq(B->ops->open_read(B, t.key, 0, &r, &total, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    free_blob(&t);
}
END_TEST

/* Streamed writes of 0 bytes, 1 KiB and 13 MiB (several S3 parts, the last
 * one short) read back byte for byte, whole and streamed. */
START_TEST(stream_writes_round_trip)
{
    strata_error err;
    const struct {
        size_t len;
        enum scodec codec;
        size_t chunk;
    } shapes[] = {{0, SCODEC_NONE, 100},
                  {1024, SCODEC_NONE, 100},
                  {1024, SCODEC_ZSTD, 7},
                  {(13 << 20) + 777, SCODEC_NONE, 300000},
                  {(13 << 20) + 777, SCODEC_NONE, 5 << 20}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        char label[32];
        snprintf(label, sizeof label, "w%zu", i);
        tblob t;
        make_blob(&t, label, shapes[i].len, shapes[i].codec);
        forget_if_shared(B, &t);
        ck_assert_msg(stream_blob(i % 2 ? second() : B, &t, shapes[i].chunk, true, &err) == 0,
                      "streamed write of %zu bytes: %s", shapes[i].len, err.detail);
        expect_bytes(B, t.key, t.enc.data, t.enc.len);
        expect_stream(B, t.key, t.enc.data, t.enc.len, 0, 1 << 20);
        blob_header h;
        ck_assert_int_eq(B->ops->head(B, t.key, &h, &err), 0);
        ck_assert_uint_eq(h.raw_size, shapes[i].len);
        uint64_t size = 0;
        int64_t mtime = 0;
        ck_assert_int_eq(B->ops->stat(B, t.key, &size, &mtime, &err), 0);
        ck_assert_uint_eq(size, t.enc.len);
        strata_buf out;
        sbuf_init(&out, 0);
        ck_assert_msg(blobs_get_verified(B, t.key, MAX_BLOB, &out, &h, &err) == 0, "%s",
                      err.detail);
        sbuf_free(&out);
        listing l = {.blobs = &t, .n = 1};
        list_blobs(B, &l);
        ck_assert_int_eq(l.seen[0], 1);
        ck_assert_uint_eq(l.size[0], t.enc.len);
        free_blob(&t);
    }
}
END_TEST

/* A commit onto a key that exists succeeds and keeps the old bytes (same
 * key, same content), small or large. */
START_TEST(stream_commit_onto_an_existing_key_keeps_it)
{
    strata_error err;
    const size_t lens[] = {1000, 6 << 20};
    for (size_t i = 0; i < 2; i++) {
        tblob old, nw;
        make_blob(&old, i ? "big" : "small", lens[i], SCODEC_ZSTD);
        make_blob(&nw, i ? "big" : "small", lens[i], SCODEC_NONE);
        ck_assert_str_eq(old.key, nw.key);
        ck_assert(old.enc.len != nw.enc.len);
        put_blob(B, &old);
        ck_assert_msg(stream_blob(B, &nw, 1 << 20, false, &err) == 0, "%s", err.detail);
        expect_bytes(B, old.key, old.enc.data, old.enc.len);
        /* and the same bytes again */
        ck_assert_msg(stream_blob(second(), &old, 4096, false, &err) == 0, "%s", err.detail);
        expect_bytes(B, old.key, old.enc.data, old.enc.len);
        listing l = {.blobs = &old, .n = 1};
        list_blobs(B, &l);
        ck_assert_int_eq(l.seen[0], 1);
        free_blob(&old);
        free_blob(&nw);
    }
}
END_TEST

/* An aborted write leaves nothing under its key, nothing listed, and the
 * key can be written afterwards. */
START_TEST(stream_abort_leaves_nothing)
{
    need_streaming(B);
    strata_error err;
    const size_t lens[] = {0, 3000, 14 << 20}; /* the last: S3 parts uploaded already */
    for (size_t i = 0; i < 3; i++) {
        char label[16];
        snprintf(label, sizeof label, "ab%zu", i);
        tblob t;
        make_blob(&t, label, lens[i], SCODEC_NONE);
        forget_if_shared(B, &t);
        blob_writer *w = NULL;
        ck_assert_int_eq(B->ops->begin_write(B, &w, &err), 0);
        const unsigned char *p = t.enc.data + BLOB_HEADER_SIZE;
        size_t left = t.enc.len - BLOB_HEADER_SIZE;
        while (left > 0) {
            size_t k = left < (1 << 20) ? left : (1 << 20);
            ck_assert_msg(w->ops->write(w, p, k, &err) == 0, "write: %s", err.detail);
            p += k;
            left -= k;
        }
        w->ops->abort(w);
        ck_assert(!exists(B, t.key));
        listing l = {.blobs = &t, .n = 1};
        list_blobs(B, &l);
        ck_assert_int_eq(l.seen[0], 0);
        expect_missing(B, t.key);
        /* written afterwards in full */
        ck_assert_msg(stream_blob(B, &t, 1 << 20, true, &err) == 0, "%s", err.detail);
        expect_bytes(B, t.key, t.enc.data, t.enc.len);
        free_blob(&t);
    }
    /* a writer aborted before any byte */
    blob_writer *w = NULL;
    ck_assert_int_eq(B->ops->begin_write(B, &w, &err), 0);
    w->ops->abort(w);
}
END_TEST

/* Two writers of one content committing at once: both succeed, and one
 * whole blob results (either writer's encoding). */
typedef struct swriter {
    blob_store *b;
    const tblob *t;
    pthread_barrier_t *bar;
    int rc;
    char detail[STRATA_ERR_DETAIL_MAX];
} swriter;

static void *stream_then_commit(void *arg)
{
    swriter *s = arg;
    strata_error err = {0};
    blob_writer *w = NULL;
    s->rc = s->b->ops->begin_write(s->b, &w, &err);
    const unsigned char *p = s->t->enc.data + BLOB_HEADER_SIZE;
    size_t left = s->t->enc.len - BLOB_HEADER_SIZE;
    while (s->rc == 0 && left > 0) {
        size_t k = left < 777777 ? left : 777777;
        s->rc = w->ops->write(w, p, k, &err);
        p += k;
        left -= k;
    }
    pthread_barrier_wait(s->bar); /* commits at the same moment */
    if (s->rc == 0)
        s->rc = w->ops->commit(w, s->t->key, s->t->enc.data, &err);
    else if (w != NULL)
        w->ops->abort(w);
    snprintf(s->detail, sizeof s->detail, "%s", err.detail);
    return NULL;
}

START_TEST(concurrent_stream_writers_of_one_content)
{
    need_streaming(B);
    const struct {
        size_t len;
        enum scodec codec[2];
    } rounds[] = {{1000, {SCODEC_ZSTD, SCODEC_NONE}},
                  {6 << 20, {SCODEC_NONE, SCODEC_NONE}},
                  {14 << 20, {SCODEC_NONE, SCODEC_ZSTD}}};
    for (size_t i = 0; i < sizeof rounds / sizeof *rounds; i++) {
        char label[16];
        snprintf(label, sizeof label, "cw%zu", i);
        tblob t[2];
        make_blob(&t[0], label, rounds[i].len, rounds[i].codec[0]);
        make_blob(&t[1], label, rounds[i].len, rounds[i].codec[1]);
        pthread_barrier_t bar;
        ck_assert_int_eq(pthread_barrier_init(&bar, NULL, 2), 0);
        swriter s[2];
        pthread_t th[2];
        for (int k = 0; k < 2; k++) {
            s[k] = (swriter){.b = k ? second() : B, .t = &t[k], .bar = &bar};
            ck_assert_int_eq(pthread_create(&th[k], NULL, stream_then_commit, &s[k]), 0);
        }
        for (int k = 0; k < 2; k++) {
            pthread_join(th[k], NULL);
            ck_assert_msg(s[k].rc == 0, "writer %d of %zu bytes: %s", k, rounds[i].len,
                          s[k].detail);
        }
        pthread_barrier_destroy(&bar);
        strata_buf out;
        sbuf_init(&out, 0);
        strata_error err;
        blob_header h;
        ck_assert_msg(blobs_get_verified(B, t[0].key, MAX_BLOB, &out, &h, &err) == 0, "%s",
                      err.detail);
        bool first = out.len == t[0].enc.len && memcmp(out.data, t[0].enc.data, out.len) == 0;
        bool other = out.len == t[1].enc.len && memcmp(out.data, t[1].enc.data, out.len) == 0;
        ck_assert_msg(first || other, "the blob is neither writer's bytes");
        sbuf_free(&out);
        listing l = {.blobs = t, .n = 1};
        list_blobs(B, &l);
        ck_assert_int_eq(l.seen[0], 1);
        free_blob(&t[0]);
        free_blob(&t[1]);
    }
}
END_TEST

/* Readers streaming a blob while it is removed and stored again: no crash,
 * and every byte a read returns is the blob's byte at that place (an
 * error may end a read; a short read without one may not). */
typedef struct sreader {
    blob_store *b;
    const tblob *t;
    volatile int *stop;
    int opens, whole, failed, bad;
    char detail[STRATA_ERR_DETAIL_MAX];
} sreader;

static void note_bad(sreader *s, const char *fmt, unsigned long long v)
{
    if (s->bad++ == 0)
        snprintf(s->detail, sizeof s->detail, fmt, v);
}

static void *stream_while_removed(void *arg)
{
    sreader *s = arg;
    size_t cap = 300000;
    unsigned char *buf = malloc(cap);
    while (!__atomic_load_n(s->stop, __ATOMIC_ACQUIRE) || s->opens < 3) {
        strata_error err;
        blob_reader *r = NULL;
        uint64_t total = 0, at = 0;
        s->opens++;
        if (s->b->ops->open_read(s->b, s->t->key, 0, &r, &total, &err) != 0) {
            if (err.kind != SERR_NOT_FOUND)
                s->failed++;
            continue;
        }
        if (total != s->t->enc.len)
            note_bad(s, "total %llu", (unsigned long long)total);
        for (;;) {
            long n = r->ops->read(r, buf, cap, &err);
            if (n < 0) {
                s->failed++;
                break;
            }
            if (n == 0) {
                if (at == total)
                    s->whole++;
                else
                    note_bad(s, "the read ended early at %llu without an error",
                             (unsigned long long)at);
                break;
            }
            if (at + (uint64_t)n > s->t->enc.len ||
                memcmp(buf, s->t->enc.data + at, (size_t)n) != 0) {
                note_bad(s, "wrong bytes at %llu", (unsigned long long)at);
                break;
            }
            at += (uint64_t)n;
        }
        r->ops->close(r);
    }
    free(buf);
    return NULL;
}

START_TEST(stream_readers_meet_a_removal)
{
    need_streaming(B);
    strata_error err;
    tblob t;
    make_blob(&t, "rm", 10 << 20, SCODEC_NONE);
    put_blob(B, &t);
    enum { READERS = 2 };
    volatile int stop = 0;
    sreader rs[READERS];
    pthread_t th[READERS];
    for (int i = 0; i < READERS; i++) {
        rs[i] = (sreader){.b = i % 2 ? second() : B, .t = &t, .stop = &stop};
        ck_assert_int_eq(pthread_create(&th[i], NULL, stream_while_removed, &rs[i]), 0);
    }
    for (int i = 0; i < 8; i++) {
        sleep_ms(20);
        ck_assert_msg(B->ops->remove(B, t.key, &err) == 0, "remove: %s", err.detail);
        sleep_ms(20);
        put_blob(B, &t);
    }
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    int opens = 0;
    for (int i = 0; i < READERS; i++) {
        pthread_join(th[i], NULL);
        ck_assert_msg(rs[i].bad == 0, "reader %d: %d bad reads of %d (first: %s)", i, rs[i].bad,
                      rs[i].opens, rs[i].detail);
        opens += rs[i].opens;
    }
    ck_assert_int_gt(opens, 0);
    expect_stream(B, t.key, t.enc.data, t.enc.len, 0, 1 << 20);
    free_blob(&t);
}
END_TEST

/* ---- s3:// only ---------------------------------------------------------------------------- */

/* The case's own store: the URL's prefix with P below it, so that a sweep
 * of staging/ meets only the case's debris. */
static blob_store *own_prefix_store(char *url, size_t cap)
{
    s3_url_below(CB->url, P, url, cap);
    strata_error err;
    blob_store *s = blobs_open(url, &err);
    ck_assert_msg(s != NULL, "cannot open %s: %s", url, err.detail);
    return s;
}

static int count_upload(void *ctx, const char *key, const char *upload_id, int64_t initiated_ms)
{
    (void)key, (void)upload_id, (void)initiated_ms;
    ++*(int *)ctx;
    return 0;
}

static int count_object(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    (void)key, (void)size, (void)mtime_ms;
    ++*(int *)ctx;
    return 0;
}

static void count_staging(s3_client *c, int *uploads, int *objects)
{
    strata_error err;
    *uploads = *objects = 0;
    ck_assert_msg(s3_mpu_list(c, "staging/", count_upload, uploads, &err) == 0, "%s", err.detail);
    ck_assert_msg(s3_list(c, "staging/", count_object, objects, &err) == 0, "%s", err.detail);
}

/* What a crash leaves under staging/ (an unfinished upload, a staged
 * object, a writer never committed nor aborted) is removed by the sweep
 * once old enough; list() sweeps with the hour-long age, leaving young
 * debris alone; blobs are never touched. */
START_TEST(s3_staging_debris_is_swept)
{
    strata_error err;
    char url[800];
    blob_store *S = own_prefix_store(url, sizeof url);
    s3_config cfg;
    ck_assert_msg(s3_config_from_url(url, &cfg, &err) == 0, "%s", err.detail);
    s3_client *c = s3_client_new(&cfg, &err);
    ck_assert_msg(c != NULL, "%s", err.detail);
    char uid[S3_UPLOAD_ID_MAX], etag[S3_ETAG_MAX];
    ck_assert_msg(s3_mpu_begin(c, "staging/crashed-upload", NULL, uid, &err) == 0, "%s",
                  err.detail);
    ck_assert_msg(s3_mpu_part(c, "staging/crashed-upload", uid, 1, "x", 1, etag, &err) == 0, "%s",
                  err.detail);
    ck_assert_msg(s3_put(c, "staging/crashed-object", "y", 1, NULL, NULL, &err) == 0, "%s",
                  err.detail);
    tblob t, big;
    make_blob(&t, "kept", 2000, SCODEC_NONE);
    make_blob(&big, "crash", 14 << 20, SCODEC_NONE);
    put_blob(S, &t);
    /* a writer that dies with parts uploaded */
    blob_writer *w = NULL;
    ck_assert_int_eq(S->ops->begin_write(S, &w, &err), 0);
    ck_assert_msg(w->ops->write(w, big.enc.data + BLOB_HEADER_SIZE, big.enc.len - BLOB_HEADER_SIZE,
                                &err) == 0,
                  "%s", err.detail);
    int uploads, objects;
    count_staging(c, &uploads, &objects);
    ck_assert_int_eq(uploads, 2);
    ck_assert_int_eq(objects, 1);
    /* young: a whole listing leaves it */
    listing l = {.blobs = &t, .n = 1};
    list_blobs(S, &l);
    ck_assert_int_eq(l.seen[0], 1);
    count_staging(c, &uploads, &objects);
    ck_assert_int_eq(uploads + objects, 3);
    /* old enough (S3 times have whole seconds) */
    sleep_ms(1100);
    unsigned removed = 0;
    ck_assert_msg(blobs_s3_sweep_staging(S, 0, &removed, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(removed, 3);
    count_staging(c, &uploads, &objects);
    ck_assert_int_eq(uploads + objects, 0);
    expect_bytes(S, t.key, t.enc.data, t.enc.len);
    /* the dead writer's commit fails cleanly: its upload is gone */
    ck_assert_int_eq(w->ops->commit(w, big.key, big.enc.data, &err), -1);
    ck_assert(!exists(S, big.key));
    count_staging(c, &uploads, &objects);
    ck_assert_int_eq(uploads + objects, 0);
    /* not an S3 store: refused */
    ck_assert_int_eq(blobs_s3_sweep_staging(NULL, 0, NULL, &err), -1);
    ck_assert_int_eq(S->ops->remove(S, t.key, &err), 0);
    s3_client_free(c);
    blobs_close(S);
    free_blob(&t);
    free_blob(&big);
}
END_TEST

/* ---- gridfs:// only ------------------------------------------------------------------------- */

static mongoc_collection_t *gcoll(mongoc_client_t *cl, const char *which)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%s", P, which);
    return mongo_conn_collection(gridfs_conn(), cl, name);
}

/* Documents of the case's collection `which` matching filter. */
static int gcount(const char *which, const bson_t *filter)
{
    mongoc_client_t *cl = mongo_conn_pop(gridfs_conn());
    mongoc_collection_t *coll = gcoll(cl, which);
    bson_t empty = BSON_INITIALIZER;
    mongoc_cursor_t *cur =
        mongoc_collection_find_with_opts(coll, filter ? filter : &empty, NULL, NULL);
    const bson_t *doc;
    int n = 0;
    while (mongoc_cursor_next(cur, &doc))
        n++;
    bson_error_t be;
    ck_assert_msg(!mongoc_cursor_error(cur, &be), "counting %s: %s", which, be.message);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    mongo_conn_push(gridfs_conn(), cl);
    return n;
}

/* Runs one write on the case's collection `which`; returns its error code. */
enum gop { G_INSERT, G_UPDATE, G_DELETE };

static uint32_t gwrite(const char *which, enum gop op, const bson_t *a, const bson_t *b)
{
    mongoc_client_t *cl = mongo_conn_pop(gridfs_conn());
    mongoc_collection_t *coll = gcoll(cl, which);
    bson_error_t be;
    bool ok = op == G_INSERT   ? mongoc_collection_insert_one(coll, a, NULL, NULL, &be)
              : op == G_UPDATE ? mongoc_collection_update_one(coll, a, b, NULL, NULL, &be)
                               : mongoc_collection_delete_one(coll, a, NULL, NULL, &be);
    mongoc_collection_destroy(coll);
    mongo_conn_push(gridfs_conn(), cl);
    return ok ? 0 : be.code ? be.code : 1;
}

/* The files document of key: its _id and the files_id of its chunks. */
static bson_t *gfile(const char *key, bson_value_t *id, bson_value_t *data)
{
    mongoc_client_t *cl = mongo_conn_pop(gridfs_conn());
    mongoc_collection_t *coll = gcoll(cl, "files");
    bson_t *filter = BCON_NEW("filename", BCON_UTF8(key));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, NULL, NULL);
    const bson_t *doc;
    ck_assert_msg(mongoc_cursor_next(cur, &doc), "no files document named %s", key);
    bson_t *copy = bson_copy(doc);
    bson_iter_t it;
    ck_assert(bson_iter_init_find(&it, copy, "_id"));
    bson_value_copy(bson_iter_value(&it), id);
    if (bson_iter_init_find(&it, copy, "data"))
        bson_value_copy(bson_iter_value(&it), data);
    else
        bson_value_copy(id, data);
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    mongoc_collection_destroy(coll);
    mongo_conn_push(gridfs_conn(), cl);
    return copy;
}

static bson_t *chunk_filter(const bson_value_t *data, int n)
{
    bson_t *f = bson_new();
    BSON_APPEND_VALUE(f, "files_id", data);
    if (n >= 0)
        BSON_APPEND_INT32(f, "n", n);
    return f;
}

/* Chunk n of data's bytes (into out, cap bytes): its length. */
static uint32_t read_chunk(const bson_value_t *data, int n, unsigned char *out, size_t cap)
{
    mongoc_client_t *cl = mongo_conn_pop(gridfs_conn());
    mongoc_collection_t *coll = gcoll(cl, "chunks");
    bson_t *f = chunk_filter(data, n);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, f, NULL, NULL);
    const bson_t *doc;
    ck_assert_msg(mongoc_cursor_next(cur, &doc), "no chunk %d", n);
    bson_iter_t it;
    const uint8_t *bytes;
    uint32_t len = 0;
    ck_assert(bson_iter_init_find(&it, doc, "data") && BSON_ITER_HOLDS_BINARY(&it));
    bson_iter_binary(&it, NULL, &len, &bytes);
    ck_assert_uint_le(len, cap);
    memcpy(out, bytes, len);
    mongoc_cursor_destroy(cur);
    bson_destroy(f);
    mongoc_collection_destroy(coll);
    mongo_conn_push(gridfs_conn(), cl);
    return len;
}

static void write_chunk(const bson_value_t *data, int n, const unsigned char *bytes, uint32_t len)
{
    bson_t *f = chunk_filter(data, n);
    bson_t *u = BCON_NEW("$set", "{", "data", BCON_BIN(BSON_SUBTYPE_BINARY, bytes, len), "}");
    ck_assert_int_eq(gwrite("chunks", G_UPDATE, f, u), 0);
    bson_destroy(u);
    bson_destroy(f);
}

/* Expects every verified read of key to say SERR_CORRUPT. */
static void expect_corrupt(const char *key, const char *what)
{
    strata_error err;
    strata_buf out;
    sbuf_init(&out, 0);
    blob_header h;
    ck_assert_msg(blobs_get_verified(B, key, MAX_BLOB, &out, &h, &err) == -1, "%s: get", what);
    ck_assert_msg(err.kind == SERR_CORRUPT, "%s: get says %d: %s", what, err.kind, err.detail);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_msg(blobs_check_stored(B, key, &h, &err) == -1, "%s: stream", what);
    ck_assert_msg(err.kind == SERR_CORRUPT, "%s: stream says %d: %s", what, err.kind, err.detail);
    sbuf_free(&out);
}

/* The stored file is standard GridFS (libmongoc's download stream reads
 * the encoded blob), one file per key, and the bucket's layout version
 * is checked at open. */
START_TEST(gridfs_layout_and_schema)
{
    strata_error err;
    tblob t;
    make_blob(&t, "g", 600000, SCODEC_NONE);
    put_blob(B, &t);
    ck_assert_msg(B->ops->health(B, &err) == 0, "health: %s", err.detail);
    bson_value_t id, data;
    bson_t *doc = gfile(t.key, &id, &data);
    bson_iter_t it;
    ck_assert(bson_iter_init_find(&it, doc, "length"));
    ck_assert_int_eq(bson_iter_as_int64(&it), (int64_t)t.enc.len);
    ck_assert(bson_iter_init_find(&it, doc, "chunkSize"));
    ck_assert_int_eq(bson_iter_as_int64(&it), BLOBS_GRIDFS_CHUNK);
    bson_t *f = chunk_filter(&data, -1);
    ck_assert_int_eq(gcount("chunks", f),
                     (int)((t.enc.len + BLOBS_GRIDFS_CHUNK - 1) / BLOBS_GRIDFS_CHUNK));
    bson_destroy(f);
    /* read back through libmongoc's own GridFS download stream */
    mongoc_client_t *cl = mongo_conn_pop(gridfs_conn());
    mongoc_database_t *db = mongoc_client_get_database(cl, mongo_conn_db(gridfs_conn()));
    bson_t *bopts = BCON_NEW("bucketName", BCON_UTF8(P));
    bson_error_t be;
    mongoc_gridfs_bucket_t *bucket = mongoc_gridfs_bucket_new(db, bopts, NULL, &be);
    ck_assert_msg(bucket != NULL, "%s", be.message);
    mongoc_stream_t *st = mongoc_gridfs_bucket_open_download_stream(bucket, &id, &be);
    ck_assert_msg(st != NULL, "%s", be.message);
    unsigned char *got = malloc(t.enc.len + 1);
    size_t at = 0;
    ssize_t n;
    while ((n = mongoc_stream_read(st, got + at, t.enc.len + 1 - at, 1, 0)) > 0)
        at += (size_t)n;
    ck_assert_int_ge(n, 0);
    ck_assert_uint_eq(at, t.enc.len);
    ck_assert_int_eq(memcmp(got, t.enc.data, t.enc.len), 0);
    free(got);
    mongoc_stream_destroy(st);
    mongoc_gridfs_bucket_destroy(bucket);
    bson_destroy(bopts);
    mongoc_database_destroy(db);
    mongo_conn_push(gridfs_conn(), cl);
    /* a second file under the key: the unique index refuses it */
    bson_t *dup = BCON_NEW("filename", BCON_UTF8(t.key), "length", BCON_INT64(0), "chunkSize",
                           BCON_INT32(1024));
    ck_assert_int_eq(gwrite("files", G_INSERT, dup, NULL), 11000);
    bson_destroy(dup);
    ck_assert_int_eq(gcount("files", NULL), 1);
    /* a newer layout is refused at open; this build's opens */
    bson_t *sf = BCON_NEW("_id", BCON_UTF8("schema"));
    bson_t *v2 = BCON_NEW("$set", "{", "version", BCON_INT32(2), "}");
    bson_t *v1 = BCON_NEW("$set", "{", "version", BCON_INT32(1), "}");
    ck_assert_int_eq(gwrite("meta", G_UPDATE, sf, v2), 0);
    blob_store *s = blobs_open(CASE_URL, &err);
    ck_assert_ptr_null(s);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.detail, "version 2"));
    ck_assert_int_eq(gwrite("meta", G_UPDATE, sf, v1), 0);
    s = blobs_open(CASE_URL, &err);
    ck_assert_msg(s != NULL, "%s", err.detail);
    expect_bytes(s, t.key, t.enc.data, t.enc.len);
    blobs_close(s);
    bson_destroy(sf);
    bson_destroy(v2);
    bson_destroy(v1);
    /* malformed URLs */
    const char *bad[] = {
        "gridfs://127.0.0.1:1/db?bucket=a.b",
        "gridfs://127.0.0.1:1/db?bucket=",
        "gridfs://127.0.0.1:1/db?bucket=x&bucket=y",
        "gridfs://127.0.0.1:1/db?bucket=abcdefghijabcdefghijabcdefghijabc", /* 33 */
        "gridfs://127.0.0.1:1/",
        "gridfs://127.0.0.1:1/bad.db",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_msg(blobs_open(bad[i], &err) == NULL, "%s opened", bad[i]);
        ck_assert_msg(err.kind == SERR_INVALID, "%s: %d %s", bad[i], err.kind, err.detail);
    }
    char murl[300], bname[BLOBS_GRIDFS_BUCKET_MAX + 1];
    ck_assert_int_eq(blobs_gridfs_parse_url("gridfs://h:2/d?w=1&bucket=b_1&appname=x", murl,
                                            sizeof murl, bname, &err),
                     0);
    ck_assert_str_eq(murl, "mongodb://h:2/d?w=1&appname=x");
    ck_assert_str_eq(bname, "b_1");
    ck_assert_int_eq(blobs_gridfs_parse_url("gridfs://h/d", murl, sizeof murl, bname, &err), 0);
    ck_assert_str_eq(murl, "mongodb://h/d");
    ck_assert_str_eq(bname, "blobs");
    /* nothing listening: SERR_UNAVAILABLE, in bounded time */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    char down[200];
    snprintf(down, sizeof down, "gridfs://127.0.0.1:%d/db?serverSelectionTimeoutMS=300",
             ntohs(sa.sin_port));
    uint64_t t0 = clock_mono_ms();
    ck_assert_ptr_null(blobs_open(down, &err));
    ck_assert_msg(err.kind == SERR_UNAVAILABLE, "%d: %s", err.kind, err.detail);
    ck_assert_uint_lt(clock_mono_ms() - t0, 5000);
    bson_destroy(doc);
    bson_value_destroy(&id);
    bson_value_destroy(&data);
    free_blob(&t);
}
END_TEST

/* Stored bytes damaged the GridFS way (a chunk's bytes changed, a chunk
 * missing or cut short, a files document's length wrong): every verified
 * read says SERR_CORRUPT, and replace repairs. */
START_TEST(gridfs_damaged_chunks_are_refused)
{
    strata_error err;
    tblob t;
    make_blob(&t, "d", 600000, SCODEC_NONE); /* three chunks, the last short */
    put_blob(B, &t);
    bson_value_t id, data;
    bson_t *doc = gfile(t.key, &id, &data);
    unsigned char *c = malloc(BLOBS_GRIDFS_CHUNK);
    /* a byte of chunk 1 */
    uint32_t len = read_chunk(&data, 1, c, BLOBS_GRIDFS_CHUNK);
    ck_assert_uint_eq(len, BLOBS_GRIDFS_CHUNK);
    c[1000] ^= 1;
    write_chunk(&data, 1, c, len);
    expect_corrupt(t.key, "a changed byte");
    blob_header h;
    ck_assert_int_eq(B->ops->head(B, t.key, &h, &err), 0); /* the header alone is fine */
    c[1000] ^= 1;
    write_chunk(&data, 1, c, len);
    ck_assert_msg(blobs_check_stored(B, t.key, &h, &err) == 0, "%s", err.detail);
    /* chunk 1 missing */
    bson_t *f1 = chunk_filter(&data, 1);
    ck_assert_int_eq(gwrite("chunks", G_DELETE, f1, NULL), 0);
    expect_corrupt(t.key, "a missing chunk");
    bson_t *ins = chunk_filter(&data, 1);
    BSON_APPEND_BINARY(ins, "data", BSON_SUBTYPE_BINARY, c, len);
    ck_assert_int_eq(gwrite("chunks", G_INSERT, ins, NULL), 0);
    bson_destroy(ins);
    ck_assert_msg(blobs_check_stored(B, t.key, &h, &err) == 0, "%s", err.detail);
    /* the last chunk one byte short */
    len = read_chunk(&data, 2, c, BLOBS_GRIDFS_CHUNK);
    write_chunk(&data, 2, c, len - 1);
    expect_corrupt(t.key, "a short chunk");
    write_chunk(&data, 2, c, len);
    /* the length one more and one less than the chunks hold */
    bson_t *ff = bson_new();
    BSON_APPEND_VALUE(ff, "_id", &id);
    for (int d = -1; d <= 1; d += 2) {
        bson_t *u = BCON_NEW("$set", "{", "length", BCON_INT64((int64_t)t.enc.len + d), "}");
        ck_assert_int_eq(gwrite("files", G_UPDATE, ff, u), 0);
        bson_destroy(u);
        expect_corrupt(t.key, d < 0 ? "a length too short" : "a length too long");
    }
    /* the header damaged in chunk 0 */
    bson_t *u = BCON_NEW("$set", "{", "length", BCON_INT64((int64_t)t.enc.len), "}");
    ck_assert_int_eq(gwrite("files", G_UPDATE, ff, u), 0);
    bson_destroy(u);
    len = read_chunk(&data, 0, c, BLOBS_GRIDFS_CHUNK);
    c[9] ^= 1;
    write_chunk(&data, 0, c, len);
    ck_assert_int_eq(B->ops->head(B, t.key, &h, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    expect_corrupt(t.key, "a damaged header");
    /* repaired by replace */
    ck_assert_msg(B->ops->replace(B, t.key, t.enc.data, t.enc.len, &err) == 0, "%s", err.detail);
    ck_assert_msg(blobs_check_stored(B, t.key, &h, &err) == 0, "%s", err.detail);
    expect_bytes(B, t.key, t.enc.data, t.enc.len);
    bson_destroy(ff);
    bson_destroy(f1);
    bson_destroy(doc);
    bson_value_destroy(&id);
    bson_value_destroy(&data);
    free(c);
    free_blob(&t);
}
END_TEST

static void add_marker(const bson_oid_t *oid, const char *state)
{
    bson_t *m = BCON_NEW("_id", BCON_OID(oid), "state", BCON_UTF8(state), "at",
                         BCON_DATE_TIME(clock_wall_ms()));
    ck_assert_int_eq(gwrite("staging", G_INSERT, m, NULL), 0);
    bson_destroy(m);
}

static void add_chunk(const bson_oid_t *oid, int n, const char *bytes)
{
    bson_t *c =
        BCON_NEW("files_id", BCON_OID(oid), "n", BCON_INT32(n), "data",
                 BCON_BIN(BSON_SUBTYPE_BINARY, (const uint8_t *)bytes, (uint32_t)strlen(bytes)));
    ck_assert_int_eq(gwrite("chunks", G_INSERT, c, NULL), 0);
    bson_destroy(c);
}

/* What a crash leaves (a writer that died mid-write, a commit that died
 * before its rename, a removal that died after its files document went,
 * or before) is removed by the sweep once old enough; list() sweeps with
 * the hour-long age, leaving young debris alone; chunks a file reads are
 * never deleted; replaced chunks go at the sweep. */
START_TEST(gridfs_staging_debris_is_swept)
{
    /* markers only: a sweep leaves its claim behind, a tombstone */
    bson_t *markers = BCON_NEW("state", "{", "$exists", BCON_BOOL(true), "}");
    strata_error err;
    tblob t, big, alt;
    make_blob(&t, "kept", 300000, SCODEC_NONE);
    make_blob(&alt, "kept", 300000, SCODEC_ZSTD);
    make_blob(&big, "crash", 3 << 20, SCODEC_NONE);
    put_blob(B, &t);
    bson_value_t id, data;
    bson_t *doc = gfile(t.key, &id, &data);
    bson_t *tf = chunk_filter(&data, -1);
    const int kept = gcount("chunks", tf);
    ck_assert_int_eq(kept, 2);
    /* a writer that dies with chunks written */
    blob_writer *w = NULL;
    ck_assert_int_eq(B->ops->begin_write(B, &w, &err), 0);
    ck_assert_msg(w->ops->write(w, big.enc.data + BLOB_HEADER_SIZE, big.enc.len - BLOB_HEADER_SIZE,
                                &err) == 0,
                  "%s", err.detail);
    /* a commit that died before its rename */
    bson_oid_t crashed, removed, half;
    bson_oid_init(&crashed, NULL);
    bson_oid_init(&removed, NULL);
    bson_oid_init(&half, NULL);
    add_marker(&crashed, "c");
    char name[40], hex[25];
    bson_oid_to_string(&crashed, hex);
    snprintf(name, sizeof name, "~stage-%s", hex);
    bson_t *fd = BCON_NEW("_id", BCON_OID(&crashed), "filename", BCON_UTF8(name), "length",
                          BCON_INT64(5), "chunkSize", BCON_INT32(BLOBS_GRIDFS_CHUNK), "uploadDate",
                          BCON_DATE_TIME(clock_wall_ms()));
    ck_assert_int_eq(gwrite("files", G_INSERT, fd, NULL), 0);
    bson_destroy(fd);
    add_chunk(&crashed, 0, "hello");
    /* a removal that died after the files document went */
    add_marker(&removed, "r");
    add_chunk(&removed, 0, "gone");
    /* and one that died before: its marker names t's chunks, still read */
    bson_t *tm = bson_new();
    BSON_APPEND_VALUE(tm, "_id", &data);
    BSON_APPEND_UTF8(tm, "state", "r");
    BSON_APPEND_DATE_TIME(tm, "at", clock_wall_ms());
    ck_assert_int_eq(gwrite("staging", G_INSERT, tm, NULL), 0);
    bson_destroy(tm);
    (void)half;
    const int chunks = gcount("chunks", NULL);
    ck_assert_int_ge(chunks, kept + 2 + 8); /* the writer's, but for its buffered one */
    ck_assert_int_eq(gcount("staging", markers), 4);
    /* young: a whole listing leaves it all */
    listing l = {.blobs = &t, .n = 1};
    list_blobs(B, &l);
    ck_assert_int_eq(l.seen[0], 1);
    ck_assert_int_eq(gcount("staging", markers), 4);
    ck_assert_int_eq(gcount("chunks", NULL), chunks);
    /* old enough */
    sleep_ms(20);
    unsigned n = 0;
    ck_assert_msg(blobs_gridfs_sweep_staging(B, 0, &n, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(n, 4);
    ck_assert_int_eq(gcount("staging", markers), 0);
    ck_assert_int_eq(gcount("chunks", NULL), kept);
    ck_assert_int_eq(gcount("files", NULL), 1);
    expect_bytes(B, t.key, t.enc.data, t.enc.len);
    /* the dead writer's commit fails cleanly, leaving nothing */
    ck_assert_int_eq(w->ops->commit(w, big.key, big.enc.data, &err), -1);
    ck_assert(!exists(B, big.key));
    ck_assert_int_eq(gcount("chunks", NULL), kept);
    ck_assert_int_eq(gcount("files", NULL), 1);
    ck_assert_int_eq(gcount("staging", markers), 0);
    /* replaced chunks stay for readers until the sweep */
    ck_assert_msg(B->ops->replace(B, t.key, alt.enc.data, alt.enc.len, &err) == 0, "%s",
                  err.detail);
    expect_bytes(B, t.key, alt.enc.data, alt.enc.len);
    ck_assert_int_eq(gcount("chunks", tf), kept);
    ck_assert_int_eq(gcount("staging", markers), 1);
    sleep_ms(20);
    ck_assert_msg(blobs_gridfs_sweep_staging(B, 0, &n, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(gcount("chunks", tf), 0);
    ck_assert_int_eq(gcount("chunks", NULL), 1);
    expect_bytes(B, t.key, alt.enc.data, alt.enc.len);
    /* removed: nothing of it stays */
    ck_assert_int_eq(B->ops->remove(B, t.key, &err), 0);
    ck_assert_int_eq(gcount("chunks", NULL), 0);
    ck_assert_int_eq(gcount("files", NULL), 0);
    ck_assert_int_eq(gcount("staging", markers), 0);
    /* not a GridFS store: refused */
    ck_assert_int_eq(blobs_gridfs_sweep_staging(NULL, 0, NULL, &err), -1);
    bson_destroy(markers);
    bson_destroy(tf);
    bson_destroy(doc);
    bson_value_destroy(&id);
    bson_value_destroy(&data);
    free_blob(&t);
    free_blob(&alt);
    free_blob(&big);
}
END_TEST

/* ---- file: only ------------------------------------------------------------------------- */

static const char *fs_dir(void)
{
    return CB->url + 5;
}

/* The directory that holds key's file in the suite's store: DIR/ab, or
 * DIR/ab/cd in a store whose layout file says two levels (STRATA_BLOB_URL
 * may name a store made before layouts). */
static void fs_leaf(const char *key, char *out, size_t cap)
{
    char path[1100], text[32] = "";
    snprintf(path, sizeof path, "%s/layout", fs_dir());
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        if (fgets(text, sizeof text, f) == NULL)
            text[0] = '\0';
        fclose(f);
    }
    if (strcmp(text, "fanout-levels 2\n") == 0)
        snprintf(out, cap, "%s/%.2s/%.2s", fs_dir(), key, key + 2);
    else
        snprintf(out, cap, "%s/%.2s", fs_dir(), key);
}

/* The entries in dir; *stray counts those named by key and more (the
 * temp files of its writes), when key is given. */
static int count_entries(const char *dir, const char *key, int *stray)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        n++;
        if (key && strncmp(e->d_name, key, strlen(key)) == 0 && strcmp(e->d_name, key) != 0)
            (*stray)++;
    }
    closedir(d);
    return n;
}

/* Temp files and stray names under the directory are not blobs; writes
 * leave no temp files behind. */
START_TEST(file_list_ignores_what_is_not_a_blob)
{
    strata_error err;
    tblob t;
    make_blob(&t, "f", 5000, SCODEC_NONE);
    put_blob(B, &t);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(B->ops->replace(B, t.key, t.enc.data, t.enc.len, &err), 0);
    char leaf[1024], path[1200];
    fs_leaf(t.key, leaf, sizeof leaf);
    int stray = 0;
    snprintf(path, sizeof path, "%s/%s", leaf, t.key);
    ck_assert_msg(access(path, F_OK) == 0, "no %s", path);
    ck_assert_int_ge(count_entries(leaf, t.key, &stray), 1);
    ck_assert_msg(stray == 0, "%d temp files beside the blob in %s", stray, leaf);
    /* a crashed write's temp file, and junk, are never listed as blobs */
    const char *junk[] = {".tmp.123456", "-partial", "X"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s%s", leaf, t.key, junk[i]);
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs("junk", f);
        fclose(f);
    }
    snprintf(path, sizeof path, "%s/%s", leaf, "notes.txt");
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    listing l = {.blobs = &t, .n = 1};
    list_blobs(B, &l);
    ck_assert_int_eq(l.seen[0], 1);
    free_blob(&t);
}
END_TEST

static void expect_file_text(const char *path, const char *text)
{
    char got[64] = "";
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no %s", path);
    size_t n = fread(got, 1, sizeof got - 1, f);
    fclose(f);
    got[n] = '\0';
    ck_assert_str_eq(got, text);
}

static void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* A new directory is layout 1: DIR/layout says so, its 256 fan-out
 * directories are there, and a blob is DIR/ab/KEY. A directory written
 * before layouts (a blob at DIR/ab/cd/KEY, no DIR/layout) keeps its two
 * levels: its blobs read and list, new ones go to DIR/ab/cd/, and so on
 * reopening. A lost layout file is told again from the blobs; a layout
 * this build does not know, or a fan-out directory that cannot be read
 * while guessing, is refused at open. */
START_TEST(file_layouts_new_and_kept)
{
    strata_error err;
    char path[1300], dir[1100], url[1200], fresh[1100];
    /* a new store, in a directory of its own (whatever the suite's
     * directory held before): its layout file, its fan-out directories
     * made at the open, and a blob at DIR/ab/KEY */
    snprintf(fresh, sizeof fresh, "%s-new-%s", fs_dir(), P);
    snprintf(url, sizeof url, "file:%s", fresh);
    blob_store *fresh_store = blobs_open(url, &err);
    ck_assert_msg(fresh_store != NULL, "%s", err.detail);
    snprintf(path, sizeof path, "%s/layout", fresh);
    expect_file_text(path, "fanout-levels 1\n");
    snprintf(path, sizeof path, "%s/00", fresh);
    ck_assert(is_dir(path));
    snprintf(path, sizeof path, "%s/ff", fresh);
    ck_assert(is_dir(path));
    tblob t, u;
    make_blob(&t, "layout-old", 3000, SCODEC_NONE);
    make_blob(&u, "layout-new", 3000, SCODEC_NONE);
    put_blob(fresh_store, &t);
    blobs_close(fresh_store);
    snprintf(path, sizeof path, "%s/%.2s/%s", fresh, t.key, t.key);
    ck_assert(access(path, F_OK) == 0);

    /* a store from before layouts: t at DIR/ab/cd/KEY */
    snprintf(dir, sizeof dir, "%s-legacy-%s", fs_dir(), P);
    snprintf(path, sizeof path, "%s/%.2s/%.2s", dir, t.key, t.key + 2);
    ck_assert_int_eq(fs_mkdir_p(path, &err), 0);
    snprintf(path, sizeof path, "%s/%.2s/%.2s/%s", dir, t.key, t.key + 2, t.key);
    write_file(path, t.enc.data, t.enc.len);
    snprintf(url, sizeof url, "file:%s", dir);
    for (int round = 0; round < 2; round++) {
        blob_store *s = blobs_open(url, &err);
        ck_assert_msg(s != NULL, "%s", err.detail);
        expect_bytes(s, t.key, t.enc.data, t.enc.len);
        put_blob(s, &u);
        expect_bytes(s, u.key, u.enc.data, u.enc.len);
        snprintf(path, sizeof path, "%s/%.2s/%.2s/%s", dir, u.key, u.key + 2, u.key);
        ck_assert_msg(access(path, F_OK) == 0, "no %s", path);
        tblob both[2] = {t, u};
        listing l = {.blobs = both, .n = 2};
        list_blobs(s, &l);
        ck_assert_int_eq(l.seen[0], 1);
        ck_assert_int_eq(l.seen[1], 1);
        blobs_close(s);
        snprintf(path, sizeof path, "%s/layout", dir);
        expect_file_text(path, "fanout-levels 2\n");
    }

    /* a layout file lost: told again from the blobs (in both layouts) */
    for (int i = 0; i < 2; i++) {
        const char *d = i == 0 ? fresh : dir;
        snprintf(path, sizeof path, "%s/layout", d);
        ck_assert_int_eq(unlink(path), 0);
        snprintf(url, sizeof url, "file:%s", d);
        blob_store *s = blobs_open(url, &err);
        ck_assert_msg(s != NULL, "%s", err.detail);
        expect_bytes(s, t.key, t.enc.data, t.enc.len);
        blobs_close(s);
        expect_file_text(path, i == 0 ? "fanout-levels 1\n" : "fanout-levels 2\n");
    }

    /* a layout this build does not know */
    const char *unknown[] = {"fanout-levels 3\n", "fanout-levels 1", "", "fanout-levels 11\n"};
    for (size_t i = 0; i < sizeof unknown / sizeof *unknown; i++) {
        write_file(path, unknown[i], strlen(unknown[i]));
        ck_assert_ptr_null(blobs_open(url, &err));
        ck_assert_int_eq(err.kind, SERR_INVALID);
        ck_assert_msg(strstr(err.detail, "layout") != NULL, "%s", err.detail);
    }
    test_rmtree(dir);

    /* a fan-out directory that cannot be read (a symlink loop) fails the
     * open instead of a guess, and nothing is written down */
    char loop[1300];
    snprintf(dir, sizeof dir, "%s-unreadable-%s", fs_dir(), P);
    ck_assert_int_eq(fs_mkdir_p(dir, &err), 0);
    snprintf(loop, sizeof loop, "%s/ab", dir);
    ck_assert_int_eq(symlink("ab", loop), 0);
    snprintf(url, sizeof url, "file:%s", dir);
    ck_assert_ptr_null(blobs_open(url, &err));
    ck_assert_int_eq(err.kind, SERR_IO);
    snprintf(path, sizeof path, "%s/layout", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    ck_assert_int_eq(unlink(loop), 0);
    blob_store *s = blobs_open(url, &err);
    ck_assert_msg(s != NULL, "%s", err.detail);
    blobs_close(s);
    expect_file_text(path, "fanout-levels 1\n");
    test_rmtree(dir);
    test_rmtree(fresh);
    free_blob(&t);
    free_blob(&u);
}
END_TEST

/* Staging files a crash left at the top of DIR (a streamed write's .w-
 * file, the layout file's layout.tmp. one) are removed by a listing once
 * an hour old; younger ones, and the layout file itself, stay. */
START_TEST(file_stale_staging_is_swept)
{
    const char *names[] = {".w-oldone", "layout.tmp.oldone", ".w-young", "layout.tmp.young"};
    char path[1200];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", fs_dir(), names[i]);
        write_file(path, "debris", 6);
        if (i < 2) { /* two hours old */
            struct timespec old[2] = {{time(NULL) - 7200, 0}, {time(NULL) - 7200, 0}};
            ck_assert_int_eq(utimensat(AT_FDCWD, path, old, 0), 0);
        }
    }
    listing l = {0};
    list_blobs(B, &l);
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", fs_dir(), names[i]);
        ck_assert_msg((access(path, F_OK) == 0) == (i >= 2), "%s %s", path,
                      i < 2 ? "was not swept" : "was swept while young");
        if (i >= 2)
            ck_assert_int_eq(unlink(path), 0);
    }
    snprintf(path, sizeof path, "%s/layout", fs_dir());
    ck_assert_int_eq(access(path, F_OK), 0);
}
END_TEST

/* A key is a file under DIR and nowhere else: nothing escapes the
 * directory (no file appears beside it or above it). */
START_TEST(file_keys_stay_inside_the_directory)
{
    strata_error err;
    char parent[1024];
    snprintf(parent, sizeof parent, "%s", fs_dir());
    char *slash = strrchr(parent, '/');
    ck_assert_ptr_nonnull(slash);
    *slash = '\0';
    int dummy = 0;
    int before = count_entries(parent, NULL, &dummy);
    tblob t;
    make_blob(&t, "p", 100, SCODEC_NONE);
    const char *tries[] = {"../x", "../../x", "..", "."};
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(B->ops->put(B, tries[i], t.enc.data, t.enc.len, &err), -1);
        ck_assert_int_eq(B->ops->replace(B, tries[i], t.enc.data, t.enc.len, &err), -1);
    }
    ck_assert_int_eq(count_entries(parent, NULL, &dummy), before);
    struct stat st;
    char path[1100];
    snprintf(path, sizeof path, "%s/x", parent);
    ck_assert_int_ne(stat(path, &st), 0);
    free_blob(&t);
}
END_TEST

/* ---- the runner ---------------------------------------------------------------------------- */

/* Where a case runs: every backend, or only one kind (SKIP elsewhere). */
enum case_where { EVERY, FILE_ONLY, S3_ONLY, GRIDFS_ONLY };

typedef struct contract_case {
    const TTest *test;
    enum case_where where;
} contract_case;

/* A commit and a sweep of one upload: a unique claim decides, so the
 * sweep leaves an upload a commit claimed, and a commit after a sweep took
 * its upload fails instead of publishing half of nothing. Uploads in
 * progress hold a pooled client each, so at most half the pool may: past
 * that, SERR_UNAVAILABLE at once instead of a wait with no end. */
START_TEST(gridfs_claims_decide_and_uploads_are_bounded)
{
    strata_error err;
    tblob t;
    make_blob(&t, "claimed", 100000, SCODEC_NONE);
    /* the sweep takes an upload first: its commit fails */
    blob_writer *w = NULL;
    ck_assert_int_eq(B->ops->begin_write(B, &w, &err), 0);
    ck_assert_int_eq(
        w->ops->write(w, t.enc.data + BLOB_HEADER_SIZE, t.enc.len - BLOB_HEADER_SIZE, &err), 0);
    unsigned n = 0;
    ck_assert_msg(blobs_gridfs_sweep_staging(B, 0, &n, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(n, 1);
    ck_assert_int_eq(w->ops->commit(w, t.key, t.enc.data, &err), -1);
    bool there = true;
    ck_assert_int_eq(B->ops->exists(B, t.key, &there, &err), 0);
    ck_assert(!there);
    /* a commit's claim stands: the sweep leaves the upload, which commits */
    ck_assert_int_eq(B->ops->begin_write(B, &w, &err), 0);
    ck_assert_int_eq(
        w->ops->write(w, t.enc.data + BLOB_HEADER_SIZE, t.enc.len - BLOB_HEADER_SIZE, &err), 0);
    bson_t *live = BCON_NEW("state", BCON_UTF8("w"));
    mongoc_client_t *cl = mongo_conn_pop(gridfs_conn());
    mongoc_collection_t *coll = gcoll(cl, "staging");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, live, NULL, NULL);
    const bson_t *m;
    bson_iter_t it;
    ck_assert(mongoc_cursor_next(cur, &m) && bson_iter_init_find(&it, m, "_id"));
    bson_value_t id;
    bson_value_copy(bson_iter_value(&it), &id);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(coll);
    mongo_conn_push(gridfs_conn(), cl);
    bson_destroy(live);
    bson_t claim = BSON_INITIALIZER, sub;
    BSON_APPEND_DOCUMENT_BEGIN(&claim, "_id", &sub);
    BSON_APPEND_VALUE(&sub, "claim", &id);
    bson_append_document_end(&claim, &sub);
    bson_t *doc = bson_copy(&claim);
    BSON_APPEND_UTF8(doc, "by", "commit");
    ck_assert_int_eq(gwrite("staging", G_INSERT, doc, NULL), 0);
    ck_assert_msg(blobs_gridfs_sweep_staging(B, 0, &n, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(n, 0);
    ck_assert_int_eq(gwrite("staging", G_DELETE, &claim, NULL), 0);
    ck_assert_msg(w->ops->commit(w, t.key, t.enc.data, &err) == 0, "%s", err.detail);
    ck_assert_int_eq(B->ops->exists(B, t.key, &there, &err), 0);
    ck_assert(there);
    bson_destroy(doc);
    bson_destroy(&claim);
    bson_value_destroy(&id);
    /* a pool of 4: two uploads at once, the third refused until one ends */
    char url[sizeof CASE_URL + 32];
    snprintf(url, sizeof url, "%s%smaxPoolSize=4", CASE_URL, strchr(CASE_URL, '?') ? "&" : "?");
    blob_store *small = blobs_open(url, &err);
    ck_assert_msg(small != NULL, "%s", err.detail);
    blob_writer *ws[3] = {NULL, NULL, NULL};
    ck_assert_int_eq(small->ops->begin_write(small, &ws[0], &err), 0);
    ck_assert_int_eq(small->ops->begin_write(small, &ws[1], &err), 0);
    ck_assert_int_eq(small->ops->begin_write(small, &ws[2], &err), -1);
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    ws[0]->ops->abort(ws[0]);
    ck_assert_msg(small->ops->begin_write(small, &ws[2], &err) == 0, "%s", err.detail);
    ws[1]->ops->abort(ws[1]);
    ws[2]->ops->abort(ws[2]);
    blobs_close(small);
    free_blob(&t);
}
END_TEST

static size_t add_contract(Suite *s, int b)
{
    const contract_case cases[] = {
        {vtable_is_complete, EVERY},
        {round_trips, EVERY},
        {get_appends_and_bounds_its_reads, EVERY},
        {missing_keys_are_not_found, EVERY},
        {put_is_idempotent, EVERY},
        {replace_overwrites_or_creates, EVERY},
        {remove_removes, EVERY},
        {list_is_complete, EVERY},
        {touch_restarts_the_age, EVERY},
        {replace_is_atomic_for_readers, EVERY},
        {concurrent_puts_of_one_key, EVERY},
        {keys_are_validated, EVERY},
        {verified_reads_refuse_damage, EVERY},
        {two_handles_agree, EVERY},
        {stream_reads_from_an_offset, EVERY},
        {stream_read_of_a_missing_key_is_not_found, EVERY},
        {stream_writes_round_trip, EVERY},
        {stream_commit_onto_an_existing_key_keeps_it, EVERY},
        {stream_abort_leaves_nothing, EVERY},
        {concurrent_stream_writers_of_one_content, EVERY},
        {stream_readers_meet_a_removal, EVERY},
        {file_list_ignores_what_is_not_a_blob, FILE_ONLY},
        {file_keys_stay_inside_the_directory, FILE_ONLY},
        {file_layouts_new_and_kept, FILE_ONLY},
        {file_stale_staging_is_swept, FILE_ONLY},
        {s3_staging_debris_is_swept, S3_ONLY},
        {gridfs_layout_and_schema, GRIDFS_ONLY},
        {gridfs_damaged_chunks_are_refused, GRIDFS_ONLY},
        {gridfs_staging_debris_is_swept, GRIDFS_ONLY},
        {gridfs_claims_decide_and_uploads_are_bounded, GRIDFS_ONLY},
    };
    TCase *tc = tcase_create(BK[b].label);
    tcase_add_checked_fixture(tc, SETUPS[b], close_case);
    tcase_set_timeout(tc, 300);
    size_t skipped = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (cases[i].where == FILE_ONLY && !BK[b].file) {
            printf("SKIP: blob_contract/%s/%s: works on a file: directory\n", BK[b].label,
                   cases[i].test->name);
            skipped++;
            continue;
        }
        if (cases[i].where == S3_ONLY && !BK[b].s3) {
            printf("SKIP: blob_contract/%s/%s: works on an s3:// store's staging area\n",
                   BK[b].label, cases[i].test->name);
            skipped++;
            continue;
        }
        if (cases[i].where == GRIDFS_ONLY && !BK[b].gridfs) {
            printf("SKIP: blob_contract/%s/%s: works on a GridFS bucket's collections\n",
                   BK[b].label, cases[i].test->name);
            skipped++;
            continue;
        }
        tcase_add_test(tc, cases[i].test);
    }
    suite_add_tcase(s, tc);
    return skipped;
}

static int run_contract(void)
{
    Suite *s = suite_create("blob_contract");
    size_t skipped = 0;
    for (int b = 0; b < nbk; b++) {
        strata_error err;
        blob_store *probe = blobs_open(BK[b].url, &err);
        if (probe == NULL)
            printf("blob_contract/%s: cannot open %s: %s\n", BK[b].label, BK[b].url, err.detail);
        blobs_close(probe);
        skipped += add_contract(s, b);
    }
    printf("blob_contract: %zu skipped\n", skipped);
    fflush(stdout);
    return run_suite(s);
}

int main(void)
{
    char tmp[] = "/tmp/strata-blobs-XXXXXX";
    bool own = false;
    const char *env = getenv("STRATA_BLOB_URL");
    const char *need = getenv("STRATA_BLOB_REQUIRE"), *s3 = getenv("STRATA_S3_URL");
    const char *mongo = getenv("STRATA_MONGO_URL");
    char urls[4096] = "", own_db[sizeof urls] = "";
    if (env != NULL && env[0] != '\0')
        snprintf(urls, sizeof urls, "%s", env);
    else if (need != NULL && strcmp(need, "s3://") == 0 && s3 != NULL &&
             strncmp(s3, "s3://", 5) == 0)
        s3_url_below(s3, "blob-contract", urls, sizeof urls); /* the s3 suite's server */
    else if (need != NULL && strcmp(need, "gridfs://") == 0 && mongo != NULL &&
             strncmp(mongo, "mongodb://", 10) == 0) {
        /* the mongo suite's server: its hosts and options, a database of our own */
        const char *host = mongo + 10, *q = strchr(host, '?');
        int hlen = (int)strcspn(host, "/?");
        snprintf(urls, sizeof urls, "gridfs://%.*s/blobc%x%s%s", hlen, host, (unsigned)getpid(),
                 q ? "?" : "", q ? q + 1 : "");
        snprintf(own_db, sizeof own_db, "%s", urls);
    } else if (need == NULL) {
        if (mkdtemp(tmp) == NULL) {
            perror("mkdtemp");
            return 1;
        }
        own = true;
        snprintf(urls, sizeof urls, "file:%s/blobs", tmp);
    }
    for (char *save = NULL, *u = strtok_r(urls, " \t\n", &save); u && nbk < MAX_BACKENDS;
         u = strtok_r(NULL, " \t\n", &save)) {
        backend *b = &BK[nbk];
        snprintf(b->url, sizeof b->url, "%s", u);
        b->file = strncmp(u, "file:", 5) == 0 && strchr(u + 5, '/') != NULL;
        b->s3 = strncmp(u, "s3://", 5) == 0;
        b->gridfs = strncmp(u, "gridfs://", 9) == 0;
        int scheme = (int)strcspn(u, ":");
        if (nbk == 0)
            snprintf(b->label, sizeof b->label, "%.*s", scheme < 20 ? scheme : 20, u);
        else
            snprintf(b->label, sizeof b->label, "%.*s-%d", scheme < 20 ? scheme : 20, u, nbk);
        nbk++;
    }
    /* (as the meson test blob_contract_s3 sets it) */
    for (int b = 0; need != NULL && b <= nbk; b++)
        if (b == nbk ? nbk == 0 : strncmp(BK[b].url, need, strlen(need)) != 0) {
            fprintf(stderr,
                    "blob_contract: STRATA_BLOB_URL (or STRATA_S3_URL, STRATA_MONGO_URL) must "
                    "name only %s stores (it is %s)\n",
                    need, nbk ? BK[b < nbk ? b : 0].url : "not set");
            return 1;
        }
    int rc = run_contract();
    if (own_db[0] != '\0' && mongo_url_drop(own_db) != 0)
        rc = 1;
    if (own) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}
