/* The L2 contract: what every L2 backend must do, run against a real
 * backend. STRATA_L2_URL names it; by default a fresh disk cache. Besides
 * storage (TTL, eviction, glob clears, stats): the coherence primitives,
 * tokens, guarded fills and open fences, between two handles on one L2
 * and between processes (fork), including one killed with SIGKILL.
 *
 * On a server (redis://, s3://, mongodb://) every case gets a prefix of
 * its own, as on disk it gets a fresh directory (on MongoDB its
 * collections are dropped when the case ends); the cases that damage what
 * the L2 stores do it the backend's way (a file on disk, a key on Redis,
 * an object written with s3_client on S3, a document written with
 * libmongoc on MongoDB). A case a backend cannot run by
 * design (marked NEEDS_DISK_FILES; none today) is not run; it prints
 *   SKIP: l2_contract/<backend>/<case>: <why>
 * which scripts/test-summary.py counts as skipped. With STRATA_L2_REQUIRE
 * set (a URL scheme, as the meson tests l2_contract_redis and
 * l2_contract_s3 set it), a STRATA_L2_URL of another scheme, or none,
 * fails the run; for s3:// an unset STRATA_L2_URL is taken from
 * STRATA_S3_URL (the s3 suite's server, AWS_* set) with the prefix l2c,
 * and for mongodb:// from STRATA_MONGO_URL (the mongo suite's server)
 * with the database l2contract. */
#include <check.h>
#include <dirent.h>
#include <mongoc/mongoc.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../src/blobs/s3_client.h"
#include "../../src/cache/l2.h"
#include "../support/harness.h"

static l2_cache *C;
static char dir[] = "/tmp/strata-l2-XXXXXX";
static char url[300];

static void open_cache(uint64_t max_bytes)
{
    l2_config cfg = {.max_bytes = max_bytes, .fence_ttl_ms = 60000};
    strata_error err;
    C = l2_open(url, &cfg, &err);
    ck_assert_msg(C != NULL, "%s", err.detail);
}

/* u with its prefix made this case's own: the one it names (default
 * "l2c") followed by ".PID.N.TIME", N counting the cases of this process
 * (Check may run them all in one). Other schemes: u as it is. */
static void own_prefix(const char *u, char *out, size_t cap)
{
    static unsigned cases;
    bool s3 = strncmp(u, "s3://", 5) == 0, mongo = strncmp(u, "mongodb://", 10) == 0;
    if (mongo) {
        /* ?prefix=NAME (default l2c) + "_PID_N_TIME", [A-Za-z0-9_-]{1,32} */
        char suffix[40];
        snprintf(suffix, sizeof suffix, "_%ld_%u_%lx", (long)getpid(), ++cases,
                 (unsigned long)time(NULL) & 0xffffffu);
        const char *q = strchr(u, '?');
        const char *p = q ? strstr(q, "prefix=") : NULL;
        if (p == NULL) {
            snprintf(out, cap, "%s%cprefix=l2c%s", u, q ? '&' : '?', suffix);
            return;
        }
        p += 7;
        size_t len = strcspn(p, "&"), room = 32 - strlen(suffix);
        snprintf(out, cap, "%.*s%.*s%s%s", (int)(p - u), u, (int)(len < room ? len : room), p,
                 suffix, p + len);
        return;
    }
    if (strncmp(u, "redis://", 8) != 0 && !s3) {
        snprintf(out, cap, "%s", u);
        return;
    }
    char suffix[64];
    snprintf(suffix, sizeof suffix, ".%ld.%u.%lx", (long)getpid(), ++cases,
             (unsigned long)time(NULL) & 0xffffffu);
    if (s3) {
        /* s3://BUCKET[/PREFIX][?...]: the prefix (default l2c) + suffix */
        const char *q = strchr(u, '?'), *end = q ? q : u + strlen(u);
        const char *slash = memchr(u + 5, '/', (size_t)(end - u - 5));
        while (end > u + 5 && end[-1] == '/')
            end--;
        bool named = slash != NULL && slash + 1 < end;
        snprintf(out, cap, "%.*s%s%s%s", (int)(end - u), u, named ? "" : "/l2c", suffix,
                 q ? q : "");
        return;
    }
    const char *q = strchr(u, '?');
    const char *p = q ? strstr(q, "prefix=") : NULL;
    if (p == NULL) {
        snprintf(out, cap, "%s%cprefix=l2c%s", u, q ? '&' : '?', suffix);
        return;
    }
    p += 7;
    size_t len = strcspn(p, "&"), room = 64 - strlen(suffix);
    snprintf(out, cap, "%.*s%.*s%s%s", (int)(p - u), u, (int)(len < room ? len : room), p, suffix,
             p + len);
}

static void setup(void)
{
    const char *u = getenv("STRATA_L2_URL");
    if (u)
        own_prefix(u, url, sizeof url);
    else {
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(url, sizeof url, "file:%s", dir);
    }
    open_cache(1 << 20);
}

/* For a mongodb:// URL u: a client on its server (into *cl), its
 * database (db) and the L2's prefix (prefix). */
static mongoc_client_t *mongo_of(const char *u, char *db, size_t dcap, char *prefix, size_t pcap)
{
    mongoc_init();
    size_t base = strcspn(u, "?");
    const char *slash = memchr(u + 10, '/', base - 10);
    ck_assert_ptr_nonnull(slash);
    snprintf(db, dcap, "%.*s", (int)(u + base - slash - 1), slash + 1);
    const char *p = strstr(u + base, "prefix=");
    if (p != NULL)
        snprintf(prefix, pcap, "%.*s", (int)strcspn(p + 7, "&"), p + 7);
    else
        snprintf(prefix, pcap, "l2");
    char plain[400];
    snprintf(plain, sizeof plain, "%.*s", (int)base, u);
    mongoc_client_t *cl = mongoc_client_new(plain);
    ck_assert_ptr_nonnull(cl);
    return cl;
}

/* The collection P_what of the case's L2 (P its prefix). */
static mongoc_collection_t *mongo_coll(mongoc_client_t *cl, const char *db, const char *prefix,
                                       const char *what)
{
    char name[200];
    snprintf(name, sizeof name, "%.80s_%.16s", prefix, what);
    return mongoc_client_get_collection(cl, db, name);
}

