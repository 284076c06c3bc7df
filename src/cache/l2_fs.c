#include "l2_fs.h"
#include "../common/hex.h"
#include "../common/clock.h"

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
#include "../common/fsutil.h"
#include "../common/glob.h"

#define FILE_MAGIC "STL2"
#define HEADER_SIZE                                                                                \
    136                       /* magic 4, version 1, codec 1, pad 2, write_id 8, raw 8,            \
                                 payload 8, payload crc 4, content type 96, header crc 4 */
#define ACCESS_UPDATE_MS 1000 /* last_access is refreshed at most once a second */

typedef struct ns_counters {
    char ns[L2_NS_MAX + 1];
    uint64_t hits, misses, sets, deletes, expirations, evictions;
} ns_counters;

#define MAX_NS_COUNTERS 64

typedef struct fs_l2 {
    l2_cache base;
    char dir[PATH_MAX - 100];
    l2_config cfg;
    pthread_mutex_t mu;
    sqlite3 *db;
    uint64_t total_bytes;
    uint64_t next_write_id;
    ns_counters counters[MAX_NS_COUNTERS];
    int ncounters;
    ns_counters overflow;    /* namespaces past MAX_NS_COUNTERS */
    sqlite3_stmt *stmts[16]; /* prepared once, used under mu */
} fs_l2;

/* A prepared statement for this SQL, kept for the life of the cache;
 * give it back with release(). Callers hold c->mu. */
static sqlite3_stmt *cached(fs_l2 *c, int slot, const char *sql)
{
    if (c->stmts[slot] == NULL && sqlite3_prepare_v3(c->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                                     &c->stmts[slot], NULL) != SQLITE_OK)
        return NULL;
    return c->stmts[slot];
}

static void release(sqlite3_stmt *st)
{
    if (st != NULL) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

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

static int db_fail(fs_l2 *c, strata_error *err, const char *what)
{
    return serr_set(err, SERR_IO, "L2 index: %s: %s", what, sqlite3_errmsg(c->db));
}

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

/* Deletes the row of a key (under the lock); -1 when the index refused. */
static int drop_row_locked(fs_l2 *c, const char *ns, const char *key)
{
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if ((st = cached(c, 7, "DELETE FROM entries WHERE ns = ?1 AND key = ?2")) != NULL) {
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    }
    release(st);
    return rc;
}

/* Removes the file of a key whose row is gone, and its bytes from the total. */
static void unlink_entry_locked(fs_l2 *c, const char *ns, const char *key, int64_t size)
{
    char path[PATH_MAX], sub[PATH_MAX];
    entry_path(c, ns, key, path, sizeof path, sub, sizeof sub);
    unlink(path);
    c->total_bytes -= (uint64_t)size <= c->total_bytes ? (uint64_t)size : c->total_bytes;
}

/* Deletes the row and file of a key (under the lock). A row that could
 * not be deleted keeps its file: the row must never name a missing file
 * that a later write could reuse. */
static void drop_locked(fs_l2 *c, const char *ns, const char *key, int64_t size)
{
    if (drop_row_locked(c, ns, key) == 0)
        unlink_entry_locked(c, ns, key, size);
}

typedef struct row {
    bool found;
    bool fence;
    int64_t size, expires, last_access, written_at, fence_at;
    uint64_t write_id;
    l2_meta meta;
} row;

static int read_row(fs_l2 *c, const char *ns, const char *key, row *r, strata_error *err)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st = NULL;
    if ((st = cached(c, 1,
                     "SELECT size, expires, last_access, write_id, ctype, codec, raw_size,"
                     " fence, written_at FROM entries WHERE ns = ?1 AND key = ?2")) == NULL)
        return db_fail(c, err, "read");
    sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
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
        r->fence = sqlite3_column_type(st, 7) != SQLITE_NULL;
        r->fence_at = sqlite3_column_int64(st, 7);
        r->written_at = sqlite3_column_int64(st, 8);
        r->meta.write_id = r->write_id;
        r->meta.expires_ms = r->expires;
    }
    release(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_fail(c, err, "read");
    return 0;
}

