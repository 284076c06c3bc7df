#include "blobs_s3.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../common/clock.h"
#include "../common/hex.h"
#include "../common/log.h"
#include "s3_client.h"

#define BLOBS_DIR      "blobs/"
#define STAGING_DIR    "staging/"
#define OBJ_KEY_MAX    96 /* "blobs/ab/cd/" + 64 hex digits, or "staging/" + 32 */
#define CONTENT_TYPE   "application/octet-stream"
#define READ_FIRST     (256u << 10) /* the first range is smaller: the first byte comes sooner */
#define SWEEP_MAX      1000         /* items removed per sweep; the rest wait for the next one */
#define PART_NO_MAX    10000        /* S3's limit */
#define TOUCHED        ".touched"
#define LAYOUT_KEY_LEN (sizeof BLOBS_DIR - 1 + 6 + SHA256_HEX_LEN)

/* part 1 (header + first payload) and every later part but the last
 * must be S3's minimum */
_Static_assert(BLOBS_S3_FIRST_PART >= S3_PART_MIN && BLOBS_S3_PART >= S3_PART_MIN,
               "multipart parts below S3's minimum");

/* /ready's probe answers within this, once: a probe that waited out the
 * client's timeout and retries would hold an HTTP worker that long. */
#define PROBE_TIMEOUT_MS 2000

typedef struct s3_blobs {
    blob_store base;
    s3_client *c;
    s3_client *probe; /* same store, PROBE_TIMEOUT_MS and no retries */
} s3_blobs;

static const blob_store_ops S3_OPS;

/* ---- helpers ------------------------------------------------------------------------ */

static int object_key(const char *key, char out[OBJ_KEY_MAX], strata_error *err)
{
    if (!blob_key_valid(key))
        return serr_set(err, SERR_INVALID, "bad blob key");
    snprintf(out, OBJ_KEY_MAX, BLOBS_DIR "%.2s/%.2s/%s", key, key + 2, key);
    return 0;
}

/* The blob's touch marker: blobs/ab/cd/KEY.touched (key valid). */
static void marker_key(const char *key, char out[OBJ_KEY_MAX])
{
    snprintf(out, OBJ_KEY_MAX, BLOBS_DIR "%.2s/%.2s/%.64s" TOUCHED, key, key + 2, key);
}

/* Last-Modified has whole seconds: the blob was last written at most at
 * the end of that second, and reporting that keeps the grace period long. */
static int64_t end_of_second(int64_t ms)
{
    return ms > 0 ? ms - ms % 1000 + 999 : ms;
}

static int missing(strata_error *err, const char *key)
{
    return serr_set(err, SERR_NOT_FOUND, "blob %s is missing", key);
}

static int object_exists(s3_blobs *b, const char *okey, bool *out, strata_error *err)
{
    s3_object_info info;
    if (s3_head(b->c, okey, &info, err) == 0) {
        *out = true;
        return 0;
    }
    if (err->kind != SERR_NOT_FOUND)
        return -1;
    *out = false;
    return 0;
}

/* A conditional PUT: the key keeps what it holds when it exists already. */
static int put_new(s3_blobs *b, const char *okey, const void *data, size_t len, strata_error *err)
{
    const s3_put_opts opts = {.if_none_match = true, .content_type = CONTENT_TYPE};
    if (s3_put(b->c, okey, data, len, &opts, NULL, err) == 0)
        return 0;
    if (err->kind == SERR_PRECONDITION)
        return 0; /* it exists: same key, same content */
    /* S3 answers 409 to a conditional write that meets another one in
     * flight: when the key exists by now, that other write stored it */
    if (err->kind == SERR_IO) {
        strata_error e2;
        bool there = false;
        if (object_exists(b, okey, &there, &e2) == 0 && there)
            return 0;
    }
    return -1;
}

/* 32 random hex digits and a NUL into out. */
static int random_name(char out[33], strata_error *err)
{
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
        return serr_set(err, SERR_IO, "cannot draw a random staging name");
    hex_encode(r, sizeof r, out);
    return 0;
}

/* ---- whole-blob operations ------------------------------------------------------------ */

static int s3b_put(blob_store *base, const char *key, const void *blob, size_t len,
                   strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    char okey[OBJ_KEY_MAX];
    if (object_key(key, okey, err) != 0)
        return -1;
    return put_new((s3_blobs *)base, okey, blob, len, err);
}

