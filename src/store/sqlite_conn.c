/* SQLite connections: opening them, the statement cache, errors, the
 * reader pool, writes and transactions (see sqlite_internal.h). */
#include "sqlite_internal.h"
#include "store_sqlite.h"

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

/* ---- writes: group commit (see sqlite_internal.h) ---------------------------- */

/* The store whose write body this thread is running, if any: a write with
 * no txn from inside it would wait for its own group's commit. */
static _Thread_local const sqlite_store *tls_in_txn;

typedef struct wgroup {
    uint64_t seq;
    int members;      /* joined */
    int ran;          /* have had their turn */
    int refs;         /* members not yet returned (the last frees the group) */
    bool begun;       /* BEGIN IMMEDIATE succeeded */
    bool lost;        /* the transaction is gone: BEGIN or COMMIT failed, or an
                       * error rolled the whole transaction back */
    bool done;        /* committed or given up: members may return */
    strata_error why; /* when lost */
} wgroup;

static wgroup *wg_join(sqlite_store *s, strata_error *err)
{
    wgroup *g = s->wg_open;
    if (g == NULL || g->members == WGROUP_MAX) {
        g = calloc(1, sizeof *g);
        if (g == NULL) {
            serr_set(err, SERR_NOMEM, "out of memory");
            return NULL;
        }
        g->seq = s->wg_next++;
        s->wg_open = g;
    }
    g->members++;
    g->refs++;
    return g;
}

/* Savepoint statements, prepared once per connection (the literal's
 * address keys the statement cache). */
static const char SQL_SAVEPOINT[] = "SAVEPOINT member";
static const char SQL_RELEASE[] = "RELEASE member";
static const char SQL_ROLLBACK_TO[] = "ROLLBACK TO member";

static int run_stmt(sq_conn *db, const char *sql, strata_error *err)
{
    sqlite3_stmt *st;
    if (prepare(db, sql, &st, err) != 0)
        return -1;
    return step_done(db, st, sql, err);
}

/* The member's turn: BEGIN for the group if no one has, then the body in
 * a savepoint. Returns the body's result; marks the group lost when the
 * transaction itself failed. Called with the writer to itself. */
static int wg_run(sqlite_store *s, wgroup *g, write_fn body, void *ctx, bool *ran,
                  strata_error *err)
{
    sq_conn *db = s->writer;
    if (g->lost) {
        *err = g->why;
        return -1;
    }
    if (!g->begun) {
        if (exec(db, "BEGIN IMMEDIATE", err) != 0) {
            g->lost = true;
            g->why = *err;
            return -1;
        }
        g->begun = true;
    }
    if (run_stmt(db, SQL_SAVEPOINT, err) != 0) {
        g->lost = true;
        g->why = *err;
        return -1;
    }
    tls_in_txn = s;
    int rc = body(db, ctx, err);
    tls_in_txn = NULL;
    *ran = rc == 0;
    if (sqlite3_get_autocommit(db->h)) {
        /* an error (I/O, full disk, out of memory) rolled the whole
         * transaction back: every member's changes are gone */
        g->lost = true;
        g->begun = false;
        serr_set(&g->why, SERR_RETRY, "store: a shared commit was rolled back (%s)",
                 rc != 0 ? err->detail : "by SQLite");
        if (rc == 0)
            *err = g->why;
        return -1;
    }
    strata_error serr;
    if (rc != 0 && run_stmt(db, SQL_ROLLBACK_TO, &serr) != 0) {
        g->lost = true;
        g->why = serr;
    }
    if (run_stmt(db, SQL_RELEASE, &serr) != 0 && !g->lost) {
        g->lost = true;
        g->why = serr;
    }
    if (rc == 0 && g->lost) {
        *err = g->why;
        return -1;
    }
    return rc;
}

