/* The store contract: what every store backend must do, run against a
 * real backend. STRATA_STORE_URL names it; by default a fresh SQLite file. */
#include <check.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/store/store.h"
#include "../support/harness.h"

static store *S;
static char dir[] = "/tmp/strata-store-XXXXXX";

static void setup(void)
{
    const char *url = getenv("STRATA_STORE_URL");
    char buf[512];
    if (url == NULL) {
        ck_assert_ptr_nonnull(mkdtemp(dir));
        snprintf(buf, sizeof buf, "sqlite:%s/store.db", dir);
        url = buf;
    }
    strata_error err;
    S = store_open(url, &err);
    ck_assert_msg(S != NULL, "%s", err.detail);
}

static void teardown(void)
{
    store_close(S);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static uint64_t V(const char *s)
{
    uint64_t k = 0;
    ck_assert_int_eq(semver_parse(s, &k), 0);
    return k;
}

/* Writes a version with the head read first, as the service does. */
static int put(const char *type, const char *id, const char *version, const char *hash,
               const char *tag, strata_error *err)
{
    store_head h;
    ck_assert_int_eq(S->ops->get_head(S, NULL, type, id, &h, err), 0);
    store_version v = {0};
    snprintf(v.type, sizeof v.type, "%s", type);
    snprintf(v.id, sizeof v.id, "%s", id);
    snprintf(v.ns, sizeof v.ns, "%s", "default");
    snprintf(v.data_hash, sizeof v.data_hash, "%s", hash);
    v.vkey = V(version);
    v.created_at_ms = 1000;
    v.doc = tag ? json_pack("{s:[s]}", "tags", tag) : json_object();
    int rc = S->ops->put_version(S, NULL, &v, h.latest_vkey, h.max_vkey, NULL, 0, err);
    store_version_clear(&v);
    return rc;
}

static void expect_version(const char *id, const char *version, bool latest, const char *prev,
                           const char *next)
{
    store_version v;
    strata_error err;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", id, V(version), &v, &err), 0);
    ck_assert_int_eq(v.is_latest, latest);
    ck_assert_uint_eq(v.supersedes, prev ? V(prev) : 0);
    ck_assert_uint_eq(v.superseded_by, next ? V(next) : 0);
    store_version_clear(&v);
}

START_TEST(first_version_and_head)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "aa", NULL, &err), 0);
    store_head h;
    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", "t", &h, &err), 0);
    ck_assert(h.exists);
    ck_assert_uint_eq(h.latest_vkey, V("1.0.0"));
    ck_assert_uint_eq(h.max_vkey, V("1.0.0"));
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", "t", 0, &v, &err), 0);
    ck_assert_str_eq(v.data_hash, "aa");
    ck_assert(v.is_latest);
    store_version_clear(&v);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", "nope", 0, &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
}
END_TEST

START_TEST(compare_and_swap_refuses_a_moved_head)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "aa", NULL, &err), 0);
    store_version v = {0};
    snprintf(v.type, sizeof v.type, "trie");
    snprintf(v.id, sizeof v.id, "t");
    snprintf(v.data_hash, sizeof v.data_hash, "bb");
    v.vkey = V("1.0.1");
    v.doc = json_object();
    /* a writer that still believes there is no version */
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, 0, 0, NULL, 0, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    /* a key not above the max is refused too */
    v.vkey = V("1.0.0");
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, V("1.0.0"), V("1.0.0"), NULL, 0, &err), -1);
    store_version_clear(&v);
    store_page p;
    store_list_opts o = {.limit = 10, .stale = -1};
    ck_assert_int_eq(S->ops->list_versions(S, "trie", "t", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 1); /* nothing was written */
    store_page_free(&p);
}
END_TEST