/* Looks a key up under the lock: a live value, or a miss (expired values
 * are removed on the way). */
static int lookup_locked(fs_l2 *c, const char *ns, const char *key, row *r, strata_error *err)
{
    if (read_row(c, ns, key, r, err) != 0)
        return -1;
    ns_counters *n = counters_for(c, ns);
    int64_t now = clock_wall_ms();
    if (r->found && !r->fence && r->expires != 0 && r->expires <= now) {
        drop_locked(c, ns, key, r->size);
        n->expirations++;
        r->found = false;
    }
    if (!r->found || r->fence)
        return serr_set(err, SERR_NOT_FOUND, "not cached");
    return 0;
}

static int fs_get(l2_cache *base, const char *ns, const char *key, size_t max_len, strata_buf *out,
                  l2_meta *meta, strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    row r;
    pthread_mutex_lock(&c->mu);
    int rc = lookup_locked(c, ns, key, &r, err);
    ns_counters *n = counters_for(c, ns);
    if (rc == 0 && clock_wall_ms() - r.last_access > ACCESS_UPDATE_MS) {
        sqlite3_stmt *st = NULL;
        if ((st = cached(c, 8, "UPDATE entries SET last_access = ?3 WHERE ns = ?1 AND key = ?2")) !=
            NULL) {
            sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, clock_wall_ms());
            sqlite3_step(st);
        }
        release(st);
    }
    pthread_mutex_unlock(&c->mu);
    if (rc == 0) {
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

static int fs_get_meta(l2_cache *base, const char *ns, const char *key, l2_meta *meta,
                       strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    row r;
    pthread_mutex_lock(&c->mu);
    int rc = lookup_locked(c, ns, key, &r, err);
    pthread_mutex_unlock(&c->mu);
    if (rc == 0)
        *meta = r.meta;
    return rc;
}

/* Evicts least recently used entries until the cache fits its limit. */
static void evict_locked(fs_l2 *c)
{
    while (c->total_bytes > c->cfg.max_bytes) {
        sqlite3_stmt *st = NULL;
        if ((st = cached(c, 2,
                         "SELECT ns, key, size FROM entries WHERE fence IS NULL"
                         " ORDER BY last_access LIMIT 32")) == NULL)
            return;
        int n = 0;
        struct {
            char ns[L2_NS_MAX + 1];
            char key[L2_KEY_MAX + 1];
            int64_t size;
        } victims[32] = {0};
        while (n < 32 && sqlite3_step(st) == SQLITE_ROW) {
            snprintf(victims[n].ns, sizeof victims[n].ns, "%s", sqlite3_column_text(st, 0));
            snprintf(victims[n].key, sizeof victims[n].key, "%s", sqlite3_column_text(st, 1));
            victims[n].size = sqlite3_column_int64(st, 2);
            n++;
        }
        release(st);
        if (n == 0)
            return;
        for (int i = 0; i < n && c->total_bytes > c->cfg.max_bytes; i++) {
            drop_locked(c, victims[i].ns, victims[i].key, victims[i].size);
            counters_for(c, victims[i].ns)->evictions++;
        }
    }
}

static int fs_set(l2_cache *base, const char *ns, const char *key, const void *data, size_t len,
                  const l2_meta *meta, uint64_t ttl_ms, int64_t fill_since_ms, uint64_t *write_id,
                  strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    if (strlen(ns) > L2_NS_MAX || strlen(key) > L2_KEY_MAX)
        return serr_set(err, SERR_INVALID, "cache key too long");
    if (len + HEADER_SIZE > c->cfg.max_bytes)
        return serr_set(err, SERR_TOO_LARGE, "value larger than the L2 cache");
    char path[PATH_MAX], sub[PATH_MAX], tmp[PATH_MAX + 16];
    entry_path(c, ns, key, path, sizeof path, sub, sizeof sub);
    if (fs_mkdir_p(sub, err) != 0)
        return -1;
    pthread_mutex_lock(&c->mu);
    uint64_t id = ++c->next_write_id;
    pthread_mutex_unlock(&c->mu);
    /* write the file beside its final name, outside the lock */
    l2_meta m = *meta;
    m.write_id = id;
    unsigned char header[HEADER_SIZE];
    encode_header(header, &m, data, len);
    snprintf(tmp, sizeof tmp, "%s.%llx", path, (unsigned long long)id);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return serr_set(err, fs_errno_kind(errno), "L2: cannot write %s: %s", tmp, strerror(errno));
    int wrc = fs_write_all(fd, header, HEADER_SIZE);
    if (wrc == 0)
        wrc = fs_write_all(fd, data, len);
    int e = errno;
    close(fd);
    if (wrc != 0) {
        unlink(tmp);
        return serr_set(err, fs_errno_kind(e), "L2: cannot write %s: %s", tmp, strerror(e));
    }
    pthread_mutex_lock(&c->mu);
    row r;
    int rc = read_row(c, ns, key, &r, err);
    int64_t now = clock_wall_ms();
    if (rc == 0 && fill_since_ms > 0 && r.found) {
        /* a fence, or a value written after this fill began, is newer */
        bool fence_live = r.fence && (r.expires == 0 || r.expires > now);
        if ((fence_live && r.fence_at >= fill_since_ms) ||
            (!r.fence && r.written_at >= fill_since_ms))
            rc = serr_set(err, SERR_CONFLICT, "a newer write or invalidation happened");
    }
    if (rc == 0 && rename(tmp, path) != 0)
        rc = serr_set(err, SERR_IO, "L2: cannot move %s into place: %s", path, strerror(errno));
    if (rc == 0) {
        sqlite3_stmt *st = NULL;
        if ((st = cached(c, 3,
                         "INSERT OR REPLACE INTO entries(ns, key, size, expires, last_access,"
                         " write_id, ctype, codec, raw_size, fence, written_at)"
                         " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?5)")) == NULL) {
            rc = db_fail(c, err, "write");
        } else {
            uint64_t size = len + HEADER_SIZE;
            sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)size);
            sqlite3_bind_int64(st, 4, ttl_ms ? now + (int64_t)ttl_ms : 0);
            sqlite3_bind_int64(st, 5, now);
            sqlite3_bind_int64(st, 6, (sqlite3_int64)id);
            sqlite3_bind_text(st, 7, m.content_type, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 8, m.codec);
            sqlite3_bind_int64(st, 9, (sqlite3_int64)m.raw_size);
            if (sqlite3_step(st) != SQLITE_DONE) {
                rc = db_fail(c, err, "write");
            } else {
                c->total_bytes += size;
                c->total_bytes -= r.found && !r.fence ? (uint64_t)r.size : 0;
                counters_for(c, ns)->sets++;
                evict_locked(c);
            }
        }
        release(st);
    }
    pthread_mutex_unlock(&c->mu);
    if (rc != 0)
        unlink(tmp);
    else if (write_id)
        *write_id = id;
    return rc;
}