static int s3b_replace(blob_store *base, const char *key, const void *blob, size_t len,
                       strata_error *err)
{
    char okey[OBJ_KEY_MAX];
    if (object_key(key, okey, err) != 0)
        return -1;
    /* a PUT is atomic in S3: readers see the old object or the new one */
    const s3_put_opts opts = {.content_type = CONTENT_TYPE};
    return s3_put(((s3_blobs *)base)->c, okey, blob, len, &opts, NULL, err);
}

static int s3b_get(blob_store *base, const char *key, size_t max_len, strata_buf *out,
                   strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    char okey[OBJ_KEY_MAX];
    if (object_key(key, okey, err) != 0)
        return -1;
    size_t at = out->len;
    if (s3_get(((s3_blobs *)base)->c, okey, 0, 0, max_len, out, NULL, err) != 0) {
        out->len = at; /* nothing appended on failure */
        return err->kind == SERR_NOT_FOUND ? missing(err, key) : -1;
    }
    return 0;
}

static int s3b_exists(blob_store *base, const char *key, bool *out, strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    char okey[OBJ_KEY_MAX];
    if (object_key(key, okey, err) != 0)
        return -1;
    return object_exists((s3_blobs *)base, okey, out, err);
}

static int s3b_head(blob_store *base, const char *key, blob_header *h, strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    char okey[OBJ_KEY_MAX];
    if (object_key(key, okey, err) != 0)
        return -1;
    strata_buf buf;
    sbuf_init(&buf, 0);
    int rc =
        s3_get(((s3_blobs *)base)->c, okey, 0, BLOB_HEADER_SIZE, BLOB_HEADER_SIZE, &buf, NULL, err);
    if (rc != 0 && err->kind == SERR_NOT_FOUND)
        missing(err, key);
    if (rc == 0)
        rc = blob_header_decode(buf.data, buf.len, h, err); /* short: SERR_CORRUPT */
    sbuf_free(&buf);
    return rc;
}

static int s3b_remove(blob_store *base, const char *key, strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    s3_blobs *b = (s3_blobs *)base;
    char okey[OBJ_KEY_MAX], mkey[OBJ_KEY_MAX];
    bool there = false;
    if (object_key(key, okey, err) != 0 || object_exists(b, okey, &there, err) != 0)
        return -1;
    /* S3 deletes a missing key without a word; the collector wants to know */
    if (!there)
        return missing(err, key);
    if (s3_delete(b->c, okey, err) != 0)
        return -1;
    /* the marker after the blob: a marker left alone only lengthens the
     * grace of a blob stored again, and list() removes it when old */
    strata_error e2;
    marker_key(key, mkey);
    if (s3_delete(b->c, mkey, &e2) != 0)
        slog_warn("blobs: cannot delete %s (a sweep will): %s", mkey, e2.detail);
    return 0;
}

/* S3 restarts Last-Modified on a copy of an object onto itself, but
 * versitygw's posix backend (v1.8.0) only rewrites the metadata and keeps
 * the file's time; a copy also costs time in the blob's size, on the save
 * path. So a touch writes an empty marker beside the blob (blobs/ab/cd/
 * KEY.touched), whose Last-Modified is the touch; stat and list report
 * the later of the two. A listing returns the marker right after its blob
 * (keys in byte order, and no other key between KEY and KEY.touched), so
 * list() pairs them holding one entry. */
static int s3b_touch(blob_store *base, const char *key, strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    s3_blobs *b = (s3_blobs *)base;
    char okey[OBJ_KEY_MAX], mkey[OBJ_KEY_MAX];
    if (object_key(key, okey, err) != 0)
        return -1;
    marker_key(key, mkey);
    const s3_put_opts opts = {.content_type = CONTENT_TYPE};
    if (s3_put(b->c, mkey, "", 0, &opts, NULL, err) != 0)
        return -1;
    /* the blob checked after the marker is written: a removal before the
     * check is seen, and one after it removes the marker too */
    bool there = false;
    if (object_exists(b, okey, &there, err) != 0)
        return -1;
    if (!there) {
        strata_error e2;
        if (s3_delete(b->c, mkey, &e2) != 0)
            slog_warn("blobs: cannot delete %s (a sweep will): %s", mkey, e2.detail);
        return missing(err, key);
    }
    return 0;
}

