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
 * Skips: a case that works on the file: directory itself (temp files,
 * stray names, traversal outside it) prints
 *   SKIP: blob_contract/<backend>/<case>: <why>
 * on other backends, which scripts/test-summary.py counts as skipped. A
 * backend that cannot be opened is not skipped: its cases fail. */
#include <check.h>
#include <dirent.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../../src/blobs/blobs.h"
#include "../../src/common/clock.h"
#include "../support/harness.h"

#define MAX_BACKENDS 4
#define MAX_BLOB     (64u << 20)

typedef struct backend {
    char url[600];
    char label[48];
    bool file; /* file:DIR */
} backend;

static backend BK[MAX_BACKENDS];
static int nbk;

static const backend *CB;
static blob_store *B, *B2;
static char P[40];

static void open_case(int b)
{
    static unsigned seq;
    CB = &BK[b];
    snprintf(P, sizeof P, "b%x%llx%u", (unsigned)getpid(),
             (unsigned long long)(clock_mono_ns() & 0xffffffffffull), ++seq);
    strata_error err;
    B = blobs_open(CB->url, &err);
    ck_assert_msg(B != NULL, "cannot open the blob store %s: %s", CB->url, err.detail);
}

static void close_case(void)
{
    blobs_close(B2);
    blobs_close(B);
    B = B2 = NULL;
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
        B2 = blobs_open(CB->url, &err);
        ck_assert_msg(B2 != NULL, "cannot open a second handle on %s: %s", CB->url, err.detail);
    }
    return B2;
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
} putter;

static void *put_at_once(void *arg)
{
    putter *p = arg;
    strata_error err = {0};
    for (int i = 0; i < 5; i++)
        if ((p->replace ? p->b->ops->replace : p->b->ops->put)(p->b, p->t->key, p->t->enc.data,
                                                               p->t->enc.len, &err) != 0)
            p->failed++;
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
        ck_assert_int_eq(ps[i].failed, 0);
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

/* ---- file: only ------------------------------------------------------------------------- */

static const char *fs_dir(void)
{
    return CB->url + 5;
}

static int count_entries(const char *dir, const char *skip_name, int *stray)
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
        if (skip_name && strcmp(e->d_name, skip_name) != 0)
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
    snprintf(leaf, sizeof leaf, "%s/%.2s/%.2s", fs_dir(), t.key, t.key + 2);
    int stray = 0;
    ck_assert_int_ge(count_entries(leaf, t.key, &stray), 1);
    ck_assert_msg(stray == 0, "%d files beside the blob in %s", stray, leaf);
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

typedef struct contract_case {
    const TTest *test;
    bool file_only;
} contract_case;

static size_t add_contract(Suite *s, int b)
{
    const contract_case cases[] = {
        {vtable_is_complete, false},
        {round_trips, false},
        {get_appends_and_bounds_its_reads, false},
        {missing_keys_are_not_found, false},
        {put_is_idempotent, false},
        {replace_overwrites_or_creates, false},
        {remove_removes, false},
        {list_is_complete, false},
        {touch_restarts_the_age, false},
        {replace_is_atomic_for_readers, false},
        {concurrent_puts_of_one_key, false},
        {keys_are_validated, false},
        {verified_reads_refuse_damage, false},
        {two_handles_agree, false},
        {file_list_ignores_what_is_not_a_blob, true},
        {file_keys_stay_inside_the_directory, true},
    };
    TCase *tc = tcase_create(BK[b].label);
    tcase_add_checked_fixture(tc, SETUPS[b], close_case);
    tcase_set_timeout(tc, 300);
    size_t skipped = 0;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        if (cases[i].file_only && !BK[b].file) {
            printf("SKIP: blob_contract/%s/%s: works on a file: directory\n", BK[b].label,
                   cases[i].test->name);
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
    char urls[4096] = "";
    if (env != NULL && env[0] != '\0')
        snprintf(urls, sizeof urls, "%s", env);
    else {
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
        int scheme = (int)strcspn(u, ":");
        if (nbk == 0)
            snprintf(b->label, sizeof b->label, "%.*s", scheme < 20 ? scheme : 20, u);
        else
            snprintf(b->label, sizeof b->label, "%.*s-%d", scheme < 20 ? scheme : 20, u, nbk);
        nbk++;
    }
    int rc = run_contract();
    if (own) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
        if (system(cmd) != 0)
            rc = 1;
    }
    return rc;
}