START_TEST(chain_is_repaired_and_keys_never_reused)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.1", "b", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.2", "c", NULL, &err), 0);
    expect_version("t", "1.0.0", false, NULL, "1.0.1");
    expect_version("t", "1.0.1", false, "1.0.0", "1.0.2");
    expect_version("t", "1.0.2", true, "1.0.1", NULL);
    /* remove the middle: the neighbours link up */
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", "t", V("1.0.1"), "request", &err), 0);
    expect_version("t", "1.0.0", false, NULL, "1.0.2");
    expect_version("t", "1.0.2", true, "1.0.0", NULL);
    /* remove the latest: the previous becomes latest */
    ck_assert_int_eq(
        S->ops->delete_version(S, NULL, "trie", "t", V("1.0.2"), "retention: keep 5", &err), 0);
    expect_version("t", "1.0.0", true, NULL, NULL);
    store_head h;
    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", "t", &h, &err), 0);
    ck_assert_uint_eq(h.latest_vkey, V("1.0.0"));
    ck_assert_uint_eq(h.max_vkey, V("1.0.2")); /* 1.0.2 is never issued again */
    store_tombstone tomb;
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", "t", V("1.0.2"), &tomb, &err), 0);
    ck_assert_str_eq(tomb.removed_by, "retention: keep 5");
    ck_assert_int_gt(tomb.removed_at_ms, 0);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", "t", V("1.0.0"), &tomb, &err), -1);
    ck_assert_int_eq(put("trie", "t", "1.0.2", "d", NULL, &err), -1);
    ck_assert_int_eq(put("trie", "t", "1.0.3", "d", NULL, &err), 0);
    expect_version("t", "1.0.3", true, "1.0.0", NULL);
    ck_assert_int_eq(S->ops->delete_version(S, NULL, "trie", "t", V("1.0.1"), "request", &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
}
END_TEST

START_TEST(versions_page_newest_first)
{
    strata_error err;
    const char *vs[] = {"1.0.0", "1.0.1", "1.1.0", "2.0.0", "2.0.1"};
    for (int i = 0; i < 5; i++) {
        char hash[8];
        snprintf(hash, sizeof hash, "h%d", i);
        ck_assert_int_eq(put("trie", "t", vs[i], hash, NULL, &err), 0);
    }
    store_list_opts o = {.limit = 2, .stale = -1};
    const char *want[] = {"2.0.1", "2.0.0", "1.1.0", "1.0.1", "1.0.0"};
    int seen = 0;
    char *cursor = NULL;
    for (int page = 0; page < 3; page++) {
        store_page p;
        o.cursor = cursor;
        ck_assert_int_eq(S->ops->list_versions(S, "trie", "t", &o, &p, &err), 0);
        for (size_t i = 0; i < p.count; i++)
            ck_assert_uint_eq(p.items[i]->vkey, V(want[seen++]));
        free(cursor);
        cursor = p.next ? strdup(p.next) : NULL;
        store_page_free(&p);
    }
    ck_assert_int_eq(seen, 5);
    ck_assert_ptr_null(cursor);
    o.cursor = "garbage";
    store_page p;
    ck_assert_int_eq(S->ops->list_versions(S, "trie", "t", &o, &p, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
}
END_TEST

START_TEST(resources_filter_by_tag_and_page_by_id)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "a", "1.0.0", "1", "hot", &err), 0);
    ck_assert_int_eq(put("trie", "b", "1.0.0", "2", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "c", "1.0.0", "3", "hot", &err), 0);
    ck_assert_int_eq(put("corpus", "d", "1.0.0", "4", "hot", &err), 0);
    store_list_opts o = {.limit = 10, .stale = -1, .tag = "hot"};
    store_page p;
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 2);
    ck_assert_str_eq(p.items[0]->id, "a");
    ck_assert_str_eq(p.items[1]->id, "c");
    store_page_free(&p);
    o.tag = NULL;
    o.limit = 2;
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 2);
    ck_assert_ptr_nonnull(p.next);
    o.cursor = p.next;
    store_page p2;
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p2, &err), 0);
    ck_assert_uint_eq(p2.count, 1);
    ck_assert_str_eq(p2.items[0]->id, "c");
    ck_assert_ptr_null(p2.next);
    store_page_free(&p2);
    store_page_free(&p);
    o.cursor = NULL;
    o.ns = "elsewhere";
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 0);
    store_page_free(&p);
}
END_TEST