static int s3b_stat(blob_store *base, const char *key, uint64_t *size, int64_t *mtime_ms,
                    strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    s3_blobs *b = (s3_blobs *)base;
    char okey[OBJ_KEY_MAX], mkey[OBJ_KEY_MAX];
    if (object_key(key, okey, err) != 0)
        return -1;
    s3_object_info info, minfo;
    if (s3_head(b->c, okey, &info, err) != 0)
        return err->kind == SERR_NOT_FOUND ? missing(err, key) : -1;
    marker_key(key, mkey);
    int64_t t = info.mtime_ms;
    if (s3_head(b->c, mkey, &minfo, err) == 0) {
        if (minfo.mtime_ms > t)
            t = minfo.mtime_ms;
    } else if (err->kind != SERR_NOT_FOUND) {
        return -1;
    }
    *size = info.size;
    *mtime_ms = end_of_second(t);
    return 0;
}

/* ---- listing and the staging sweep -------------------------------------------------------- */

/* A blob's entry is passed on when the next entry shows it has no more
 * to add (its marker, if any, comes right after it). */
typedef struct list_ctx {
    blob_list_fn fn;
    void *ctx;
    bool stopped;
    bool pending;
    char key[SHA256_HEX_LEN + 1];
    uint64_t size;
    int64_t mtime_ms;
    int64_t before; /* markers of no blob older than this are removed */
    char (*orphans)[OBJ_KEY_MAX];
    size_t n_orphans;
} list_ctx;

/* KEY when name is blobs/ab/cd/KEY followed by suffix, ab and cd being
 * KEY's first digits; NULL otherwise. */
static const char *layout_key(const char *name, const char *suffix)
{
    const size_t d = sizeof BLOBS_DIR - 1;
    if (strlen(name) != LAYOUT_KEY_LEN + strlen(suffix) || strncmp(name, BLOBS_DIR, d) != 0 ||
        strcmp(name + LAYOUT_KEY_LEN, suffix) != 0)
        return NULL;
    const char *key = name + d + 6;
    for (size_t i = 0; i < SHA256_HEX_LEN; i++)
        if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f')))
            return NULL;
    if (memcmp(name + d, key, 2) != 0 || name[d + 2] != '/' || memcmp(name + d + 3, key + 2, 2) ||
        name[d + 5] != '/')
        return NULL;
    return key;
}

static int flush_pending(list_ctx *l)
{
    if (!l->pending)
        return 0;
    l->pending = false;
    if (l->fn(l->ctx, l->key, l->size, end_of_second(l->mtime_ms)) != 0) {
        l->stopped = true;
        return 1;
    }
    return 0;
}

static int on_object(void *vctx, const char *name, uint64_t size, int64_t mtime_ms)
{
    list_ctx *l = vctx;
    const char *key = layout_key(name, "");
    if (key != NULL) {
        if (flush_pending(l) != 0)
            return 1;
        memcpy(l->key, key, SHA256_HEX_LEN + 1);
        l->size = size;
        l->mtime_ms = mtime_ms;
        l->pending = true;
        return 0;
    }
    key = layout_key(name, TOUCHED);
    if (key == NULL)
        return 0; /* not ours */
    if (l->pending && memcmp(key, l->key, SHA256_HEX_LEN) == 0) {
        if (mtime_ms > l->mtime_ms)
            l->mtime_ms = mtime_ms;
        return 0;
    }
    /* a marker whose blob is gone (a removal that stopped half-way) */
    if (mtime_ms > 0 && mtime_ms < l->before && l->orphans != NULL && l->n_orphans < SWEEP_MAX)
        snprintf(l->orphans[l->n_orphans++], OBJ_KEY_MAX, "%s", name);
    return 0;
}

static int s3b_list(blob_store *base, blob_list_fn fn, void *ctx, strata_error *err)
{
    s3_blobs *b = (s3_blobs *)base;
    list_ctx l = {.fn = fn, .ctx = ctx, .before = clock_wall_ms() - BLOBS_S3_STAGING_MAX_AGE_MS};
    l.orphans = malloc(SWEEP_MAX * sizeof *l.orphans); /* (without it, none are noted) */
    int rc = s3_list(b->c, BLOBS_DIR, on_object, &l, err);
    if (rc == 0 && !l.stopped)
        flush_pending(&l);
    if (rc == 0 && !l.stopped) {
        /* a whole walk is the collector's: it also clears crash debris */
        strata_error e2;
        unsigned markers = 0, staged = 0;
        for (size_t i = 0; i < l.n_orphans; i++)
            if (s3_delete(b->c, l.orphans[i], &e2) == 0)
                markers++;
        if (blobs_s3_sweep_staging(base, BLOBS_S3_STAGING_MAX_AGE_MS, &staged, &e2) != 0)
            slog_warn("blobs: sweeping s3 staging/ failed: %s", e2.detail);
        if (markers + staged > 0)
            slog_info("blobs: removed %u abandoned s3 staging items and %u touch markers", staged,
                      markers);
    }
    free(l.orphans);
    return rc;
}