/* The last member: commits (or rolls back what is left of a lost group). */
static void wg_commit(sqlite_store *s, wgroup *g)
{
    sq_conn *db = s->writer;
    if (g->begun && !g->lost && exec(db, "COMMIT", &g->why) != 0)
        g->lost = true;
    if (g->lost && !sqlite3_get_autocommit(db->h))
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

/* One write: joins the open group, waits for its turn, runs body, and
 * returns once the group's commit is durable (or known lost). *undone
 * tells whether body succeeded and the group lost it afterwards (another
 * member's error rolled the transaction back, or the commit failed): the
 * one failure worth running the body again for. A failure of the body
 * itself, or of BEGIN (another process held the lock past busy_timeout),
 * is not. */
static int wg_write(sqlite_store *s, write_fn body, void *ctx, bool *undone, strata_error *err)
{
    *undone = false;
    pthread_mutex_lock(&s->write_mu);
    wgroup *g = wg_join(s, err);
    if (g == NULL) {
        pthread_mutex_unlock(&s->write_mu);
        return -1;
    }
    while (s->wg_turn != g->seq || s->wg_busy)
        pthread_cond_wait(&s->write_cv, &s->write_mu);
    s->wg_busy = true;
    pthread_mutex_unlock(&s->write_mu);

    bool ran = false;
    int rc = wg_run(s, g, body, ctx, &ran, err);

    pthread_mutex_lock(&s->write_mu);
    g->ran++;
    if (g->ran == g->members) {
        /* the last to run: no one joins any more; commit with the writer
         * still ours (wg_turn moves on only after it) */
        if (s->wg_open == g)
            s->wg_open = NULL;
        pthread_mutex_unlock(&s->write_mu);
        wg_commit(s, g);
        pthread_mutex_lock(&s->write_mu);
        g->done = true;
        s->wg_turn++;
        if (!g->lost) {
            s->wg_commits++;
            s->wg_writes += (uint64_t)g->members;
        }
    }
    s->wg_busy = false;
    pthread_cond_broadcast(&s->write_cv);
    while (!g->done)
        pthread_cond_wait(&s->write_cv, &s->write_mu);
    if (rc == 0 && g->lost) {
        *err = g->why;
        rc = -1;
        *undone = true;
    } else if (rc != 0 && ran && g->lost && err->kind == SERR_RETRY) {
        *undone = true; /* its own success, rolled back by someone else's error */
    }
    bool last = --g->refs == 0;
    pthread_mutex_unlock(&s->write_mu);
    if (last)
        free(g);
    return rc;
}

static void backoff(int attempt)
{
    unsigned r = 0;
    sqlite3_randomness(sizeof r, &r);
    struct timespec ts = {0, (long)((1000000u << (attempt < 7 ? attempt : 7)) +
                                    r % 1000000u)}; /* 2 ms .. 129 ms, jittered */
    nanosleep(&ts, NULL);
}

int in_write(sqlite_store *s, store_txn *txn, write_fn fn, void *ctx, strata_error *err)
{
    if (txn != NULL)
        return fn(s->writer, ctx, err);
    if (tls_in_txn == s)
        return serr_set(err, SERR_INTERNAL, "store: a write outside the transaction it runs in");
    for (int attempt = 1;; attempt++) {
        bool undone;
        int rc = wg_write(s, fn, ctx, &undone, err);
        /* the body's own failure is the caller's to handle (a refused
         * claim's SERR_RETRY included), and so is a lock held past
         * busy_timeout, as before group commit; only a success that the
         * group lost is run again */
        if (rc == 0 || !undone)
            return rc;
        if (attempt >= STORE_TRANSACT_ATTEMPTS)
            return rc;
        backoff(attempt);
    }
}

struct txn_call {
    sqlite_store *s;
    store_txn_fn fn;
    void *ctx;
};

static int txn_body(sq_conn *db, void *ctx, strata_error *err)
{
    (void)db;
    struct txn_call *c = ctx;
    store_txn txn = {c->s};
    return c->fn(&txn, c->ctx, err);
}

/* Runs fn as one member of a commit group, again (after a short, growing
 * pause) when it or the group fails with SERR_RETRY: a claim refused while
 * a blob is being collected, a lapsed claim, the file lock held by another
 * process past busy_timeout, or a shared commit lost. */
int sq_transact(store *base, store_txn_fn fn, void *ctx, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    if (tls_in_txn == s)
        return serr_set(err, SERR_INTERNAL, "store: a transaction inside another");
    struct txn_call c = {s, fn, ctx};
    for (int attempt = 1;; attempt++) {
        bool undone;
        int rc = wg_write(s, txn_body, &c, &undone, err);
        if (rc == 0 || err->kind != SERR_RETRY)
            return rc;
        if (attempt >= STORE_TRANSACT_ATTEMPTS)
            return serr_set(err, SERR_RETRY, "store: writers kept meeting (%d attempts)", attempt);
        backoff(attempt);
    }
}

void store_sqlite_commit_stats(store *base, uint64_t *commits, uint64_t *writes)
{
    sqlite_store *s = (sqlite_store *)base;
    pthread_mutex_lock(&s->write_mu);
    *commits = s->wg_commits;
    *writes = s->wg_writes;
    pthread_mutex_unlock(&s->write_mu);
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
