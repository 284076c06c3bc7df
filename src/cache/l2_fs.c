#include "l2_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "../codec/sha256.h"
#include "../common/clock.h"
#include "../common/fsutil.h"
#include "../common/glob.h"
#include "../common/hex.h"
#include "../common/log.h"
#include "l2_generations.h"

#define FILE_MAGIC "STL2"
#define HEADER_SIZE                                                                                \
    136                       /* magic 4, version 1, codec 1, pad 2, write_id 8, raw 8,            \
                                 payload 8, payload crc 4, content type 96, header crc 4 */
#define ACCESS_UPDATE_MS 1000 /* last_access is refreshed at most once a second */

/* ---- the handle ------------------------------------------------------------- */

typedef struct ns_counters {
    char ns[L2_NS_MAX + 1];
    uint64_t hits, misses, sets, deletes, expirations, evictions;
} ns_counters;

#define MAX_NS_COUNTERS 64

enum {
    ST_READ,
    ST_LRU,
    ST_UPSERT,
    ST_DROP,
    ST_TOUCH,
    ST_CLEAR_SCAN,
    ST_STATS,
    ST_TOTAL_ADD,
    ST_TOTAL_GET,
    ST_MAX_WRITE_ID,
    ST_FENCE_PUT,
    ST_FENCE_DROP,
    ST_FENCE_SWEEP,
    ST_FENCE_OPEN,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_COUNT
};

typedef struct fs_l2 {
    l2_cache base;
    char dir[PATH_MAX - 100];
    l2_config cfg;
    pthread_mutex_t mu; /* this handle's connection; across processes the index locks */
    sqlite3 *db;
    l2_gen_table gen;
    ns_counters counters[MAX_NS_COUNTERS];
    int ncounters;
    ns_counters overflow;          /* namespaces past MAX_NS_COUNTERS */
    sqlite3_stmt *stmts[ST_COUNT]; /* prepared once, used under mu */
    bool sync_fences;              /* no boot id: fences are synced one by one (see boot_rule) */
} fs_l2;

static ns_counters *counters_for(fs_l2 *c, const char *ns)
{
    for (int i = 0; i < c->ncounters; i++)
        if (strcmp(c->counters[i].ns, ns) == 0)
            return &c->counters[i];
    if (c->ncounters == MAX_NS_COUNTERS)
        return &c->overflow;
    ns_counters *n = &c->counters[c->ncounters++];
    memset(n, 0, sizeof *n);
    snprintf(n->ns, sizeof n->ns, "%.64s", ns);
    return n;
}

static int check_key(const char *ns, const char *key, strata_error *err)
{
    if (strlen(ns) > L2_NS_MAX || strlen(key) > L2_KEY_MAX)
        return serr_set(err, SERR_INVALID, "cache key too long");
    return 0;
}

/* ---- statements and transactions (all under c->mu) ------------------------- */

/* A parameter to bind: text (NULL binds NULL) or an integer. */
typedef struct sql_arg {
    const char *text;
    int64_t num;
    bool is_text;
} sql_arg;

#define TXT(s) ((sql_arg){.text = (s), .is_text = true})
#define NUM(v) ((sql_arg){.num = (int64_t)(v)})
/* The parameters ?1, ?2, ... of a statement: an array and its length. */
#define ARGS(...)                                                                                  \
    (const sql_arg[]){__VA_ARGS__}, sizeof((const sql_arg[]){__VA_ARGS__}) / sizeof(sql_arg)

/* The statement of slot (its SQL prepared on first use and kept for the
 * life of the handle) with args bound to ?1..?n; NULL when it cannot be
 * prepared. Give it back with release(). */
static sqlite3_stmt *bound(fs_l2 *c, int slot, const char *sql, const sql_arg *args, size_t n)
{
    if (c->stmts[slot] == NULL && sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                                     &c->stmts[slot], NULL) != SQLITE_OK)
        return NULL;
    sqlite3_stmt *st = c->stmts[slot];
    for (size_t i = 0; i < n; i++) {
        int at = (int)i + 1;
        if (!args[i].is_text)
            sqlite3_bind_int64(st, at, args[i].num);
        else if (args[i].text != NULL)
            sqlite3_bind_text(st, at, args[i].text, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, at);
    }
    return st;
}

/* Resets a statement from bound() and clears its bindings; NULL is a
 * no-op. */
