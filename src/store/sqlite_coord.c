/* Where processes agree, in SQLite: which blobs versions reference, blob
 * claims and doomed keys, leases, and access counts beside the versions. */
#include "sqlite_internal.h"
#include "../common/clock.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct access_ctx {
    store_access *items;
    size_t n;
};

/* One upsert per version, all in one transaction; a version deleted
 * meanwhile gets no row (its total reads 0). */
static int do_add_access(sq_conn *db, void *arg, strata_error *err)
{
    struct access_ctx *c = arg;
    sqlite3_stmt *st = NULL;
    if (prepare(db,
                "INSERT INTO access(resource_type, resource_id, vkey, count, last)"
                " SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS(SELECT 1 FROM versions"
                "  WHERE resource_type = ?1 AND resource_id = ?2 AND vkey = ?3)"
                " ON CONFLICT(resource_type, resource_id, vkey) DO UPDATE SET"
                " count = count + excluded.count, last = max(coalesce(last, 0), excluded.last)"
                " RETURNING count, last",
                &st, err) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        store_access *a = &c->items[i];
        bind_tiv(st, a->type, a->id, a->vkey);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)a->count);
        sqlite3_bind_int64(st, 5, a->last_ms);
        int r = sqlite3_step(st);
        a->total = r == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(st, 0) : 0;
        a->total_last_ms = r == SQLITE_ROW ? sqlite3_column_int64(st, 1) : 0;
        while (r == SQLITE_ROW)
            r = sqlite3_step(st);
        if (r != SQLITE_DONE)
            rc = db_error(db, err, "record access");
        sqlite3_reset(st);
    }
    sq_release(st);
    return rc;
}

int sq_add_access(store *base, store_access *items, size_t n, strata_error *err)
{
    struct access_ctx c = {items, n};
    return n == 0 ? 0 : in_write((sqlite_store *)base, NULL, do_add_access, &c, err);
}

struct key_walk {
    int (*fn)(void *ctx, const char *key);
    int (*fn_token)(void *ctx, const char *key, uint64_t token);
    void *ctx;
};

static int ref_row(sqlite3_stmt *st, void *arg)
{
    struct key_walk *w = arg;
    return w->fn(w->ctx, (const char *)sqlite3_column_text(st, 0));
}

int sq_blob_refs(store *base, int (*fn)(void *ctx, const char *key), void *ctx, strata_error *err)
{
    struct key_walk w = {.fn = fn, .ctx = ctx};
    bool stopped = false;
    if (sq_each_row((sqlite_store *)base,
                    "SELECT DISTINCT blob_key FROM versions WHERE blob_key IS NOT NULL", ref_row,
                    &w, &stopped, "blob references", err) != 0)
        return -1;
    /* every key or none: a walk the callback cut short is not a mark */
    return stopped ? serr_set(err, SERR_NOMEM, "out of memory collecting blob references") : 0;
}

int sq_blob_referenced(store *base, const char *key, bool *referenced, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *referenced = false;
    sq_conn *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, "SELECT 1 FROM versions WHERE blob_key = ?1 LIMIT 1", &st, err);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
            *referenced = true;
        else if (r != SQLITE_DONE)
            rc = db_error(db, err, "blob reference");
    }
    sq_release(st);
    reader_put(s, db);
    return rc;
}

/* ---- blob claims and collection --------------------------------------------- */

/* Runs one statement binding (text ?1, int ?2, int ?3); *changes gets the
 * rows it changed, *exists whether it returned a row. */
