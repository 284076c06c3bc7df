/* The S3 client against a real versitygw, which checks SigV4 signatures
 * and payload hashes strictly. The server comes from STRATA_S3_URL
 * (s3://BUCKET[/PREFIX][?endpoint=...]) and the AWS_* variables
 * (scripts/s3-test-server writes them); without them every test fails.
 * Each run works under a prefix of its own. Faults the real server cannot
 * be made to show (503 SlowDown, dropped connections, a server that never
 * answers) and a count of connections come from small fake listeners on
 * 127.0.0.1:7140-7149. */
#include <check.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../../src/blobs/s3_client.h"
#include "../support/harness.h"

#define FAKE_PORT_LO 7140
#define FAKE_PORT_HI 7149
#define CLOSED_PORT  7139 /* nothing listens there: a stopped server */

static char RUN[64]; /* this run's prefix, under the URL's */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The configuration for the server under test, with the prefix
 * URLPREFIX/RUN/sub/. */
static void config(s3_config *cfg, const char *sub)
{
    const char *url = getenv("STRATA_S3_URL");
    strata_error err = {0};
    ck_assert_msg(url != NULL && url[0] != '\0',
                  "STRATA_S3_URL is not set: start a server with scripts/s3-test-server and "
                  "source its env (scripts/test does)");
    ck_assert_msg(s3_config_from_url(url, cfg, &err) == 0, "%s: %s", url, err.detail);
    char prefix[sizeof cfg->prefix + 128];
    int w = snprintf(prefix, sizeof prefix, "%s%s/%s/", cfg->prefix, RUN, sub);
    ck_assert(w > 0 && (size_t)w < sizeof cfg->prefix);
    memcpy(cfg->prefix, prefix, (size_t)w + 1);
}

static s3_client *client(const char *sub)
{
    s3_config cfg;
    config(&cfg, sub);
    strata_error err = {0};
    s3_client *c = s3_client_new(&cfg, &err);
    ck_assert_msg(c != NULL, "s3_client_new: %s", err.detail);
    return c;
}

static void put_ok(s3_client *c, const char *key, const void *data, size_t len,
                   const s3_put_opts *o, char *etag)
{
    strata_error err = {0};
    ck_assert_msg(s3_put(c, key, data, len, o, etag, &err) == 0, "put %s: %s", key, err.detail);
}

/* The whole object as a NUL-terminated string (caller frees). */
static char *get_str(s3_client *c, const char *key, s3_object_info *info)
{
    strata_buf b;
    strata_error err = {0};
    sbuf_init(&b, 0);
    ck_assert_msg(s3_get(c, key, 0, 0, 1 << 20, &b, info, &err) == 0, "get %s: %s", key,
                  err.detail);
    ck_assert_int_eq(sbuf_append(&b, "", 1, NULL), 0);
    return (char *)sbuf_take(&b, NULL);
}

typedef struct listing {
    int n;
    char keys[64][256];
    uint64_t sizes[64];
    int64_t mtimes[64];
    int stop_after; /* 0: never */
} listing;

static int collect(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    listing *l = ctx;
    if (l->n < 64) {
        snprintf(l->keys[l->n], sizeof l->keys[0], "%s", key);
        l->sizes[l->n] = size;
        l->mtimes[l->n] = mtime_ms;
    }
    l->n++;
    return l->stop_after > 0 && l->n >= l->stop_after;
}

static bool listed(const listing *l, const char *key)
{
    for (int i = 0; i < l->n && i < 64; i++)
        if (strcmp(l->keys[i], key) == 0)
            return true;
    return false;
}

static int delete_each(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    (void)size;
    (void)mtime_ms;
    strata_error err = {0};
    ck_assert_msg(s3_delete(ctx, key, &err) == 0, "delete %s: %s", key, err.detail);
    return 0;
}

/* Removes what a test left under its prefix. */
static void wipe(s3_client *c)
{
    strata_error err = {0};
    ck_assert_msg(s3_list(c, "", delete_each, c, &err) == 0, "wipe: %s", err.detail);
}

/* ---- the real server ------------------------------------------------------ */

START_TEST(check_answers)
{
    s3_client *c = client("check");
    strata_error err = {0};
    ck_assert_msg(s3_check(c, &err) == 0, "s3_check: %s", err.detail);
    s3_client_free(c);
}
END_TEST