START_TEST(exact_version_pins_and_blob_references)
{
    strata_error err;
    ck_assert_int_eq(put("corpus", "c", "1.0.0", "c1", NULL, &err), 0);
    ck_assert_int_eq(put("corpus", "c", "1.0.1", "c2", NULL, &err), 0);
    store_version v = {0};
    snprintf(v.type, sizeof v.type, "trie");
    snprintf(v.id, sizeof v.id, "t");
    snprintf(v.data_hash, sizeof v.data_hash, "t1");
    snprintf(v.blob_key, sizeof v.blob_key, "%064d", 7);
    v.vkey = V("1.0.0");
    v.doc = json_object();
    store_dep d = {"corpus", "c", V("1.0.0")};
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, 0, 0, &d, 1, &err), 0);
    store_version_clear(&v);
    bool pinned = false;
    char by[64] = "";
    ck_assert_int_eq(
        S->ops->version_pinned(S, "corpus", "c", V("1.0.0"), &pinned, by, sizeof by, &err), 0);
    ck_assert(pinned);
    ck_assert_str_eq(by, "trie/t");
    ck_assert_int_eq(S->ops->version_pinned(S, "corpus", "c", V("1.0.1"), &pinned, NULL, 0, &err),
                     0);
    ck_assert(!pinned);
    char key[70];
    snprintf(key, sizeof key, "%064d", 7);
    bool ref = false;
    ck_assert_int_eq(S->ops->blob_referenced(S, key, &ref, &err), 0);
    ck_assert(ref);
    ck_assert_int_eq(S->ops->blob_referenced(S, "ffff", &ref, &err), 0);
    ck_assert(!ref);
}
END_TEST

START_TEST(dependencies_are_indexed_in_reverse)
{
    strata_error err;
    ck_assert_int_eq(put("corpus", "c", "1.0.0", "c1", NULL, &err), 0);
    store_version v = {0};
    snprintf(v.type, sizeof v.type, "trie");
    snprintf(v.id, sizeof v.id, "t");
    snprintf(v.data_hash, sizeof v.data_hash, "t1");
    v.vkey = V("1.0.0");
    v.doc = json_object();
    store_dep d = {"corpus", "c", 0};
    ck_assert_int_eq(S->ops->put_version(S, NULL, &v, 0, 0, &d, 1, &err), 0);
    store_version_clear(&v);
    store_page p;
    store_list_opts all = {.limit = STORE_LIST_MAX, .stale = -1};
    ck_assert_int_eq(S->ops->dependents(S, "corpus", "c", &all, &p, &err), 0);
    ck_assert_uint_eq(p.count, 1);
    ck_assert_str_eq(p.items[0]->id, "t");
    store_page_free(&p);
    /* a newer trie without the dependency is no longer a dependent */
    ck_assert_int_eq(put("trie", "t", "1.0.1", "t2", NULL, &err), 0);
    ck_assert_int_eq(S->ops->dependents(S, "corpus", "c", &all, &p, &err), 0);
    ck_assert_uint_eq(p.count, 0);
    store_page_free(&p);
    /* pages of two, in (type, id) order, every dependent once */
    const char *types[] = {"search", "trie", "trie", "semantic", "trie"};
    const char *ids[] = {"s1", "t3", "t0", "m1", "t2"};
    for (int i = 0; i < 5; i++) {
        store_version w = {0};
        snprintf(w.type, sizeof w.type, "%s", types[i]);
        snprintf(w.id, sizeof w.id, "%s", ids[i]);
        snprintf(w.data_hash, sizeof w.data_hash, "h%d", i);
        w.vkey = V("1.0.0");
        w.doc = json_object();
        ck_assert_int_eq(S->ops->put_version(S, NULL, &w, 0, 0, &d, 1, &err), 0);
        store_version_clear(&w);
    }
    const char *want[] = {"search/s1", "semantic/m1", "trie/t0", "trie/t2", "trie/t3"};
    store_list_opts two = {.limit = 2, .stale = -1};
    char *cursor = NULL;
    int seen = 0, pages = 0;
    do {
        two.cursor = cursor;
        ck_assert_int_eq(S->ops->dependents(S, "corpus", "c", &two, &p, &err), 0);
        free(cursor);
        for (size_t i = 0; i < p.count; i++) {
            char got[300];
            snprintf(got, sizeof got, "%s/%s", p.items[i]->type, p.items[i]->id);
            ck_assert_str_eq(got, want[seen++]);
        }
        cursor = p.next;
        p.next = NULL;
        store_page_free(&p);
        pages++;
    } while (cursor != NULL);
    ck_assert_int_eq(seen, 5);
    ck_assert_int_eq(pages, 3);
    two.cursor = "not-a-cursor";
    ck_assert_int_ne(S->ops->dependents(S, "corpus", "c", &two, &p, &err), 0);
}
END_TEST

