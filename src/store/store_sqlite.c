/* The SQLite store. One writer connection behind a mutex (SQLite has one
 * writer at a time anyway) running BEGIN IMMEDIATE transactions, and a
 * small pool of reader connections that WAL lets run beside the writer.
 * synchronous=FULL: an acknowledged version survives power loss, not
 * just a process crash.
 *
 * Several processes may open one file: SQLite's own file locks serialise
 * their writers (busy_timeout waits for the lock), and every
 * read-check-write runs inside one BEGIN IMMEDIATE transaction, so the
 * process mutex only keeps this process's threads off the one writer
 * connection; it guards no invariant. Version rows are written once and
 * never updated: latest, supersedes and superseded_by are derived from the
 * head and the neighbouring rows when read; access counts live in their
 * own table. */
#include "store_sqlite.h"
#include "../common/clock.h"

#include <limits.h>
#include <stdint.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/fsutil.h"

#define READER_POOL 8

typedef struct sqlite_store {
    store base;
    char path[PATH_MAX];
    pthread_mutex_t write_mu;
    sqlite3 *writer;
    pthread_mutex_t pool_mu;
    pthread_cond_t pool_cv;
    sqlite3 *idle[READER_POOL];
    int nidle;
    int nopen;
} sqlite_store;

struct store_txn {
    sqlite_store *s;
};

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS resources("
    "  resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, namespace TEXT NOT NULL,"
    "  latest_vkey INTEGER, max_vkey INTEGER NOT NULL,"
    "  stale INTEGER NOT NULL DEFAULT 0, stale_reason TEXT, updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY(resource_type, resource_id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS resources_ns_type ON resources(namespace, resource_type);"
    "CREATE TABLE IF NOT EXISTS versions("
    "  resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, vkey INTEGER NOT NULL,"
    "  version TEXT NOT NULL, namespace TEXT NOT NULL, created_at INTEGER NOT NULL,"
    "  data_hash TEXT NOT NULL, blob_key TEXT, is_latest INTEGER NOT NULL,"
    "  supersedes INTEGER, superseded_by INTEGER, doc TEXT NOT NULL, content BLOB,"
    "  access_count INTEGER NOT NULL DEFAULT 0, last_accessed INTEGER,"
    "  PRIMARY KEY(resource_type, resource_id, vkey),"
    "  UNIQUE(resource_type, resource_id, version));"
    "CREATE INDEX IF NOT EXISTS versions_ns_type ON versions(namespace, resource_type);"
    "CREATE INDEX IF NOT EXISTS versions_created ON versions(created_at DESC);"
    "CREATE INDEX IF NOT EXISTS versions_hash ON versions(data_hash);"
    "CREATE INDEX IF NOT EXISTS versions_blob ON versions(blob_key) WHERE blob_key IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS dependencies("
    "  from_type TEXT NOT NULL, from_id TEXT NOT NULL, from_vkey INTEGER NOT NULL,"
    "  to_type TEXT NOT NULL, to_id TEXT NOT NULL, to_vkey INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(from_type, from_id, from_vkey, to_type, to_id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS dependencies_reverse ON dependencies(to_type, to_id);"
    "CREATE TABLE IF NOT EXISTS tree_edges("
    "  child TEXT PRIMARY KEY, parent TEXT NOT NULL, child_vkey INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS tree_edges_parent ON tree_edges(parent);"
    "CREATE TABLE IF NOT EXISTS vocab("
    "  master TEXT NOT NULL, word TEXT NOT NULL, children INTEGER NOT NULL,"
    "  frequency INTEGER NOT NULL, PRIMARY KEY(master, word)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tombstones("
    "  resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, vkey INTEGER NOT NULL,"
    "  removed_at INTEGER NOT NULL, removed_by TEXT NOT NULL,"
    "  PRIMARY KEY(resource_type, resource_id, vkey)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS vocab_sizes("
    "  master TEXT PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID;"
    /* access counts beside the (immutable) version rows */
    "CREATE TABLE IF NOT EXISTS access("
    "  resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, vkey INTEGER NOT NULL,"
    "  count INTEGER NOT NULL, last INTEGER,"
    "  PRIMARY KEY(resource_type, resource_id, vkey)) WITHOUT ROWID;"
    /* coordination between processes: blob claims, doomed blobs, leases */
    "CREATE TABLE IF NOT EXISTS blob_claims("
    "  key TEXT NOT NULL, claim INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    "  PRIMARY KEY(key, claim)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS blob_doomed("
    "  key TEXT PRIMARY KEY, token INTEGER NOT NULL, doomed_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS leases("
    "  name TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL) WITHOUT ROWID;";

/* The layout's version, kept in PRAGMA user_version. MIGRATIONS[i] takes a
 * database from version i to i + 1; open runs the ones a database lacks in
 * the same transaction as SCHEMA, so a crash leaves it as it was. */
#define SCHEMA_VERSION 2

static const char *const MIGRATIONS[SCHEMA_VERSION] = {
    /* 0 -> 1: a deleted resource keeps its head (no latest, max_vkey
     * kept), so that its numbers are never issued again. Resources deleted
     * before lost their heads: rebuild them from their version tombstones,
     * and let no head sit below a number its tombstones name. */
    "INSERT INTO resources(resource_type, resource_id, namespace, latest_vkey, max_vkey, stale,"
    "  stale_reason, updated_at)"
    " SELECT t.resource_type, t.resource_id, '', NULL, max(t.vkey), 0, NULL, max(t.removed_at)"
    " FROM tombstones t WHERE NOT EXISTS(SELECT 1 FROM resources r"
    "   WHERE r.resource_type = t.resource_type AND r.resource_id = t.resource_id)"
    " GROUP BY t.resource_type, t.resource_id HAVING max(t.vkey) > 0;"
    "UPDATE resources SET max_vkey = (SELECT max(t.vkey) FROM tombstones t"
    "   WHERE t.resource_type = resources.resource_type"
    "   AND t.resource_id = resources.resource_id)"
    " WHERE max_vkey < (SELECT max(t.vkey) FROM tombstones t"
    "   WHERE t.resource_type = resources.resource_type"
    "   AND t.resource_id = resources.resource_id);",
    /* 1 -> 2: version rows become immutable. The latest flag and the chain
     * columns are derived when read (the columns stay, unused, so that
     * older files open); access counts move to their own table. */
    "DROP INDEX IF EXISTS versions_one_latest;"
    "DROP INDEX IF EXISTS versions_id_latest;"
    "INSERT OR IGNORE INTO access(resource_type, resource_id, vkey, count, last)"
    " SELECT resource_type, resource_id, vkey, access_count, last_accessed FROM versions"
    " WHERE access_count > 0;",
};

/* A version as readers see it: the row as written, its place in the
 * chain derived from the head and its neighbours, its access counts. A
 * row above the head's max_vkey (written, never linked) is ignored. */
#define VERSION_COLS                                                                               \
    "v.resource_type, v.resource_id, v.vkey, v.namespace, v.created_at, v.data_hash,"              \
    " v.blob_key, v.vkey = r.latest_vkey,"                                                         \
    " (SELECT max(p.vkey) FROM versions p WHERE p.resource_type = v.resource_type"                 \
    "   AND p.resource_id = v.resource_id AND p.vkey < v.vkey),"                                   \
    " (SELECT min(n.vkey) FROM versions n WHERE n.resource_type = v.resource_type"                 \
    "   AND n.resource_id = v.resource_id AND n.vkey > v.vkey AND n.vkey <= r.max_vkey),"          \
    " v.doc, v.content, coalesce(a.count, 0), a.last, r.stale, r.stale_reason"
#define VERSION_FROM                                                                               \
    " FROM versions v JOIN resources r"                                                            \
    " ON r.resource_type = v.resource_type AND r.resource_id = v.resource_id"                      \
    " AND v.vkey <= r.max_vkey"                                                                    \
    " LEFT JOIN access a ON a.resource_type = v.resource_type"                                     \
    " AND a.resource_id = v.resource_id AND a.vkey = v.vkey"

static int db_error(sqlite3 *db, strata_error *err, const char *what)
{
    int code = sqlite3_extended_errcode(db);
    enum strata_err_kind kind = SERR_IO;
    if ((code & 0xff) == SQLITE_CONSTRAINT)
        kind = SERR_CONFLICT;
    else if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED)
        kind = SERR_RETRY; /* another process held the lock past busy_timeout */
    else if ((code & 0xff) == SQLITE_NOMEM)
        kind = SERR_NOMEM;
    return serr_set(err, kind, "store: %s: %s", what, sqlite3_errmsg(db));
}

static int exec(sqlite3 *db, const char *sql, strata_error *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        bool busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
        serr_set(err, busy ? SERR_RETRY : SERR_IO, "store: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

static int prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st, strata_error *err)
{
    if (sqlite3_prepare_v2(db, sql, -1, st, NULL) != SQLITE_OK)
        return db_error(db, err, "prepare");
    return 0;
}

static int open_conn(const char *path, sqlite3 **out, strata_error *err)
{
    sqlite3 *db = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &db, flags, NULL) != SQLITE_OK) {
        serr_set(err, SERR_IO, "store: cannot open %s: %s", path,
                 db ? sqlite3_errmsg(db) : "out of memory");
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 10000);
    if (exec(db,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
             "PRAGMA temp_store=MEMORY;",
             err) != 0) {
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

/* ---- reader pool ---------------------------------------------------------- */

static sqlite3 *reader_get(sqlite_store *s, strata_error *err)
{
    pthread_mutex_lock(&s->pool_mu);
    while (s->nidle == 0 && s->nopen >= READER_POOL)
        pthread_cond_wait(&s->pool_cv, &s->pool_mu);
    sqlite3 *db = NULL;
    if (s->nidle > 0) {
        db = s->idle[--s->nidle];
        pthread_mutex_unlock(&s->pool_mu);
        return db;
    }
    s->nopen++;
    pthread_mutex_unlock(&s->pool_mu);
    if (open_conn(s->path, &db, err) != 0) {
        pthread_mutex_lock(&s->pool_mu);
        s->nopen--;
        pthread_cond_signal(&s->pool_cv);
        pthread_mutex_unlock(&s->pool_mu);
        return NULL;
    }
    return db;
}

static void reader_put(sqlite_store *s, sqlite3 *db)
{
    pthread_mutex_lock(&s->pool_mu);
    s->idle[s->nidle++] = db;
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
}

/* Reads within a transaction use its connection to see its own writes. */
static sqlite3 *read_conn(sqlite_store *s, store_txn *txn, strata_error *err)
{
    return txn ? s->writer : reader_get(s, err);
}

static void read_done(sqlite_store *s, store_txn *txn, sqlite3 *db)
{
    if (txn == NULL && db != NULL)
        reader_put(s, db);
}

/* ---- row decoding ---------------------------------------------------------- */

static void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", t ? (const char *)t : "");
}

static int read_version_row(sqlite3_stmt *st, store_version *v, strata_error *err)
{
    memset(v, 0, sizeof *v);
    copy_text(v->type, sizeof v->type, st, 0);
    copy_text(v->id, sizeof v->id, st, 1);
    v->vkey = (uint64_t)sqlite3_column_int64(st, 2);
    copy_text(v->ns, sizeof v->ns, st, 3);
    v->created_at_ms = sqlite3_column_int64(st, 4);
    copy_text(v->data_hash, sizeof v->data_hash, st, 5);
    copy_text(v->blob_key, sizeof v->blob_key, st, 6);
    v->is_latest = sqlite3_column_int(st, 7) != 0;
    v->supersedes = (uint64_t)sqlite3_column_int64(st, 8);
    v->superseded_by = (uint64_t)sqlite3_column_int64(st, 9);
    const char *doc = (const char *)sqlite3_column_text(st, 10);
    v->doc = json_loads(doc ? doc : "{}", 0, NULL);
    if (v->doc == NULL)
        return serr_set(err, SERR_CORRUPT, "store: version %s/%s has an unreadable record", v->type,
                        v->id);
    if (sqlite3_column_type(st, 11) == SQLITE_BLOB || sqlite3_column_type(st, 11) == SQLITE_TEXT) {
        int n = sqlite3_column_bytes(st, 11);
        v->content = malloc((size_t)n + 1);
        if (v->content == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory reading a record");
        if (n > 0)
            memcpy(v->content, sqlite3_column_blob(st, 11), (size_t)n);
        v->content_len = (size_t)n;
    }
    v->access_count = (uint64_t)sqlite3_column_int64(st, 12);
    v->last_accessed_ms = sqlite3_column_int64(st, 13);
    v->stale = v->is_latest && sqlite3_column_int(st, 14) != 0;
    if (v->stale && sqlite3_column_type(st, 15) == SQLITE_TEXT)
        v->stale_reason = json_loads((const char *)sqlite3_column_text(st, 15), 0, NULL);
    return 0;
}

/* Steps a prepared query and collects rows into a page (limit + 1 rows
 * tell whether there is a next page). */
static int collect_page(sqlite3 *db, sqlite3_stmt *st, size_t limit, store_page *out,
                        strata_error *err)
{
    out->items = calloc(limit + 1, sizeof *out->items);
    if (out->items == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory for a page");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_version *v = malloc(sizeof *v);
        if (v == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory for a page");
        out->items[out->count++] = v;
        if (read_version_row(st, v, err) != 0)
            return -1;
        if (out->count > limit)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(db, err, "list");
    return 0;
}

/* A page holds limit + 1 rows when there is more: drop the extra row and
 * make the cursor from the last one kept ('v': by version key, newest
 * first; 'r': by resource id; 'd': by type/id). Frees the page on failure. */
static int finish_page(int rc, store_page *out, size_t limit, char kind, strata_error *err)
{
    if (rc == 0 && out->count > limit) {
        store_version_free(out->items[--out->count]);
        const store_version *last = out->items[out->count - 1];
        char key[STORE_TYPE_MAX + STORE_ID_MAX + 2];
        snprintf(key, sizeof key, "%s/%s", last->type, last->id);
        out->next = kind == 'v'   ? store_cursor_encode('v', last->vkey)
                    : kind == 'd' ? store_cursor_encode_str('d', key)
                                  : store_cursor_encode_str('r', last->id);
        if (out->next == NULL)
            rc = serr_set(err, SERR_NOMEM, "out of memory");
    }
    if (rc != 0)
        store_page_free(out);
    return rc;
}

/* ---- operations ------------------------------------------------------------ */

static int sq_get_head_on(sqlite3 *db, const char *type, const char *id, store_head *out,
                          strata_error *err)
{
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    if (prepare(db,
                "SELECT r.latest_vkey, r.max_vkey, v.data_hash FROM resources r"
                " LEFT JOIN versions v ON v.resource_type = r.resource_type"
                " AND v.resource_id = r.resource_id AND v.vkey = r.latest_vkey"
                " WHERE r.resource_type = ?1 AND r.resource_id = ?2",
                &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int result = 0;
    if (rc == SQLITE_ROW) {
        out->exists = true;
        out->latest_vkey = (uint64_t)sqlite3_column_int64(st, 0);
        out->max_vkey = (uint64_t)sqlite3_column_int64(st, 1);
        copy_text(out->latest_hash, sizeof out->latest_hash, st, 2);
    } else if (rc != SQLITE_DONE) {
        result = db_error(db, err, "read head");
    }
    sqlite3_finalize(st);
    return result;
}

static int sq_get_head(store *base, store_txn *txn, const char *type, const char *id,
                       store_head *out, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3 *db = read_conn(s, txn, err);
    if (db == NULL)
        return -1;
    int rc = sq_get_head_on(db, type, id, out, err);
    read_done(s, txn, db);
    return rc;
}

static int sq_get_version(store *base, store_txn *txn, const char *type, const char *id,
                          uint64_t vkey, store_version *out, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    memset(out, 0, sizeof *out);
    sqlite3 *db = read_conn(s, txn, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    const char *sql = vkey == 0 ? "SELECT " VERSION_COLS VERSION_FROM
                                  " WHERE v.resource_type = ?1 AND v.resource_id = ?2"
                                  " AND v.vkey = r.latest_vkey"
                                : "SELECT " VERSION_COLS VERSION_FROM
                                  " WHERE v.resource_type = ?1 AND v.resource_id = ?2"
                                  " AND v.vkey = ?3";
    int result = -1;
    if (prepare(db, sql, &st, err) == 0) {
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        if (vkey != 0)
            sqlite3_bind_int64(st, 3, (sqlite3_int64)vkey);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            result = read_version_row(st, out, err);
        else if (rc == SQLITE_DONE)
            serr_set(err, SERR_NOT_FOUND, "no such version");
        else
            db_error(db, err, "read version");
        if (result != 0)
            store_version_clear(out);
    }
    sqlite3_finalize(st);
    read_done(s, txn, db);
    return result;
}

/* Runs fn inside the caller's transaction, or its own when txn is NULL. */
typedef int (*write_fn)(sqlite3 *db, void *ctx, strata_error *err);

/* The store whose transaction this thread is running, if any: a write
 * with no txn from inside it would wait for itself on write_mu. */
static _Thread_local const sqlite_store *tls_in_txn;

static int in_write(sqlite_store *s, store_txn *txn, write_fn fn, void *ctx, strata_error *err)
{
    if (txn != NULL)
        return fn(s->writer, ctx, err);
    if (tls_in_txn == s)
        return serr_set(err, SERR_INTERNAL, "store: a write outside the transaction it runs in");
    pthread_mutex_lock(&s->write_mu);
    int rc = exec(s->writer, "BEGIN IMMEDIATE", err);
    if (rc == 0) {
        rc = fn(s->writer, ctx, err);
        if (rc == 0 && exec(s->writer, "COMMIT", err) != 0)
            rc = -1;
        if (rc != 0)
            sqlite3_exec(s->writer, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&s->write_mu);
    return rc;
}

static int step_done(sqlite3 *db, sqlite3_stmt *st, const char *what, strata_error *err)
{
    int rc = sqlite3_step(st);
    int result = rc == SQLITE_DONE ? 0 : db_error(db, err, what);
    sqlite3_finalize(st);
    return result;
}

struct put_ctx {
    store_version *v;
    uint64_t expected_latest, expected_max;
    const store_dep *deps;
    size_t ndeps;
    uint64_t claim;
};

static int do_put(sqlite3 *db, void *arg, strata_error *err)
{
    struct put_ctx *c = arg;
    store_version *v = c->v;
    store_head head;
    if (sq_get_head_on(db, v->type, v->id, &head, err) != 0)
        return -1;
    uint64_t cur_latest = head.latest_vkey, cur_max = head.max_vkey;
    if (cur_latest != c->expected_latest || cur_max != c->expected_max)
        return serr_set(err, SERR_CONFLICT, "the latest version of %s/%s moved", v->type, v->id);
    if (v->vkey <= cur_max)
        return serr_set(err, SERR_CONFLICT, "version key not above the highest issued");
    if (cur_latest == 0) {
        /* a resource starting (again): numbering goes on above cur_max, the
         * tombstones of the old versions stay (those numbers stay gone),
         * and the resource's own tombstone no longer applies */
        sqlite3_stmt *del = NULL;
        if (prepare(db,
                    "DELETE FROM tombstones WHERE resource_type = ?1 AND resource_id = ?2"
                    " AND vkey = 0",
                    &del, err) != 0)
            return -1;
        sqlite3_bind_text(del, 1, v->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(del, 2, v->id, -1, SQLITE_STATIC);
        if (step_done(db, del, "clear tombstones", err) != 0)
            return -1;
    }
    sqlite3_stmt *st = NULL;
    if (c->claim != 0) {
        /* the save's claim on its blob ends with the version that uses it */
        if (prepare(db, "DELETE FROM blob_claims WHERE key = ?1 AND claim = ?2", &st, err) != 0)
            return -1;
        sqlite3_bind_text(st, 1, v->blob_key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)c->claim);
        if (step_done(db, st, "consume blob claim", err) != 0)
            return -1;
        if (sqlite3_changes(db) == 0)
            return serr_set(err, SERR_RETRY, "the claim on blob %.12s lapsed", v->blob_key);
    }
    char version[SEMVER_STR_MAX];
    semver_format(v->vkey, version);
    char *doc = json_dumps(v->doc ? v->doc : json_object(), JSON_COMPACT);
    if (doc == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory serialising a record");
    if (prepare(db,
                "INSERT INTO versions(resource_type, resource_id, vkey, version, namespace,"
                " created_at, data_hash, blob_key, is_latest, supersedes, superseded_by, doc,"
                " content) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, NULL, NULL, ?10, ?11)",
                &st, err) != 0) {
        free(doc);
        return -1;
    }
    sqlite3_bind_text(st, 1, v->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, v->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)v->vkey);
    sqlite3_bind_text(st, 4, version, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, v->ns, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, v->created_at_ms);
    sqlite3_bind_text(st, 7, v->data_hash, -1, SQLITE_STATIC);
    if (v->blob_key[0])
        sqlite3_bind_text(st, 8, v->blob_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, doc, -1, free);
    if (v->content)
        sqlite3_bind_blob64(st, 11, v->content, v->content_len, SQLITE_STATIC);
    if (step_done(db, st, "insert version", err) != 0)
        return -1;
    for (size_t i = 0; i < c->ndeps; i++) {
        if (prepare(db,
                    "INSERT OR REPLACE INTO dependencies(from_type, from_id, from_vkey, to_type,"
                    " to_id, to_vkey) VALUES(?1, ?2, ?3, ?4, ?5, ?6)",
                    &st, err) != 0)
            return -1;
        sqlite3_bind_text(st, 1, v->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, v->id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)v->vkey);
        sqlite3_bind_text(st, 4, c->deps[i].type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, c->deps[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)c->deps[i].vkey);
        if (step_done(db, st, "insert dependency", err) != 0)
            return -1;
    }
    if (prepare(
            db,
            "INSERT INTO resources(resource_type, resource_id, namespace, latest_vkey,"
            " max_vkey, stale, stale_reason, updated_at) VALUES(?1, ?2, ?3, ?4, ?4, 0, NULL, ?5)"
            " ON CONFLICT(resource_type, resource_id) DO UPDATE SET"
            " namespace = excluded.namespace, latest_vkey = excluded.latest_vkey,"
            " max_vkey = excluded.max_vkey, stale = 0, stale_reason = NULL,"
            " updated_at = excluded.updated_at",
            &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, v->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, v->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, v->ns, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, (sqlite3_int64)v->vkey);
    sqlite3_bind_int64(st, 5, clock_wall_ms());
    if (step_done(db, st, "move head", err) != 0)
        return -1;
    v->is_latest = true;
    v->supersedes = cur_latest;
    v->superseded_by = 0;
    return 0;
}

static int sq_put_version(store *base, store_txn *txn, store_version *v, uint64_t expected_latest,
                          uint64_t expected_max, const store_dep *deps, size_t ndeps,
                          uint64_t claim, strata_error *err)
{
    if (claim == 0 && v->blob_key[0])
        return serr_set(err, SERR_INTERNAL, "a version in a blob needs the save's claim on it");
    struct put_ctx c = {v, expected_latest, expected_max, deps, ndeps, claim};
    return in_write((sqlite_store *)base, txn, do_put, &c, err);
}

static int sq_list_versions(store *base, const char *type, const char *id, const store_list_opts *o,
                            store_page *out, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    memset(out, 0, sizeof *out);
    uint64_t after = UINT64_MAX >> 1;
    if (o->cursor && store_cursor_decode(o->cursor, 'v', &after) != 0)
        return serr_set(err, SERR_INVALID, "cursor is not valid for this list");
    store_head head;
    if (sq_get_head(base, NULL, type, id, &head, err) != 0)
        return -1;
    bool exists = head.exists && head.latest_vkey != 0;
    if (!exists)
        return serr_set(err, SERR_NOT_FOUND, "no resource %s/%s", type, id);
    sqlite3 *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT " VERSION_COLS VERSION_FROM
                     " WHERE v.resource_type = ?1 AND v.resource_id = ?2 AND v.vkey < ?3"
                     " ORDER BY v.vkey DESC LIMIT ?4",
                     &st, err);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)after);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)o->limit + 1);
        rc = collect_page(db, st, o->limit, out, err);
    }
    sqlite3_finalize(st);
    reader_put(s, db);
    return finish_page(rc, out, o->limit, 'v', err);
}

static int sq_list_resources(store *base, const char *type, const store_list_opts *o,
                             store_page *out, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    memset(out, 0, sizeof *out);
    char after[STORE_ID_MAX + 1] = "";
    if (o->cursor && store_cursor_decode_str(o->cursor, 'r', after, sizeof after) != 0)
        return serr_set(err, SERR_INVALID, "cursor is not valid for this list");
    sqlite3 *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT " VERSION_COLS VERSION_FROM
                     " WHERE v.vkey = r.latest_vkey AND r.resource_type = ?1"
                     " AND r.resource_id > ?2"
                     " AND (?3 IS NULL OR r.namespace = ?3)"
                     " AND (?4 < 0 OR r.stale = ?4)"
                     " AND (?5 IS NULL OR EXISTS(SELECT 1 FROM json_each(v.doc, '$.tags')"
                     "      WHERE json_each.value = ?5))"
                     " ORDER BY r.resource_id LIMIT ?6",
                     &st, err);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, after, -1, SQLITE_STATIC);
        if (o->ns)
            sqlite3_bind_text(st, 3, o->ns, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, o->stale);
        if (o->tag)
            sqlite3_bind_text(st, 5, o->tag, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, (sqlite3_int64)o->limit + 1);
        rc = collect_page(db, st, o->limit, out, err);
    }
    sqlite3_finalize(st);
    reader_put(s, db);
    return finish_page(rc, out, o->limit, 'r', err);
}