/* Drops the collections of the case's prefix and of its "F" variant
 * (concurrent_first_opens_share_one_table). */
static void mongo_drop_case(void)
{
    char db[80], prefix[80];
    mongoc_client_t *cl = mongo_of(url, db, sizeof db, prefix, sizeof prefix);
    for (int variant = 0; variant < 2; variant++) {
        if (variant == 1)
            prefix[0] = 'F';
        const char *what[] = {"keys",  "ns",    "meta",  "vals0", "vals1", "vals2", "vals3",
                              "vals4", "vals5", "vals6", "vals7", "vals8", "vals9", "valsa",
                              "valsb", "valsc", "valsd", "valse", "valsf"};
        for (size_t i = 0; i < sizeof what / sizeof what[0]; i++) {
            mongoc_collection_t *co = mongo_coll(cl, db, prefix, what[i]);
            mongoc_collection_drop(co, NULL); /* absent: fine */
            mongoc_collection_destroy(co);
        }
    }
    mongoc_client_destroy(cl);
}

static void teardown(void)
{
    l2_close(C);
    if (strncmp(url, "mongodb://", 10) == 0)
        mongo_drop_case();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

/* fill NULL: an unconditional write; otherwise a fill guarded by it. */
static int set_on(l2_cache *c, const char *ns, const char *key, const char *val, uint64_t ttl,
                  const l2_token *fill, l2_token *tag, strata_error *err)
{
    l2_meta m = {0};
    snprintf(m.content_type, sizeof m.content_type, "text/plain");
    m.raw_size = strlen(val);
    return c->ops->set(c, ns, key, val, strlen(val), &m, ttl, fill, tag, NULL, err);
}

static int set(const char *ns, const char *key, const char *val, uint64_t ttl, const l2_token *fill)
{
    strata_error err;
    return set_on(C, ns, key, val, ttl, fill, NULL, &err);
}

/* A fill that must be refused for a change: SERR_CONFLICT, not a failure. */
static void fill_refused(l2_cache *c, const char *key, const l2_token *fill)
{
    strata_error err;
    ck_assert_int_ne(set_on(c, "ns", key, "stale", 0, fill, NULL, &err), 0);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
}

static l2_token token_on(l2_cache *c, const char *ns, const char *key)
{
    l2_token t;
    strata_error err;
    ck_assert_int_eq(c->ops->token(c, ns, key, &t, &err), 0);
    return t;
}

static l2_token token(const char *key)
{
    return token_on(C, "ns", key);
}

static int del_on(l2_cache *c, const char *key, const l2_fence_id *close, size_t n)
{
    strata_error err;
    return c->ops->del(c, "ns", key, close, n, NULL, &err);
}

static l2_fence_id fence_on(l2_cache *c, const char *key, uint64_t hold_ms)
{
    l2_fence_id id = 0;
    strata_error err;
    ck_assert_int_eq(c->ops->fence_open(c, "ns", key, hold_ms, &id, &err), 0);
    ck_assert_uint_ne(id, 0);
    return id;
}

static int get(const char *ns, const char *key, char *out, size_t cap)
{
    strata_buf b;
    sbuf_init(&b, 0);
    l2_meta m;
    strata_error err;
    int rc = C->ops->get(C, ns, key, 1 << 20, &b, &m, &err);
    if (rc == 0)
        snprintf(out, cap, "%.*s", (int)b.len, (const char *)b.data);
    sbuf_free(&b);
    return rc;
}

START_TEST(set_get_delete)
{
    char out[64];
    ck_assert_int_eq(set("ns", "a", "one", 0, NULL), 0);
    ck_assert_int_eq(get("ns", "a", out, sizeof out), 0);
    ck_assert_str_eq(out, "one");
    ck_assert_int_eq(set("ns", "a", "two", 0, NULL), 0);
    ck_assert_int_eq(get("ns", "a", out, sizeof out), 0);
    ck_assert_str_eq(out, "two");
    ck_assert_int_ne(get("other", "a", out, sizeof out), 0); /* namespaces are apart */
    bool found = false;
    strata_error err;
    ck_assert_int_eq(C->ops->del(C, "ns", "a", NULL, 0, &found, &err), 0);
    ck_assert(found);
    ck_assert_int_ne(get("ns", "a", out, sizeof out), 0);
}
END_TEST

START_TEST(ttl_is_honoured)
{
    char out[64];
    ck_assert_int_eq(set("ns", "t", "x", 300, NULL), 0);
    ck_assert_int_eq(get("ns", "t", out, sizeof out), 0);
    usleep(400 * 1000);
    ck_assert_int_ne(get("ns", "t", out, sizeof out), 0);
    l2_stats s;
    strata_error err;
    ck_assert_int_eq(C->ops->stats(C, "ns", &s, &err), 0);
    ck_assert_uint_eq(s.expirations, 1);
    ck_assert_uint_eq(s.items, 0);
}
END_TEST

START_TEST(tokens_are_stable_until_a_change)
{
    l2_token a = token("k"), b = token("k");
    ck_assert(l2_token_usable(&a));
    ck_assert(l2_token_equal(&a, &b));
    /* reads, misses and fills change nothing a node may hold */
    char out[16];
    ck_assert_int_ne(get("ns", "k", out, sizeof out), 0);
    l2_token tag;
    strata_error err;
    ck_assert_int_eq(set_on(C, "ns", "k", "filled", 0, &a, &tag, &err), 0);
    ck_assert(l2_token_equal(&tag, &a));
    ck_assert_int_eq(get("ns", "k", out, sizeof out), 0);
    b = token("k");
    ck_assert(l2_token_equal(&a, &b));
    /* an unconditional write moves it, and tags its value with the new one */
    ck_assert_int_eq(set_on(C, "ns", "k", "written", 0, NULL, &tag, &err), 0);
    b = token("k");
    ck_assert(!l2_token_equal(&a, &b));
    ck_assert(l2_token_equal(&tag, &b));
    /* so does a delete, of a value or of nothing (a node may hold a copy) */
    ck_assert_int_eq(del_on(C, "k", NULL, 0), 0);
    a = token("k");
    ck_assert(!l2_token_equal(&a, &b));
    ck_assert_int_eq(del_on(C, "k", NULL, 0), 0);
    b = token("k");
    ck_assert(!l2_token_equal(&a, &b));
    /* a clear moves every token of its namespace, matched or not, and no
     * other namespace's */
    l2_token other = token_on(C, "elsewhere", "k");
    size_t n;
    ck_assert_int_eq(C->ops->clear(C, "ns", "nothing-matches-*", &n, NULL, NULL, &err), 0);
    ck_assert_uint_eq(n, 0);
    a = token("k");
    ck_assert(!l2_token_equal(&a, &b));
    l2_token other2 = token_on(C, "elsewhere", "k");
    ck_assert(l2_token_equal(&other, &other2));
    /* an unusable token equals nothing, not even itself */
    l2_token zero;
    memset(&zero, 0, sizeof zero);
    ck_assert(!l2_token_usable(&zero));
    ck_assert(!l2_token_equal(&zero, &zero));
    fill_refused(C, "k", &zero);
}
END_TEST

START_TEST(a_fill_token_taken_before_a_change_is_refused)
{
    char out[64];
    ck_assert_int_eq(set("ns", "latest", "old", 0, NULL), 0);
    /* a delete between the token and the fill */
    l2_token before = token("latest");
    ck_assert_int_eq(del_on(C, "latest", NULL, 0), 0);
    fill_refused(C, "latest", &before);
    ck_assert_int_ne(get("ns", "latest", out, sizeof out), 0);
    /* a token taken after it lands */
    l2_token after = token("latest");
    ck_assert_int_eq(set("ns", "latest", "fresh", 0, &after), 0);
    ck_assert_int_eq(get("ns", "latest", out, sizeof out), 0);
    ck_assert_str_eq(out, "fresh");
    /* a write between: the older fill does not replace it */
    before = token("latest");
    ck_assert_int_eq(set("ns", "latest", "newer", 0, NULL), 0);
    fill_refused(C, "latest", &before);
    ck_assert_int_eq(get("ns", "latest", out, sizeof out), 0);
    ck_assert_str_eq(out, "newer");
    /* a fence (opened and closed) between */
    before = token("latest");
    l2_fence_id f = fence_on(C, "latest", 60000);
    ck_assert_int_eq(del_on(C, "latest", &f, 1), 0);
    fill_refused(C, "latest", &before);
    /* a clear of the namespace between */
    before = token("latest");
    size_t n;
    strata_error err;
    ck_assert_int_eq(C->ops->clear(C, "ns", "unrelated*", &n, NULL, NULL, &err), 0);
    fill_refused(C, "latest", &before);
    after = token("latest");
    ck_assert_int_eq(set("ns", "latest", "again", 0, &after), 0);
}
END_TEST

START_TEST(an_open_fence_refuses_fills_until_closed)
{
    char out[64];
    ck_assert_int_eq(set("ns", "latest", "old", 0, NULL), 0);
    l2_fence_id mine = fence_on(C, "latest", 60000);
    ck_assert_int_ne(get("ns", "latest", out, sizeof out), 0); /* the value went */
    /* even a fill whose token was taken after the fence opened */
    l2_token t = token("latest");
    fill_refused(C, "latest", &t);
    /* a plain invalidation does not close it, nor does another id */
    ck_assert_int_eq(del_on(C, "latest", NULL, 0), 0);
    l2_fence_id wrong = mine + 1000;
    ck_assert_int_eq(del_on(C, "latest", &wrong, 1), 0);
    t = token("latest");
    fill_refused(C, "latest", &t);
    /* a second writer's fence stays when the first closes its own */
    l2_fence_id theirs = fence_on(C, "latest", 60000);
    ck_assert_uint_ne(theirs, mine);
    ck_assert_int_eq(del_on(C, "latest", &mine, 1), 0);
    t = token("latest");
    fill_refused(C, "latest", &t);
    ck_assert_int_eq(del_on(C, "latest", &theirs, 1), 0);
    t = token("latest");
    ck_assert_int_eq(set("ns", "latest", "new", 0, &t), 0);
    ck_assert_int_eq(get("ns", "latest", out, sizeof out), 0);
    ck_assert_str_eq(out, "new");
    /* fences survive a reopen (they are durable) */
    l2_fence_id f = fence_on(C, "latest", 60000);
    l2_close(C);
    open_cache(1 << 20);
    t = token("latest");
    fill_refused(C, "latest", &t);
    ck_assert_int_eq(del_on(C, "latest", &f, 1), 0);
    t = token("latest");
    ck_assert_int_eq(set("ns", "latest", "after", 0, &t), 0);
}
END_TEST

/* A writer that dies between its fence and its commit never closes the
 * fence: it refuses fills until its hold ends, then fills work again. */
START_TEST(an_unclosed_fence_expires)
{
    (void)fence_on(C, "orphan", 400);
    l2_token t = token("orphan");
    fill_refused(C, "orphan", &t);
    usleep(600 * 1000);
    t = token("orphan");
    ck_assert_int_eq(set("ns", "orphan", "v", 0, &t), 0);
}
END_TEST

/* Two handles on one L2, as two processes have: each sees the other's
 * changes through tokens (an L1-style check: tag, then compare). */
START_TEST(two_handles_see_each_others_changes)
{
    l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
    strata_error err;
    l2_cache *D = l2_open(url, &cfg, &err);
    ck_assert_msg(D != NULL, "%s", err.detail);
    /* C fills "k" and keeps a copy tagged with its token */
    l2_token tag = token_on(C, "ns", "k");
    ck_assert_int_eq(set_on(C, "ns", "k", "v1", 0, &tag, &tag, &err), 0);
    l2_token now = token_on(C, "ns", "k");
    ck_assert(l2_token_equal(&tag, &now)); /* the copy is current */
    /* D writes: C's copy is stale */
    ck_assert_int_eq(set_on(D, "ns", "k", "v2", 0, NULL, NULL, &err), 0);
    now = token_on(C, "ns", "k");
    ck_assert(!l2_token_equal(&tag, &now));
    /* D deletes: stale again; a fill C began before it is refused */
    tag = token_on(C, "ns", "k");
    l2_token fill = tag;
    ck_assert_int_eq(del_on(D, "k", NULL, 0), 0);
    now = token_on(C, "ns", "k");
    ck_assert(!l2_token_equal(&tag, &now));
    fill_refused(C, "k", &fill);
    /* D clears the namespace: every copy C holds of it is stale */
    tag = token_on(C, "ns", "other");
    size_t n;
    ck_assert_int_eq(D->ops->clear(D, "ns", "*", &n, NULL, NULL, &err), 0);
    now = token_on(C, "ns", "other");
    ck_assert(!l2_token_equal(&tag, &now));
    /* D's open fence refuses C's fills; D closes it and C fills */
    l2_fence_id f = fence_on(D, "k", 60000);
    fill = token_on(C, "ns", "k");
    fill_refused(C, "k", &fill);
    ck_assert_int_eq(del_on(D, "k", &f, 1), 0);
    fill = token_on(C, "ns", "k");
    ck_assert_int_eq(set_on(C, "ns", "k", "v3", 0, &fill, NULL, &err), 0);
    /* and what either wrote, the other reads */
    strata_buf b;
    sbuf_init(&b, 0);
    l2_meta m;
    ck_assert_int_eq(D->ops->get(D, "ns", "k", 1 << 20, &b, &m, &err), 0);
    ck_assert_int_eq((int)b.len, 2);
    ck_assert_int_eq(memcmp(b.data, "v3", 2), 0);
    sbuf_free(&b);
    l2_close(D);
}
END_TEST

/* Runs fn in a child process with its own handle on the L2; returns its
 * exit status (0: fn returned 0). */
static int in_child(int (*fn)(l2_cache *c))
{
    fflush(NULL);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
        strata_error err;
        l2_cache *c = l2_open(url, &cfg, &err);
        int rc = c != NULL ? fn(c) : 2;
        _exit(rc); /* no l2_close: as a process that just ends */
    }
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int child_deletes(l2_cache *c)
{
    return del_on(c, "k", NULL, 0) == 0 ? 0 : 1;
}

static int child_writes(l2_cache *c)
{
    strata_error err;
    return set_on(c, "ns", "k", "child", 0, NULL, NULL, &err) == 0 ? 0 : 1;
}

static int child_fences_and_dies(l2_cache *c)
{
    l2_fence_id id = 0;
    strata_error err;
    /* held 2 s: the parent's three checks below must fit in it even on a
     * loaded machine and a slow server */
    if (c->ops->fence_open(c, "ns", "k", 2000, &id, &err) != 0)
        return 1;
    raise(SIGKILL); /* before its commit and its closing invalidation */
    return 1;
}

START_TEST(another_process_invalidates_while_a_token_is_held)
{
    char out[16];
    ck_assert_int_eq(set("ns", "k", "parent", 0, NULL), 0);
    l2_token held = token("k"), unrelated = token("unrelated");
    ck_assert_int_eq(in_child(child_deletes), 0);
    l2_token now = token("k");
    ck_assert(!l2_token_equal(&held, &now)); /* an L1 copy tagged held is stale */
    fill_refused(C, "k", &held);
    now = token("unrelated");
    ck_assert(l2_token_equal(&unrelated, &now)); /* and only that key's */

    held = token("k");
    ck_assert_int_eq(in_child(child_writes), 0);
    now = token("k");
    ck_assert(!l2_token_equal(&held, &now));
    fill_refused(C, "k", &held);
    ck_assert_int_eq(get("ns", "k", out, sizeof out), 0);
    ck_assert_str_eq(out, "child");

    /* a child killed with its fence open: fills stay refused until the
     * fence's hold ends */
    ck_assert_int_eq(in_child(child_fences_and_dies), 128 + SIGKILL);
    ck_assert_int_ne(get("ns", "k", out, sizeof out), 0);
    now = token("k");
    fill_refused(C, "k", &now);
    usleep(2300 * 1000);
    now = token("k");
    ck_assert_int_eq(set("ns", "k", "after", 0, &now), 0);
}
END_TEST

/* Opens and closes fences on "k" (writing between), racing its siblings. */
static int child_fences_and_closes(l2_cache *c)
{
    strata_error err;
    for (int i = 0; i < 25; i++) {
        l2_fence_id f = 0;
        if (c->ops->fence_open(c, "ns", "k", 60000, &f, &err) != 0 ||
            (i % 3 == 0 && set_on(c, "ns", "k", "w", 0, NULL, NULL, &err) != 0) ||
            c->ops->del(c, "ns", "k", &f, 1, NULL, &err) != 0) {
            fprintf(stderr, "child: %s\n", err.detail);
            return 1;
        }
    }
    return 0;
}

/* Writers on several nodes change one key at once: every fence each of
 * them closed is closed (a change that lost another's would leave a
 * fence refusing fills for its whole hold, or drop one still open). */
START_TEST(concurrent_fences_all_close)
{
    fflush(NULL);
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        kids[i] = fork();
        ck_assert_int_ge(kids[i], 0);
        if (kids[i] == 0) {
            l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
            strata_error err;
            l2_cache *c = l2_open(url, &cfg, &err);
            _exit(c != NULL ? child_fences_and_closes(c) : 2);
        }
    }
    for (int i = 0; i < 4; i++) {
        int status;
        ck_assert_int_eq(waitpid(kids[i], &status, 0), kids[i]);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
    }
    l2_token t = token("k");
    ck_assert_int_eq(set("ns", "k", "filled", 0, &t), 0);
    char out[16];
    ck_assert_int_eq(get("ns", "k", out, sizeof out), 0);
    ck_assert_str_eq(out, "filled");
}
END_TEST