/* The sweep gathers first and removes after: no request is made from
 * inside a listing's callback. */
typedef struct staged {
    char key[OBJ_KEY_MAX];
    char upload_id[S3_UPLOAD_ID_MAX]; /* empty: a staged object */
} staged;

typedef struct sweep_ctx {
    int64_t before;
    staged *items;
    size_t n;
} sweep_ctx;

static bool is_staging_name(const char *key)
{
    return strncmp(key, STAGING_DIR, sizeof STAGING_DIR - 1) == 0 && strlen(key) < OBJ_KEY_MAX;
}

static int on_upload(void *vctx, const char *key, const char *upload_id, int64_t initiated_ms)
{
    sweep_ctx *s = vctx;
    /* (an upload without a start time may be live: left alone) */
    if (initiated_ms <= 0 || initiated_ms >= s->before || !is_staging_name(key) ||
        strlen(upload_id) >= S3_UPLOAD_ID_MAX)
        return 0;
    staged *it = &s->items[s->n++];
    snprintf(it->key, sizeof it->key, "%s", key);
    snprintf(it->upload_id, sizeof it->upload_id, "%s", upload_id);
    return s->n == SWEEP_MAX;
}

static int on_staged_object(void *vctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    (void)size;
    sweep_ctx *s = vctx;
    if (mtime_ms <= 0 || mtime_ms >= s->before || !is_staging_name(key))
        return 0;
    staged *it = &s->items[s->n++];
    snprintf(it->key, sizeof it->key, "%s", key);
    it->upload_id[0] = '\0';
    return s->n == SWEEP_MAX;
}