static int sq_find_by_hash(store *base, const char *data_hash, store_version *out,
                           strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    memset(out, 0, sizeof *out);
    sqlite3 *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int result = -1;
    if (prepare(db, "SELECT " VERSION_COLS VERSION_FROM " WHERE v.data_hash = ?1 LIMIT 1", &st,
                err) == 0) {
        sqlite3_bind_text(st, 1, data_hash, -1, SQLITE_STATIC);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
            result = read_version_row(st, out, err);
        else if (rc == SQLITE_DONE)
            serr_set(err, SERR_NOT_FOUND, "no version has that content");
        else
            db_error(db, err, "find by hash");
        if (result != 0)
            store_version_clear(out);
    }
    sqlite3_finalize(st);
    reader_put(s, db);
    return result;
}

struct del_ctx {
    const char *type, *id;
    uint64_t vkey;
    size_t count;
    const char *removed_by;
};

/* Records who removed what and when (vkey 0: the resource itself). */
static int put_tombstone(sqlite3 *db, const char *type, const char *id, uint64_t vkey,
                         const char *removed_by, strata_error *err)
{
    sqlite3_stmt *st = NULL;
    if (prepare(db,
                "INSERT OR REPLACE INTO tombstones(resource_type, resource_id, vkey, removed_at,"
                " removed_by) VALUES(?1, ?2, ?3, ?4, ?5)",
                &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)vkey);
    sqlite3_bind_int64(st, 4, clock_wall_ms());
    sqlite3_bind_text(st, 5, removed_by ? removed_by : "request", -1, SQLITE_STATIC);
    return step_done(db, st, "tombstone", err);
}