static int child_churns(l2_cache *c)
{
    strata_error err;
    for (unsigned i = 0;; i++) {
        l2_token t;
        l2_fence_id f = 0;
        c->ops->token(c, "ns", "k", &t, &err);
        switch (i % 4) {
        case 0:
            set_on(c, "ns", "k", "churn", 0, NULL, NULL, &err);
            break;
        case 1:
            set_on(c, "ns", "k", "fill", 0, &t, NULL, &err);
            break;
        case 2:
            c->ops->fence_open(c, "ns", "k", 300, &f, &err);
            c->ops->del(c, "ns", "k", &f, 1, NULL, &err);
            break;
        default:
            c->ops->clear(c, "ns", "k*", &(size_t){0}, NULL, NULL, &err);
        }
    }
    return 0;
}

/* Children killed with SIGKILL at random moments of their changes: the
 * L2 stays usable, no key stays stuck (a change left half-done is
 * settled by the next writer), and tokens keep working. */
START_TEST(writers_killed_mid_change_leave_nothing_stuck)
{
    srand((unsigned)getpid());
    for (int round = 0; round < 15; round++) {
        fflush(NULL);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
            strata_error err;
            l2_cache *c = l2_open(url, &cfg, &err);
            _exit(c != NULL ? child_churns(c) : 2);
        }
        usleep((useconds_t)(20000 + rand() % 30000));
        kill(pid, SIGKILL);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        ck_assert(WIFSIGNALED(status)); /* it was running, not failing */
        /* On a server the one request the child had in flight may still
         * land after its death (MongoDB finishes an operation whose client
         * is gone): the check may meet that one late change, so it gets a
         * second go, and a third. On disk nothing lands late. */
        bool settled = false;
        for (int attempt = 0; attempt < 3 && !settled; attempt++) {
            /* a change the child left half-done makes the token unusable
             * until a writer settles it: a refused fill is enough */
            l2_token t = token("k");
            if (!l2_token_usable(&t)) {
                fill_refused(C, "k", &t);
                t = token("k");
            }
            ck_assert(l2_token_usable(&t));
            l2_token tag;
            strata_error err;
            if (set_on(C, "ns", "k", "mine", 0, &t, &tag, &err) != 0) {
                /* only a fence the child left open may refuse it, until
                 * its hold ends */
                ck_assert_int_eq(err.kind, SERR_CONFLICT);
                usleep(400 * 1000);
                t = token("k");
                if (set_on(C, "ns", "k", "mine", 0, &t, &tag, &err) != 0)
                    continue;
            }
            char out[16];
            l2_token now;
            settled = get("ns", "k", out, sizeof out) == 0 && strcmp(out, "mine") == 0 &&
                      (now = token("k"), l2_token_equal(&tag, &now));
            if (!settled && strncmp(url, "file:", 5) == 0)
                break; /* on disk there is no late change: a failure */
        }
        ck_assert_msg(settled, "round %d: a fill after the child's death does not stay current",
                      round);
    }
}
END_TEST