static void release(sqlite3_stmt *st)
{
    if (st != NULL) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Runs a statement that returns no row and releases it: the number of
 * rows it changed, or -1 when it cannot be prepared or fails. */
static int run(fs_l2 *c, int slot, const char *sql, const sql_arg *args, size_t n)
{
    sqlite3_stmt *st = bound(c, slot, sql, args, n);
    int rc = st != NULL && sqlite3_step(st) == SQLITE_DONE ? sqlite3_changes(c->db) : -1;
    release(st);
    return rc;
}

/* The first column of the first row of a query without parameters; 0
 * when it returns no row or fails. */
static int64_t scalar(fs_l2 *c, int slot, const char *sql)
{
    sqlite3_stmt *st = bound(c, slot, sql, NULL, 0);
    int64_t v = 0;
    if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    release(st);
    return v;
}

static int db_fail(fs_l2 *c, strata_error *err, const char *what)
{
    return serr_set(err, SERR_IO, "L2 index: %s: %s", what, sqlite3_errmsg(c->db));
}

/* BEGIN IMMEDIATE takes the index's write lock, which every process's
 * writers share, so whatever runs between it and the COMMIT is serialised
 * with every other change of the L2 (the "writers' lock" of
 * l2_generations.h). */
static int txn_begin(fs_l2 *c, strata_error *err)
{
    /* prepared once: a save opens two of these, and parsing the text
     * each time showed in its profile */
    return run(c, ST_BEGIN, "BEGIN IMMEDIATE", NULL, 0) >= 0 ? 0 : db_fail(c, err, "begin");
}

/* Commits when rc is 0, rolls back otherwise; returns the outcome. */
static int txn_end(fs_l2 *c, int rc, strata_error *err)
{
    if (rc == 0 && run(c, ST_COMMIT, "COMMIT", NULL, 0) < 0)
        rc = db_fail(c, err, "commit");
    if (rc != 0 && !sqlite3_get_autocommit(c->db))
        run(c, ST_ROLLBACK, "ROLLBACK", NULL, 0);
    return rc;
}

/* ---- value files ------------------------------------------------------------ */

/* The file of a key: DIR/ab/<sha256(ns NUL key)>; nothing of the key
 * itself reaches the path. */
static void entry_path(const fs_l2 *c, const char *ns, const char *key, char *out, size_t cap,
                       char *subdir, size_t subcap)
{
    size_t nl = strlen(ns), kl = strlen(key);
    unsigned char buf[L2_NS_MAX + L2_KEY_MAX + 2];
    memcpy(buf, ns, nl);
    buf[nl] = 0;
    memcpy(buf + nl + 1, key, kl);
    unsigned char d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    sha256_oneshot(buf, nl + 1 + kl, d, NULL);
    sha256_to_hex(d, hex);
    snprintf(subdir, subcap, "%s/%.2s", c->dir, hex);
    snprintf(out, cap, "%s/%s", subdir, hex);
}

static uint32_t crc(const void *p, size_t n)
{
    uLong c = crc32(0L, Z_NULL, 0);
    const unsigned char *b = p;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, chunk);
        b += chunk;
        n -= chunk;
    }
    return (uint32_t)c;
}

static void encode_header(unsigned char *h, const l2_meta *m, const void *data, size_t len)
{
    memset(h, 0, HEADER_SIZE);
    memcpy(h, FILE_MAGIC, 4);
    h[4] = 1;
    h[5] = m->codec;
    le64_put(h + 8, m->write_id);
    le64_put(h + 16, m->raw_size);
    le64_put(h + 24, len);
    uint32_t pc = crc(data, len);
    memcpy(h + 32, &pc, 4);
    snprintf((char *)h + 36, 96, "%s", m->content_type);
    uint32_t hc = crc(h, 132);
    memcpy(h + 132, &hc, 4);
}

/* Writes a value's file (header for m, then data) to path, which is
 * removed again on failure. */