static int bind_tiv(sqlite3_stmt *st, const char *type, const char *id, uint64_t vkey)
{
    sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    return sqlite3_bind_int64(st, 3, (sqlite3_int64)vkey);
}

/* The row goes, with its dependencies and counts, and a tombstone stays.
 * Rows are never updated: the neighbours' chain fields are derived, so
 * only the head moves, to the newest remaining version, when the latest
 * goes. */
static int do_delete_version(sqlite3 *db, void *arg, strata_error *err)
{
    struct del_ctx *c = arg;
    store_head head;
    if (sq_get_head_on(db, c->type, c->id, &head, err) != 0)
        return -1;
    static const char *const sql[] = {
        "DELETE FROM versions WHERE resource_type = ?1 AND resource_id = ?2 AND vkey = ?3",
        "DELETE FROM dependencies WHERE from_type = ?1 AND from_id = ?2 AND from_vkey = ?3",
        "DELETE FROM access WHERE resource_type = ?1 AND resource_id = ?2 AND vkey = ?3",
    };
    for (int i = 0; i < 3; i++) {
        sqlite3_stmt *st = NULL;
        if (prepare(db, sql[i], &st, err) != 0)
            return -1;
        bind_tiv(st, c->type, c->id, c->vkey);
        if (step_done(db, st, "delete version", err) != 0)
            return -1;
        if (i == 0 && (sqlite3_changes(db) == 0 || !head.exists || c->vkey > head.max_vkey))
            return serr_set(err, SERR_NOT_FOUND, "no such version");
    }
    if (put_tombstone(db, c->type, c->id, c->vkey, c->removed_by, err) != 0)
        return -1;
    if (c->vkey != head.latest_vkey)
        return 0;
    sqlite3_stmt *st = NULL;
    if (prepare(
            db,
            "UPDATE resources SET updated_at = ?3, latest_vkey = (SELECT max(vkey) FROM versions"
            "  WHERE resource_type = ?1 AND resource_id = ?2 AND vkey <= max_vkey)"
            " WHERE resource_type = ?1 AND resource_id = ?2",
            &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, c->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, clock_wall_ms());
    return step_done(db, st, "move head", err);
}

static int sq_delete_version(store *base, store_txn *txn, const char *type, const char *id,
                             uint64_t vkey, const char *removed_by, strata_error *err)
{
    struct del_ctx c = {type, id, vkey, 0, removed_by};
    return in_write((sqlite_store *)base, txn, do_delete_version, &c, err);
}

static int has_tombstone(sqlite3 *db, const char *type, const char *id, uint64_t vkey, bool *found,
                         strata_error *err)
{
    sqlite3_stmt *st = NULL;
    *found = false;
    if (prepare(db,
                "SELECT 1 FROM tombstones WHERE resource_type = ?1 AND resource_id = ?2"
                " AND vkey = ?3",
                &st, err) != 0)
        return -1;
    bind_tiv(st, type, id, vkey);
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(db, err, "tombstone");
}

/* The versions go (each leaving a tombstone), the head stays with no
 * latest and its max_vkey, so a new life numbers on from there. */
static int do_delete_resource(sqlite3 *db, void *arg, strata_error *err)
{
    struct del_ctx *c = arg;
    store_head head;
    if (sq_get_head_on(db, c->type, c->id, &head, err) != 0)
        return -1;
    bool deleted = false;
    if (head.exists && head.latest_vkey == 0 &&
        has_tombstone(db, c->type, c->id, 0, &deleted, err) != 0)
        return -1;
    if (!head.exists || deleted)
        return serr_set(err, SERR_NOT_FOUND, "no resource %s/%s", c->type, c->id);
    static const char *const sql[] = {
        "INSERT OR REPLACE INTO tombstones(resource_type, resource_id, vkey, removed_at,"
        " removed_by) SELECT resource_type, resource_id, vkey, ?3, ?4 FROM versions"
        " WHERE resource_type = ?1 AND resource_id = ?2",
        "DELETE FROM versions WHERE resource_type = ?1 AND resource_id = ?2",
        "UPDATE resources SET latest_vkey = NULL, stale = 0, stale_reason = NULL, updated_at = ?3"
        " WHERE resource_type = ?1 AND resource_id = ?2",
        "DELETE FROM dependencies WHERE from_type = ?1 AND from_id = ?2",
        "DELETE FROM access WHERE resource_type = ?1 AND resource_id = ?2",
    };
    int64_t now = clock_wall_ms();
    for (int i = 0; i < 5; i++) {
        sqlite3_stmt *st = NULL;
        if (prepare(db, sql[i], &st, err) != 0)
            return -1;
        sqlite3_bind_text(st, 1, c->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, c->id, -1, SQLITE_STATIC);
        if (i == 0 || i == 2)
            sqlite3_bind_int64(st, 3, now);
        if (i == 0)
            sqlite3_bind_text(st, 4, c->removed_by ? c->removed_by : "request", -1, SQLITE_STATIC);
        if (step_done(db, st, "delete resource", err) != 0)
            return -1;
        if (i == 1)
            c->count = (size_t)sqlite3_changes(db);
    }
    return put_tombstone(db, c->type, c->id, 0, c->removed_by, err);
}

static int sq_delete_resource(store *base, store_txn *txn, const char *type, const char *id,
                              const char *removed_by, size_t *count, strata_error *err)
{
    struct del_ctx c = {type, id, 0, 0, removed_by};
    int rc = in_write((sqlite_store *)base, txn, do_delete_resource, &c, err);
    if (rc == 0 && count)
        *count = c.count;
    return rc;
}

static int sq_dependents(store *base, const char *type, const char *id, const store_list_opts *o,
                         store_page *out, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    memset(out, 0, sizeof *out);
    /* the cursor is the last (type, id) returned, as "type/id" (ids hold no '/') */
    char after[STORE_TYPE_MAX + STORE_ID_MAX + 2] = "";
    if (o->cursor && (store_cursor_decode_str(o->cursor, 'd', after, sizeof after) != 0 ||
                      strchr(after, '/') == NULL))
        return serr_set(err, SERR_INVALID, "cursor is not valid for this list");
    char *after_id = strchr(after, '/');
    if (after_id != NULL)
        *after_id++ = '\0';
    sqlite3 *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT " VERSION_COLS VERSION_FROM
                     " JOIN dependencies d ON d.from_type = r.resource_type"
                     " AND d.from_id = r.resource_id AND d.from_vkey = r.latest_vkey"
                     " WHERE v.vkey = r.latest_vkey AND d.to_type = ?1 AND d.to_id = ?2"
                     " AND (r.resource_type, r.resource_id) > (?4, ?5)"
                     " ORDER BY r.resource_type, r.resource_id LIMIT ?3",
                     &st, err);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)o->limit + 1);
        sqlite3_bind_text(st, 4, after, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 5, after_id ? after_id : "", -1, SQLITE_STATIC);
        rc = collect_page(db, st, o->limit, out, err);
    }
    sqlite3_finalize(st);
    reader_put(s, db);
    return finish_page(rc, out, o->limit, 'd', err);
}