/* Processes that open a fresh L2 at the same moment share one table. */
START_TEST(concurrent_first_opens_share_one_table)
{
    l2_close(C);
    C = NULL;
    /* a location no one has opened: a new directory, or a new prefix (on
     * Redis the processes must agree on one incarnation, or the values of
     * the others would be misses) */
    char fresh[400];
    bool redis = strncmp(url, "redis://", 8) == 0, s3 = strncmp(url, "s3://", 5) == 0;
    bool mongo = strncmp(url, "mongodb://", 10) == 0;
    if (redis || mongo) {
        snprintf(fresh, sizeof fresh, "%s", url);
        char *p = strstr(fresh, "prefix=");
        ck_assert_ptr_nonnull(p);
        p[7] = 'F';
    } else if (s3) {
        /* a prefix no one has used: the case's own + "F" (they must agree
         * on one format record) */
        size_t at = strcspn(url, "?");
        snprintf(fresh, sizeof fresh, "%.*sF%s", (int)at, url, url + at);
    } else {
        snprintf(fresh, sizeof fresh, "file:%s/fresh", dir);
    }
    int go[2];
    ck_assert_int_eq(pipe(go), 0);
    pid_t kids[8];
    fflush(NULL);
    for (int i = 0; i < 8; i++) {
        kids[i] = fork();
        ck_assert_int_ge(kids[i], 0);
        if (kids[i] == 0) {
            close(go[1]);
            char b;
            if (read(go[0], &b, 1) != 0) /* everyone starts when the pipe closes */
                _exit(3);
            l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
            strata_error err;
            l2_cache *c = l2_open(fresh, &cfg, &err);
            if (c == NULL) {
                fprintf(stderr, "child %d: %s\n", i, err.detail);
                _exit(2);
            }
            char key[8];
            snprintf(key, sizeof key, "k%d", i);
            _exit(set_on(c, "ns", key, "v", 0, NULL, NULL, &err) == 0 ? 0 : 1);
        }
    }
    close(go[0]);
    close(go[1]);
    for (int i = 0; i < 8; i++) {
        int status;
        ck_assert_int_eq(waitpid(kids[i], &status, 0), kids[i]);
        ck_assert(WIFEXITED(status));
        ck_assert_int_eq(WEXITSTATUS(status), 0);
    }
    l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
    strata_error err;
    C = l2_open(fresh, &cfg, &err);
    ck_assert_msg(C != NULL, "%s", err.detail);
    char out[8], key[8];
    for (int i = 0; i < 8; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ck_assert_int_eq(get("ns", key, out, sizeof out), 0);
    }
    if (redis || s3 || mongo)
        return;
    /* one table, no temp file left behind */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "ls %s/fresh | grep -c generations", dir);
    FILE *p = popen(cmd, "r");
    int tables = -1;
    ck_assert_int_eq(fscanf(p, "%d", &tables), 1);
    pclose(p);
    ck_assert_int_eq(tables, 1);
}
END_TEST

