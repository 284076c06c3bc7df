/* The cache manager's coalesced misses across nodes: a reader that joins a
 * load already in flight must not be handed what that load read before a
 * write another node acknowledged before the reader arrived. The other
 * node is simulated by a fake L2 whose token moves at once (as a Redis L2's
 * does when another node fences and invalidates) while this node's seen
 * token lags behind (its invalidation message has not arrived yet), so the
 * waiter joins the load; deterministic, with no servers. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/service/cache_manager.h"
#include "../support/harness.h"

/* ---- an L2 of one key whose token this node sees late ------------------------ */

typedef struct fake_l2 {
    l2_cache base;
    pthread_mutex_t mu;
    uint64_t gen;  /* the key's token: moves on every change, in any node */
    uint64_t seen; /* the token as this node knows it (token_seen) */
    bool failing;  /* every set fails as an unreachable L2's would */
    /* the first fill, once accepted, waits for hold_released (its
     * flight still listed) after setting hold_entered */
    bool hold_first_fill, hold_entered, hold_released;
    pthread_cond_t hold_cv;
} fake_l2;

static fake_l2 *fake_of(l2_cache *c)
{
    return (fake_l2 *)(void *)c;
}

static void mk_token(uint64_t gen, l2_token *t)
{
    memset(t, 0, sizeof *t);
    t->w[0] = gen;
    t->w[3] = 1;
}

static int f_get(l2_cache *c, const char *ns, const char *key, size_t max_len, strata_buf *out,
                 l2_meta *meta, strata_error *err)
{
    (void)c, (void)ns, (void)key, (void)max_len, (void)out, (void)meta;
    return serr_set(err, SERR_NOT_FOUND, "not in the L2 cache");
}

