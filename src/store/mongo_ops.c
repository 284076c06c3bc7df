/* The MongoDB store's plumbing: a pooled client per operation, the calls
 * with their error mapping, BSON reading and the server's clock (see
 * mongo_internal.h). */
#include "mongo_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

const char *const MC_NAMES[MC_COUNT] = {
    [MC_META] = "store_meta",         [MC_HEADS] = "store_heads",
    [MC_VERSIONS] = "store_versions", [MC_DEPS] = "store_deps",
    [MC_TOMBS] = "store_tombstones",  [MC_ACCESS] = "store_access",
    [MC_EDGES] = "store_tree_edges",  [MC_VOCAB] = "store_vocab",
    [MC_VSIZE] = "store_vocab_sizes", [MC_BLOBS] = "store_blob_doomed",
    [MC_LEASES] = "store_leases",     [MC_PTRS] = "store_pointers",
    [MC_CLAIMS] = "store_claims",     [MC_SEALS] = "store_seals",
};

void mg_begin(mg *m, mongo_store *s)
{
    memset(m, 0, sizeof *m);
    m->s = s;
    m->cl = mongo_conn_pop(s->conn);
}

void mg_end(mg *m)
{
    for (int i = 0; i < MC_COUNT; i++)
        if (m->c[i] != NULL)
            mongoc_collection_destroy(m->c[i]);
    mongo_conn_push(m->s->conn, m->cl);
    m->cl = NULL;
}

mongoc_collection_t *mg_coll(mg *m, int which)
{
    if (m->c[which] == NULL)
        m->c[which] = mongo_conn_collection(m->s->conn, m->cl, MC_NAMES[which]);
    return m->c[which];
}

int mg_find_one(mg *m, int coll, const bson_t *filter, const bson_t *opts, bson_t *out, bool *found,
                const char *what, strata_error *err)
{
    bson_t o = BSON_INITIALIZER;
    if (opts != NULL)
        bson_copy_to_excluding_noinit(opts, &o, "limit", NULL);
    BSON_APPEND_INT64(&o, "limit", 1);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(mg_coll(m, coll), filter, &o, NULL);
    bson_destroy(&o);
    const bson_t *doc = NULL;
    *found = false;
    if (mongoc_cursor_next(cur, &doc)) {
        *found = true;
        if (out != NULL)
            bson_copy_to(doc, out);
    }
    bson_error_t be;
    int rc = 0;
    if (mongoc_cursor_error(cur, &be)) {
        if (*found && out != NULL)
            bson_destroy(out);
        *found = false;
        rc = mongo_conn_error(&be, what, err);
    }
    mongoc_cursor_destroy(cur);
    return rc;
}

int mg_update(mg *m, int coll, const bson_t *filter, const bson_t *update, bool upsert,
              int64_t *matched, const char *what, strata_error *err)
{
    bson_t opts = BSON_INITIALIZER, reply;
    if (upsert)
        BSON_APPEND_BOOL(&opts, "upsert", true);
    bson_error_t be;
    bool ok = mongoc_collection_update_one(mg_coll(m, coll), filter, update, &opts, &reply, &be);
    bson_destroy(&opts);
    if (ok && matched != NULL)
        *matched = bs_i64(&reply, "matchedCount") + bs_i64(&reply, "upsertedCount");
    bson_destroy(&reply);
    return ok ? 0 : mongo_conn_error(&be, what, err);
}

int mg_insert(mg *m, int coll, const bson_t *doc, const char *what, strata_error *err)
{
    bson_error_t be;
    if (mongoc_collection_insert_one(mg_coll(m, coll), doc, NULL, NULL, &be))
        return 0;
    return mongo_conn_error(&be, what, err);
}

int mg_delete(mg *m, int coll, const bson_t *filter, bool many, int64_t *deleted, const char *what,
              strata_error *err)
{
    bson_t reply;
    bson_error_t be;
    bool ok = many ? mongoc_collection_delete_many(mg_coll(m, coll), filter, NULL, &reply, &be)
                   : mongoc_collection_delete_one(mg_coll(m, coll), filter, NULL, &reply, &be);
    if (ok && deleted != NULL)
        *deleted = bs_i64(&reply, "deletedCount");
    bson_destroy(&reply);
    return ok ? 0 : mongo_conn_error(&be, what, err);
}