/* For a redis:// URL u: the redis-cli command line that reaches its
 * server (into cli) and its key prefix (into prefix). */
static void redis_cli_of(const char *u, char *cli, size_t cli_cap, char *prefix, size_t pcap)
{
    char host[256];
    int port = 0;
    ck_assert_int_eq(sscanf(u, "redis://%255[^:/?]:%d", host, &port), 2);
    const char *p = strstr(u, "prefix=");
    ck_assert_ptr_nonnull(p);
    p += 7;
    snprintf(cli, cli_cap, "redis-cli -h %s -p %d", host, port);
    snprintf(prefix, pcap, "%.*s", (int)strcspn(p, "&"), p);
}

/* For an s3:// URL u: a client on its bucket and prefix (AWS_* from the
 * environment), as the L2 has. */
static s3_client *s3_of(const char *u)
{
    s3_config sc;
    strata_error err;
    ck_assert_msg(s3_config_from_url(u, &sc, &err) == 0, "%s", err.detail);
    s3_client *s = s3_client_new(&sc, &err);
    ck_assert_msg(s != NULL, "%s", err.detail);
    return s;
}

/* A table that is not one (a truncated or foreign file) refuses the open:
 * an L2 that could not keep nodes coherent is never used. */
START_TEST(an_unusable_table_fails_the_open)
{
    l2_close(C);
    C = NULL;
    char cmd[600];
    if (strncmp(url, "redis://", 8) == 0) {
        /* the incarnation record replaced by a value of another type */
        char rcli[400], prefix[80];
        redis_cli_of(url, rcli, sizeof rcli, prefix, sizeof prefix);
        snprintf(cmd, sizeof cmd, "%s SET '%s:inc' foreign >/dev/null", rcli, prefix);
        ck_assert_int_eq(system(cmd), 0);
        l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
        strata_error err;
        ck_assert_ptr_null(l2_open(url, &cfg, &err));
        ck_assert_int_eq(err.kind, SERR_CORRUPT);
        snprintf(cmd, sizeof cmd, "%s DEL '%s:inc' >/dev/null", rcli, prefix);
        ck_assert_int_eq(system(cmd), 0);
        open_cache(1 << 20); /* made afresh */
        return;
    }
    if (strncmp(url, "mongodb://", 10) == 0) {
        /* the format record replaced by a document of something else */
        char db[80], prefix[80];
        mongoc_client_t *cl = mongo_of(url, db, sizeof db, prefix, sizeof prefix);
        mongoc_collection_t *co = mongo_coll(cl, db, prefix, "meta");
        bson_t *sel = BCON_NEW("_id", BCON_UTF8("format"));
        bson_t *foreign = BCON_NEW("_id", BCON_UTF8("format"), "kind", BCON_UTF8("foreign"));
        bson_error_t be;
        ck_assert_msg(mongoc_collection_replace_one(co, sel, foreign, NULL, NULL, &be), "%s",
                      be.message);
        l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
        strata_error err;
        ck_assert_ptr_null(l2_open(url, &cfg, &err));
        ck_assert_int_eq(err.kind, SERR_CORRUPT);
        ck_assert_msg(mongoc_collection_delete_one(co, sel, NULL, NULL, &be), "%s", be.message);
        bson_destroy(foreign);
        bson_destroy(sel);
        mongoc_collection_destroy(co);
        mongoc_client_destroy(cl);
        open_cache(1 << 20); /* made afresh */
        return;
    }
    if (strncmp(url, "s3://", 5) == 0) {
        /* the format record replaced by an object of something else */
        s3_client *s = s3_of(url);
        strata_error err;
        ck_assert_int_eq(s3_put(s, "format", "foreign", 7, NULL, NULL, &err), 0);
        l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
        ck_assert_ptr_null(l2_open(url, &cfg, &err));
        ck_assert_int_eq(err.kind, SERR_CORRUPT);
        ck_assert_int_eq(s3_delete(s, "format", &err), 0);
        s3_client_free(s);
        open_cache(1 << 20); /* made afresh */
        return;
    }
    snprintf(cmd, sizeof cmd, "truncate -s 100 %s/generations", dir);
    ck_assert_int_eq(system(cmd), 0);
    l2_config cfg = {.max_bytes = 1 << 20, .fence_ttl_ms = 60000};
    strata_error err;
    ck_assert_ptr_null(l2_open(url, &cfg, &err));
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    snprintf(cmd, sizeof cmd, "rm %s/generations && mkdir %s/generations", dir, dir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_ptr_null(l2_open(url, &cfg, &err));
    snprintf(cmd, sizeof cmd, "rmdir %s/generations", dir);
    ck_assert_int_eq(system(cmd), 0);
    open_cache(1 << 20); /* made afresh */
}
END_TEST

START_TEST(glob_clear_stays_in_its_namespace)
{
    const char *keys[] = {"apple", "apple:1", "applesauce", "banana", "pineapple"};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(set("dictionary", keys[i], "v", 0, NULL), 0);
    ck_assert_int_eq(set("corpus", "apple", "v", 0, NULL), 0);
    size_t n = 0;
    strata_error err;
    ck_assert_int_eq(C->ops->clear(C, "dictionary", "apple*", &n, NULL, NULL, &err), 0);
    ck_assert_uint_eq(n, 3);
    char out[8];
    ck_assert_int_eq(get("dictionary", "banana", out, sizeof out), 0);
    ck_assert_int_eq(get("dictionary", "pineapple", out, sizeof out), 0);
    ck_assert_int_eq(get("corpus", "apple", out, sizeof out), 0);
    ck_assert_int_ne(get("dictionary", "apple:1", out, sizeof out), 0);
}
END_TEST

static void count_key(void *ctx, const char *key)
{
    (void)key;
    (*(int *)ctx)++;
}

/* The one glob dialect (common/glob.h): a negated set, '?' as one UTF-8
 * character, and a pattern with no literal prefix. */
/* A clear of many keys (more than a backend removes in one step) counts
 * each once and leaves none behind. */
START_TEST(a_clear_of_many_keys_removes_them_all)
{
    char key[16], out[8];
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "m%d", i);
        ck_assert_int_eq(set("many", key, "v", 0, NULL), 0);
    }
    size_t n = 0;
    strata_error err;
    ck_assert_int_eq(C->ops->clear(C, "many", "m*", &n, NULL, NULL, &err), 0);
    ck_assert_uint_eq(n, 300);
    for (int i = 0; i < 300; i += 37) {
        snprintf(key, sizeof key, "m%d", i);
        ck_assert_int_ne(get("many", key, out, sizeof out), 0);
    }
    l2_stats st;
    ck_assert_int_eq(C->ops->stats(C, "many", &st, &err), 0);
    ck_assert_uint_eq(st.items, 0);
}
END_TEST

