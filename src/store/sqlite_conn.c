/* SQLite connections: opening them, the statement cache, errors, the
 * reader pool, writes and transactions (see sqlite_internal.h). */
#include "sqlite_internal.h"
#include "store_sqlite.h"

#include <errno.h>
#include <semaphore.h>
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

/* What a combined group's member is woken for. */
enum wm_call { WM_WAIT, WM_LEAD, WM_DONE };

/* A member's write, on its own stack until its group is done. */
typedef struct wmember {
    struct wmember *next; /* the member that joined after it */
    write_fn body;
    void *ctx;
    int rc;           /* what running it returned */
    bool body_ok;     /* the body itself succeeded */
    bool ran;         /* it has been run */
    strata_error err; /* when rc != 0 */
    /* A combined group's member sleeps on a semaphore of its own, woken
     * once: to lead its group, or with the group's outcome (copied into
     * lost and why, so that it never touches the group again). Waking
     * members on the group's condition variable made all of them fight
     * for write_mu at once, a second sleep each on two cores. The
     * semaphore orders the fields written before sem_post and read after
     * sem_wait. */
    sem_t wake;
    enum wm_call call;
    bool lost;
    strata_error why;
} wmember;

typedef struct wgroup {
    uint64_t seq;
    bool combined;          /* its members' bodies are run by one of them (the
                             * leader); otherwise each member runs its own */
    wmember *first, *last;  /* the members, in the order they joined */
    wmember *pending;       /* the next member the leader runs */
    int members;            /* joined */
    int ran;                /* have had their turn */
    int refs;               /* members not yet returned (the last frees a turn-taking
                             * group; a combined one is freed by its leader) */
    bool begun;             /* BEGIN IMMEDIATE succeeded */
    bool lost;              /* the transaction is gone: BEGIN or COMMIT failed, or an
                             * error rolled the whole transaction back */
    bool done;              /* committed or given up: members may return */
    strata_error why;       /* when lost */
    struct wgroup *next;    /* the group after this one */
    pthread_cond_t turn_cv; /* a turn-taking group's members waiting for the writer */
    pthread_cond_t done_cv; /* ... and those that ran, waiting for the commit */
} wgroup;

/* Adds me to the open group, or to a new one when there is none, it is
 * full or it is of the other kind. */
static wgroup *wg_join(sqlite_store *s, wmember *me, bool combined, strata_error *err)
{
    wgroup *g = s->wg_open;
    if (g == NULL || g->members == WGROUP_MAX || g->combined != combined) {
        g = calloc(1, sizeof *g);
        if (g == NULL) {
            serr_set(err, SERR_NOMEM, "out of memory");
            return NULL;
        }
        if (pthread_cond_init(&g->turn_cv, NULL) != 0) {
            free(g);
            serr_set(err, SERR_NOMEM, "cannot create a condition variable");
            return NULL;
        }
        if (pthread_cond_init(&g->done_cv, NULL) != 0) {
            pthread_cond_destroy(&g->turn_cv);
            free(g);
            serr_set(err, SERR_NOMEM, "cannot create a condition variable");
            return NULL;
        }
        g->seq = s->wg_next++;
        g->combined = combined;
        if (s->wg_tail != NULL)
            s->wg_tail->next = g;
        else
            s->wg_head = g;
        s->wg_tail = g;
        s->wg_open = g;
    }
    if (g->last != NULL)
        g->last->next = me;
    else
        g->first = me;
    g->last = me;
    if (g->pending == NULL)
        g->pending = me;
    g->members++;
    g->refs++;
    return g;
}

static void wg_free(wgroup *g)
{
    pthread_cond_destroy(&g->turn_cv);
    pthread_cond_destroy(&g->done_cv);
    free(g);
}

/* The group's transaction and savepoint statements, prepared once per connection (the literal's
 * address keys the statement cache). */