/* A fence row: no file, no value; it refuses fills that began before it. */
static int put_fence_locked(fs_l2 *c, const char *ns, const char *key, int64_t fence_ms,
                            strata_error *err)
{
    sqlite3_stmt *st = NULL;
    if ((st = cached(c, 4,
                     "INSERT OR REPLACE INTO entries(ns, key, size, expires, last_access,"
                     " write_id, ctype, codec, raw_size, fence, written_at)"
                     " VALUES(?1, ?2, 0, ?3, ?4, 0, '', 0, 0, ?4, ?4)")) == NULL)
        return db_fail(c, err, "fence");
    sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    /* a fence stamped in the future (a change in progress) stands at least
     * until then, and fence_ttl after it */
    int64_t now = clock_wall_ms();
    sqlite3_bind_int64(st, 3, (fence_ms > now ? fence_ms : now) + (int64_t)c->cfg.fence_ttl_ms);
    sqlite3_bind_int64(st, 4, fence_ms);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(c, err, "fence");
    release(st);
    return rc;
}

static int fs_del(l2_cache *base, const char *ns, const char *key, int64_t fence_ms, bool *found,
                  strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    /* A fence for a change still to come must survive a crash of the
     * machine, not only of the process: that one write is synced (FULL). */
    bool durable = fence_ms > clock_wall_ms();
    pthread_mutex_lock(&c->mu);
    if (durable)
        sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    int rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK
                 ? 0
                 : db_fail(c, err, "delete");
    row r = {0};
    if (rc == 0)
        rc = read_row(c, ns, key, &r, err);
    bool live = rc == 0 && r.found && !r.fence && (r.expires == 0 || r.expires > clock_wall_ms());
    if (rc == 0 && r.found && drop_row_locked(c, ns, key) != 0)
        rc = db_fail(c, err, "delete");
    if (rc == 0 && fence_ms > 0)
        rc = put_fence_locked(c, ns, key, fence_ms, err);
    if (rc == 0 && sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_fail(c, err, "delete");
    if (rc != 0)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    if (durable)
        sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    if (rc == 0 && r.found) {
        /* the row is gone for good: now its file may go */
        unlink_entry_locked(c, ns, key, r.fence ? 0 : r.size);
    }
    if (rc == 0 && live)
        counters_for(c, ns)->deletes++;
    pthread_mutex_unlock(&c->mu);
    if (found)
        *found = rc == 0 && live;
    return rc;
}

typedef struct victim {
    char *key;
    int64_t size;
    bool live; /* a value not yet expired (fences are never victims) */
} victim;

static int fs_clear(l2_cache *base, const char *ns, const char *pattern, size_t *count,
                    void (*on_key)(void *ctx, const char *key), void *ctx, strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    *count = 0;
    size_t cap = 64, n = 0;
    victim *v = malloc(cap * sizeof *v);
    if (v == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    /* the index finds the keys that start with the pattern's literal prefix
     * ("apple*"); glob_match decides, as L1 does */
    char lo[L2_KEY_MAX + 1], hi[L2_KEY_MAX + 1];
    size_t plen = glob_literal_prefix(pattern);
    if (plen > L2_KEY_MAX)
        plen = L2_KEY_MAX;
    memcpy(lo, pattern, plen);
    lo[plen] = '\0';
    memcpy(hi, lo, plen + 1);
    bool bounded = false; /* hi = the prefix with its last byte below 0xff raised */
    for (size_t i = plen; i > 0 && !bounded; i--) {
        if ((unsigned char)hi[i - 1] < 0xff) {
            hi[i - 1]++;
            hi[i] = '\0';
            bounded = true;
        }
    }
    pthread_mutex_lock(&c->mu);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if ((st = cached(c, 5,
                     "SELECT key, size, fence IS NOT NULL, expires FROM entries"
                     " WHERE ns = ?1 AND key >= ?2 AND (?3 IS NULL OR key < ?3)")) == NULL)
        rc = db_fail(c, err, "clear");
    if (rc == 0) {
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, lo, -1, SQLITE_STATIC);
        if (bounded)
            sqlite3_bind_text(st, 3, hi, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 3);
    }
    int64_t now = clock_wall_ms();
    int step = SQLITE_DONE;
    while (rc == 0 && (step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *key = (const char *)sqlite3_column_text(st, 0);
        if (key == NULL || !glob_match(pattern, key))
            continue;
        if (n == cap) {
            victim *nv = realloc(v, 2 * cap * sizeof *v);
            if (nv == NULL) {
                rc = serr_set(err, SERR_NOMEM, "out of memory");
                break;
            }
            v = nv;
            cap *= 2;
        }
        bool fence = sqlite3_column_int(st, 2) != 0;
        int64_t exp = sqlite3_column_int64(st, 3);
        v[n].key = strdup(key);
        v[n].size = fence ? 0 : sqlite3_column_int64(st, 1);
        v[n].live = !fence && (exp == 0 || exp > now);
        if (v[n].key == NULL) {
            rc = serr_set(err, SERR_NOMEM, "out of memory");
            break;
        }
        n++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = db_fail(c, err, "clear");
    release(st);
    /* fences stay: they guard against fills that began before them */
    if (rc == 0 && sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_fail(c, err, "clear");
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (v[i].size > 0 || v[i].live)
            rc = drop_row_locked(c, ns, v[i].key) == 0 ? 0 : db_fail(c, err, "clear");
    if (rc == 0 && sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_fail(c, err, "clear");
    if (rc != 0) {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    } else {
        for (size_t i = 0; i < n; i++) {
            if (v[i].size == 0 && !v[i].live)
                continue;
            unlink_entry_locked(c, ns, v[i].key, v[i].size);
            if (v[i].live) {
                (*count)++;
                if (on_key)
                    on_key(ctx, v[i].key);
            }
        }
        counters_for(c, ns)->deletes += *count;
    }
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++)
        free(v[i].key);
    free(v);
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
    sqlite3_stmt *st = NULL;
    int rc = 0;
    if ((st = cached(c, 6,
                     "SELECT count(*), coalesce(sum(size), 0) FROM entries WHERE ns = ?1"
                     " AND fence IS NULL AND (expires = 0 OR expires > ?2)")) == NULL) {
        rc = db_fail(c, err, "stats");
    } else {
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, clock_wall_ms());
        if (sqlite3_step(st) == SQLITE_ROW) {
            out->items = (uint64_t)sqlite3_column_int64(st, 0);
            out->bytes = (uint64_t)sqlite3_column_int64(st, 1);
        }
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
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static const l2_ops FS_OPS = {
    .name = "file",
    .get = fs_get,
    .get_meta = fs_get_meta,
    .set = fs_set,
    .del = fs_del,
    .clear = fs_clear,
    .stats = fs_stats,
    .close = fs_close,
};

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
    /* the cache may lose data by design: synchronous=NORMAL */
    if (sqlite3_open_v2(path, &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(c->db, 10000) != SQLITE_OK ||
        sqlite3_exec(c->db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                     "CREATE TABLE IF NOT EXISTS entries("
                     "  ns TEXT NOT NULL, key TEXT NOT NULL, size INTEGER NOT NULL,"
                     "  expires INTEGER NOT NULL, last_access INTEGER NOT NULL,"
                     "  write_id INTEGER NOT NULL, ctype TEXT NOT NULL, codec INTEGER NOT NULL,"
                     "  raw_size INTEGER NOT NULL, fence INTEGER, written_at INTEGER NOT NULL,"
                     "  PRIMARY KEY(ns, key)) WITHOUT ROWID;"
                     "CREATE INDEX IF NOT EXISTS entries_lru ON entries(last_access);",
                     NULL, NULL, &msg) != SQLITE_OK) {
        serr_set(err, SERR_IO, "L2 index %s: %s", path, msg ? msg : sqlite3_errmsg(c->db));
        sqlite3_free(msg);
        fs_close(&c->base);
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db,
                           "SELECT coalesce(sum(size), 0), coalesce(max(write_id), 0) FROM entries",
                           -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        c->total_bytes = (uint64_t)sqlite3_column_int64(st, 0);
        c->next_write_id = (uint64_t)sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    /* write ids stay unique across restarts and across processes that
     * share this directory: start from a random high point as well */
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) == sizeof r)
        c->next_write_id += (uint64_t)r << 16;
    return &c->base;
}