START_TEST(glob_dialect_is_the_shared_one)
{
    const char *keys[] = {"apple", "banana", "caf\xc3\xa9", "cafe", "]x"};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(set("g", keys[i], "v", 0, NULL), 0);
    size_t n = 0;
    int seen = 0;
    strata_error err;
    ck_assert_int_eq(C->ops->clear(C, "g", "caf?", &n, count_key, &seen, &err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(seen, 2);
    ck_assert_int_eq(C->ops->clear(C, "g", "[!a]*", &n, NULL, NULL, &err), 0);
    ck_assert_uint_eq(n, 2); /* banana and ]x, not apple */
    char out[8];
    ck_assert_int_eq(get("g", "apple", out, sizeof out), 0);
    ck_assert_int_eq(C->ops->clear(C, "g", "[]]x", &n, NULL, NULL, &err), 0);
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(size_limit_evicts_least_recently_used)
{
    l2_close(C);
    open_cache(64 * 1024);
    static char big[10000];
    memset(big, 'b', sizeof big - 1);
    char key[16];
    for (int i = 0; i < 20; i++) {
        snprintf(key, sizeof key, "k%d", i);
        ck_assert_int_eq(set("ns", key, big, 0, NULL), 0);
    }
    l2_stats s;
    strata_error err;
    ck_assert_int_eq(C->ops->stats(C, "ns", &s, &err), 0);
    ck_assert_uint_le(s.bytes, 64 * 1024);
    ck_assert_uint_gt(s.evictions, 10);
    char out[16];
    ck_assert_int_eq(get("ns", "k19", out, sizeof out), 0);
    ck_assert_int_ne(get("ns", "k0", out, sizeof out), 0);
}
END_TEST

typedef struct s3_names {
    regex_t re;
    int stray, values;
} s3_names;

static int check_s3_name(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    (void)size;
    (void)mtime_ms;
    s3_names *n = ctx;
    if (regexec(&n->re, key, 0, NULL, 0) != 0) {
        fprintf(stderr, "stray object name: %s\n", key);
        n->stray++;
    }
    n->values += strncmp(key, "v/ns/", 5) == 0 && strchr(key, '!') == NULL;
    return 0;
}

/* Every object under the case's prefix has a name of the layout
 * (l2_s3.h), the two keys written included: nothing escapes it. */
static void s3_names_are_the_layouts(void)
{
    s3_names n = {0};
    static const char layout[] =
        "^(format|n/[A-Za-z0-9_%-]+|v/[A-Za-z0-9_%-]+/([A-Za-z0-9_%-]+|~[0-9]+-[0-9a-f]{64})(!a)?"
        "|f/[A-Za-z0-9_%-]+/([A-Za-z0-9_%-]+|~[0-9]+-[0-9a-f]{64})/[0-9a-f]{16})$";
    ck_assert_int_eq(regcomp(&n.re, layout, REG_EXTENDED | REG_NOSUB), 0);
    s3_client *s = s3_of(url);
    strata_error err;
    ck_assert_int_eq(s3_list(s, "", check_s3_name, &n, &err), 0);
    s3_client_free(s);
    regfree(&n.re);
    ck_assert_int_eq(n.stray, 0);
    ck_assert_int_eq(n.values, 2);
}

START_TEST(contents_survive_a_reopen_and_keys_stay_inside)
{
    ck_assert_int_eq(set("ns", "../../../../etc/passwd", "inside", 0, NULL), 0);
    ck_assert_int_eq(set("ns", "/absolute", "inside", 0, NULL), 0);
    l2_close(C);
    open_cache(1 << 20);
    char out[16];
    ck_assert_int_eq(get("ns", "../../../../etc/passwd", out, sizeof out), 0);
    ck_assert_str_eq(out, "inside");
    if (getenv("STRATA_L2_URL") == NULL) {
        /* every file under the directory is the index or a hashed name */
        char cmd[400];
        snprintf(cmd, sizeof cmd,
                 "find %s -type f | grep -v -E '/(index\\.db(-wal|-shm)?|generations)$' |"
                 " grep -v -E '/[0-9a-f]{2}/[0-9a-f]{64}$' | wc -l",
                 dir);
        FILE *p = popen(cmd, "r");
        int stray = -1;
        ck_assert_int_eq(fscanf(p, "%d", &stray), 1);
        pclose(p);
        ck_assert_int_eq(stray, 0);
    }
    if (strncmp(url, "s3://", 5) == 0)
        s3_names_are_the_layouts();
    if (strncmp(url, "mongodb://", 10) == 0) {
        /* the two values, each one state document of the keys collection
         * (the states they replaced are stubs) */
        char db[80], prefix[80];
        mongoc_client_t *cl = mongo_of(url, db, sizeof db, prefix, sizeof prefix);
        mongoc_collection_t *co = mongo_coll(cl, db, prefix, "keys");
        bson_t *filter = BCON_NEW("n", BCON_UTF8("ns"), "s", "{", "$gte", BCON_INT64(0), "}");
        bson_error_t be;
        int64_t n = mongoc_collection_count_documents(co, filter, NULL, NULL, NULL, &be);
        ck_assert_msg(n >= 0, "%s", be.message);
        ck_assert_int_eq(n, 2);
        bson_destroy(filter);
        mongoc_collection_destroy(co);
        mongoc_client_destroy(cl);
    }
}
END_TEST

START_TEST(a_corrupted_entry_is_a_miss)
{
    ck_assert_int_eq(set("ns", "k", "precious", 0, NULL), 0);
    char cmd[600];
    if (strncmp(url, "redis://", 8) == 0) {
        /* the entry's metadata overwritten behind the L2's back */
        char rcli[400], prefix[80];
        redis_cli_of(url, rcli, sizeof rcli, prefix, sizeof prefix);
        snprintf(cmd, sizeof cmd, "%s HSET '%s:v:ns:k' m garbage >/dev/null", rcli, prefix);
    } else if (strncmp(url, "mongodb://", 10) == 0) {
        /* the entry's metadata overwritten behind the L2's back (its
         * bytes and generation kept) */
        char db[80], prefix[80];
        mongoc_client_t *cl = mongo_of(url, db, sizeof db, prefix, sizeof prefix);
        mongoc_collection_t *co = mongo_coll(cl, db, prefix, "keys");
        /* the state that holds the value (the key's pointer and stubs
         * have no s) */
        bson_t *sel = BCON_NEW("n", BCON_UTF8("ns"), "k", BCON_UTF8("k"), "s", "{", "$gte",
                               BCON_INT64(0), "}");
        bson_t *upd = BCON_NEW("$set", "{", "r", BCON_UTF8("garbage"), "}");
        bson_t reply;
        bson_error_t be;
        ck_assert_msg(mongoc_collection_update_one(co, sel, upd, NULL, &reply, &be), "%s",
                      be.message);
        bson_iter_t it;
        ck_assert(bson_iter_init_find(&it, &reply, "modifiedCount"));
        ck_assert_int_eq(bson_iter_as_int64(&it), 1);
        bson_destroy(&reply);
        bson_destroy(upd);
        bson_destroy(sel);
        mongoc_collection_destroy(co);
        mongoc_client_destroy(cl);
        snprintf(cmd, sizeof cmd, "true");
    } else if (strncmp(url, "s3://", 5) == 0) {
        /* the entry's metadata overwritten behind the L2's back (its
         * bytes and generation kept) */
        s3_client *s = s3_of(url);
        strata_buf b;
        sbuf_init(&b, 0);
        s3_object_info info;
        strata_error err;
        ck_assert_int_eq(s3_get(s, "v/ns/k", 0, 0, 1 << 20, &b, &info, &err), 0);
        const char *g = NULL;
        for (int i = 0; i < info.n_meta; i++)
            if (strcmp(info.meta_name[i], "g") == 0)
                g = info.meta_value[i];
        ck_assert_ptr_nonnull(g);
        s3_meta md[] = {{"g", g}, {"m", "garbage"}};
        s3_put_opts o = {.meta = md, .n_meta = 2};
        ck_assert_int_eq(s3_put(s, "v/ns/k", b.data, b.len, &o, NULL, &err), 0);
        sbuf_free(&b);
        s3_client_free(s);
        snprintf(cmd, sizeof cmd, "true");
    } else {
        snprintf(cmd, sizeof cmd,
                 "f=$(find %s -mindepth 2 -type f | head -1); printf X | dd of=$f bs=1 seek=140 "
                 "conv=notrunc 2>/dev/null",
                 dir);
    }
    ck_assert_int_eq(system(cmd), 0);
    char out[16];
    ck_assert_int_ne(get("ns", "k", out, sizeof out), 0);
}
END_TEST

/* What a case needs beyond the contract itself. */
enum { NEEDS_NOTHING, NEEDS_DISK_FILES };

static const struct {
    const TTest *const *test;
    int needs;
} CASES[] = {
    {&set_get_delete, NEEDS_NOTHING},
    {&ttl_is_honoured, NEEDS_NOTHING},
    {&tokens_are_stable_until_a_change, NEEDS_NOTHING},
    {&a_fill_token_taken_before_a_change_is_refused, NEEDS_NOTHING},
    {&an_open_fence_refuses_fills_until_closed, NEEDS_NOTHING},
    {&an_unclosed_fence_expires, NEEDS_NOTHING},
    {&two_handles_see_each_others_changes, NEEDS_NOTHING},
    {&another_process_invalidates_while_a_token_is_held, NEEDS_NOTHING},
    {&writers_killed_mid_change_leave_nothing_stuck, NEEDS_NOTHING},
    {&concurrent_fences_all_close, NEEDS_NOTHING},
    {&concurrent_first_opens_share_one_table, NEEDS_NOTHING},
    {&an_unusable_table_fails_the_open, NEEDS_NOTHING},
    {&glob_clear_stays_in_its_namespace, NEEDS_NOTHING},
    {&a_clear_of_many_keys_removes_them_all, NEEDS_NOTHING},
    {&glob_dialect_is_the_shared_one, NEEDS_NOTHING},
    {&size_limit_evicts_least_recently_used, NEEDS_NOTHING},
    {&contents_survive_a_reopen_and_keys_stay_inside, NEEDS_NOTHING},
    {&a_corrupted_entry_is_a_miss, NEEDS_NOTHING},
};

static Suite *l2_suite(void)
{
    const char *u = getenv("STRATA_L2_URL");
    /* the backend, as the SKIP lines name it: the URL's scheme */
    char backend[16] = "file";
    if (u != NULL)
        snprintf(backend, sizeof backend, "%.*s", (int)strcspn(u, ":"), u);
    Suite *s = suite_create("l2_contract");
    TCase *t = tcase_create("l2");
    tcase_set_timeout(t, 60);
    tcase_add_checked_fixture(t, setup, teardown);
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const char *why = NULL;
        if (CASES[i].needs == NEEDS_DISK_FILES && u != NULL)
            why = "reads or damages the files of a disk L2 the suite made";
        if (why == NULL)
            tcase_add_test(t, *CASES[i].test);
        else
            printf("SKIP: l2_contract/%s/%s: %s\n", backend, (*CASES[i].test)->name, why);
    }
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    const char *need = getenv("STRATA_L2_REQUIRE"), *u = getenv("STRATA_L2_URL");
    const char *s3 = getenv("STRATA_S3_URL");
    if (need != NULL && strcmp(need, "s3://") == 0 && (u == NULL || u[0] == '\0') && s3 != NULL &&
        strncmp(s3, "s3://", 5) == 0) {
        /* the s3 suite's server: its bucket, the prefix l2c */
        static char from_s3[512];
        size_t at = strcspn(s3, "?");
        while (at > 5 && s3[at - 1] == '/')
            at--;
        snprintf(from_s3, sizeof from_s3, "%.*s/l2c%s", (int)at, s3, s3 + strcspn(s3, "?"));
        setenv("STRATA_L2_URL", from_s3, 1);
        u = getenv("STRATA_L2_URL");
    }
    const char *mongo = getenv("STRATA_MONGO_URL");
    if (need != NULL && strcmp(need, "mongodb://") == 0 && (u == NULL || u[0] == '\0') &&
        mongo != NULL && strncmp(mongo, "mongodb://", 10) == 0) {
        /* the mongo suite's server: a database of its own, l2contract */
        static char from_mongo[512];
        size_t at = strcspn(mongo, "?");
        const char *slash = memchr(mongo + 10, '/', at - 10);
        size_t hosts = slash ? (size_t)(slash - mongo) : at;
        snprintf(from_mongo, sizeof from_mongo, "%.*s/l2contract%s", (int)hosts, mongo, mongo + at);
        setenv("STRATA_L2_URL", from_mongo, 1);
        u = getenv("STRATA_L2_URL");
    }
    if (need != NULL && (u == NULL || strncmp(u, need, strlen(need)) != 0)) {
        fprintf(stderr, "l2_contract: STRATA_L2_URL must name a %s L2 (it is %s)\n", need,
                u ? u : "not set");
        return 1;
    }
    if (u != NULL)
        printf("l2_contract: against %s (a prefix of its own per case)\n", u);
    Suite *s = l2_suite();
    fflush(stdout); /* before Check forks a process per case */
    return run_suite(s);
}