static int f_token(l2_cache *c, const char *ns, const char *key, l2_token *out, strata_error *err)
{
    (void)ns, (void)key, (void)err;
    fake_l2 *f = fake_of(c);
    pthread_mutex_lock(&f->mu);
    mk_token(f->gen, out);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

static int f_token_seen(l2_cache *c, const char *ns, const char *key, l2_token *out,
                        strata_error *err)
{
    (void)ns, (void)key, (void)err;
    fake_l2 *f = fake_of(c);
    pthread_mutex_lock(&f->mu);
    mk_token(f->seen, out);
    pthread_mutex_unlock(&f->mu);
    return 0;
}

/* Fills are refused once the token moved (the L2's atomic check); the
 * value itself is not kept: every read misses L2. */
static int f_set(l2_cache *c, const char *ns, const char *key, const void *data, size_t len,
                 const l2_meta *meta, uint64_t ttl_ms, const l2_token *fill, l2_token *new_token,
                 uint64_t *write_id, strata_error *err)
{
    (void)ns, (void)key, (void)data, (void)len, (void)meta, (void)ttl_ms;
    fake_l2 *f = fake_of(c);
    int rc = 0;
    pthread_mutex_lock(&f->mu);
    if (f->failing)
        rc = serr_set(err, SERR_UNAVAILABLE, "the L2 is unreachable");
    else if (fill != NULL && (!l2_token_usable(fill) || fill->w[0] != f->gen))
        rc = serr_set(err, SERR_CONFLICT, "the key changed since the fill's token");
    else {
        if (fill == NULL)
            f->gen++;
        if (new_token != NULL)
            mk_token(f->gen, new_token);
        if (write_id != NULL)
            *write_id = f->gen;
        if (fill != NULL && f->hold_first_fill && !f->hold_entered) {
            f->hold_entered = true;
            pthread_cond_broadcast(&f->hold_cv);
            while (!f->hold_released)
                pthread_cond_wait(&f->hold_cv, &f->mu);
        }
    }
    pthread_mutex_unlock(&f->mu);
    return rc;
}

static int f_del(l2_cache *c, const char *ns, const char *key, const l2_fence_id *close,
                 size_t nclose, bool *found, strata_error *err)
{
    (void)ns, (void)key, (void)close, (void)nclose, (void)err;
    fake_l2 *f = fake_of(c);
    pthread_mutex_lock(&f->mu);
    f->gen++;
    pthread_mutex_unlock(&f->mu);
    if (found != NULL)
        *found = false;
    return 0;
}

static int f_fence_open(l2_cache *c, const char *ns, const char *key, uint64_t hold_ms,
                        l2_fence_id *id, strata_error *err)
{
    (void)hold_ms;
    *id = 1;
    return f_del(c, ns, key, NULL, 0, NULL, err);
}

static int f_clear(l2_cache *c, const char *ns, const char *pattern, size_t *count,
                   void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err)
{
    (void)pattern, (void)on_key, (void)ctx;
    *count = 0;
    return f_del(c, ns, "", NULL, 0, NULL, err);
}

static int f_stats(l2_cache *c, const char *ns, l2_stats *out, strata_error *err)
{
    (void)c, (void)ns, (void)err;
    memset(out, 0, sizeof *out);
    return 0;
}

static void f_close(l2_cache *c)
{
    (void)c;
}

static const l2_ops FAKE_OPS = {
    .name = "fake",
    .get = f_get,
    .token = f_token,
    .token_seen = f_token_seen,
    .set = f_set,
    .del = f_del,
    .fence_open = f_fence_open,
    .clear = f_clear,
    .stats = f_stats,
    .close = f_close,
};

/* Another node's save, acknowledged; this node has not heard of it yet.
 * A new version of an existing resource moves the key's token in L2 (its
 * fence and invalidation); the save that creates a resource moves none
 * (no cache holds its absence: version_save.c). */
static void remote_write(fake_l2 *f, bool moves_token)
{
    pthread_mutex_lock(&f->mu);
    if (moves_token)
        f->gen += 2;
    pthread_mutex_unlock(&f->mu);
}

/* ---- a load held in flight -------------------------------------------------------- */

typedef struct held_load {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool entered, release;
    bool no_hold;      /* the first call returns at once */
    const char *value; /* what the first load returns; NULL: "not there" */
    atomic_int calls;
} held_load;

/* The first call waits until released, unless no_hold (it "read the
 * store" before the remote write); later calls read the store after it:
 * "v1". */
static int held_loader(void *ctx, cache_value **out, strata_error *err)
{
    held_load *h = ctx;
    if (atomic_fetch_add(&h->calls, 1) == 0) {
        pthread_mutex_lock(&h->mu);
        h->entered = true;
        pthread_cond_broadcast(&h->cv);
        while (!h->release && !h->no_hold)
            pthread_cond_wait(&h->cv, &h->mu);
        pthread_mutex_unlock(&h->mu);
        if (h->value == NULL)
            return serr_set(err, SERR_NOT_FOUND, "no resource (as read before the write)");
        *out = cache_value_new(h->value, strlen(h->value), "text/plain");
        return 0;
    }
    *out = cache_value_new("v1", 2, "text/plain");
    return 0;
}

typedef struct reader {
    cache_manager *cm;
    held_load *h;
    pthread_t t;
    int rc;
    enum strata_err_kind kind;
    char got[16];
    atomic_bool done;
} reader;

static void *read_key(void *arg)
{
    reader *r = arg;
    cache_value *v = NULL;
    enum cache_tier tier;
    strata_error err;
    r->rc = cache_get_or_load(r->cm, "dictionary", "latest:x", false, held_loader, r->h, &v, &tier,
                              &err);
    if (r->rc == 0) {
        snprintf(r->got, sizeof r->got, "%.*s", (int)v->len, (const char *)v->data);
        cache_value_unref(v);
    } else {
        r->kind = err.kind;
    }
    atomic_store(&r->done, true);
    return NULL;
}

static long coalesced_waits(cache_manager *cm)
{
    json_t *j = cache_stats_json(cm, "dictionary");
    ck_assert_ptr_nonnull(j);
    long n = (long)json_integer_value(json_object_get(j, "coalesced_waits"));
    json_decref(j);
    return n;
}

static cache_manager *manager_over(fake_l2 *f)
{
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->hold_cv, NULL);
    cache_config cfg;
    cache_config_defaults(&cfg);
    strata_error err;
    cache_manager *cm = cache_new(&cfg, &f->base, &err);
    ck_assert_msg(cm != NULL, "cache_new: %s", err.detail);
    return cm;
}

static void manager_free(cache_manager *cm, fake_l2 *f)
{
    cache_free(cm);
    pthread_cond_destroy(&f->hold_cv);
    pthread_mutex_destroy(&f->mu);
}

/* What happens elsewhere while the first load is in flight. */
enum remote { NO_WRITE, CREATION, CHANGE };

/* A first reader's load is in flight; another node may write (its save
 * acknowledged); then a second reader comes, its seen token still equal to
 * the first's. With no write it joins and shares the load's value (the
 * point of coalescing: one load for both). After a creation (no token
 * moves) it joins, and must not take the load's miss. After a change it
 * learns from L2 that the key moved and does not join. Either way it ends
 * with the new value, whatever the first load found. */