int blobs_s3_sweep_staging(blob_store *base, int64_t age_ms, unsigned *removed, strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    if (removed)
        *removed = 0;
    if (base == NULL || base->ops != &S3_OPS)
        return serr_set(err, SERR_INVALID, "not an s3 blob store");
    s3_blobs *b = (s3_blobs *)base;
    sweep_ctx s = {.before = clock_wall_ms() - (age_ms > 0 ? age_ms : 0)};
    s.items = malloc(SWEEP_MAX * sizeof *s.items);
    if (s.items == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory sweeping staging/");
    int rc = 0;
    strata_error e;
    for (int pass = 0; pass < 2; pass++) {
        s.n = 0;
        int lrc = pass == 0 ? s3_mpu_list(b->c, STAGING_DIR, on_upload, &s, &e)
                            : s3_list(b->c, STAGING_DIR, on_staged_object, &s, &e);
        if (lrc != 0) {
            if (rc == 0)
                rc = serr_set(err, e.kind, "%s", e.detail);
            continue;
        }
        for (size_t i = 0; i < s.n; i++) {
            const staged *it = &s.items[i];
            int r = it->upload_id[0] ? s3_mpu_abort(b->c, it->key, it->upload_id, &e)
                                     : s3_delete(b->c, it->key, &e);
            if (r == 0 || e.kind == SERR_NOT_FOUND) {
                if (removed)
                    (*removed)++;
            } else if (rc == 0) {
                rc = serr_set(err, e.kind, "%s", e.detail);
            }
        }
    }
    free(s.items);
    return rc;
}

/* ---- streamed reads ------------------------------------------------------------------------ */

typedef struct s3_reader {
    blob_reader base;
    s3_client *c;
    char okey[OBJ_KEY_MAX];
    uint64_t next;  /* offset of the next byte to fetch */
    uint64_t total; /* the object's size when opened */
    char etag[S3_ETAG_MAX];
    strata_buf buf; /* the fetched range */
    size_t at;      /* bytes of buf handed out */
    bool failed;
} s3_reader;

/* Fetches [next, next+want) into buf. */
static int fetch_range(s3_reader *r, uint64_t want, s3_object_info *info, strata_error *err)
{
    r->buf.len = 0;
    r->at = 0;
    if (s3_get(r->c, r->okey, r->next, want, (size_t)want, &r->buf, info, err) != 0) {
        r->buf.len = 0;
        if (err->kind == SERR_TOO_LARGE)
            return serr_set(err, SERR_IO, "the server sent more than the range asked of %s",
                            r->okey);
        return -1;
    }
    r->next += r->buf.len;
    return 0;
}

static long s3r_read(blob_reader *base, void *out, size_t cap, strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    s3_reader *r = (s3_reader *)base;
    if (r->failed)
        return serr_set(err, SERR_IO, "the read of %s failed earlier", r->okey);
    if (r->at == r->buf.len) {
        if (r->next >= r->total || cap == 0)
            return 0;
        uint64_t want = r->total - r->next;
        if (want > BLOBS_S3_READ_CHUNK)
            want = BLOBS_S3_READ_CHUNK;
        s3_object_info info;
        memset(&info, 0, sizeof info);
        uint64_t from = r->next;
        if (fetch_range(r, want, &info, err) != 0) {
            r->failed = true;
            if (err->kind == SERR_NOT_FOUND)
                serr_set(err, SERR_IO, "%s was removed while being read", r->okey);
            return -1;
        }
        /* another object under the key since the first range: its bytes
         * must not follow the old one's */
        if (info.size != r->total || strcmp(info.etag, r->etag) != 0) {
            r->failed = true;
            return serr_set(err, SERR_IO, "%s changed while being read", r->okey);
        }
        if (r->buf.len == 0) {
            r->failed = true;
            return serr_set(err, SERR_CORRUPT, "%s ends at byte %" PRIu64 " of %" PRIu64, r->okey,
                            from, r->total);
        }
    }
    size_t n = r->buf.len - r->at;
    if (n > cap)
        n = cap;
    if (n > LONG_MAX)
        n = LONG_MAX;
    memcpy(out, r->buf.data + r->at, n);
    r->at += n;
    return (long)n;
}

static void s3r_close(blob_reader *base)
{
    s3_reader *r = (s3_reader *)base;
    if (r == NULL)
        return;
    sbuf_free(&r->buf);
    free(r);
}

static const blob_reader_ops S3_READER_OPS = {.read = s3r_read, .close = s3r_close};

static int s3b_open_read(blob_store *base, const char *key, uint64_t offset, blob_reader **out,
                         uint64_t *total, strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    *out = NULL;
    char okey[OBJ_KEY_MAX];
    if (object_key(key, okey, err) != 0)
        return -1;
    s3_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory opening blob %s", key);
    r->base.ops = &S3_READER_OPS;
    r->c = ((s3_blobs *)base)->c;
    memcpy(r->okey, okey, sizeof okey);
    sbuf_init(&r->buf, 0);
    r->next = offset;
    /* the first range tells the size and ETag the later ones must match */
    s3_object_info info;
    memset(&info, 0, sizeof info);
    if (fetch_range(r, READ_FIRST, &info, err) != 0)
        goto fail;
    /* at or past the end (or an empty object) no range tells the size;
     * a reader from past the end reads nothing, as a file's does */
    if (r->buf.len == 0 && s3_head(r->c, okey, &info, err) != 0)
        goto fail;
    r->total = info.size;
    snprintf(r->etag, sizeof r->etag, "%s", info.etag);
    if (r->buf.len > 0 && r->next > r->total) {
        serr_set(err, SERR_IO, "the server sent more than blob %s holds", key);
        goto fail;
    }
    *total = r->total;
    *out = &r->base;
    return 0;
fail:
    if (err->kind == SERR_NOT_FOUND)
        missing(err, key);
    s3r_close(&r->base);
    return -1;
}

/* ---- streamed writes ------------------------------------------------------------------------- */

/* Part 1 is the header and the first BLOBS_S3_FIRST_PART payload bytes,
 * held in `first` (its front left for the header) and sent at commit;
 * later parts fill `part` and go up as soon as more bytes follow them, so
 * the last part, short or not, is sent at commit. */
typedef struct s3_writer {
    blob_writer base;
    s3_blobs *b;
    strata_buf first;
    unsigned char *part;
    size_t part_len;
    uint64_t payload; /* bytes written */
    char staging[OBJ_KEY_MAX];
    char upload_id[S3_UPLOAD_ID_MAX];
    bool begun; /* a multipart upload exists */
    int parts;  /* parts uploaded after the first (numbers 2..parts+1) */
    char (*etags)[S3_ETAG_MAX];
    int etags_cap;
    bool failed;
} s3_writer;

static void writer_free(s3_writer *w)
{
    sbuf_free(&w->first);
    free(w->part);
    free(w->etags);
    free(w);
}

static void drop_upload(s3_writer *w)
{
    if (!w->begun)
        return;
    strata_error e;
    if (s3_mpu_abort(w->b->c, w->staging, w->upload_id, &e) != 0 && e.kind != SERR_NOT_FOUND)
        slog_warn("blobs: cannot abort the upload to %s (a sweep will): %s", w->staging, e.detail);
    w->begun = false;
}

static int etag_slot(s3_writer *w, int part_no, strata_error *err)
{
    if (part_no > PART_NO_MAX)
        return serr_set(err, SERR_TOO_LARGE, "a streamed blob needs more than %d parts",
                        PART_NO_MAX);
    if (part_no <= w->etags_cap)
        return 0;
    int cap = w->etags_cap ? w->etags_cap * 2 : 16;
    while (cap < part_no)
        cap *= 2;
    if (cap > PART_NO_MAX)
        cap = PART_NO_MAX;
    char(*e)[S3_ETAG_MAX] = realloc(w->etags, (size_t)cap * sizeof *e);
    if (e == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory for the parts of a streamed blob");
    w->etags = e;
    w->etags_cap = cap;
    return 0;
}

static int begin_upload(s3_writer *w, strata_error *err)
{
    if (w->begun)
        return 0;
    char rnd[33];
    if (random_name(rnd, err) != 0)
        return -1;
    snprintf(w->staging, sizeof w->staging, STAGING_DIR "%s", rnd);
    const s3_put_opts opts = {.content_type = CONTENT_TYPE};
    if (s3_mpu_begin(w->b->c, w->staging, &opts, w->upload_id, err) != 0)
        return -1;
    w->begun = true;
    return 0;
}

static int flush_part(s3_writer *w, strata_error *err)
{
    int no = w->parts + 2;
    if (etag_slot(w, no, err) != 0 || begin_upload(w, err) != 0 ||
        s3_mpu_part(w->b->c, w->staging, w->upload_id, no, w->part, w->part_len, w->etags[no - 1],
                    err) != 0)
        return -1;
    w->parts++;
    w->part_len = 0;
    return 0;
}

static int s3w_write(blob_writer *base, const void *data, size_t len, strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    s3_writer *w = (s3_writer *)base;
    if (w->failed)
        return serr_set(err, SERR_IO, "an earlier write to this blob failed");
    if (len > BLOBS_S3_STREAM_MAX - w->payload) {
        w->failed = true;
        return serr_set(err, SERR_TOO_LARGE, "a blob streamed to S3 holds at most %llu bytes",
                        (unsigned long long)BLOBS_S3_STREAM_MAX);
    }
    const unsigned char *p = data;
    while (len > 0) {
        size_t in_first = w->first.len - BLOB_HEADER_SIZE;
        size_t take;
        if (in_first < BLOBS_S3_FIRST_PART) {
            take = BLOBS_S3_FIRST_PART - in_first;
            take = take < len ? take : len;
            if (sbuf_append(&w->first, p, take, err) != 0)
                goto fail;
        } else {
            if (w->part_len == BLOBS_S3_PART && flush_part(w, err) != 0)
                goto fail;
            if (w->part == NULL && (w->part = malloc(BLOBS_S3_PART)) == NULL) {
                serr_set(err, SERR_NOMEM, "out of memory for a part of a streamed blob");
                goto fail;
            }
            take = BLOBS_S3_PART - w->part_len;
            take = take < len ? take : len;
            memcpy(w->part + w->part_len, p, take);
            w->part_len += take;
        }
        p += take;
        len -= take;
        w->payload += take;
    }
    return 0;
fail:
    w->failed = true;
    return -1;
}

static int s3w_commit(blob_writer *base, const char *key,
                      const unsigned char header[BLOB_HEADER_SIZE], strata_error *err)
{
    strata_error local;
    if (err == NULL)
        err = &local;
    s3_writer *w = (s3_writer *)base;
    s3_blobs *b = w->b;
    char okey[OBJ_KEY_MAX];
    int rc = -1;
    bool completed = false;
    if (w->failed) {
        serr_set(err, SERR_IO, "an earlier write to this blob failed");
        goto out;
    }
    if (object_key(key, okey, err) != 0)
        goto out;
    memcpy(w->first.data, header, BLOB_HEADER_SIZE);
    if (!w->begun && w->part_len == 0) { /* it all fit in part 1: one PUT */
        rc = put_new(b, okey, w->first.data, w->first.len, err);
        goto out;
    }
    /* the key keeps the bytes it has: the upload need not finish */
    bool there = false;
    if (object_exists(b, okey, &there, err) != 0)
        goto out;
    if (there) {
        rc = 0;
        goto out;
    }
    if (w->part_len > 0 && flush_part(w, err) != 0)
        goto out;
    if (etag_slot(w, 1, err) != 0 ||
        s3_mpu_part(b->c, w->staging, w->upload_id, 1, w->first.data, w->first.len, w->etags[0],
                    err) != 0 ||
        s3_mpu_complete(b->c, w->staging, w->upload_id, w->parts + 1, w->etags, err) != 0)
        goto out;
    completed = true;
    w->begun = false;
    /* staged whole; CopyObject makes it appear under its key at once */
    if (s3_copy(b->c, w->staging, okey, false, NULL, err) != 0)
        goto out;
    rc = 0;
out:
    drop_upload(w);
    if (completed) {
        strata_error e;
        if (s3_delete(b->c, w->staging, &e) != 0)
            slog_warn("blobs: cannot delete %s (a sweep will): %s", w->staging, e.detail);
    }
    writer_free(w);
    return rc;
}

static void s3w_abort(blob_writer *base)
{
    s3_writer *w = (s3_writer *)base;
    if (w == NULL)
        return;
    drop_upload(w);
    writer_free(w);
}

static const blob_writer_ops S3_WRITER_OPS = {
    .write = s3w_write, .commit = s3w_commit, .abort = s3w_abort};

static int s3b_begin_write(blob_store *base, blob_writer **out, strata_error *err)
{
    *out = NULL;
    s3_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory starting a streamed blob");
    w->base.ops = &S3_WRITER_OPS;
    w->b = (s3_blobs *)base;
    sbuf_init(&w->first, BLOB_HEADER_SIZE + BLOBS_S3_FIRST_PART);
    /* the header's place at the front, filled at commit */
    if (sbuf_reserve(&w->first, BLOB_HEADER_SIZE, err) != 0) {
        writer_free(w);
        return -1;
    }
    memset(w->first.data, 0, BLOB_HEADER_SIZE);
    w->first.len = BLOB_HEADER_SIZE;
    *out = &w->base;
    return 0;
}

/* ---- the store ----------------------------------------------------------------------------- */

static void s3b_close(blob_store *base)
{
    s3_blobs *b = (s3_blobs *)base;
    if (b == NULL)
        return;
    s3_client_free(b->c);
    s3_client_free(b->probe);
    free(b);
}

/* One signed listing of the prefix: a wrong key or secret, a missing
 * bucket or an unreachable server is named here (s3_check). */
static int s3b_health(blob_store *base, strata_error *err)
{
    return s3_check(((s3_blobs *)base)->probe, err);
}

static const blob_store_ops S3_OPS = {
    .name = "s3",
    .put = s3b_put,
    .replace = s3b_replace,
    .get = s3b_get,
    .exists = s3b_exists,
    .head = s3b_head,
    .remove = s3b_remove,
    .touch = s3b_touch,
    .stat = s3b_stat,
    .list = s3b_list,
    .open_read = s3b_open_read,
    .begin_write = s3b_begin_write,
    .health = s3b_health,
    .close = s3b_close,
};

blob_store *blobs_s3_open(const char *url, strata_error *err)
{
    s3_config cfg;
    if (s3_config_from_url(url, &cfg, err) != 0)
        return NULL;
    s3_blobs *b = calloc(1, sizeof *b);
    if (b == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory opening the s3 blob store");
        return NULL;
    }
    b->base.ops = &S3_OPS;
    b->c = s3_client_new(&cfg, err);
    s3_config probe = cfg;
    probe.timeout_ms = PROBE_TIMEOUT_MS < cfg.timeout_ms ? PROBE_TIMEOUT_MS : cfg.timeout_ms;
    probe.max_retries = 0;
    b->probe = b->c != NULL ? s3_client_new(&probe, err) : NULL;
    if (b->probe == NULL) {
        s3_client_free(b->c);
        free(b);
        return NULL;
    }
    return &b->base;
}