START_TEST(put_get_range_head_delete)
{
    s3_client *c = client("basic");
    strata_error err = {0};
    char etag[S3_ETAG_MAX], *s;
    int64_t before = (int64_t)time(NULL) * 1000;
    put_ok(c, "obj", "hello, world", 12, NULL, etag);
    ck_assert_msg(etag[0] == '"' && strlen(etag) > 2, "etag %s", etag);

    s3_object_info info;
    s = get_str(c, "obj", &info);
    ck_assert_str_eq(s, "hello, world");
    free(s);
    ck_assert_uint_eq(info.size, 12);
    ck_assert_str_eq(info.etag, etag);
    ck_assert_int_ge(info.mtime_ms, before - 2000);
    ck_assert_int_le(info.mtime_ms, before + 60000);

    ck_assert_int_eq(s3_head(c, "obj", &info, &err), 0);
    ck_assert_uint_eq(info.size, 12);
    ck_assert_str_eq(info.etag, etag);

    /* ranges append to what the buffer holds; info gives the whole size */
    strata_buf b;
    sbuf_init(&b, 0);
    ck_assert_int_eq(sbuf_append(&b, ">", 1, NULL), 0);
    ck_assert_int_eq(s3_get(c, "obj", 7, 5, 100, &b, &info, &err), 0);
    ck_assert_uint_eq(b.len, 6);
    ck_assert_int_eq(memcmp(b.data, ">world", 6), 0);
    ck_assert_uint_eq(info.size, 12);
    ck_assert_int_eq(s3_get(c, "obj", 10, 0, 100, &b, NULL, &err), 0); /* to the end */
    ck_assert_int_eq(memcmp(b.data, ">worldld", 8), 0);
    ck_assert_int_eq(s3_get(c, "obj", 10, 50, 100, &b, NULL, &err), 0); /* cut at the end */
    ck_assert_uint_eq(b.len, 10);
    /* past the end: nothing, and no error */
    ck_assert_int_eq(s3_get(c, "obj", 12, 0, 100, &b, &info, &err), 0);
    ck_assert_int_eq(s3_get(c, "obj", 500, 10, 100, &b, &info, &err), 0);
    ck_assert_uint_eq(b.len, 10);
    ck_assert_uint_eq(info.size, 12);
    /* over the caller's bound: SERR_TOO_LARGE and nothing appended */
    ck_assert_int_eq(s3_get(c, "obj", 0, 0, 11, &b, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
    ck_assert_uint_eq(b.len, 10);
    ck_assert_int_eq(s3_get(c, "obj", 2, 4, 4, &b, NULL, &err), 0); /* exactly the bound */
    ck_assert_uint_eq(b.len, 14);
    sbuf_free(&b);

    /* overwrite, empty object */
    put_ok(c, "obj", "", 0, NULL, NULL);
    s = get_str(c, "obj", &info);
    ck_assert_str_eq(s, "");
    free(s);
    ck_assert_uint_eq(info.size, 0);

    ck_assert_int_eq(s3_delete(c, "obj", &err), 0);
    ck_assert_int_eq(s3_head(c, "obj", &info, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    sbuf_init(&b, 0);
    ck_assert_int_eq(s3_get(c, "obj", 0, 0, 100, &b, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_msg(strstr(err.detail, "NoSuchKey") != NULL, "%s", err.detail);
    sbuf_free(&b);
    ck_assert_int_eq(s3_delete(c, "obj", &err), 0); /* deleting a missing key succeeds */

    /* bad keys are refused before any request */
    ck_assert_int_eq(s3_put(c, "", "x", 1, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    char longkey[S3_KEY_MAX + 2];
    memset(longkey, 'k', sizeof longkey - 1);
    longkey[sizeof longkey - 1] = '\0';
    ck_assert_int_eq(s3_put(c, longkey, "x", 1, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    s3_client_free(c);
}
END_TEST

START_TEST(odd_keys)
{
    static const char *const keys[] = {
        "with space/and more spaces",
        "unicode/caf\xc3\xa9-\xe2\x80\x94-\xf0\x9f\x98\x80",
        "plus+sign+",
        "percent%20not-an-escape%",
        "query?x=y&z=1#frag",
        "punct!$'()*,;:@=~_.-",
        "deep/a/b/c/d/e/f",
        "amp&lt;not-an-entity&gt;<tag>\"q\"",
    };
    const int n = (int)(sizeof keys / sizeof keys[0]);
    s3_client *c = client("odd");
    strata_error err = {0};
    for (int i = 0; i < n; i++)
        put_ok(c, keys[i], keys[i], strlen(keys[i]), NULL, NULL);
    for (int i = 0; i < n; i++) {
        s3_object_info info;
        char *s = get_str(c, keys[i], &info);
        ck_assert_str_eq(s, keys[i]);
        free(s);
        ck_assert_int_eq(s3_head(c, keys[i], &info, &err), 0);
        ck_assert_uint_eq(info.size, strlen(keys[i]));
    }
    listing l = {0};
    ck_assert_msg(s3_list(c, "", collect, &l, &err) == 0, "list: %s", err.detail);
    ck_assert_int_eq(l.n, n);
    for (int i = 0; i < n; i++) {
        ck_assert_msg(listed(&l, keys[i]), "%s not listed", keys[i]);
    }
    /* a listing prefix with the same odd bytes */
    memset(&l, 0, sizeof l);
    ck_assert_int_eq(s3_list(c, "unicode/caf\xc3\xa9", collect, &l, &err), 0);
    ck_assert_int_eq(l.n, 1);
    ck_assert_str_eq(l.keys[0], keys[1]);
    memset(&l, 0, sizeof l);
    ck_assert_int_eq(s3_list(c, "plus+", collect, &l, &err), 0);
    ck_assert_int_eq(l.n, 1);
    wipe(c);
    s3_client_free(c);
}
END_TEST

typedef struct putter {
    s3_client *c;
    int from, to;
} putter;

static void *put_range(void *arg)
{
    putter *p = arg;
    for (int i = p->from; i < p->to; i++) {
        char key[32], val[16];
        snprintf(key, sizeof key, "k%05d", i);
        int len = snprintf(val, sizeof val, "%d", i);
        strata_error err = {0};
        if (s3_put(p->c, key, val, (size_t)len, NULL, NULL, &err) != 0) {
            fprintf(stderr, "put %s: %s\n", key, err.detail);
            return (void *)1;
        }
    }
    return NULL;
}

typedef struct counter {
    int n;
    char last[32];
    bool ordered;
    uint64_t bytes;
} counter;

static int count_keys(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    counter *k = ctx;
    if (k->n > 0 && strcmp(k->last, key) >= 0)
        k->ordered = false;
    snprintf(k->last, sizeof k->last, "%s", key);
    k->n++;
    k->bytes += size;
    (void)mtime_ms;
    return 0;
}

START_TEST(list_many_pages)
{
    enum { N = 1100, THREADS = 4 };
    s3_client *c = client("many");
    strata_error err = {0};
    pthread_t th[THREADS];
    putter p[THREADS];
    for (int t = 0; t < THREADS; t++) {
        p[t] = (putter){c, t * N / THREADS, (t + 1) * N / THREADS};
        ck_assert_int_eq(pthread_create(&th[t], NULL, put_range, &p[t]), 0);
    }
    for (int t = 0; t < THREADS; t++) {
        void *r;
        pthread_join(th[t], &r);
        ck_assert_ptr_null(r);
    }
    /* more than one page of 1000 */
    counter k = {.ordered = true};
    ck_assert_msg(s3_list(c, "", count_keys, &k, &err) == 0, "list: %s", err.detail);
    ck_assert_int_eq(k.n, N);
    ck_assert(k.ordered);
    ck_assert_str_eq(k.last, "k01099");

    /* small pages: many continuation tokens */
    s3_config cfg = *s3_client_config(c);
    cfg.list_page_size = 37;
    s3_client *small = s3_client_new(&cfg, &err);
    ck_assert_ptr_nonnull(small);
    k = (counter){.ordered = true};
    ck_assert_int_eq(s3_list(small, "", count_keys, &k, &err), 0);
    ck_assert_int_eq(k.n, N);
    ck_assert(k.ordered);
    k = (counter){.ordered = true};
    ck_assert_int_eq(s3_list(small, "k010", count_keys, &k, &err), 0);
    ck_assert_int_eq(k.n, 100);
    /* a callback that stops the listing */
    listing l = {.stop_after = 45};
    ck_assert_int_eq(s3_list(small, "", collect, &l, &err), 0);
    ck_assert_int_eq(l.n, 45);
    ck_assert_str_eq(l.keys[44], "k00044");
    s3_client_free(small);
    wipe(c);
    k = (counter){.ordered = true};
    ck_assert_int_eq(s3_list(c, "", count_keys, &k, &err), 0);
    ck_assert_int_eq(k.n, 0);
    s3_client_free(c);
}
END_TEST

START_TEST(conditional_put)
{
    s3_client *c = client("cond");
    strata_error err = {0};
    char etag1[S3_ETAG_MAX], etag2[S3_ETAG_MAX];
    s3_put_opts create = {.if_none_match = true};
    put_ok(c, "fence", "one", 3, &create, etag1);
    ck_assert_int_eq(s3_put(c, "fence", "two", 3, &create, NULL, &err), -1);
    ck_assert_msg(err.kind == SERR_PRECONDITION, "%d %s", err.kind, err.detail);
    char *s = get_str(c, "fence", NULL);
    ck_assert_str_eq(s, "one");
    free(s);

    /* If-Match: the current ETag wins, a stale one loses */
    s3_put_opts swap = {.if_match = etag1};
    put_ok(c, "fence", "three", 5, &swap, etag2);
    ck_assert_str_ne(etag1, etag2);
    ck_assert_int_eq(s3_put(c, "fence", "four", 4, &swap, NULL, &err), -1);
    ck_assert_msg(err.kind == SERR_PRECONDITION, "%d %s", err.kind, err.detail);
    s = get_str(c, "fence", NULL);
    ck_assert_str_eq(s, "three");
    free(s);

    /* a conditional delete: a stale ETag keeps the object, the current one removes it */
    ck_assert_int_eq(s3_delete_if_match(c, "fence", etag1, &err), -1);
    ck_assert_msg(err.kind == SERR_PRECONDITION, "%d %s", err.kind, err.detail);
    s = get_str(c, "fence", NULL);
    ck_assert_str_eq(s, "three");
    free(s);
    ck_assert_int_eq(s3_delete_if_match(c, "fence", etag2, &err), 0);
    s3_object_info info;
    ck_assert_int_eq(s3_head(c, "fence", &info, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    wipe(c);
    s3_client_free(c);
}
END_TEST

static const char *meta_of(const s3_object_info *info, const char *name)
{
    for (int i = 0; i < info->n_meta; i++)
        if (strcmp(info->meta_name[i], name) == 0)
            return info->meta_value[i];
    return NULL;
}

START_TEST(metadata_and_copy)
{
    s3_client *c = client("meta");
    strata_error err = {0};
    s3_meta m[] = {
        {"owner", "strata"}, {"ttl-ms", "12345"}, {"note", "a value, with: punctuation"}};
    s3_put_opts o = {.content_type = "application/x-strata", .meta = m, .n_meta = 3};
    put_ok(c, "src", "payload", 7, &o, NULL);
    s3_object_info info;
    ck_assert_int_eq(s3_head(c, "src", &info, &err), 0);
    ck_assert_int_eq(info.n_meta, 3);
    ck_assert_str_eq(meta_of(&info, "owner"), "strata");
    ck_assert_str_eq(meta_of(&info, "ttl-ms"), "12345");
    ck_assert_str_eq(meta_of(&info, "note"), "a value, with: punctuation");
    char *s = get_str(c, "src", &info); /* GET carries it too */
    free(s);
    ck_assert_str_eq(meta_of(&info, "ttl-ms"), "12345");

    /* bad metadata is refused before any request */
    s3_meta bad[] = {{"Upper", "x"}};
    s3_put_opts ob = {.meta = bad, .n_meta = 1};
    ck_assert_int_eq(s3_put(c, "x", "x", 1, &ob, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    s3_meta crlf[] = {{"a", "x\r\nInjected: 1"}};
    ob.meta = crlf;
    ck_assert_int_eq(s3_put(c, "x", "x", 1, &ob, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);

    /* a copy keeps the metadata; with replace_meta it takes the new */
    ck_assert_msg(s3_copy(c, "src", "dst", false, NULL, &err) == 0, "copy: %s", err.detail);
    s = get_str(c, "dst", &info);
    ck_assert_str_eq(s, "payload");
    free(s);
    ck_assert_str_eq(meta_of(&info, "owner"), "strata");
    s3_meta m2[] = {{"owner", "other"}};
    s3_put_opts o2 = {.meta = m2, .n_meta = 1};
    ck_assert_msg(s3_copy(c, "src", "dst2", true, &o2, &err) == 0, "copy: %s", err.detail);
    ck_assert_int_eq(s3_head(c, "dst2", &info, &err), 0);
    ck_assert_int_eq(info.n_meta, 1);
    ck_assert_str_eq(meta_of(&info, "owner"), "other");
    ck_assert_uint_eq(info.size, 7);

    /* a copy onto itself with replace_meta: new metadata, same bytes. AWS
     * restarts Last-Modified too; versitygw's posix backend keeps the
     * file's mtime (it rewrites only the metadata), so only "not older" is
     * checked here */
    ck_assert_int_eq(s3_head(c, "src", &info, &err), 0);
    int64_t before = info.mtime_ms;
    s3_meta m3[] = {{"owner", "strata"}, {"ttl-ms", "999"}};
    s3_put_opts o3 = {.meta = m3, .n_meta = 2};
    ck_assert_msg(s3_copy(c, "src", "src", true, &o3, &err) == 0, "touch: %s", err.detail);
    s = get_str(c, "src", &info);
    ck_assert_str_eq(s, "payload");
    free(s);
    ck_assert_int_ge(info.mtime_ms, before);
    ck_assert_int_eq(info.n_meta, 2);
    ck_assert_str_eq(meta_of(&info, "ttl-ms"), "999");
    /* a copy onto itself keeping the metadata is refused by S3 */
    ck_assert_int_eq(s3_copy(c, "src", "src", false, NULL, &err), -1);
    ck_assert_msg(err.kind == SERR_IO, "%d %s", err.kind, err.detail);

    /* a missing source */
    ck_assert_int_eq(s3_copy(c, "nothing here", "dst3", false, NULL, &err), -1);
    ck_assert_msg(err.kind == SERR_NOT_FOUND, "%d %s", err.kind, err.detail);
    wipe(c);
    s3_client_free(c);
}
END_TEST

typedef struct uploads {
    int n;
    char key[8][128];
    char id[8][S3_UPLOAD_ID_MAX];
    int64_t initiated[8];
} uploads;

static int collect_upload(void *ctx, const char *key, const char *upload_id, int64_t initiated)
{
    uploads *u = ctx;
    if (u->n < 8) {
        snprintf(u->key[u->n], sizeof u->key[0], "%s", key);
        snprintf(u->id[u->n], sizeof u->id[0], "%s", upload_id);
        u->initiated[u->n] = initiated;
    }
    u->n++;
    return 0;
}

static unsigned char *pattern(size_t len, unsigned seed)
{
    unsigned char *p = malloc(len);
    ck_assert_ptr_nonnull(p);
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
    }
    return p;
}

START_TEST(multipart_three_parts)
{
    s3_client *c = client("mpu");
    strata_error err = {0};
    const size_t part = S3_PART_MIN, total = 2 * S3_PART_MIN + 1;
    unsigned char *data = pattern(total, 7);
    char id[S3_UPLOAD_ID_MAX], etags[3][S3_ETAG_MAX];
    s3_meta m[] = {{"digest", "abc"}};
    s3_put_opts o = {.meta = m, .n_meta = 1};
    ck_assert_msg(s3_mpu_begin(c, "big object", &o, id, &err) == 0, "begin: %s", err.detail);
    ck_assert_str_ne(id, "");

    uploads u = {0};
    ck_assert_msg(s3_mpu_list(c, "", collect_upload, &u, &err) == 0, "mpu_list: %s", err.detail);
    ck_assert_int_eq(u.n, 1);
    ck_assert_str_eq(u.key[0], "big object");
    ck_assert_str_eq(u.id[0], id);
    ck_assert_int_gt(u.initiated[0], 0);

    ck_assert_msg(s3_mpu_part(c, "big object", id, 1, data, part, etags[0], &err) == 0,
                  "part 1: %s", err.detail);
    /* the parts may arrive in any order */
    ck_assert_int_eq(s3_mpu_part(c, "big object", id, 3, data + 2 * part, 1, etags[2], &err), 0);
    ck_assert_int_eq(s3_mpu_part(c, "big object", id, 2, data + part, part, etags[1], &err), 0);
    ck_assert_msg(s3_mpu_complete(c, "big object", id, 3, etags, &err) == 0, "complete: %s",
                  err.detail);

    s3_object_info info;
    ck_assert_int_eq(s3_head(c, "big object", &info, &err), 0);
    ck_assert_uint_eq(info.size, total);
    ck_assert_str_eq(meta_of(&info, "digest"), "abc");
    /* a range across the first part boundary, and the last byte */
    strata_buf b;
    sbuf_init(&b, 0);
    ck_assert_int_eq(s3_get(c, "big object", part - 100, 200, 200, &b, NULL, &err), 0);
    ck_assert_uint_eq(b.len, 200);
    ck_assert_int_eq(memcmp(b.data, data + part - 100, 200), 0);
    sbuf_reset(&b);
    ck_assert_int_eq(s3_get(c, "big object", total - 1, 0, 10, &b, NULL, &err), 0);
    ck_assert_uint_eq(b.len, 1);
    ck_assert_int_eq(b.data[0], data[total - 1]);
    sbuf_reset(&b);
    /* the whole, within a bound of exactly its size */
    ck_assert_int_eq(s3_get(c, "big object", 0, 0, total, &b, NULL, &err), 0);
    ck_assert_uint_eq(b.len, total);
    ck_assert_int_eq(memcmp(b.data, data, total), 0);
    ck_assert_uint_le(b.alloc, total + total / 2); /* sized once, not doubled past it */
    sbuf_free(&b);

    memset(&u, 0, sizeof u);
    ck_assert_int_eq(s3_mpu_list(c, "", collect_upload, &u, &err), 0);
    ck_assert_int_eq(u.n, 0);
    /* completing it again: S3 (and versitygw) make completion idempotent
     * for a while, or say NoSuchUpload; the object stays as it is */
    int again = s3_mpu_complete(c, "big object", id, 3, etags, &err);
    ck_assert_msg(again == 0 || err.kind == SERR_NOT_FOUND, "%d %s", err.kind, err.detail);
    ck_assert_int_eq(s3_head(c, "big object", &info, &err), 0);
    ck_assert_uint_eq(info.size, total);
    free(data);
    wipe(c);
    s3_client_free(c);
}
END_TEST

START_TEST(multipart_abort)
{
    s3_client *c = client("abort");
    strata_error err = {0};
    char id[S3_UPLOAD_ID_MAX], id2[S3_UPLOAD_ID_MAX], etag[S3_ETAG_MAX];
    ck_assert_int_eq(s3_mpu_begin(c, "a/left", NULL, id, &err), 0);
    ck_assert_int_eq(s3_mpu_begin(c, "b/kept", NULL, id2, &err), 0);
    ck_assert_int_eq(s3_mpu_part(c, "a/left", id, 1, "tiny", 4, etag, &err), 0);
    uploads u = {0};
    ck_assert_int_eq(s3_mpu_list(c, "a/", collect_upload, &u, &err), 0);
    ck_assert_int_eq(u.n, 1);
    ck_assert_str_eq(u.key[0], "a/left");
    ck_assert_msg(s3_mpu_abort(c, "a/left", id, &err) == 0, "abort: %s", err.detail);
    memset(&u, 0, sizeof u);
    ck_assert_int_eq(s3_mpu_list(c, "", collect_upload, &u, &err), 0);
    ck_assert_int_eq(u.n, 1);
    ck_assert_str_eq(u.key[0], "b/kept");
    /* a part for an aborted upload, an abort of it again */
    ck_assert_int_eq(s3_mpu_part(c, "a/left", id, 2, "x", 1, etag, &err), -1);
    ck_assert_msg(err.kind == SERR_NOT_FOUND, "%d %s", err.kind, err.detail);
    ck_assert_int_eq(s3_mpu_abort(c, "a/left", id, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(s3_mpu_abort(c, "b/kept", id2, &err), 0);
    ck_assert_int_eq(s3_head(c, "a/left", NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(s3_mpu_part(c, "a/left", id, 0, "x", 1, etag, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    s3_client_free(c);
}
END_TEST

START_TEST(wrong_credentials)
{
    s3_client *good = client("auth");
    strata_error err = {0};
    put_ok(good, "there", "x", 1, NULL, NULL);

    s3_config cfg = *s3_client_config(good);
    cfg.secret_key[0] = cfg.secret_key[0] == 'A' ? 'B' : 'A';
    s3_client *c = s3_client_new(&cfg, &err);
    ck_assert_ptr_nonnull(c);
    ck_assert_int_eq(s3_check(c, &err), -1);
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    ck_assert_msg(strncmp(err.detail, "SignatureDoesNotMatch: ", 23) == 0, "%s", err.detail);
    ck_assert_int_eq(s3_put(c, "new", "x", 1, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    ck_assert_msg(strstr(err.detail, "SignatureDoesNotMatch") != NULL, "%s", err.detail);
    /* HEAD answers have no body: the cause is still named */
    ck_assert_int_eq(s3_head(c, "there", NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    ck_assert_msg(strstr(err.detail, "SignatureDoesNotMatch") != NULL, "%s", err.detail);
    s3_client_free(c);
    /* nothing was written */
    ck_assert_int_eq(s3_head(good, "new", NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);

    cfg = *s3_client_config(good);
    snprintf(cfg.access_key, sizeof cfg.access_key, "NOSUCHKEY0000000");
    c = s3_client_new(&cfg, &err);
    ck_assert_int_eq(s3_check(c, &err), -1);
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    /* AWS says InvalidAccessKeyId (403), versitygw XAdminUserNotFound (404) */
    ck_assert_msg(strstr(err.detail, "InvalidAccessKeyId") != NULL ||
                      strstr(err.detail, "XAdminUserNotFound") != NULL,
                  "%s", err.detail);
    s3_client_free(c);

    cfg = *s3_client_config(good);
    snprintf(cfg.bucket, sizeof cfg.bucket, "no-such-bucket-here");
    c = s3_client_new(&cfg, &err);
    ck_assert_int_eq(s3_check(c, &err), -1);
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    ck_assert_msg(strstr(err.detail, "NoSuchBucket") != NULL, "%s", err.detail);
    /* a missing bucket is not a missing object */
    strata_buf b;
    sbuf_init(&b, 0);
    ck_assert_int_eq(s3_get(c, "there", 0, 0, 10, &b, NULL, &err), -1);
    ck_assert_msg(err.kind == SERR_UNAVAILABLE, "%d %s", err.kind, err.detail);
    sbuf_free(&b);
    s3_client_free(c);
    wipe(good);
    s3_client_free(good);
}
END_TEST

typedef struct worker {
    s3_client *c;
    int id;
    int failures;
    char detail[STRATA_ERR_DETAIL_MAX];
} worker;

static void *work(void *arg)
{
    worker *w = arg;
    strata_error err = {0};
    for (int i = 0; i < 30; i++) {
        char key[64], val[64];
        snprintf(key, sizeof key, "t%d/k%d", w->id, i % 5);
        int len = snprintf(val, sizeof val, "thread %d round %d", w->id, i);
        strata_buf b;
        sbuf_init(&b, 0);
        s3_object_info info;
        if (s3_put(w->c, key, val, (size_t)len, NULL, NULL, &err) != 0 ||
            s3_get(w->c, key, 0, 0, 100, &b, &info, &err) != 0 || b.len != (size_t)len ||
            memcmp(b.data, val, b.len) != 0 || s3_head(w->c, key, &info, &err) != 0 ||
            info.size != (uint64_t)len || (i % 7 == 0 && s3_delete(w->c, key, &err) != 0)) {
            w->failures++;
            snprintf(w->detail, sizeof w->detail, "%s", err.detail);
        }
        sbuf_free(&b);
    }
    return NULL;
}

START_TEST(threads_share_a_client)
{
    enum { THREADS = 8 };
    s3_client *c = client("threads");
    pthread_t th[THREADS];
    worker w[THREADS];
    for (int t = 0; t < THREADS; t++) {
        w[t] = (worker){.c = c, .id = t};
        ck_assert_int_eq(pthread_create(&th[t], NULL, work, &w[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (int t = 0; t < THREADS; t++)
        ck_assert_msg(w[t].failures == 0, "thread %d: %d failures, last: %s", t, w[t].failures,
                      w[t].detail);
    wipe(c);
    s3_client_free(c);
}
END_TEST

/* ---- faults from fake listeners ------------------------------------------- */

enum fake_mode { FAKE_SLOWDOWN, FAKE_DROP, FAKE_SILENT, FAKE_OK };

typedef struct fake {
    int fd, port;
    enum fake_mode mode;
    atomic_int requests, connections;
    atomic_bool stop;
    pthread_t th;
} fake;

/* Reads one request head (no body) from s; false at the end. */
static bool read_head(int s)
{
    char buf[8192];
    size_t got = 0;
    struct pollfd ps = {.fd = s, .events = POLLIN};
    while (got < sizeof buf - 1 && poll(&ps, 1, 1000) > 0) {
        ssize_t r = read(s, buf + got, 1); /* one byte at a time: never past the head */
        if (r <= 0)
            return false;
        got += (size_t)r;
        buf[got] = '\0';
        if (got >= 4 && memcmp(buf + got - 4, "\r\n\r\n", 4) == 0)
            return true;
    }
    return got > 0;
}

/* FAKE_OK: answers every request on a connection 200, keeping it open. */
static void serve_ok(fake *f, int s)
{
    static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e\"\r\n\r\n";
    while (!atomic_load(&f->stop) && read_head(s)) {
        atomic_fetch_add(&f->requests, 1);
        if (write(s, ok, sizeof ok - 1) < 0)
            break;
    }
    close(s);
}

static void *fake_loop(void *arg)
{
    fake *f = arg;
    int held[64], n_held = 0;
    static const char body[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown"
                               "</Code><Message>Please reduce your request rate.</Message></Error>";
    while (!atomic_load(&f->stop)) {
        struct pollfd p = {.fd = f->fd, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int s = accept(f->fd, NULL, NULL);
        if (s < 0)
            continue;
        atomic_fetch_add(&f->connections, 1);
        if (f->mode == FAKE_OK) {
            serve_ok(f, s);
            continue;
        }
        read_head(s);
        atomic_fetch_add(&f->requests, 1);
        if (f->mode == FAKE_SLOWDOWN) {
            char head[256];
            int hl = snprintf(head, sizeof head,
                              "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                              "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                              sizeof body - 1);
            if (write(s, head, (size_t)hl) < 0 || write(s, body, sizeof body - 1) < 0)
                perror("fake write");
            close(s);
        } else if (f->mode == FAKE_DROP) {
            close(s);
        } else if (n_held < 64) {
            held[n_held++] = s; /* never answered */
        } else {
            close(s);
        }
    }
    for (int i = 0; i < n_held; i++)
        close(held[i]);
    return NULL;
}

static void fake_start(fake *f, enum fake_mode mode)
{
    memset(f, 0, sizeof *f);
    f->mode = mode;
    f->fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(f->fd, 0);
    int one = 1;
    setsockopt(f->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    for (int port = FAKE_PORT_LO; port <= FAKE_PORT_HI; port++) {
        struct sockaddr_in a = {.sin_family = AF_INET,
                                .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        if (bind(f->fd, (struct sockaddr *)&a, sizeof a) == 0) {
            f->port = port;
            break;
        }
    }
    ck_assert_msg(f->port != 0, "no free port in %d-%d", FAKE_PORT_LO, FAKE_PORT_HI);
    ck_assert_int_eq(listen(f->fd, 16), 0);
    ck_assert_int_eq(pthread_create(&f->th, NULL, fake_loop, f), 0);
}

static void fake_stop(fake *f)
{
    atomic_store(&f->stop, true);
    pthread_join(f->th, NULL);
    close(f->fd);
}

static s3_client *client_at(int port, long timeout_ms, int retries)
{
    s3_config cfg;
    config(&cfg, "fake");
    snprintf(cfg.endpoint, sizeof cfg.endpoint, "http://127.0.0.1:%d", port);
    cfg.timeout_ms = timeout_ms;
    cfg.max_retries = retries;
    strata_error err = {0};
    s3_client *c = s3_client_new(&cfg, &err);
    ck_assert_msg(c != NULL, "%s", err.detail);
    return c;
}

START_TEST(slowdown_is_retried_then_unavailable)
{
    fake f;
    fake_start(&f, FAKE_SLOWDOWN);
    s3_client *c = client_at(f.port, 20000, 3);
    strata_error err = {0};
    int64_t t0 = now_ms();
    ck_assert_int_eq(s3_put(c, "k", "v", 1, NULL, NULL, &err), -1);
    int64_t took = now_ms() - t0;
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    ck_assert_msg(strncmp(err.detail, "SlowDown: Please reduce", 23) == 0, "%s", err.detail);
    ck_assert_int_eq(atomic_load(&f.requests), 4); /* 1 + 3 retries */
    /* backoff 100, 200, 400 ms, each jittered to at least half */
    ck_assert_msg(took >= 350 && took < 5000, "took %lld ms", (long long)took);
    s3_client_free(c);
    fake_stop(&f);
}
END_TEST

START_TEST(dropped_connections_are_retried)
{
    fake f;
    fake_start(&f, FAKE_DROP);
    s3_client *c = client_at(f.port, 20000, 2);
    strata_error err = {0};
    strata_buf b;
    sbuf_init(&b, 0);
    ck_assert_int_eq(s3_get(c, "k", 0, 0, 10, &b, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    ck_assert_int_eq(atomic_load(&f.requests), 3);
    ck_assert_uint_eq(b.len, 0);
    sbuf_free(&b);
    s3_client_free(c);
    fake_stop(&f);
}
END_TEST

START_TEST(stopped_server_fails_within_the_timeout)
{
    /* nothing listens: refused at once, retried, then unavailable */
    s3_client *c = client_at(CLOSED_PORT, 3000, 4);
    strata_error err = {0};
    int64_t t0 = now_ms();
    ck_assert_int_eq(s3_check(c, &err), -1);
    int64_t took = now_ms() - t0;
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    ck_assert_msg(strstr(err.detail, "cannot connect") != NULL, "%s", err.detail);
    ck_assert_msg(took < 3000 + 500, "took %lld ms", (long long)took);
    ck_assert_int_eq(s3_put(c, "k", "v", 1, NULL, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    s3_client_free(c);

    /* a server that accepts and never answers: the whole operation, its
     * retries included, ends within timeout_ms */
    fake f;
    fake_start(&f, FAKE_SILENT);
    c = client_at(f.port, 1500, 4);
    t0 = now_ms();
    ck_assert_int_eq(s3_head(c, "k", NULL, &err), -1);
    took = now_ms() - t0;
    ck_assert_int_eq(err.kind, SERR_UNAVAILABLE);
    ck_assert_msg(took >= 1400 && took < 1500 + 1500, "took %lld ms", (long long)took);
    s3_client_free(c);
    fake_stop(&f);
}
END_TEST

START_TEST(connections_are_reused)
{
    fake f;
    fake_start(&f, FAKE_OK);
    s3_client *c = client_at(f.port, 5000, 0);
    strata_error err = {0};
    s3_object_info info;
    for (int i = 0; i < 20; i++) {
        ck_assert_msg(s3_head(c, "k", &info, &err) == 0, "%s", err.detail);
        ck_assert_uint_eq(info.size, 5);
    }
    ck_assert_int_eq(atomic_load(&f.requests), 20);
    ck_assert_int_eq(atomic_load(&f.connections), 1);
    s3_client_free(c);
    fake_stop(&f);
}
END_TEST

static Suite *client_suite(void)
{
    Suite *s = suite_create("s3_client");
    TCase *t = tcase_create("versitygw");
    tcase_set_timeout(t, 300);
    tcase_add_test(t, check_answers);
    tcase_add_test(t, put_get_range_head_delete);
    tcase_add_test(t, odd_keys);
    tcase_add_test(t, list_many_pages);
    tcase_add_test(t, conditional_put);
    tcase_add_test(t, metadata_and_copy);
    tcase_add_test(t, multipart_three_parts);
    tcase_add_test(t, multipart_abort);
    tcase_add_test(t, wrong_credentials);
    tcase_add_test(t, threads_share_a_client);
    suite_add_tcase(s, t);
    TCase *f = tcase_create("faults");
    tcase_set_timeout(f, 120);
    tcase_add_test(f, slowdown_is_retried_then_unavailable);
    tcase_add_test(f, dropped_connections_are_retried);
    tcase_add_test(f, stopped_server_fails_within_the_timeout);
    tcase_add_test(f, connections_are_reused);
    suite_add_tcase(s, f);
    return s;
}

int main(void)
{
    snprintf(RUN, sizeof RUN, "s3client-%ld-%d", (long)time(NULL), (int)getpid());
    return run_suite(client_suite());
}