int mg_modify(mg *m, int coll, const bson_t *filter, const bson_t *update, bool upsert, bson_t *out,
              bool *found, const char *what, strata_error *err)
{
    mongoc_find_and_modify_opts_t *o = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_update(o, update);
    mongoc_find_and_modify_opts_set_flags(o, MONGOC_FIND_AND_MODIFY_RETURN_NEW |
                                                 (upsert ? MONGOC_FIND_AND_MODIFY_UPSERT : 0));
    bson_t reply;
    bson_error_t be;
    bool ok = mongoc_collection_find_and_modify_with_opts(mg_coll(m, coll), filter, o, &reply, &be);
    mongoc_find_and_modify_opts_destroy(o);
    *found = false;
    int rc = 0;
    if (ok) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_iter_document(&it, &len, &data);
            bson_t v;
            if (bson_init_static(&v, data, len)) {
                *found = true;
                if (out != NULL)
                    bson_copy_to(&v, out);
            }
        }
    } else {
        rc = mongo_conn_error(&be, what, err);
    }
    bson_destroy(&reply);
    return rc;
}

int mg_each(mg *m, int coll, const bson_t *filter, const bson_t *opts,
            int (*row)(const bson_t *doc, void *ctx), void *ctx, bool *stopped, const char *what,
            strata_error *err)
{
    if (stopped)
        *stopped = false;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(mg_coll(m, coll), filter, opts, NULL);
    const bson_t *doc = NULL;
    while (mongoc_cursor_next(cur, &doc))
        if (row(doc, ctx) != 0) {
            if (stopped)
                *stopped = true;
            break;
        }
    bson_error_t be;
    int rc = 0;
    if (mongoc_cursor_error(cur, &be))
        rc = mongo_conn_error(&be, what, err);
    mongoc_cursor_destroy(cur);
    return rc;
}

/* The server's own clock: hello's localTime, read in the server that
 * compares the stamps (leases, claims), never this host's. */
int mg_server_now(mg *m, int64_t *ms, strata_error *err)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    BSON_APPEND_INT32(&cmd, "hello", 1);
    bson_error_t be;
    bool ok = mongoc_client_command_simple(m->cl, "admin", &cmd, NULL, &reply, &be);
    bson_destroy(&cmd);
    int rc = 0;
    if (!ok)
        rc = mongo_conn_error(&be, "server clock", err);
    else {
        bson_iter_t it;
        if (bson_iter_init_find(&it, &reply, "localTime") && BSON_ITER_HOLDS_DATE_TIME(&it))
            *ms = bson_iter_date_time(&it);
        else
            rc = serr_set(err, SERR_IO, "store: the MongoDB server reports no localTime");
    }
    bson_destroy(&reply);
    return rc;
}

void bs_str(const bson_t *d, const char *key, char *out, size_t cap)
{
    bson_iter_t it;
    out[0] = '\0';
    if (bson_iter_init_find(&it, d, key) && BSON_ITER_HOLDS_UTF8(&it)) {
        uint32_t len;
        const char *s = bson_iter_utf8(&it, &len);
        snprintf(out, cap, "%.*s", (int)len, s);
    }
}

int64_t bs_i64(const bson_t *d, const char *key)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, d, key))
        return 0;
    if (BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_DOUBLE(&it))
        return bson_iter_as_int64(&it);
    if (BSON_ITER_HOLDS_DATE_TIME(&it))
        return bson_iter_date_time(&it);
    return 0;
}

bool bs_bool(const bson_t *d, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, d, key) && bson_iter_as_bool(&it);
}

bool bs_has(const bson_t *d, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, d, key);
}

void mk_head_id(char *out, size_t cap, const char *type, const char *id)
{
    snprintf(out, cap, "%s/%s", type, id);
}

void mk_ver_id(char *out, size_t cap, const char *type, const char *id, uint64_t vkey)
{
    snprintf(out, cap, "%s/%s@%016" PRIx64, type, id, vkey);
}

uint64_t mg_random63(void)
{
    uint64_t r = 0;
    do {
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            r ^= (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15ull ^ (uint64_t)ts.tv_sec;
        }
        r &= INT64_MAX;
    } while (r == 0);
    return r;
}

void mg_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
}