static int run1(sq_conn *db, const char *sql, const char *t1, int64_t i2, int64_t i3, bool *exists,
                int *changes, strata_error *err)
{
    sqlite3_stmt *st = NULL;
    if (prepare(db, sql, &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, t1, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, i2);
    sqlite3_bind_int64(st, 3, i3);
    int r = sqlite3_step(st);
    if (exists)
        *exists = r == SQLITE_ROW;
    while (r == SQLITE_ROW)
        r = sqlite3_step(st);
    int rc = r == SQLITE_DONE ? 0 : db_error(db, err, "coordination");
    if (changes)
        *changes = sqlite3_changes(db->h);
    sq_release(st);
    return rc;
}

struct claim_ctx {
    const char *key;
    uint64_t claim;
    int64_t before;
    uint64_t token;
    bool doomed;
};

static int do_claim(sq_conn *db, void *arg, strata_error *err)
{
    struct claim_ctx *c = arg;
    bool doomed = false;
    if (run1(db, "SELECT 1 FROM blob_doomed WHERE key = ?1", c->key, 0, 0, &doomed, NULL, err) != 0)
        return -1;
    if (doomed)
        return serr_set(err, SERR_RETRY, "blob %.12s is being collected", c->key);
    do
        sqlite3_randomness(sizeof c->claim, &c->claim);
    while ((int64_t)c->claim <= 0);
    return run1(db, "INSERT INTO blob_claims(key, claim, created_at) VALUES(?1, ?2, ?3)", c->key,
                (int64_t)c->claim, clock_wall_ms(), NULL, NULL, err);
}

int sq_blob_claim(store *base, store_txn *txn, const char *key, uint64_t *claim, strata_error *err)
{
    struct claim_ctx c = {.key = key};
    int rc = in_write((sqlite_store *)base, txn, do_claim, &c, err);
    *claim = rc == 0 ? c.claim : 0;
    return rc;
}

static int do_release(sq_conn *db, void *arg, strata_error *err)
{
    struct claim_ctx *c = arg;
    return run1(db, "DELETE FROM blob_claims WHERE key = ?1 AND claim = ?2", c->key,
                (int64_t)c->claim, 0, NULL, NULL, err);
}

int sq_blob_release(store *base, const char *key, uint64_t claim, strata_error *err)
{
    struct claim_ctx c = {.key = key, .claim = claim};
    return in_write((sqlite_store *)base, NULL, do_release, &c, err);
}

static int do_collect_begin(sq_conn *db, void *arg, strata_error *err)
{
    struct claim_ctx *c = arg;
    bool used = false;
    c->doomed = false;
    if (run1(db, "DELETE FROM blob_claims WHERE key = ?1 AND created_at < ?2", c->key, c->before, 0,
             NULL, NULL, err) != 0 ||
        run1(db,
             "SELECT 1 WHERE EXISTS(SELECT 1 FROM blob_claims WHERE key = ?1)"
             " OR EXISTS(SELECT 1 FROM versions WHERE blob_key = ?1)"
             " OR EXISTS(SELECT 1 FROM blob_doomed WHERE key = ?1)",
             c->key, 0, 0, &used, NULL, err) != 0)
        return -1;
    if (used)
        return 0;
    c->doomed = true;
    return run1(db, "INSERT INTO blob_doomed(key, token, doomed_at) VALUES(?1, ?2, ?3)", c->key,
                (int64_t)c->token, clock_wall_ms(), NULL, NULL, err);
}

int sq_blob_collect_begin(store *base, const char *key, uint64_t token, int64_t claims_before_ms,
                          bool *doomed, strata_error *err)
{
    struct claim_ctx c = {.key = key, .token = token, .before = claims_before_ms};
    int rc = in_write((sqlite_store *)base, NULL, do_collect_begin, &c, err);
    *doomed = rc == 0 && c.doomed;
    return rc;
}

static int do_collect_end(sq_conn *db, void *arg, strata_error *err)
{
    return run1(db, "DELETE FROM blob_doomed WHERE key = ?1", arg, 0, 0, NULL, NULL, err);
}

int sq_blob_collect_end(store *base, const char *key, strata_error *err)
{
    return in_write((sqlite_store *)base, NULL, do_collect_end, (void *)(uintptr_t)key, err);
}

static int doomed_row(sqlite3_stmt *st, void *arg)
{
    struct key_walk *w = arg;
    return w->fn_token(w->ctx, (const char *)sqlite3_column_text(st, 0),
                       (uint64_t)sqlite3_column_int64(st, 1));
}

int sq_blob_collecting(store *base, int (*fn)(void *ctx, const char *key, uint64_t token),
                       void *ctx, strata_error *err)
{
    struct key_walk w = {.fn_token = fn, .ctx = ctx};
    return sq_each_row((sqlite_store *)base, "SELECT key, token FROM blob_doomed", doomed_row, &w,
                       NULL, "doomed blobs", err);
}

/* ---- leases ------------------------------------------------------------------- */

struct lease_ctx {
    const char *name, *holder;
    uint64_t ttl_ms;
    bool release, held, abandoned;
    uint64_t token;
};

static int do_lease(sq_conn *db, void *arg, strata_error *err)
{
    struct lease_ctx *c = arg;
    int64_t now = clock_wall_ms();
    sqlite3_stmt *st = NULL;
    c->held = c->abandoned = false; /* the write may run again */
    if (c->release) {
        /* expired, not deleted: the next holder's token must still grow */
        if (prepare(db, "UPDATE leases SET expires_at = 0 WHERE name = ?1 AND holder = ?2", &st,
                    err) != 0)
            return -1;
        sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, c->holder, -1, SQLITE_STATIC);
        return step_done(db, st, "release lease", err);
    }
    /* the state before: a lease taken from another holder that had not
     * released it (expires_at not 0) was abandoned */
    bool was_other = false, was_unreleased = false;
    if (prepare(db, "SELECT holder, expires_at FROM leases WHERE name = ?1", &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        was_other = strcmp((const char *)sqlite3_column_text(st, 0), c->holder) != 0;
        was_unreleased = sqlite3_column_int64(st, 1) != 0;
    }
    sq_release(st);
    if (r != SQLITE_ROW && r != SQLITE_DONE)
        return db_error(db, err, "read lease");
    /* taken when free, expired or already ours; the token moves whenever
     * the holder changes, so a holder that lost the lease can tell */
    if (prepare(db,
                "INSERT INTO leases(name, holder, token, expires_at) VALUES(?1, ?2, 1, ?4)"
                " ON CONFLICT(name) DO UPDATE SET"
                " token = CASE WHEN holder = excluded.holder THEN token ELSE token + 1 END,"
                " holder = excluded.holder, expires_at = excluded.expires_at"
                " WHERE holder = excluded.holder OR expires_at <= ?3",
                &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->holder, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, now + (int64_t)c->ttl_ms);
    if (step_done(db, st, "take lease", err) != 0)
        return -1;
    if (prepare(db, "SELECT holder, token FROM leases WHERE name = ?1", &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
    r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        c->held = strcmp((const char *)sqlite3_column_text(st, 0), c->holder) == 0;
        c->token = (uint64_t)sqlite3_column_int64(st, 1);
        c->abandoned = c->held && was_other && was_unreleased;
    }
    int rc = r == SQLITE_ROW ? 0 : db_error(db, err, "read lease");
    sq_release(st);
    return rc;
}

int sq_lease_acquire(store *base, const char *name, const char *holder, uint64_t ttl_ms, bool *held,
                     uint64_t *token, bool *abandoned, strata_error *err)
{
    struct lease_ctx c = {.name = name, .holder = holder, .ttl_ms = ttl_ms};
    int rc = in_write((sqlite_store *)base, NULL, do_lease, &c, err);
    *held = rc == 0 && c.held;
    *token = rc == 0 ? c.token : 0;
    if (abandoned != NULL)
        *abandoned = rc == 0 && c.abandoned;
    return rc;
}

int sq_lease_release(store *base, const char *name, const char *holder, strata_error *err)
{
    struct lease_ctx c = {.name = name, .holder = holder, .release = true};
    return in_write((sqlite_store *)base, NULL, do_lease, &c, err);
}