struct access_ctx {
    store_access *items;
    size_t n;
};

/* One upsert per version, all in one transaction; a version deleted
 * meanwhile gets no row (its total reads 0). */
static int do_add_access(sqlite3 *db, void *arg, strata_error *err)
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
    sqlite3_finalize(st);
    return rc;
}

static int sq_add_access(store *base, store_access *items, size_t n, strata_error *err)
{
    struct access_ctx c = {items, n};
    return n == 0 ? 0 : in_write((sqlite_store *)base, NULL, do_add_access, &c, err);
}

/* ---- tombstones, pins and blob references ------------------------------------ */

static int sq_get_tombstone(store *base, const char *type, const char *id, uint64_t vkey,
                            store_tombstone *out, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3 *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT removed_at, removed_by FROM tombstones"
                     " WHERE resource_type = ?1 AND resource_id = ?2 AND vkey = ?3",
                     &st, err);
    if (rc == 0) {
        bind_tiv(st, type, id, vkey);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            out->removed_at_ms = sqlite3_column_int64(st, 0);
            copy_text(out->removed_by, sizeof out->removed_by, st, 1);
        } else {
            rc = r == SQLITE_DONE ? serr_set(err, SERR_NOT_FOUND, "no tombstone")
                                  : db_error(db, err, "tombstone");
        }
    }
    sqlite3_finalize(st);
    reader_put(s, db);
    return rc;
}