static const char SQL_BEGIN[] = "BEGIN IMMEDIATE";
static const char SQL_COMMIT[] = "COMMIT";
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
        if (run_stmt(db, SQL_BEGIN, err) != 0) {
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
    if (g->begun && !g->lost && run_stmt(db, SQL_COMMIT, &g->why) != 0)
        g->lost = true;
    if (g->lost && !sqlite3_get_autocommit(db->h))
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

/* The last member has run: commit (the writer is still the caller's, and
 * wg_turn moves on only after it), wake a turn-taking group's members and
 * hand the writer to the next group. Called and returns with write_mu
 * held. Returns the member elected to lead the next group when that group
 * is combined (the writer is reserved for it: wg_busy), to be woken with
 * wg_wake after write_mu is released; otherwise NULL. A combined group's
 * own members are woken by its leader (wg_release). */
static wmember *wg_finish(sqlite_store *s, wgroup *g)
{
    if (s->wg_open == g)
        s->wg_open = NULL; /* no one joins any more */
    pthread_mutex_unlock(&s->write_mu);
    wg_commit(s, g);
    pthread_mutex_lock(&s->write_mu);
    g->done = true;
    s->wg_turn++;
    if (!g->lost) {
        s->wg_commits++;
        s->wg_writes += (uint64_t)g->members;
    }
    /* g was the head: the next group's turn comes */
    s->wg_head = g->next;
    if (s->wg_head == NULL)
        s->wg_tail = NULL;
    s->wg_busy = false;
    if (!g->combined)
        pthread_cond_broadcast(&g->done_cv);
    wgroup *h = s->wg_head;
    if (h == NULL)
        return NULL;
    if (!h->combined) {
        pthread_cond_signal(&h->turn_cv);
        return NULL;
    }
    /* none of a waiting group's members has run: the first one leads */
    s->wg_busy = true;
    h->pending->call = WM_LEAD;
    return h->pending;
}

static void wg_wake(wmember *m)
{
    if (m != NULL)
        sem_post(&m->wake); /* cannot fail: the semaphore is valid, its count 0 */
}

/* A combined group's leader, after wg_finish and with write_mu released:
 * hands every other member the group's outcome and wakes it. The group
 * is the leader's alone then (no longer open nor anyone's turn, and its
 * members touch only their own wmember once woken), so it frees it. */
static void wg_release(wgroup *g, const wmember *leader)
{
    wmember *m = g->first;
    while (m != NULL) {
        wmember *next = m->next; /* m may be gone once woken */
        if (m != leader) {
            m->lost = g->lost;
            m->why = g->why;
            m->call = WM_DONE;
            wg_wake(m);
        }
        m = next;
    }
    wg_free(g);
}

/* A member's result, from its own run and its group's outcome; see
 * wg_write for *undone. */
static int wg_outcome(const wmember *me, bool lost, const strata_error *why, bool *undone,
                      strata_error *err)
{
    int rc = me->rc;
    if (rc != 0)
        *err = me->err;
    if (rc == 0 && lost) {
        *err = *why;
        rc = -1;
        *undone = true;
    } else if (rc != 0 && me->body_ok && lost && err->kind == SERR_RETRY) {
        *undone = true; /* its own success, rolled back by someone else's error */
    }
    return rc;
}

/* Runs member m with the writer held by the caller. Called with write_mu
 * held; drops it meanwhile. */
static void wg_run_member(sqlite_store *s, wgroup *g, wmember *m)
{
    pthread_mutex_unlock(&s->write_mu);
    m->rc = wg_run(s, g, m->body, m->ctx, &m->body_ok, &m->err);
    pthread_mutex_lock(&s->write_mu);
    m->ran = true;
    g->ran++;
}

/* One write: joins the open group, runs body in its turn, and returns
 * once the group's commit is durable (or known lost). *undone tells
 * whether body succeeded and the group lost it afterwards (another
 * member's error rolled the transaction back, or the commit failed): the
 * one failure worth running the body again for. A failure of the body
 * itself, or of BEGIN (another process held the lock past busy_timeout),
 * is not.
 *
 * combined: the body is plain SQL on the writer (no lock taken, nothing
 * that depends on the calling thread), so one member of the group (the
 * first to find the writer free, or the one elected when the group's
 * turn comes) runs every member's body, one after another, while the
 * others sleep until the commit. Passing the writer from thread
 * to thread instead costs a wake-up and a wait for a CPU per member, which
 * on a busy machine is most of a save. A transaction's body (sq_transact)
 * may hold the caller's locks, so it runs on its caller's thread, in
 * turns. */
static int wg_write(sqlite_store *s, write_fn body, void *ctx, bool combined, bool *undone,
                    strata_error *err)
{
    *undone = false;
    wmember me = {.body = body, .ctx = ctx, .call = WM_WAIT};
    if (combined && sem_init(&me.wake, 0, 0) != 0) /* not with a count of 0 */
        return serr_set(err, SERR_INTERNAL, "store: cannot create a semaphore");
    pthread_mutex_lock(&s->write_mu);
    wgroup *g = wg_join(s, &me, combined, err);
    if (g == NULL) {
        pthread_mutex_unlock(&s->write_mu);
        if (combined)
            sem_destroy(&me.wake);
        return -1;
    }
    if (combined) {
        bool lead = s->wg_turn == g->seq && !s->wg_busy;
        if (lead) {
            s->wg_busy = true;
        } else {
            pthread_mutex_unlock(&s->write_mu);
            /* posted exactly once (EINTR is the only failure of a valid
             * semaphore); me.call is read only after it */
            while (sem_wait(&me.wake) != 0 && errno == EINTR)
                ;
            if (me.call == WM_DONE) {
                sem_destroy(&me.wake);
                return wg_outcome(&me, me.lost, &me.why, undone, err);
            }
            pthread_mutex_lock(&s->write_mu); /* elected: the writer is ours */
        }
        while (g->pending != NULL) { /* whoever has joined, the leader included */
            wmember *m = g->pending;
            g->pending = m->next;
            wg_run_member(s, g, m);
        }
        wmember *next_leader = wg_finish(s, g);
        pthread_mutex_unlock(&s->write_mu);
        wg_wake(next_leader);
        int rc = wg_outcome(&me, g->lost, &g->why, undone, err);
        wg_release(g, &me);
        sem_destroy(&me.wake);
        return rc;
    }
    wmember *next_leader = NULL;
    while (s->wg_turn != g->seq || s->wg_busy)
        pthread_cond_wait(&g->turn_cv, &s->write_mu);
    s->wg_busy = true;
    wg_run_member(s, g, &me);
    if (g->ran == g->members) {
        next_leader = wg_finish(s, g);
    } else {
        /* the writer passes to one more member of this group */
        s->wg_busy = false;
        pthread_cond_signal(&g->turn_cv);
    }
    while (!g->done)
        pthread_cond_wait(&g->done_cv, &s->write_mu);
    int rc = wg_outcome(&me, g->lost, &g->why, undone, err);
    bool last = --g->refs == 0;
    pthread_mutex_unlock(&s->write_mu);
    wg_wake(next_leader);
    if (last)
        wg_free(g);
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
        int rc = wg_write(s, fn, ctx, true, &undone, err);
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
        int rc = wg_write(s, txn_body, &c, false, &undone, err);
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
