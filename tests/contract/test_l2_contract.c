/* The L2 contract: what every L2 backend must do, run against a real
 * backend. STRATA_L2_URL names it; by default a fresh disk cache. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

static void setup(void)
{
    const char *u = getenv("STRATA_L2_URL");
    if (u)
        snprintf(url, sizeof url, "%s", u);
    else {
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(url, sizeof url, "file:%s", dir);
    }
    open_cache(1 << 20);
}

static void teardown(void)
{
    l2_close(C);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static int set(const char *ns, const char *key, const char *val, uint64_t ttl, int64_t since)
{
    l2_meta m = {0};
    snprintf(m.content_type, sizeof m.content_type, "text/plain");
    m.raw_size = strlen(val);
    strata_error err;
    return C->ops->set(C, ns, key, val, strlen(val), &m, ttl, since, NULL, &err);
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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

START_TEST(set_get_delete)
{
    char out[64];
    ck_assert_int_eq(set("ns", "a", "one", 0, 0), 0);
    ck_assert_int_eq(get("ns", "a", out, sizeof out), 0);
    ck_assert_str_eq(out, "one");
    ck_assert_int_eq(set("ns", "a", "two", 0, 0), 0);
    ck_assert_int_eq(get("ns", "a", out, sizeof out), 0);
    ck_assert_str_eq(out, "two");
    ck_assert_int_ne(get("other", "a", out, sizeof out), 0); /* namespaces are apart */
    bool found = false;
    strata_error err;
    ck_assert_int_eq(C->ops->del(C, "ns", "a", 0, &found, &err), 0);
    ck_assert(found);
    ck_assert_int_ne(get("ns", "a", out, sizeof out), 0);
}
END_TEST

START_TEST(ttl_is_honoured)
{
    char out[64];
    ck_assert_int_eq(set("ns", "t", "x", 300, 0), 0);
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

START_TEST(fences_refuse_older_fills)
{
    char out[64];
    int64_t before = now_ms() - 10;
    ck_assert_int_eq(set("ns", "latest", "old", 0, 0), 0);
    strata_error err;
    ck_assert_int_eq(C->ops->del(C, "ns", "latest", now_ms(), NULL, &err), 0);
    /* a fill that began before the fence is refused, and does not show */
    ck_assert_int_ne(set("ns", "latest", "stale", 0, before), 0);
    ck_assert_int_ne(get("ns", "latest", out, sizeof out), 0);
    /* one that began after it lands */
    usleep(5000);
    ck_assert_int_eq(set("ns", "latest", "fresh", 0, now_ms()), 0);
    ck_assert_int_eq(get("ns", "latest", out, sizeof out), 0);
    ck_assert_str_eq(out, "fresh");
    /* and a fill older than a value written since is refused too */
    ck_assert_int_ne(set("ns", "latest", "older", 0, before), 0);
    ck_assert_int_eq(get("ns", "latest", out, sizeof out), 0);
    ck_assert_str_eq(out, "fresh");
}
END_TEST

START_TEST(glob_clear_stays_in_its_namespace)
{
    const char *keys[] = {"apple", "apple:1", "applesauce", "banana", "pineapple"};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(set("dictionary", keys[i], "v", 0, 0), 0);
    ck_assert_int_eq(set("corpus", "apple", "v", 0, 0), 0);
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
START_TEST(glob_dialect_is_the_shared_one)
{
    const char *keys[] = {"apple", "banana", "caf\xc3\xa9", "cafe", "]x"};
    for (int i = 0; i < 5; i++)
        ck_assert_int_eq(set("g", keys[i], "v", 0, 0), 0);
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
        ck_assert_int_eq(set("ns", key, big, 0, 0), 0);
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

START_TEST(contents_survive_a_reopen_and_keys_stay_inside)
{
    ck_assert_int_eq(set("ns", "../../../../etc/passwd", "inside", 0, 0), 0);
    ck_assert_int_eq(set("ns", "/absolute", "inside", 0, 0), 0);
    l2_close(C);
    open_cache(1 << 20);
    char out[16];
    ck_assert_int_eq(get("ns", "../../../../etc/passwd", out, sizeof out), 0);
    ck_assert_str_eq(out, "inside");
    if (getenv("STRATA_L2_URL") == NULL) {
        /* every file under the directory is the index or a hashed name */
        char cmd[400];
        snprintf(cmd, sizeof cmd,
                 "find %s -type f | grep -v -E '/index\\.db(-wal|-shm)?$' |"
                 " grep -v -E '/[0-9a-f]{2}/[0-9a-f]{64}$' | wc -l",
                 dir);
        FILE *p = popen(cmd, "r");
        int stray = -1;
        ck_assert_int_eq(fscanf(p, "%d", &stray), 1);
        pclose(p);
        ck_assert_int_eq(stray, 0);
    }
}
END_TEST

START_TEST(a_corrupted_entry_is_a_miss)
{
    if (getenv("STRATA_L2_URL") != NULL)
        return; /* a disk-only check */
    ck_assert_int_eq(set("ns", "k", "precious", 0, 0), 0);
    char cmd[400];
    snprintf(cmd, sizeof cmd,
             "f=$(find %s -mindepth 2 -type f | head -1); printf X | dd of=$f bs=1 seek=140 "
             "conv=notrunc 2>/dev/null",
             dir);
    ck_assert_int_eq(system(cmd), 0);
    char out[16];
    ck_assert_int_ne(get("ns", "k", out, sizeof out), 0);
}
END_TEST

static Suite *l2_suite(void)
{
    Suite *s = suite_create("l2_contract");
    TCase *t = tcase_create("l2");
    tcase_set_timeout(t, 60);
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, set_get_delete);
    tcase_add_test(t, ttl_is_honoured);
    tcase_add_test(t, fences_refuse_older_fills);
    tcase_add_test(t, glob_clear_stays_in_its_namespace);
    tcase_add_test(t, glob_dialect_is_the_shared_one);
    tcase_add_test(t, size_limit_evicts_least_recently_used);
    tcase_add_test(t, contents_survive_a_reopen_and_keys_stay_inside);
    tcase_add_test(t, a_corrupted_entry_is_a_miss);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(l2_suite());
}