static int sq_version_pinned(store *base, const char *type, const char *id, uint64_t vkey,
                             bool *pinned, char *by, size_t by_cap, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *pinned = false;
    sqlite3 *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT d.from_type, d.from_id FROM dependencies d JOIN resources r"
                     " ON r.resource_type = d.from_type AND r.resource_id = d.from_id"
                     " AND r.latest_vkey = d.from_vkey"
                     " WHERE d.to_type = ?1 AND d.to_id = ?2 AND d.to_vkey = ?3 LIMIT 1",
                     &st, err);
    if (rc == 0) {
        bind_tiv(st, type, id, vkey);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            *pinned = true;
            if (by)
                snprintf(by, by_cap, "%s/%s", sqlite3_column_text(st, 0),
                         sqlite3_column_text(st, 1));
        } else if (r != SQLITE_DONE) {
            rc = db_error(db, err, "pins");
        }
    }
    sqlite3_finalize(st);
    reader_put(s, db);
    return rc;
}

static int sq_blob_refs(store *base, int (*fn)(void *ctx, const char *key), void *ctx,
                        strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3 *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc =
        prepare(db, "SELECT DISTINCT blob_key FROM versions WHERE blob_key IS NOT NULL", &st, err);
    int r = SQLITE_DONE;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ctx, (const char *)sqlite3_column_text(st, 0)) != 0)
            rc = serr_set(err, SERR_NOMEM, "out of memory collecting blob references");
    if (rc == 0 && r != SQLITE_DONE)
        rc = db_error(db, err, "blob references");
    sqlite3_finalize(st);
    reader_put(s, db);
    return rc;
}