START_TEST(batches_land_whole_or_not_at_all)
{
    strata_error err;
    store_txn *txn = S->ops->begin(S, &err);
    ck_assert_ptr_nonnull(txn);
    for (int i = 0; i < 3; i++) {
        store_version v = {0};
        snprintf(v.type, sizeof v.type, "trie");
        snprintf(v.id, sizeof v.id, "b%d", i);
        snprintf(v.data_hash, sizeof v.data_hash, "x");
        v.vkey = V("1.0.0");
        v.doc = json_object();
        ck_assert_int_eq(S->ops->put_version(S, txn, &v, 0, 0, NULL, 0, &err), 0);
        store_version_clear(&v);
    }
    /* the batch sees its own writes; others do not */
    store_head h;
    ck_assert_int_eq(S->ops->get_head(S, txn, "trie", "b1", &h, &err), 0);
    ck_assert(h.exists);
    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", "b1", &h, &err), 0);
    ck_assert(!h.exists);
    S->ops->rollback(txn);
    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", "b1", &h, &err), 0);
    ck_assert(!h.exists);
    /* committed: all visible */
    txn = S->ops->begin(S, &err);
    ck_assert_ptr_nonnull(txn);
    store_version v = {0};
    snprintf(v.type, sizeof v.type, "trie");
    snprintf(v.id, sizeof v.id, "b9");
    snprintf(v.data_hash, sizeof v.data_hash, "x");
    v.vkey = V("1.0.0");
    v.doc = json_object();
    ck_assert_int_eq(S->ops->put_version(S, txn, &v, 0, 0, NULL, 0, &err), 0);
    store_version_clear(&v);
    ck_assert_int_eq(S->ops->commit(txn, &err), 0);
    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", "b9", &h, &err), 0);
    ck_assert(h.exists);
}
END_TEST