static int write_entry(const char *path, const l2_meta *m, const void *data, size_t len,
                       strata_error *err)
{
    unsigned char header[HEADER_SIZE];
    encode_header(header, m, data, len);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return serr_set(err, fs_errno_kind(errno), "L2: cannot write %s: %s", path,
                        strerror(errno));
    int wrc = fs_write_all(fd, header, HEADER_SIZE);
    if (wrc == 0)
        wrc = fs_write_all(fd, data, len);
    int e = errno;
    close(fd);
    if (wrc != 0) {
        unlink(path);
        return serr_set(err, fs_errno_kind(e), "L2: cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

/* Reads and checks a file; any mismatch is a miss, never an error. */
static int read_entry(const char *path, uint64_t want_write_id, size_t max_len, strata_buf *out,
                      l2_meta *m)
{
    strata_buf file;
    sbuf_init(&file, 0);
    strata_error err;
    if (fs_read_file(path, max_len + HEADER_SIZE, &file, &err) != 0)
        return -1;
    const unsigned char *h = file.data;
    uint32_t hc, pc;
    int ok = file.len >= HEADER_SIZE && memcmp(h, FILE_MAGIC, 4) == 0 && h[4] == 1;
    if (ok) {
        memcpy(&hc, h + 132, 4);
        memcpy(&pc, h + 32, 4);
        ok = hc == crc(h, 132) && le64_get(h + 8) == want_write_id &&
             le64_get(h + 24) == file.len - HEADER_SIZE &&
             pc == crc(h + HEADER_SIZE, file.len - HEADER_SIZE);
    }
    if (ok) {
        m->codec = h[5];
        m->write_id = want_write_id;
        m->raw_size = le64_get(h + 16);
        snprintf(m->content_type, sizeof m->content_type, "%.95s", (const char *)h + 36);
        ok = sbuf_append(out, h + HEADER_SIZE, file.len - HEADER_SIZE, &err) == 0;
    }
    sbuf_free(&file);
    return ok ? 0 : -1;
}

/* ---- the index (in a transaction unless said otherwise) --------------------- */

/* Adds delta to the index's total of stored bytes. */
static int add_total_locked(fs_l2 *c, int64_t delta)
{
    if (delta == 0)
        return 0;
    return run(c, ST_TOTAL_ADD, "UPDATE totals SET bytes = max(0, bytes + ?1) WHERE id = 1",
               ARGS(NUM(delta))) < 0
               ? -1
               : 0;
}

/* Deletes the row and the file of a key (under the index's write lock
 * nobody can put another file in its place meanwhile). With write_id
 * non-zero, only the row of that write. Sets *dropped. -1 when the index
 * refused (the file then stays: a row must never name a missing file that
 * a later write could reuse). */
static int drop_locked(fs_l2 *c, const char *ns, const char *key, uint64_t write_id, int64_t size,
                       bool *dropped)
{
    *dropped = false;
    int changed = run(c, ST_DROP,
                      "DELETE FROM entries WHERE ns = ?1 AND key = ?2"
                      " AND (?3 = 0 OR write_id = ?3)",
                      ARGS(TXT(ns), TXT(key), NUM(write_id)));
    if (changed <= 0)
        return changed < 0 ? -1 : 0;
    char path[PATH_MAX], sub[PATH_MAX];
    entry_path(c, ns, key, path, sizeof path, sub, sizeof sub);
    unlink(path);
    int rc = add_total_locked(c, -size);
    *dropped = rc == 0;
    return rc;
}

typedef struct row {
    bool found;
    int64_t size, expires, last_access;
    uint64_t write_id;
    l2_meta meta;
} row;

/* The index row of a key (under c->mu; r->found false when there is
 * none). */
static int read_row(fs_l2 *c, const char *ns, const char *key, row *r, strata_error *err)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st = bound(c, ST_READ,
                             "SELECT size, expires, last_access, write_id, ctype, codec, raw_size"
                             " FROM entries WHERE ns = ?1 AND key = ?2",
                             ARGS(TXT(ns), TXT(key)));
    if (st == NULL)
        return db_fail(c, err, "read");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        r->found = true;
        r->size = sqlite3_column_int64(st, 0);
        r->expires = sqlite3_column_int64(st, 1);
        r->last_access = sqlite3_column_int64(st, 2);
        r->write_id = (uint64_t)sqlite3_column_int64(st, 3);
        const unsigned char *ct = sqlite3_column_text(st, 4);
        snprintf(r->meta.content_type, sizeof r->meta.content_type, "%s",
                 ct ? (const char *)ct : "");
        r->meta.codec = (uint8_t)sqlite3_column_int(st, 5);
        r->meta.raw_size = (uint64_t)sqlite3_column_int64(st, 6);
        r->meta.write_id = r->write_id;
        r->meta.expires_ms = r->expires;
    }
    release(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(c, err, "read");
    return 0;
}

static bool expired(const row *r, int64_t now)
{
    return r->expires != 0 && r->expires <= now;
}

/* Looks a key up under c->mu, outside a transaction: a live value, or
 * SERR_NOT_FOUND (an expired value is removed on the way; expiry changes
 * nothing a node may hold, so it moves no token). */
static int lookup_locked(fs_l2 *c, const char *ns, const char *key, row *r, strata_error *err)
{
    if (read_row(c, ns, key, r, err) != 0)
        return -1;
    if (r->found && expired(r, clock_wall_ms())) {
        bool dropped = false;
        strata_error e2;
        if (txn_begin(c, &e2) == 0)
            txn_end(c, drop_locked(c, ns, key, r->write_id, r->size, &dropped), &e2);
        if (dropped)
            counters_for(c, ns)->expirations++;
        r->found = false;
    }
    if (!r->found)
        return serr_set(err, SERR_NOT_FOUND, "not cached");
    return 0;
}

/* Evicts least recently used entries until the cache fits its limit.
 * Eviction moves no token: a node's copy of an evicted value is as
 * current as it was. */
static int evict_locked(fs_l2 *c)
{
    uint64_t total = (uint64_t)scalar(c, ST_TOTAL_GET, "SELECT bytes FROM totals WHERE id = 1");
    while (total > c->cfg.max_bytes) {
        sqlite3_stmt *st = bound(c, ST_LRU,
                                 "SELECT ns, key, size, write_id FROM entries"
                                 " ORDER BY last_access LIMIT 32",
                                 NULL, 0);
        if (st == NULL)
            return -1;
        int n = 0;
        struct {
            char ns[L2_NS_MAX + 1];
            char key[L2_KEY_MAX + 1];
            int64_t size;
            uint64_t write_id;
        } victims[32] = {0};
        while (n < 32 && sqlite3_step(st) == SQLITE_ROW) {
            snprintf(victims[n].ns, sizeof victims[n].ns, "%s", sqlite3_column_text(st, 0));
            snprintf(victims[n].key, sizeof victims[n].key, "%s", sqlite3_column_text(st, 1));
            victims[n].size = sqlite3_column_int64(st, 2);
            victims[n].write_id = (uint64_t)sqlite3_column_int64(st, 3);
            n++;
        }
        release(st);
        if (n == 0)
            return 0;
        for (int i = 0; i < n && total > c->cfg.max_bytes; i++) {
            bool dropped;
            if (drop_locked(c, victims[i].ns, victims[i].key, victims[i].write_id, victims[i].size,
                            &dropped) != 0)
                return -1;
            if (dropped) {
                counters_for(c, victims[i].ns)->evictions++;
                total -= (uint64_t)victims[i].size <= total ? (uint64_t)victims[i].size : total;
            }
        }
    }
    return 0;
}

/* Removes a key's value and its expired fences, in a transaction that has
 * moved the key's token (del and fence_open). *live: whether the value
 * was live. */
static int remove_value_locked(fs_l2 *c, const char *ns, const char *key, bool *live,
                               strata_error *err)
{
    row r;
    *live = false;
    if (read_row(c, ns, key, &r, err) != 0)
        return -1;
    bool dropped = false;
    if (r.found && drop_locked(c, ns, key, 0, r.size, &dropped) != 0)
        return db_fail(c, err, "delete");
    *live = dropped && !expired(&r, clock_wall_ms());
    if (run(c, ST_FENCE_SWEEP, "DELETE FROM fences WHERE ns = ?1 AND key = ?2 AND expires <= ?3",
            ARGS(TXT(ns), TXT(key), NUM(clock_wall_ms()))) < 0)
        return db_fail(c, err, "fences");
    return 0;
}

/* Whether a fill guarded by token fill may land, with the key's slots
 * settled at ngen and kgen: SERR_CONFLICT when the key changed since the
 * token was read or an open fence stands on it. */
static int fill_allowed_locked(fs_l2 *c, const char *ns, const char *key, const l2_token *fill,
                               uint64_t ngen, uint64_t kgen, strata_error *err)
{
    if (!l2_gen_token_names(fill, ngen, kgen))
        return serr_set(err, SERR_CONFLICT, "the key changed since this fill began");
    sqlite3_stmt *st = bound(c, ST_FENCE_OPEN,
                             "SELECT 1 FROM fences WHERE ns = ?1 AND key = ?2 AND expires > ?3"
                             " LIMIT 1",
                             ARGS(TXT(ns), TXT(key), NUM(clock_wall_ms())));
    if (st == NULL)
        return db_fail(c, err, "fences");
    int step = sqlite3_step(st);
    release(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return db_fail(c, err, "fences");
    if (step == SQLITE_ROW)
        return serr_set(err, SERR_CONFLICT, "a change of this key is in progress");
    return 0;
}

/* Moves a value's file (tmp, written for m) into place at path and names
 * it in the index, replacing whatever the key held; then evicts past the
 * size limit. */
static int put_locked(fs_l2 *c, const char *ns, const char *key, const l2_meta *m, uint64_t size,
                      uint64_t ttl_ms, const char *tmp, const char *path, strata_error *err)
{
    row r;
    if (read_row(c, ns, key, &r, err) != 0)
        return -1;
    if (rename(tmp, path) != 0)
        return serr_set(err, SERR_IO, "L2: cannot move %s into place: %s", path, strerror(errno));
    int64_t now = clock_wall_ms();
    if (run(c, ST_UPSERT,
            "INSERT OR REPLACE INTO entries(ns, key, size, expires, last_access,"
            " write_id, ctype, codec, raw_size, fence, written_at)"
            " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?5)",
            ARGS(TXT(ns), TXT(key), NUM(size), NUM(ttl_ms ? now + (int64_t)ttl_ms : 0), NUM(now),
                 NUM(m->write_id), TXT(m->content_type), NUM(m->codec), NUM(m->raw_size))) < 0)
        return db_fail(c, err, "write");
    if (add_total_locked(c, (int64_t)size - (r.found ? r.size : 0)) != 0)
        return db_fail(c, err, "write");
    if (evict_locked(c) != 0)
        return db_fail(c, err, "evict");
    return 0;
}

/* ---- the operations ----------------------------------------------------------- */

static int fs_get(l2_cache *base, const char *ns, const char *key, size_t max_len, strata_buf *out,
                  l2_meta *meta, strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    if (check_key(ns, key, err) != 0) /* entry_path's buffer holds no more */
        return -1;
    row r;
    pthread_mutex_lock(&c->mu);
    int rc = lookup_locked(c, ns, key, &r, err);
    ns_counters *n = counters_for(c, ns);
    if (rc == 0 && clock_wall_ms() - r.last_access > ACCESS_UPDATE_MS)
        (void)run(c, ST_TOUCH, "UPDATE entries SET last_access = ?3 WHERE ns = ?1 AND key = ?2",
                  ARGS(TXT(ns), TXT(key), NUM(clock_wall_ms())));
    pthread_mutex_unlock(&c->mu);
    if (rc == 0) {
        /* outside the lock: a file replaced or removed meanwhile fails its
         * write id check or is missing, and reads as a miss */
        char path[PATH_MAX], sub[PATH_MAX];
        entry_path(c, ns, key, path, sizeof path, sub, sizeof sub);
        size_t at = out->len;
        if (read_entry(path, r.write_id, max_len, out, meta) != 0) {
            out->len = at;
            rc = serr_set(err, SERR_NOT_FOUND, "not cached (unreadable entry)");
        } else {
            meta->expires_ms = r.expires;
        }
    }
    pthread_mutex_lock(&c->mu);
    if (rc == 0)
        n->hits++;
    else if (err->kind == SERR_NOT_FOUND)
        n->misses++;
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static int fs_token(l2_cache *base, const char *ns, const char *key, l2_token *out,
                    strata_error *err)
{
    (void)err;
    fs_l2 *c = (fs_l2 *)base;
    l2_gen_token(&c->gen, ns, key, out);
    return 0;
}

/* Settles the slots of (ns, key) under the index's write lock (see
 * l2_gen_settle); best effort. */
static void settle_slots(fs_l2 *c, const char *ns, const char *key)
{
    strata_error err;
    pthread_mutex_lock(&c->mu);
    if (txn_begin(c, &err) == 0) {
        l2_gen_settle(l2_gen_ns_slot(&c->gen, ns));
        l2_gen_settle(l2_gen_key_slot(&c->gen, ns, key));
        txn_end(c, 0, &err);
    }
    pthread_mutex_unlock(&c->mu);
}

static int fs_set(l2_cache *base, const char *ns, const char *key, const void *data, size_t len,
                  const l2_meta *meta, uint64_t ttl_ms, const l2_token *fill, l2_token *new_token,
                  uint64_t *write_id, strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    l2_token guard; /* new_token may be fill itself */
    if (fill != NULL) {
        guard = *fill;
        fill = &guard;
    }
    if (new_token)
        memset(new_token, 0, sizeof *new_token);
    if (check_key(ns, key, err) != 0)
        return -1;
    if (len + HEADER_SIZE > c->cfg.max_bytes)
        return serr_set(err, SERR_TOO_LARGE, "value larger than the L2 cache");
    if (fill != NULL && !l2_token_usable(fill)) {
        /* a change was in progress, or one was left half-done by a
         * process that died: settle it, so that the next fill can land */
        settle_slots(c, ns, key);
        return serr_set(err, SERR_CONFLICT, "the key was changing when this fill began");
    }
    char path[PATH_MAX], sub[PATH_MAX], tmp[PATH_MAX + 16];
    entry_path(c, ns, key, path, sizeof path, sub, sizeof sub);
    if (fs_mkdir_p(sub, err) != 0)
        return -1;
    /* the file is written beside its final name, outside the lock */
    l2_meta m = *meta;
    m.write_id = l2_gen_next_id(&c->gen);
    snprintf(tmp, sizeof tmp, "%s.%llx", path, (unsigned long long)m.write_id);
    if (write_entry(tmp, &m, data, len, err) != 0)
        return -1;

    l2_gen_slot *nslot = l2_gen_ns_slot(&c->gen, ns), *kslot = l2_gen_key_slot(&c->gen, ns, key);
    pthread_mutex_lock(&c->mu);
    int rc = txn_begin(c, err);
    bool began = rc == 0;
    uint64_t ngen = 0, odd = 0;
    if (rc == 0) {
        ngen = l2_gen_settle(nslot);
        uint64_t kgen = l2_gen_settle(kslot);
        /* a fill's check and its write in one transaction: no change of
         * this key, in any process, can fall between them */
        if (fill != NULL)
            rc = fill_allowed_locked(c, ns, key, fill, ngen, kgen, err);
        else
            odd = l2_gen_begin(kslot);
    }
    if (rc == 0)
        rc = put_locked(c, ns, key, &m, len + HEADER_SIZE, ttl_ms, tmp, path, err);
    if (began)
        rc = txn_end(c, rc, err);
    bool settled = odd != 0 && l2_gen_end(kslot, odd);
    if (rc == 0) {
        counters_for(c, ns)->sets++;
        if (new_token && fill != NULL)
            *new_token = *fill; /* a fill changes nothing a node may hold */
        else if (new_token && settled)
            l2_gen_token_make(new_token, ngen, odd + 1); /* ngen read under the write lock */
    }
    pthread_mutex_unlock(&c->mu);
    if (rc != 0)
        unlink(tmp); /* (gone already when it was moved into place) */
    else if (write_id)
        *write_id = m.write_id;
    return rc;
}

/* del and fence_open: one change of (ns, key) that moves its token,
 * removes its value, closes the fences closing[0..nclose) and, when
 * opening is not NULL, opens the fence *opening for hold_ms, durably (see
 * boot_rule). *live: whether a live value went (false on failure). */
static int change_key(fs_l2 *c, const char *ns, const char *key, const l2_fence_id *closing,
                      size_t nclose, const l2_fence_id *opening, uint64_t hold_ms, bool *live,
                      strata_error *err)
{
    l2_gen_slot *kslot = l2_gen_key_slot(&c->gen, ns, key);
    *live = false;
    pthread_mutex_lock(&c->mu);
    /* a fence must survive a crash of the machine, not only of the
     * process: by the boot rule (boot_rule), or else by its own sync */
    bool sync = opening != NULL && c->sync_fences;
    if (sync)
        sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    int rc = txn_begin(c, err);
    uint64_t odd = 0;
    if (rc == 0) {
        /* whether or not L2 holds a value: a node may hold one it evicted */
        l2_gen_settle(l2_gen_ns_slot(&c->gen, ns));
        odd = l2_gen_begin(kslot);
        rc = remove_value_locked(c, ns, key, live, err);
        for (size_t i = 0; rc == 0 && i < nclose; i++)
            if (run(c, ST_FENCE_DROP, "DELETE FROM fences WHERE ns = ?1 AND key = ?2 AND id = ?3",
                    ARGS(TXT(ns), TXT(key), NUM(closing[i]))) < 0)
                rc = db_fail(c, err, "fences");
        if (rc == 0 && opening != NULL) {
            int64_t expires = clock_wall_ms() + (int64_t)hold_ms;
            if (run(c, ST_FENCE_PUT,
                    "INSERT OR REPLACE INTO fences(ns, key, id, expires) VALUES(?1, ?2, ?3, ?4)",
                    ARGS(TXT(ns), TXT(key), NUM(*opening), NUM(expires))) < 0)
                rc = db_fail(c, err, "fence");
        }
        rc = txn_end(c, rc, err);
    }
    if (sync)
        sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    if (odd != 0)
        l2_gen_end(kslot, odd);
    if (rc == 0 && *live)
        counters_for(c, ns)->deletes++;
    pthread_mutex_unlock(&c->mu);
    if (rc != 0)
        *live = false;
    return rc;
}

static int fs_del(l2_cache *base, const char *ns, const char *key, const l2_fence_id *close_ids,
                  size_t nclose, bool *found, strata_error *err)
{
    bool live;
    if (check_key(ns, key, err) != 0) /* entry_path's buffer holds no more */
        return -1;
    int rc = change_key((fs_l2 *)base, ns, key, close_ids, nclose, NULL, 0, &live, err);
    if (found)
        *found = live;
    return rc;
}

static int fs_fence_open(l2_cache *base, const char *ns, const char *key, uint64_t hold_ms,
                         l2_fence_id *id, strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    *id = 0;
    if (check_key(ns, key, err) != 0)
        return -1;
    if (hold_ms == 0)
        hold_ms = c->cfg.fence_ttl_ms;
    if (hold_ms > (uint64_t)INT64_MAX / 4)
        hold_ms = (uint64_t)INT64_MAX / 4;
    l2_fence_id fid = l2_gen_next_id(&c->gen);
    bool live;
    if (change_key(c, ns, key, NULL, 0, &fid, hold_ms, &live, err) != 0)
        return -1;
    *id = fid;
    return 0;
}

/* The range of keys a glob can match, for the index: [lo, hi) where lo is
 * the pattern's literal prefix ("apple*": "apple") and hi that prefix with
 * its last byte below 0xff raised; NULL (no upper bound) when there is no
 * such byte. */
static const char *glob_range(const char *pattern, char lo[L2_KEY_MAX + 1], char hi[L2_KEY_MAX + 1])
{
    size_t plen = glob_literal_prefix(pattern);
    if (plen > L2_KEY_MAX)
        plen = L2_KEY_MAX;
    memcpy(lo, pattern, plen);
    lo[plen] = '\0';
    memcpy(hi, lo, plen + 1);
    for (size_t i = plen; i > 0; i--) {
        if ((unsigned char)hi[i - 1] < 0xff) {
            hi[i - 1]++;
            hi[i] = '\0';
            return hi;
        }
    }
    return NULL;
}

typedef struct victim {
    char *key;
    int64_t size;
    uint64_t write_id;
    bool live; /* a value not yet expired */
} victim;

typedef struct victims {
    victim *v;
    size_t n, cap;
} victims;

/* Appends the keys of ns that the pattern matches to *vs: the index finds
 * those in the pattern's range, glob_match decides (as L1 does). */
static int scan_locked(fs_l2 *c, const char *ns, const char *pattern, victims *vs,
                       strata_error *err)
{
    char lo[L2_KEY_MAX + 1], hi[L2_KEY_MAX + 1];
    const char *upper = glob_range(pattern, lo, hi);
    sqlite3_stmt *st = bound(c, ST_CLEAR_SCAN,
                             "SELECT key, size, expires, write_id FROM entries"
                             " WHERE ns = ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)",
                             ARGS(TXT(ns), TXT(lo), TXT(upper)));
    if (st == NULL)
        return db_fail(c, err, "clear");
    int64_t now = clock_wall_ms();
    int rc = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (key == NULL || !glob_match(pattern, key))
            continue;
        if (vs->n == vs->cap) {
            victim *nv = realloc(vs->v, 2 * vs->cap * sizeof *nv);
            if (nv == NULL) {
                rc = serr_set(err, SERR_NOMEM, "out of memory");
                break;
            }
            vs->v = nv;
            vs->cap *= 2;
        }
        int64_t exp = sqlite3_column_int64(st, 2);
        victim *v = &vs->v[vs->n];
        v->key = strdup(key);
        v->size = sqlite3_column_int64(st, 1);
        v->write_id = (uint64_t)sqlite3_column_int64(st, 3);
        v->live = exp == 0 || exp > now;
        if (v->key == NULL) {
            rc = serr_set(err, SERR_NOMEM, "out of memory");
            break;
        }
        vs->n++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = db_fail(c, err, "clear");
    release(st);
    return rc;
}

static int fs_clear(l2_cache *base, const char *ns, const char *pattern, size_t *count,
                    void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    *count = 0;
    if (check_key(ns, "", err) != 0)
        return -1;
    victims vs = {.v = malloc(64 * sizeof(victim)), .cap = 64};
    if (vs.v == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    l2_gen_slot *nslot = l2_gen_ns_slot(&c->gen, ns);
    pthread_mutex_lock(&c->mu);
    int rc = txn_begin(c, err);
    if (rc == 0) {
        uint64_t odd = l2_gen_begin(nslot); /* every token of ns moves, matched or not */
        rc = scan_locked(c, ns, pattern, &vs, err);
        for (size_t i = 0; rc == 0 && i < vs.n; i++) {
            bool dropped;
            if (drop_locked(c, ns, vs.v[i].key, vs.v[i].write_id, vs.v[i].size, &dropped) != 0)
                rc = db_fail(c, err, "clear");
            vs.v[i].live = vs.v[i].live && dropped;
        }
        rc = txn_end(c, rc, err);
        l2_gen_end(nslot, odd);
    }
    for (size_t i = 0; rc == 0 && i < vs.n; i++)
        *count += vs.v[i].live;
    if (rc == 0)
        counters_for(c, ns)->deletes += *count;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < vs.n; i++) {
        if (rc == 0 && vs.v[i].live && on_key)
            on_key(ctx, vs.v[i].key);
        free(vs.v[i].key);
    }
    free(vs.v);
    if (rc != 0)
        *count = 0;
    return rc;
}

static int fs_stats(l2_cache *base, const char *ns, l2_stats *out, strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&c->mu);
    ns_counters *n = counters_for(c, ns);
    out->hits = n->hits;
    out->misses = n->misses;
    out->sets = n->sets;
    out->deletes = n->deletes;
    out->expirations = n->expirations;
    out->evictions = n->evictions;
    sqlite3_stmt *st = bound(c, ST_STATS,
                             "SELECT count(*), coalesce(sum(size), 0) FROM entries WHERE ns = ?1"
                             " AND (expires = 0 OR expires > ?2)",
                             ARGS(TXT(ns), NUM(clock_wall_ms())));
    int rc = 0;
    if (st != NULL && sqlite3_step(st) == SQLITE_ROW) {
        out->items = (uint64_t)sqlite3_column_int64(st, 0);
        out->bytes = (uint64_t)sqlite3_column_int64(st, 1);
    } else {
        rc = db_fail(c, err, "stats");
    }
    release(st);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

static void fs_close(l2_cache *base)
{
    fs_l2 *c = (fs_l2 *)base;
    for (size_t i = 0; i < sizeof c->stmts / sizeof c->stmts[0]; i++)
        sqlite3_finalize(c->stmts[i]);
    sqlite3_close(c->db);
    l2_gen_close(&c->gen);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static const l2_ops FS_OPS = {
    .name = "file",
    .get = fs_get,
    .token = fs_token,
    .set = fs_set,
    .del = fs_del,
    .fence_open = fs_fence_open,
    .clear = fs_clear,
    .stats = fs_stats,
    .close = fs_close,
};

/* ---- opening ------------------------------------------------------------------ */

/* The layout, created or brought up to date in one transaction. Indexes
 * written by earlier versions kept fences as rows of entries (fence not
 * NULL): one still open (stamped in the future) becomes an open fence
 * until its stamp; the others go (tokens replace them). */
static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS entries("
    "  ns TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL,"
    "  expires INTEGER NOT NULL, last_access INTEGER NOT NULL,"
    "  write_id INTEGER NOT NULL, ctype TEXT NOT NULL, codec INTEGER NOT NULL,"
    "  raw_size INTEGER NOT NULL, fence INTEGER, written_at INTEGER NOT NULL,"
    "  PRIMARY KEY(ns, key)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS entries_lru ON entries(last_access);"
    "CREATE TABLE IF NOT EXISTS fences("
    "  ns TEXT NOT NULL, key TEXT NOT NULL, id INTEGER NOT NULL, expires INTEGER NOT NULL,"
    "  PRIMARY KEY(ns, key, id)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS totals(id INTEGER PRIMARY KEY, bytes INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta(k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO fences(ns, key, id, expires)"
    "  SELECT ns, key, 0, fence FROM entries"
    "  WHERE fence IS NOT NULL AND fence > CAST(strftime('%s', 'now') AS INTEGER) * 1000;"
    "DELETE FROM entries WHERE fence IS NOT NULL;"
    "DELETE FROM fences WHERE expires <= CAST(strftime('%s', 'now') AS INTEGER) * 1000;"
    "INSERT OR IGNORE INTO totals(id, bytes)"
    "  SELECT 1, coalesce(sum(size), 0) FROM entries;";

/* WAL mode, synchronous=NORMAL. Switching a fresh index to WAL needs its
 * exclusive lock, which SQLite does not wait for (it skips the busy
 * handler where waiting could deadlock): processes opening a fresh L2 at
 * once retry, for about as long as busy_timeout would wait. */
static int set_journal(sqlite3 *db, char **msg)
{
    int rc = SQLITE_BUSY;
    for (int i = 0; i < 1000 && (rc & 0xff) == SQLITE_BUSY; i++) {
        if (i > 0) {
            sqlite3_free(*msg);
            *msg = NULL;
            nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
        }
        rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                          msg);
    }
    return rc;
}

/* The boot rule. A fence must outlive a crash of the machine, since the
 * index outlives it and still holds the value the fence distrusts. With
 * synchronous=NORMAL a commit survives a crash of the process (it is in
 * the WAL file) but not of the machine. Rather than sync every fence, the
 * index records the boot it was last opened under
 * (/proc/sys/kernel/random/boot_id): the first opener under another boot
 * empties it (rows, files, fences), since the commits of the last moments
 * before a crash of the machine may be missing. A cache that is cold
 * after a reboot is the price; every process that used it, and every L1
 * copy, died with the machine anyway. Without a boot id (not Linux, no
 * /proc) fences are synced one by one, as before. Runs in the opening
 * transaction. */
static int boot_id(char out[64])
{
    int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, out, 63);
    close(fd);
    if (n < 16)
        return -1;
    out[n] = '\0';
    out[strcspn(out, "\n")] = '\0';
    return 0;
}

static int empty_files(void *ctx, int ncol, char **vals, char **names)
{
    (void)names;
    fs_l2 *c = ctx;
    if (ncol != 2 || vals[0] == NULL || vals[1] == NULL)
        return 0;
    char path[PATH_MAX], sub[PATH_MAX];
    entry_path(c, vals[0], vals[1], path, sizeof path, sub, sizeof sub);
    unlink(path);
    return 0;
}

static int boot_rule(fs_l2 *c, char **msg)
{
    char boot[64];
    if (boot_id(boot) != 0) {
        c->sync_fences = true;
        return SQLITE_OK;
    }
    char *sql = sqlite3_mprintf("SELECT 1 FROM meta WHERE k = 'boot' AND v <> %Q", boot);
    bool other = false;
    int rc = sql ? SQLITE_OK : SQLITE_NOMEM;
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK && (rc = sqlite3_prepare_v2(c->db, sql, -1, &st, NULL)) == SQLITE_OK) {
        int r = sqlite3_step(st);
        other = r == SQLITE_ROW;
        rc = r == SQLITE_ROW || r == SQLITE_DONE ? SQLITE_OK : r;
    }
    sqlite3_finalize(st);
    sqlite3_free(sql);
    if (rc == SQLITE_OK && other) {
        slog_warn("L2 %s: last used before the machine restarted; emptied (its last commits "
                  "may be missing)",
                  c->dir);
        rc = sqlite3_exec(c->db, "SELECT ns, key FROM entries", empty_files, c, msg);
        if (rc == SQLITE_OK)
            rc = sqlite3_exec(c->db,
                              "DELETE FROM entries; DELETE FROM fences;"
                              " UPDATE totals SET bytes = 0 WHERE id = 1;",
                              NULL, NULL, msg);
    }
    if (rc == SQLITE_OK) {
        sql = sqlite3_mprintf("INSERT OR REPLACE INTO meta(k, v) VALUES('boot', %Q)", boot);
        rc = sql ? sqlite3_exec(c->db, sql, NULL, NULL, msg) : SQLITE_NOMEM;
        sqlite3_free(sql);
    }
    return rc;
}

l2_cache *l2_fs_open(const char *dir, const l2_config *cfg, strata_error *err)
{
    if (dir[0] == '\0' || strlen(dir) >= PATH_MAX - 100) {
        serr_set(err, SERR_INVALID, "bad L2 cache directory '%s'", dir);
        return NULL;
    }
    if (fs_mkdir_p(dir, err) != 0)
        return NULL;
    fs_l2 *c = calloc(1, sizeof *c);
    if (c == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    c->base.ops = &FS_OPS;
    c->cfg = *cfg;
    snprintf(c->dir, sizeof c->dir, "%s", dir);
    snprintf(c->overflow.ns, sizeof c->overflow.ns, "*");
    pthread_mutex_init(&c->mu, NULL);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/index.db", dir);
    char *msg = NULL;
    /* the cache may lose data by design: synchronous=NORMAL (open fences
     * are the exception: see boot_rule) */
    if (sqlite3_open_v2(path, &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(c->db, 10000) != SQLITE_OK || set_journal(c->db, &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK ||
        boot_rule(c, &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        serr_set(err, SERR_IO, "L2 index %s: %s", path,
                 msg ? msg : (c->db ? sqlite3_errmsg(c->db) : "cannot open"));
        sqlite3_free(msg);
        fs_close(&c->base);
        return NULL;
    }
    /* ids continue past every write id the index names (a table made
     * afresh beside an old index), from a random high point as well */
    uint64_t first_id =
        (uint64_t)scalar(c, ST_MAX_WRITE_ID, "SELECT coalesce(max(write_id), 0) FROM entries");
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) == sizeof r)
        first_id += (uint64_t)r << 16;
    /* without the table the nodes' L1 copies could not be kept coherent:
     * no L2 at all rather than an incoherent one */
    if (l2_gen_open(&c->gen, dir, first_id, err) != 0) {
        fs_close(&c->base);
        return NULL;
    }
    return &c->base;
}