static int sq_blob_referenced(store *base, const char *key, bool *referenced, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *referenced = false;
    sqlite3 *db = reader_get(s, err);
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
    sqlite3_finalize(st);
    reader_put(s, db);
    return rc;
}

/* ---- staleness ------------------------------------------------------------ */

struct stale_ctx {
    const char *type, *id;
    bool stale;
    const json_t *reason;
};

static int do_set_stale(sqlite3 *db, void *arg, strata_error *err)
{
    struct stale_ctx *c = arg;
    sqlite3_stmt *st = NULL;
    if (prepare(db,
                "UPDATE resources SET stale = ?3, stale_reason = ?4"
                " WHERE resource_type = ?1 AND resource_id = ?2 AND latest_vkey > 0",
                &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, c->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->id, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, c->stale);
    char *reason = c->stale && c->reason ? json_dumps(c->reason, JSON_COMPACT) : NULL;
    if (reason)
        sqlite3_bind_text(st, 4, reason, -1, free);
    if (step_done(db, st, "mark stale", err) != 0)
        return -1;
    if (sqlite3_changes(db) == 0)
        return serr_set(err, SERR_NOT_FOUND, "no resource %s/%s", c->type, c->id);
    return 0;
}

static int sq_set_stale(store *base, store_txn *txn, const char *type, const char *id, bool stale,
                        const json_t *reason, strata_error *err)
{
    struct stale_ctx c = {type, id, stale, reason};
    return in_write((sqlite_store *)base, txn, do_set_stale, &c, err);
}

/* ---- corpus trees ------------------------------------------------------------ */

static int sq_tree_parent(store *base, store_txn *txn, const char *child, char *parent, size_t cap,
                          bool *has_parent, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3 *db = read_conn(s, txn, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, "SELECT parent FROM tree_edges WHERE child = ?1", &st, err);
    *has_parent = false;
    if (rc == 0) {
        sqlite3_bind_text(st, 1, child, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            *has_parent = true;
            copy_text(parent, cap, st, 0);
        } else if (r != SQLITE_DONE) {
            rc = db_error(db, err, "tree parent");
        }
    }
    sqlite3_finalize(st);
    read_done(s, txn, db);
    return rc;
}

static int sq_tree_children(store *base, store_txn *txn, const char *parent, tree_child **out,
                            size_t *n, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *out = NULL;
    *n = 0;
    sqlite3 *db = read_conn(s, txn, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(
        db, "SELECT child, child_vkey FROM tree_edges WHERE parent = ?1 ORDER BY child", &st, err);
    size_t cap = 0;
    if (rc == 0)
        sqlite3_bind_text(st, 1, parent, -1, SQLITE_STATIC);
    int r = SQLITE_DONE;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            tree_child *nc = realloc(*out, cap * sizeof **out);
            if (nc == NULL) {
                rc = serr_set(err, SERR_NOMEM, "out of memory");
                break;
            }
            *out = nc;
        }
        copy_text((*out)[*n].id, sizeof(*out)[*n].id, st, 0);
        (*out)[*n].vkey = (uint64_t)sqlite3_column_int64(st, 1);
        (*n)++;
    }
    /* a failing step is an error, never a short list */
    if (rc == 0 && r != SQLITE_DONE)
        rc = db_error(db, err, "tree children");
    sqlite3_finalize(st);
    read_done(s, txn, db);
    if (rc != 0) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

struct link_ctx {
    const char *parent, *child;
    uint64_t vkey;
    bool unlink;
};

static int do_link(sqlite3 *db, void *arg, strata_error *err)
{
    struct link_ctx *c = arg;
    sqlite3_stmt *st = NULL;
    const char *sql = c->unlink ? "DELETE FROM tree_edges WHERE child = ?2 AND parent = ?1"
                                : "INSERT INTO tree_edges(parent, child, child_vkey)"
                                  " VALUES(?1, ?2, ?3) ON CONFLICT(child) DO UPDATE SET"
                                  " parent = excluded.parent, child_vkey = excluded.child_vkey";
    if (prepare(db, sql, &st, err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, c->parent, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, c->child, -1, SQLITE_STATIC);
    if (!c->unlink)
        sqlite3_bind_int64(st, 3, (sqlite3_int64)c->vkey);
    if (step_done(db, st, "tree link", err) != 0)
        return -1;
    if (c->unlink && sqlite3_changes(db) == 0)
        return serr_set(err, SERR_NOT_FOUND, "%s is not a child of %s", c->child, c->parent);
    return 0;
}

static int sq_tree_link(store *base, store_txn *txn, const char *parent, const char *child,
                        uint64_t child_vkey, strata_error *err)
{
    struct link_ctx c = {parent, child, child_vkey, false};
    return in_write((sqlite_store *)base, txn, do_link, &c, err);
}

static int sq_tree_unlink(store *base, store_txn *txn, const char *parent, const char *child,
                          strata_error *err)
{
    struct link_ctx c = {parent, child, 0, true};
    return in_write((sqlite_store *)base, txn, do_link, &c, err);
}

struct vocab_ctx {
    const char *master;
    vocab_delta *d;
    size_t n;
    int64_t size_delta;
};

/* One upsert per word (RETURNING the new child count); a word whose count
 * falls to zero leaves the aggregate. Cost: the size of the delta. */
static int do_vocab_apply(sqlite3 *db, void *arg, strata_error *err)
{
    struct vocab_ctx *c = arg;
    sqlite3_stmt *up = NULL, *del = NULL, *size = NULL;
    int rc = prepare(db,
                     "INSERT INTO vocab(master, word, children, frequency) VALUES(?1, ?2, ?3, ?4)"
                     " ON CONFLICT(master, word) DO UPDATE SET"
                     " children = children + excluded.children,"
                     " frequency = frequency + excluded.frequency RETURNING children",
                     &up, err);
    if (rc == 0)
        rc = prepare(db, "DELETE FROM vocab WHERE master = ?1 AND word = ?2", &del, err);
    if (rc == 0) {
        sqlite3_bind_text(up, 1, c->master, -1, SQLITE_STATIC);
        sqlite3_bind_text(del, 1, c->master, -1, SQLITE_STATIC);
    }
    for (size_t i = 0; rc == 0 && i < c->n; i++) {
        vocab_delta *d = &c->d[i];
        d->presence = 0;
        if (d->count_delta == 0 && d->freq_delta == 0)
            continue;
        sqlite3_bind_text(up, 2, d->word, -1, SQLITE_STATIC);
        sqlite3_bind_int(up, 3, d->count_delta);
        sqlite3_bind_int64(up, 4, d->freq_delta);
        if (sqlite3_step(up) != SQLITE_ROW) {
            rc = db_error(db, err, "vocabulary");
            break;
        }
        int64_t now = sqlite3_column_int64(up, 0);
        sqlite3_reset(up);
        int64_t before = now - d->count_delta;
        if (before <= 0 && now > 0)
            d->presence = 1;
        if (now <= 0) {
            if (before > 0)
                d->presence = -1;
            sqlite3_bind_text(del, 2, d->word, -1, SQLITE_STATIC);
            if (sqlite3_step(del) != SQLITE_DONE)
                rc = db_error(db, err, "vocabulary");
            sqlite3_reset(del);
        }
        c->size_delta += d->presence;
    }
    if (rc == 0)
        rc = prepare(db,
                     "INSERT INTO vocab_sizes(master, size) VALUES(?1, ?2) ON CONFLICT(master)"
                     " DO UPDATE SET size = size + excluded.size",
                     &size, err);
    if (rc == 0) {
        sqlite3_bind_text(size, 1, c->master, -1, SQLITE_STATIC);
        sqlite3_bind_int64(size, 2, c->size_delta);
        rc = step_done(db, size, "vocabulary size", err);
        size = NULL;
    }
    sqlite3_finalize(up);
    sqlite3_finalize(del);
    sqlite3_finalize(size);
    return rc;
}

static int sq_vocab_apply(store *base, store_txn *txn, const char *master, vocab_delta *d, size_t n,
                          int64_t *size_delta, strata_error *err)
{
    struct vocab_ctx c = {master, d, n, 0};
    int rc = in_write((sqlite_store *)base, txn, do_vocab_apply, &c, err);
    if (rc == 0 && size_delta)
        *size_delta = c.size_delta;
    return rc;
}

static int do_vocab_clear(sqlite3 *db, void *arg, strata_error *err)
{
    const char *master = arg;
    static const char *const sql[] = {"DELETE FROM vocab WHERE master = ?1",
                                      "DELETE FROM vocab_sizes WHERE master = ?1"};
    for (int i = 0; i < 2; i++) {
        sqlite3_stmt *st = NULL;
        if (prepare(db, sql[i], &st, err) != 0)
            return -1;
        sqlite3_bind_text(st, 1, master, -1, SQLITE_STATIC);
        if (step_done(db, st, "clear vocabulary", err) != 0)
            return -1;
    }
    return 0;
}

static int sq_vocab_clear(store *base, store_txn *txn, const char *master, strata_error *err)
{
    return in_write((sqlite_store *)base, txn, do_vocab_clear, (void *)(uintptr_t)master, err);
}

static int sq_vocab_page(store *base, store_txn *txn, const char *master, const char *after,
                         size_t limit, vocab_item **out, size_t *n, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *n = 0;
    *out = calloc(limit ? limit : 1, sizeof **out);
    if (*out == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    sqlite3 *db = read_conn(s, txn, err);
    if (db == NULL) {
        free(*out);
        *out = NULL;
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int rc = prepare(db,
                     "SELECT word, children, frequency FROM vocab WHERE master = ?1 AND word > ?2"
                     " ORDER BY word LIMIT ?3",
                     &st, err);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, master, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, after ? after : "", -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)limit);
    }
    int r = SQLITE_DONE;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW) {
        vocab_item *it = &(*out)[*n];
        it->word = strdup((const char *)sqlite3_column_text(st, 0));
        if (it->word == NULL) {
            rc = serr_set(err, SERR_NOMEM, "out of memory");
            break;
        }
        it->children = sqlite3_column_int64(st, 1);
        it->frequency = sqlite3_column_int64(st, 2);
        (*n)++;
    }
    /* a failing step is an error, never the end of the vocabulary */
    if (rc == 0 && r != SQLITE_DONE)
        rc = db_error(db, err, "vocabulary page");
    sqlite3_finalize(st);
    read_done(s, txn, db);
    if (rc != 0) {
        vocab_items_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

static int sq_vocab_size(store *base, store_txn *txn, const char *master, uint64_t *n,
                         strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *n = 0;
    sqlite3 *db = read_conn(s, txn, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, "SELECT size FROM vocab_sizes WHERE master = ?1", &st, err);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, master, -1, SQLITE_STATIC);
        int r = sqlite3_step(st);
        if (r == SQLITE_ROW)
            *n = (uint64_t)sqlite3_column_int64(st, 0);
        else if (r != SQLITE_DONE)
            rc = db_error(db, err, "vocabulary size");
    }
    sqlite3_finalize(st);
    read_done(s, txn, db);
    return rc;
}

