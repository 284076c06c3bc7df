/* SQLite connections: opening them, the statement cache, errors, the
 * reader pool, writes and transactions (see sqlite_internal.h). */
#include "sqlite_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int db_error(sq_conn *db, strata_error *err, const char *what)
{
    int code = sqlite3_extended_errcode(db->h);
    enum strata_err_kind kind = SERR_IO;
    if ((code & 0xff) == SQLITE_CONSTRAINT)
        kind = SERR_CONFLICT;
    else if ((code & 0xff) == SQLITE_BUSY || (code & 0xff) == SQLITE_LOCKED)
        kind = SERR_RETRY; /* another process held the lock past busy_timeout */
    else if ((code & 0xff) == SQLITE_NOMEM)
        kind = SERR_NOMEM;
    return serr_set(err, kind, "store: %s: %s", what, sqlite3_errmsg(db->h));
}

int exec(sq_conn *db, const char *sql, strata_error *err)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db->h, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        bool busy = (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
        serr_set(err, busy ? SERR_RETRY : SERR_IO, "store: %s", msg ? msg : sqlite3_errmsg(db->h));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int prepare(sq_conn *db, const char *sql, sqlite3_stmt **st, strata_error *err)
{
    for (int i = 0; i < db->ncached; i++)
        if (db->cached[i].sql == sql) {
            *st = db->cached[i].st;
            sqlite3_reset(*st); /* in case a caller left it mid-way */
            sqlite3_clear_bindings(*st);
            return 0;
        }
    if (db->ncached == STMT_CACHE)
        return serr_set(err, SERR_INTERNAL, "store: statement cache full (%d)", STMT_CACHE);
    if (sqlite3_prepare_v3(db->h, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return db_error(db, err, "prepare");
    db->cached[db->ncached].sql = sql;
    db->cached[db->ncached++].st = *st;
    return 0;
}

void sq_release(sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    /* ends its read (a statement left stepping holds a snapshot open) */
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

int step_done(sq_conn *db, sqlite3_stmt *st, const char *what, strata_error *err)
{
    int rc = sqlite3_step(st);
    int result = rc == SQLITE_DONE ? 0 : db_error(db, err, what);
    sq_release(st);
    return result;
}

void sq_conn_close(sq_conn *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->ncached; i++)
        sqlite3_finalize(c->cached[i].st);
    sqlite3_close(c->h);
    free(c);
}

int sq_conn_open(const char *path, sq_conn **out, strata_error *err)
{
    sq_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(path, &c->h, flags, NULL) != SQLITE_OK) {
        serr_set(err, SERR_IO, "store: cannot open %s: %s", path,
                 c->h ? sqlite3_errmsg(c->h) : "out of memory");
        sq_conn_close(c);
        return -1;
    }
    sqlite3_busy_timeout(c->h, 10000);
    /* Several processes opening a fresh file at once: switching to WAL may
     * answer "locked" at once (SQLite skips its busy handler where waiting
     * could deadlock), so that one is retried for as long as busy_timeout. */
    int rc = -1;
    for (int tries = 0; tries < 1000; tries++) {
        rc = exec(c, "PRAGMA journal_mode=WAL", err);
        if (rc == 0 || err->kind != SERR_RETRY)
            break;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (rc != 0 ||
        exec(c, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
             err) != 0) {
        sq_conn_close(c);
        return -1;
    }
    *out = c;
    return 0;
}

/* ---- reader pool ---------------------------------------------------------- */

sq_conn *reader_get(sqlite_store *s, strata_error *err)
{
    pthread_mutex_lock(&s->pool_mu);
    while (s->nidle == 0 && s->nopen >= READER_POOL)
        pthread_cond_wait(&s->pool_cv, &s->pool_mu);
    sq_conn *db = NULL;
    if (s->nidle > 0) {
        db = s->idle[--s->nidle];
        pthread_mutex_unlock(&s->pool_mu);
        return db;
    }
    s->nopen++;
    pthread_mutex_unlock(&s->pool_mu);
    if (sq_conn_open(s->path, &db, err) != 0) {
        pthread_mutex_lock(&s->pool_mu);
        s->nopen--;
        pthread_cond_signal(&s->pool_cv);
        pthread_mutex_unlock(&s->pool_mu);
        return NULL;
    }
    return db;
}

void reader_put(sqlite_store *s, sq_conn *db)
{
    pthread_mutex_lock(&s->pool_mu);
    s->idle[s->nidle++] = db;
    pthread_cond_signal(&s->pool_cv);
    pthread_mutex_unlock(&s->pool_mu);
}

sq_conn *read_conn(sqlite_store *s, store_txn *txn, strata_error *err)
{
    return txn ? s->writer : reader_get(s, err);
}

void read_done(sqlite_store *s, store_txn *txn, sq_conn *db)
{
    if (txn == NULL && db != NULL)
        reader_put(s, db);
}

int sq_each_row(sqlite_store *s, const char *sql, int (*row)(sqlite3_stmt *st, void *ctx),
                void *ctx, bool *stopped, const char *what, strata_error *err)
{
    if (stopped)
        *stopped = false;
    sq_conn *db = reader_get(s, err);
    if (db == NULL)
        return -1;
    sqlite3_stmt *st = NULL;
    int rc = prepare(db, sql, &st, err);
    int r = SQLITE_DONE;
    while (rc == 0 && (r = sqlite3_step(st)) == SQLITE_ROW)
        if (row(st, ctx) != 0) {
            if (stopped)
                *stopped = true;
            break;
        }
    if (rc == 0 && r != SQLITE_DONE && r != SQLITE_ROW)
        rc = db_error(db, err, what);
    sq_release(st);
    reader_put(s, db);
    return rc;
}

/* ---- writes ------------------------------------------------------------------ */

/* The store whose transaction this thread is running, if any: a write
 * with no txn from inside it would wait for itself on write_mu. */
static _Thread_local const sqlite_store *tls_in_txn;

int in_write(sqlite_store *s, store_txn *txn, write_fn fn, void *ctx, strata_error *err)
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
            sqlite3_exec(s->writer->h, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&s->write_mu);
    return rc;
}

/* Runs fn in BEGIN IMMEDIATE ... COMMIT on the writer connection, again
 * (after a short, growing pause) when it or the commit fails with
 * SERR_RETRY: a claim refused while a blob is being collected, a lapsed
 * claim, or the file lock held by another process past busy_timeout. */
int sq_transact(store *base, store_txn_fn fn, void *ctx, strata_error *err)
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
                sqlite3_exec(s->writer->h, "ROLLBACK", NULL, NULL, NULL);
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

int sq_ping(store *base, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sq_conn *db = reader_get(s, err);
    if (db == NULL)
        return serr_set(err, SERR_UNAVAILABLE, "store: no connection");
    int rc = exec(db, "SELECT 1 FROM resources LIMIT 1", err);
    reader_put(s, db);
    if (rc != 0)
        err->kind = SERR_UNAVAILABLE;
    return rc;
}