static void second_reader(const char *first_value, bool l2_failing, enum remote w)
{
    fake_l2 f = {.base = {&FAKE_OPS}, .gen = 10, .seen = 10, .failing = l2_failing};
    cache_manager *cm = manager_over(&f);
    held_load h = {.value = first_value};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);

    reader a = {.cm = cm, .h = &h}, b = {.cm = cm, .h = &h};
    ck_assert_int_eq(pthread_create(&a.t, NULL, read_key, &a), 0);
    pthread_mutex_lock(&h.mu);
    while (!h.entered)
        pthread_cond_wait(&h.cv, &h.mu);
    pthread_mutex_unlock(&h.mu);

    if (w != NO_WRITE)
        remote_write(&f, w == CHANGE); /* acknowledged elsewhere; b comes after it */
    long before = coalesced_waits(cm);
    ck_assert_int_eq(pthread_create(&b.t, NULL, read_key, &b), 0);
    for (int i = 0; i < 5000 && !atomic_load(&b.done) && coalesced_waits(cm) == before; i++)
        usleep(1000);
    if (w != CHANGE) /* nothing told b of a change: it joined */
        ck_assert_msg(coalesced_waits(cm) == before + 1, "the second reader never joined the load");
    else /* L2 told b of the write before it joined */
        ck_assert_msg(coalesced_waits(cm) == before, "the second reader joined a load from before");

    pthread_mutex_lock(&h.mu);
    h.release = true;
    pthread_cond_broadcast(&h.cv);
    pthread_mutex_unlock(&h.mu);
    pthread_join(a.t, NULL);
    pthread_join(b.t, NULL);

    /* the first reader answers what it read (it began before any write) */
    if (first_value == NULL)
        ck_assert(a.rc == -1 && a.kind == SERR_NOT_FOUND);
    else
        ck_assert(a.rc == 0 && strcmp(a.got, first_value) == 0);
    const char *want = w == NO_WRITE ? first_value : "v1";
    ck_assert_msg(b.rc == 0 && strcmp(b.got, want) == 0,
                  "the second reader got %s%s (rc %d), not %s", b.rc == 0 ? "" : "error ",
                  b.rc == 0 ? b.got : serr_slug(b.kind), b.rc, want);
    ck_assert_int_eq(atomic_load(&h.calls), w == NO_WRITE ? 1 : 2);

    manager_free(cm, &f);
    pthread_cond_destroy(&h.cv);
    pthread_mutex_destroy(&h.mu);
}

/* CI run 26's cluster test: a resource created elsewhere, read here as 404 */
START_TEST(a_joiner_is_not_handed_a_miss_read_before_a_remote_creation)
{
    second_reader(NULL, false, CREATION);
}
END_TEST

START_TEST(a_reader_does_not_join_a_load_read_before_a_remote_change)
{
    second_reader("v0", false, CHANGE);
}
END_TEST

START_TEST(a_reader_does_not_join_a_load_whose_fill_the_l2_failed)
{
    second_reader("v0", true, CHANGE);
}
END_TEST

START_TEST(a_joiner_shares_a_current_value)
{
    second_reader("v0", false, NO_WRITE);
}
END_TEST

/* The first load reads v0 and its fill is accepted; then, while its
 * flight is still listed, another node's save is acknowledged and a
 * second reader comes, its seen token lagging: it must not take v0 (a
 * value from before the save), so it asks L2 for the token before it
 * joins, finds it moved, and loads v1 itself. */
START_TEST(a_joiner_is_not_handed_a_value_filled_before_a_remote_write)
{
    fake_l2 f = {.base = {&FAKE_OPS}, .gen = 10, .seen = 10, .hold_first_fill = true};
    cache_manager *cm = manager_over(&f);
    held_load h = {.value = "v0", .no_hold = true};
    pthread_mutex_init(&h.mu, NULL);
    pthread_cond_init(&h.cv, NULL);
    reader a = {.cm = cm, .h = &h}, b = {.cm = cm, .h = &h};
    ck_assert_int_eq(pthread_create(&a.t, NULL, read_key, &a), 0);
    pthread_mutex_lock(&f.mu);
    while (!f.hold_entered)
        pthread_cond_wait(&f.hold_cv, &f.mu);
    pthread_mutex_unlock(&f.mu);

    remote_write(&f, true); /* after the fill was accepted; b comes after it */
    long before = coalesced_waits(cm);
    ck_assert_int_eq(pthread_create(&b.t, NULL, read_key, &b), 0);
    for (int i = 0; i < 2000 && !atomic_load(&b.done) && coalesced_waits(cm) == before; i++)
        usleep(1000);

    pthread_mutex_lock(&f.mu);
    f.hold_released = true;
    pthread_cond_broadcast(&f.hold_cv);
    pthread_mutex_unlock(&f.mu);
    pthread_join(a.t, NULL);
    pthread_join(b.t, NULL);
    ck_assert(a.rc == 0 && strcmp(a.got, "v0") == 0);
    ck_assert_msg(b.rc == 0 && strcmp(b.got, "v1") == 0,
                  "the reader that came after the write got %s (rc %d)", b.got, b.rc);
    ck_assert_int_eq(coalesced_waits(cm), before); /* it did not join */
    manager_free(cm, &f);
    pthread_cond_destroy(&h.cv);
    pthread_mutex_destroy(&h.mu);
}
END_TEST

static Suite *coalescing_suite(void)
{
    Suite *s = suite_create("cache_coalescing");
    TCase *t = tcase_create("cache_coalescing");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, a_joiner_is_not_handed_a_miss_read_before_a_remote_creation);
    tcase_add_test(t, a_reader_does_not_join_a_load_read_before_a_remote_change);
    tcase_add_test(t, a_reader_does_not_join_a_load_whose_fill_the_l2_failed);
    tcase_add_test(t, a_joiner_is_not_handed_a_value_filled_before_a_remote_write);
    tcase_add_test(t, a_joiner_shares_a_current_value);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(coalescing_suite());
}