/* ---- transactions ------------------------------------------------------------ */

/* Runs fn in BEGIN IMMEDIATE ... COMMIT on the writer connection, again
 * (after a short, growing pause) when it or the commit fails with
 * SERR_RETRY: a claim refused while a blob is being collected, a lapsed
 * claim, or the file lock held by another process past busy_timeout. */
static int sq_transact(store *base, store_txn_fn fn, void *ctx, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    store_txn txn = {s};
    for (int attempt = 1;; attempt++) {
        pthread_mutex_lock(&s->write_mu);
        int rc = exec(s->writer, "BEGIN IMMEDIATE", err);
        if (rc == 0) {
            tls_in_txn = s;
            rc = fn(&txn, ctx, err);
            tls_in_txn = NULL;
            if (rc == 0 && exec(s->writer, "COMMIT", err) != 0)
                rc = -1;
            if (rc != 0)
                sqlite3_exec(s->writer, "ROLLBACK", NULL, NULL, NULL);
        }
        pthread_mutex_unlock(&s->write_mu);
        if (rc == 0 || err->kind != SERR_RETRY)
            return rc;
        if (attempt >= STORE_TRANSACT_ATTEMPTS)
            return serr_set(err, SERR_RETRY, "store: writers kept meeting (%d attempts)", attempt);
        unsigned r = 0;
        sqlite3_randomness(sizeof r, &r);
        struct timespec ts = {0, (long)((1000000u << (attempt < 7 ? attempt : 7)) +
                                        r % 1000000u)}; /* 2 ms .. 129 ms, jittered */
        nanosleep(&ts, NULL);
    }
}

static int sq_ping(store *base, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3 *db = reader_get(s, err);
    if (db == NULL)
        return serr_set(err, SERR_UNAVAILABLE, "store: no connection");
    int rc = exec(db, "SELECT 1 FROM resources LIMIT 1", err);
    reader_put(s, db);
    if (rc != 0)
        err->kind = SERR_UNAVAILABLE;
    return rc;
}

static int sq_tree_edges(store *base,
                         int (*fn)(void *ctx, const char *parent, const char *child, uint64_t vkey),
                         void *ctx, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3 *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, "SELECT parent, child, child_vkey FROM tree_edges", &st, err);
    int r = SQLITE_DONE;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ctx, (const char *)sqlite3_column_text(st, 0),
               (const char *)sqlite3_column_text(st, 1),
               (uint64_t)sqlite3_column_int64(st, 2)) != 0)
            break;
    if (rc == 0 && r != SQLITE_DONE && r != SQLITE_ROW)
        rc = db_error(db, err, "tree edges");
    sqlite3_finalize(st);
    reader_put(s, db);
    return rc;
}

/* ---- blob claims and collection --------------------------------------------- */

/* Runs one statement binding (text ?1, int ?2, int ?3); *changes gets the
 * rows it changed, *exists whether it returned a row. */
static int run1(sqlite3 *db, const char *sql, const char *t1, int64_t i2, int64_t i3, bool *exists,
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
        *changes = sqlite3_changes(db);
    sqlite3_finalize(st);
    return rc;
}

struct claim_ctx {
    const char *key;
    uint64_t claim;
    int64_t before;
    uint64_t token;
    bool doomed;
};

static int do_claim(sqlite3 *db, void *arg, strata_error *err)
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

static int sq_blob_claim(store *base, store_txn *txn, const char *key, uint64_t *claim,
                         strata_error *err)
{
    struct claim_ctx c = {.key = key};
    int rc = in_write((sqlite_store *)base, txn, do_claim, &c, err);
    *claim = rc == 0 ? c.claim : 0;
    return rc;
}

static int do_release(sqlite3 *db, void *arg, strata_error *err)
{
    struct claim_ctx *c = arg;
    return run1(db, "DELETE FROM blob_claims WHERE key = ?1 AND claim = ?2", c->key,
                (int64_t)c->claim, 0, NULL, NULL, err);
}