START_TEST(delete_resource_find_by_hash_and_access)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "same", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.1", "other", NULL, &err), 0);
    store_version v;
    ck_assert_int_eq(S->ops->find_by_hash(S, "same", &v, &err), 0);
    ck_assert_uint_eq(v.vkey, V("1.0.0"));
    store_version_clear(&v);
    ck_assert_int_eq(S->ops->add_access(S, "trie", "t", V("1.0.1"), 7, 12345, &err), 0);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", "t", 0, &v, &err), 0);
    ck_assert_uint_eq(v.access_count, 7);
    ck_assert_int_eq(v.last_accessed_ms, 12345);
    store_version_clear(&v);
    size_t n = 0;
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", "t", "request", &n, &err), 0);
    ck_assert_uint_eq(n, 2);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", "t", 0, &v, &err), -1);
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", "t", "request", &n, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    store_tombstone tomb;
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", "t", 0, &tomb, &err), 0);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", "t", V("1.0.1"), &tomb, &err), 0);
    /* a new life continues the numbering: 1.0.0 is never issued again */
    ck_assert_int_eq(put("trie", "t", "1.0.0", "again", NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    ck_assert_int_eq(put("trie", "t", "1.0.2", "again", NULL, &err), 0);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", "t", 0, &tomb, &err), -1);
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", "t", V("1.0.1"), &tomb, &err), 0);
}
END_TEST

static size_t count_listed(const char *type, const char *id)
{
    store_list_opts o = {.limit = STORE_LIST_MAX, .stale = -1};
    store_page p;
    strata_error err;
    ck_assert_int_eq(S->ops->list_resources(S, type, &o, &p, &err), 0);
    size_t n = 0;
    for (size_t i = 0; i < p.count; i++)
        n += strcmp(p.items[i]->id, id) == 0;
    store_page_free(&p);
    return n;
}

START_TEST(a_deleted_resource_keeps_its_numbers)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.1", "b", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "2.0.0", "c", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "u", "1.0.0", "u", NULL, &err), 0);
    ck_assert_int_eq(S->ops->set_stale(S, NULL, "trie", "t", true, NULL, &err), 0);
    size_t n = 0;
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", "t", "request", &n, &err), 0);
    ck_assert_uint_eq(n, 3);
    /* the head stays, empty, with the highest key ever issued */
    store_head h;
    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", "t", &h, &err), 0);
    ck_assert_uint_eq(h.latest_vkey, 0);
    ck_assert_uint_eq(h.max_vkey, V("2.0.0"));
    /* nothing reads as the resource */
    store_version v;
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", "t", 0, &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", "t", V("1.0.1"), &v, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    store_list_opts o = {.limit = 10, .stale = -1};
    store_page p;
    ck_assert_int_eq(S->ops->list_versions(S, "trie", "t", &o, &p, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_uint_eq(count_listed("trie", "t"), 0);
    ck_assert_uint_eq(count_listed("trie", "u"), 1);
    o.stale = 1;
    ck_assert_int_eq(S->ops->list_resources(S, "trie", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 0); /* not even as a stale one */
    store_page_free(&p);
    ck_assert_int_eq(S->ops->set_stale(S, NULL, "trie", "t", true, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    ck_assert_int_eq(S->ops->delete_resource(S, NULL, "trie", "t", "request", &n, &err), -1);
    ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
    /* a writer that read the head before the delete loses the race */
    store_version w = {0};
    snprintf(w.type, sizeof w.type, "trie");
    snprintf(w.id, sizeof w.id, "t");
    snprintf(w.data_hash, sizeof w.data_hash, "late");
    w.vkey = V("2.0.1");
    w.doc = json_object();
    ck_assert_int_eq(S->ops->put_version(S, NULL, &w, V("2.0.0"), V("2.0.0"), NULL, 0, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    /* ... and one that thinks the resource never existed too */
    w.vkey = V("1.0.0");
    ck_assert_int_eq(S->ops->put_version(S, NULL, &w, 0, 0, NULL, 0, &err), -1);
    ck_assert_int_eq(err.kind, SERR_CONFLICT);
    store_version_clear(&w);
    /* created again from the head: above the old max; the old versions stay gone */
    ck_assert_int_eq(put("trie", "t", "2.0.0", "d", NULL, &err), -1);
    ck_assert_int_eq(put("trie", "t", "2.0.1", "a", NULL, &err), 0);
    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", "t", &h, &err), 0);
    ck_assert_uint_eq(h.latest_vkey, V("2.0.1"));
    ck_assert_uint_eq(h.max_vkey, V("2.0.1"));
    expect_version("t", "2.0.1", true, NULL, NULL);
    ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", "t", 0, &v, &err), 0);
    ck_assert_uint_eq(v.vkey, V("2.0.1"));
    ck_assert(!v.stale); /* the old life's flag does not come back */
    store_version_clear(&v);
    store_tombstone tomb;
    const char *old[] = {"1.0.0", "1.0.1", "2.0.0"};
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(S->ops->get_version(S, NULL, "trie", "t", V(old[i]), &v, &err), -1);
        ck_assert_int_eq(err.kind, SERR_NOT_FOUND);
        ck_assert_int_eq(S->ops->get_tombstone(S, "trie", "t", V(old[i]), &tomb, &err), 0);
        ck_assert_str_eq(tomb.removed_by, "request");
    }
    ck_assert_uint_eq(count_listed("trie", "t"), 1);
    ck_assert_int_eq(S->ops->list_versions(S, "trie", "t", &o, &p, &err), 0);
    ck_assert_uint_eq(p.count, 1);
    store_page_free(&p);
}
END_TEST

START_TEST(a_deleted_resource_in_a_batch)
{
    strata_error err;
    ck_assert_int_eq(put("trie", "t", "1.0.0", "a", NULL, &err), 0);
    ck_assert_int_eq(put("trie", "t", "1.0.1", "b", NULL, &err), 0);
    store_txn *txn = S->ops->begin(S, &err);
    ck_assert_ptr_nonnull(txn);
    size_t n = 0;
    ck_assert_int_eq(S->ops->delete_resource(S, txn, "trie", "t", "batch", &n, &err), 0);
    store_head h;
    ck_assert_int_eq(S->ops->get_head(S, txn, "trie", "t", &h, &err), 0);
    ck_assert_uint_eq(h.latest_vkey, 0);
    ck_assert_uint_eq(h.max_vkey, V("1.0.1"));
    store_version v = {0};
    snprintf(v.type, sizeof v.type, "trie");
    snprintf(v.id, sizeof v.id, "t");
    snprintf(v.data_hash, sizeof v.data_hash, "c");
    v.vkey = V("1.0.2");
    v.doc = json_object();
    ck_assert_int_eq(S->ops->put_version(S, txn, &v, h.latest_vkey, h.max_vkey, NULL, 0, &err), 0);
    store_version_clear(&v);
    ck_assert_int_eq(S->ops->commit(txn, &err), 0);
    ck_assert_int_eq(S->ops->get_head(S, NULL, "trie", "t", &h, &err), 0);
    ck_assert_uint_eq(h.latest_vkey, V("1.0.2"));
    ck_assert_uint_eq(h.max_vkey, V("1.0.2"));
    store_tombstone tomb;
    ck_assert_int_eq(S->ops->get_tombstone(S, "trie", "t", V("1.0.0"), &tomb, &err), 0);
    ck_assert_str_eq(tomb.removed_by, "batch");
    ck_assert_uint_eq(count_listed("trie", "t"), 1);
}
END_TEST

/* A failing step while reading rows is an error, never a short list:
 * with the pages of the tree and vocabulary tables damaged on disk,
 * reading a master's children or vocabulary fails where it used to answer
 * "no rows". SQLite only: it damages the file. */
static void damage_pages_of(const char *path, const char *table)
{
    sqlite3 *x = NULL;
    ck_assert_int_eq(sqlite3_open(path, &x), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(x, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(x,
                                        "SELECT rootpage, (SELECT page_size FROM pragma_page_size)"
                                        " FROM sqlite_master WHERE tbl_name = ?1 AND rootpage > 0",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    FILE *f = fopen(path, "r+b");
    ck_assert_ptr_nonnull(f);
    int damaged = 0;
    while (sqlite3_step(st) == SQLITE_ROW) {
        long page = sqlite3_column_int64(st, 0), size = sqlite3_column_int64(st, 1);
        static unsigned char junk[65536];
        memset(junk, 0xA5, sizeof junk);
        ck_assert_int_eq(fseek(f, (page - 1) * size, SEEK_SET), 0);
        ck_assert_uint_eq(fwrite(junk, 1, (size_t)size, f), (size_t)size);
        damaged++;
    }
    fclose(f);
    sqlite3_finalize(st);
    sqlite3_close(x);
    ck_assert_int_gt(damaged, 0);
}

START_TEST(a_failing_read_is_an_error_not_an_empty_list)
{
    if (getenv("STRATA_STORE_URL") != NULL)
        return; /* another backend: there is no file to damage */
    strata_error err;
    store_txn *txn = S->ops->begin(S, &err);
    ck_assert_ptr_nonnull(txn);
    ck_assert_int_eq(S->ops->tree_link(S, txn, "m", "c", 1, &err), 0);
    vocab_delta d = {"word", 1, 1, 0};
    int64_t size_delta = 0;
    ck_assert_int_eq(S->ops->vocab_apply(S, txn, "m", &d, 1, &size_delta, &err), 0);
    ck_assert_int_eq(S->ops->commit(txn, &err), 0);
    /* fresh connections after the damage: nothing cached */
    store_close(S);
    char path[256], url[300];
    snprintf(path, sizeof path, "%s/store.db", dir);
    damage_pages_of(path, "tree_edges");
    damage_pages_of(path, "vocab");
    snprintf(url, sizeof url, "sqlite:%s", path);
    S = store_open(url, &err);
    ck_assert_msg(S != NULL, "%s", err.detail);
    tree_child *kids = NULL;
    size_t n = 0;
    ck_assert_int_eq(S->ops->tree_children(S, NULL, "m", &kids, &n, &err), -1);
    ck_assert_uint_eq(n, 0);
    vocab_item *words = NULL;
    ck_assert_int_eq(S->ops->vocab_page(S, NULL, "m", "", 10, &words, &n, &err), -1);
}
END_TEST

static Suite *contract_suite(void)
{
    Suite *s = suite_create("store_contract");
    TCase *t = tcase_create("store");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, first_version_and_head);
    tcase_add_test(t, a_failing_read_is_an_error_not_an_empty_list);
    tcase_add_test(t, compare_and_swap_refuses_a_moved_head);
    tcase_add_test(t, chain_is_repaired_and_keys_never_reused);
    tcase_add_test(t, versions_page_newest_first);
    tcase_add_test(t, resources_filter_by_tag_and_page_by_id);
    tcase_add_test(t, dependencies_are_indexed_in_reverse);
    tcase_add_test(t, exact_version_pins_and_blob_references);
    tcase_add_test(t, batches_land_whole_or_not_at_all);
    tcase_add_test(t, delete_resource_find_by_hash_and_access);
    tcase_add_test(t, a_deleted_resource_keeps_its_numbers);
    tcase_add_test(t, a_deleted_resource_in_a_batch);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(contract_suite());
}