static int sq_blob_release(store *base, const char *key, uint64_t claim, strata_error *err)
{
    struct claim_ctx c = {.key = key, .claim = claim};
    return in_write((sqlite_store *)base, NULL, do_release, &c, err);
}

static int do_collect_begin(sqlite3 *db, void *arg, strata_error *err)
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

static int sq_blob_collect_begin(store *base, const char *key, uint64_t token,
                                 int64_t claims_before_ms, bool *doomed, strata_error *err)
{
    struct claim_ctx c = {.key = key, .token = token, .before = claims_before_ms};
    int rc = in_write((sqlite_store *)base, NULL, do_collect_begin, &c, err);
    *doomed = rc == 0 && c.doomed;
    return rc;
}

static int do_collect_end(sqlite3 *db, void *arg, strata_error *err)
{
    return run1(db, "DELETE FROM blob_doomed WHERE key = ?1", arg, 0, 0, NULL, NULL, err);
}

static int sq_blob_collect_end(store *base, const char *key, strata_error *err)
{
    return in_write((sqlite_store *)base, NULL, do_collect_end, (void *)(uintptr_t)key, err);
}

static int sq_blob_collecting(store *base, int (*fn)(void *ctx, const char *key, uint64_t token),
                              void *ctx, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sqlite3 *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, "SELECT key, token FROM blob_doomed", &st, err);
    int r = SQLITE_DONE;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW)
        if (fn(ctx, (const char *)sqlite3_column_text(st, 0),
               (uint64_t)sqlite3_column_int64(st, 1)) != 0)
            break;
    if (rc == 0 && r != SQLITE_DONE && r != SQLITE_ROW)
        rc = db_error(db, err, "doomed blobs");
    sqlite3_finalize(st);
    reader_put(s, db);
    return rc;
}

/* ---- leases ------------------------------------------------------------------- */

struct lease_ctx {
    const char *name, *holder;
    uint64_t ttl_ms;
    bool release, held;
    uint64_t token;
};

static int do_lease(sqlite3 *db, void *arg, strata_error *err)
{
    struct lease_ctx *c = arg;
    int64_t now = clock_wall_ms();
    sqlite3_stmt *st = NULL;
    if (c->release) {
        if (prepare(db, "DELETE FROM leases WHERE name = ?1 AND holder = ?2", &st, err) != 0)
            return -1;
        sqlite3_bind_text(st, 1, c->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, c->holder, -1, SQLITE_STATIC);
        return step_done(db, st, "release lease", err);
    }
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
    int r = sqlite3_step(st);
    if (r == SQLITE_ROW) {
        c->held = strcmp((const char *)sqlite3_column_text(st, 0), c->holder) == 0;
        c->token = (uint64_t)sqlite3_column_int64(st, 1);
    }
    int rc = r == SQLITE_ROW ? 0 : db_error(db, err, "read lease");
    sqlite3_finalize(st);
    return rc;
}

static int sq_lease_acquire(store *base, const char *name, const char *holder, uint64_t ttl_ms,
                            bool *held, uint64_t *token, strata_error *err)
{
    struct lease_ctx c = {.name = name, .holder = holder, .ttl_ms = ttl_ms};
    int rc = in_write((sqlite_store *)base, NULL, do_lease, &c, err);
    *held = rc == 0 && c.held;
    *token = rc == 0 ? c.token : 0;
    return rc;
}

static int sq_lease_release(store *base, const char *name, const char *holder, strata_error *err)
{
    struct lease_ctx c = {.name = name, .holder = holder, .release = true};
    return in_write((sqlite_store *)base, NULL, do_lease, &c, err);
}

static void sq_close(store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    for (int i = 0; i < s->nidle; i++)
        sqlite3_close(s->idle[i]);
    sqlite3_close(s->writer);
    pthread_mutex_destroy(&s->write_mu);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->pool_cv);
    free(s);
}

/* Creates or upgrades the layout to SCHEMA_VERSION in one transaction. */
static int migrate(sqlite3 *db, strata_error *err)
{
    if (exec(db, "BEGIN IMMEDIATE", err) != 0)
        return -1;
    int rc = exec(db, SCHEMA, err);
    int version = 0;
    sqlite3_stmt *st = NULL;
    if (rc == 0 && (rc = prepare(db, "PRAGMA user_version", &st, err)) == 0) {
        if (sqlite3_step(st) == SQLITE_ROW)
            version = sqlite3_column_int(st, 0);
        else
            rc = db_error(db, err, "schema version");
        sqlite3_finalize(st);
    }
    if (rc == 0 && (version < 0 || version > SCHEMA_VERSION))
        rc = serr_set(err, SERR_IO, "store: schema version %d is not one this build knows (0-%d)",
                      version, SCHEMA_VERSION);
    for (int i = version; rc == 0 && i < SCHEMA_VERSION; i++)
        rc = exec(db, MIGRATIONS[i], err);
    if (rc == 0 && version != SCHEMA_VERSION) {
        char sql[48];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
        rc = exec(db, sql, err);
    }
    if (rc == 0)
        rc = exec(db, "COMMIT", err);
    if (rc != 0)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static const store_ops SQLITE_OPS = {
    .name = "sqlite",
    .caps = STORE_CAP_TRANSACTIONS | STORE_CAP_BLOB_CLAIMS | STORE_CAP_LEASES,
    .ping = sq_ping,
    .transact = sq_transact,
    .get_head = sq_get_head,
    .get_version = sq_get_version,
    .put_version = sq_put_version,
    .list_versions = sq_list_versions,
    .list_resources = sq_list_resources,
    .find_by_hash = sq_find_by_hash,
    .delete_version = sq_delete_version,
    .delete_resource = sq_delete_resource,
    .dependents = sq_dependents,
    .add_access = sq_add_access,
    .set_stale = sq_set_stale,
    .get_tombstone = sq_get_tombstone,
    .version_pinned = sq_version_pinned,
    .blob_refs = sq_blob_refs,
    .blob_referenced = sq_blob_referenced,
    .tree_parent = sq_tree_parent,
    .tree_children = sq_tree_children,
    .tree_link = sq_tree_link,
    .tree_unlink = sq_tree_unlink,
    .vocab_apply = sq_vocab_apply,
    .vocab_clear = sq_vocab_clear,
    .vocab_page = sq_vocab_page,
    .vocab_size = sq_vocab_size,
    .tree_edges = sq_tree_edges,
    .blob_claim = sq_blob_claim,
    .blob_release = sq_blob_release,
    .blob_collect_begin = sq_blob_collect_begin,
    .blob_collect_end = sq_blob_collect_end,
    .blob_collecting = sq_blob_collecting,
    .lease_acquire = sq_lease_acquire,
    .lease_release = sq_lease_release,
    .close = sq_close,
};

store *store_sqlite_open(const char *path, strata_error *err)
{
    if (path[0] == '\0' || strlen(path) >= PATH_MAX) {
        serr_set(err, SERR_INVALID, "store: bad SQLite path '%s'", path);
        return NULL;
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        if (fs_mkdir_p(dir, err) != 0)
            return NULL;
    }
    sqlite_store *s = calloc(1, sizeof *s);
    if (s == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    s->base.ops = &SQLITE_OPS;
    snprintf(s->path, sizeof s->path, "%s", path);
    pthread_mutex_init(&s->write_mu, NULL);
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_cond_init(&s->pool_cv, NULL);
    if (open_conn(path, &s->writer, err) != 0 || migrate(s->writer, err) != 0) {
        sq_close(&s->base);
        return NULL;
    }
    return &s->base;
}
