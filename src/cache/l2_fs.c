#include "l2_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "../codec/sha256.h"
#include "../common/clock.h"
#include "../common/fsutil.h"
#include "../common/glob.h"
#include "../common/hex.h"

#define FILE_MAGIC "STL2"
#define HEADER_SIZE                                                                                \
    136                       /* magic 4, version 1, codec 1, pad 2, write_id 8, raw 8,            \
                                 payload 8, payload crc 4, content type 96, header crc 4 */
#define ACCESS_UPDATE_MS 1000 /* last_access is refreshed at most once a second */

/* ---- the generation table (see l2_fs.h) ------------------------------------ */

#define GEN_FILE      "generations"
#define GEN_MAGIC     "STRATAGN"
#define GEN_VERSION   1u
#define GEN_KEY_SLOTS 65536u
#define GEN_NS_SLOTS  1024u
#define GEN_HEADER    4096u /* the slots start on their own page */
#define GEN_SIZE      (GEN_HEADER + 8u * (GEN_KEY_SLOTS + GEN_NS_SLOTS))

/* Shared between processes: the atomics must work on any address, which
 * lock-free ones do. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(sizeof(atomic_ullong) == 8, "a slot is 8 bytes");

typedef struct gen_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint32_t key_slots;
    uint32_t ns_slots;
    atomic_ullong next_id; /* write ids and fence ids */
} gen_header;

typedef struct gen_table {
    void *map;
    gen_header *hdr;
    atomic_ullong *keys; /* GEN_KEY_SLOTS */
    atomic_ullong *nss;  /* GEN_NS_SLOTS */
} gen_table;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static atomic_ullong *ns_slot(const gen_table *g, const char *ns)
{
    return &g->nss[mix(fnv(1469598103934665603ull, ns, strlen(ns))) % GEN_NS_SLOTS];
}

static atomic_ullong *key_slot(const gen_table *g, const char *ns, const char *key)
{
    uint64_t h = fnv(1469598103934665603ull, ns, strlen(ns) + 1); /* with its NUL */
    return &g->keys[mix(fnv(h, key, strlen(key))) % GEN_KEY_SLOTS];
}

/* Under the index's write lock: a slot left odd by a writer that died (or
 * that committed and is about to settle it itself: whichever CAS comes
 * first wins) becomes even. Returns the even generation. */
static uint64_t gen_settle(atomic_ullong *slot)
{
    unsigned long long v = atomic_load(slot);
    while ((v & 1) != 0 && !atomic_compare_exchange_weak(slot, &v, v + 1))
        ;
    return (v & 1) != 0 ? v + 1 : v;
}

/* Under the index's write lock, inside the transaction of a change: the
 * slot becomes odd (a change in progress). Returns the odd value, which
 * gen_end takes. */
static uint64_t gen_begin(atomic_ullong *slot)
{
    for (;;) {
        unsigned long long v = gen_settle(slot);
        if (atomic_compare_exchange_strong(slot, &v, v + 1))
            return v + 1;
    }
}

/* After the commit (or the rollback): back to even, unless a later writer
 * settled it already. True when this call did. */
static bool gen_end(atomic_ullong *slot, uint64_t odd)
{
    unsigned long long v = odd;
    return atomic_compare_exchange_strong(slot, &v, odd + 1);
}

/* Creates the table whole under a temp name, then links it into place:
 * the name only ever shows a complete table. EEXIST (another process won)
 * is success. */
static int gen_create(const char *dir, const char *path, uint64_t first_id, strata_error *err)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/" GEN_FILE ".tmp.XXXXXX", dir);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return serr_set(err, fs_errno_kind(errno), "L2: cannot create %s: %s", tmp,
                        strerror(errno));
    unsigned char hdr[GEN_HEADER] = {0};
    gen_header h = {.version = GEN_VERSION,
                    .header_size = GEN_HEADER,
                    .key_slots = GEN_KEY_SLOTS,
                    .ns_slots = GEN_NS_SLOTS};
    memcpy(h.magic, GEN_MAGIC, 8);
    atomic_init(&h.next_id, first_id);
    memcpy(hdr, &h, sizeof h);
    /* allocated, not sparse: a store into the mapping never needs a block
     * that a full disk cannot give (which would be SIGBUS) */
    int rc = posix_fallocate(fd, 0, GEN_SIZE);
    int e = rc;
    if (rc == 0 && (pwrite(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr || fsync(fd) != 0)) {
        e = errno;
        rc = -1;
    }
    if (rc == 0 && link(tmp, path) != 0 && errno != EEXIST) {
        e = errno;
        rc = -1;
    }
    close(fd);
    unlink(tmp);
    if (rc != 0)
        return serr_set(err, fs_errno_kind(e), "L2: cannot create %s: %s", path, strerror(e));
    return fs_sync_dir(dir, err);
}

/* Opens (creating it if needed) and maps the table of dir. */
static int gen_open(gen_table *g, const char *dir, uint64_t first_id, strata_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" GEN_FILE, dir);
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 3; attempt++) {
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT)
            return serr_set(err, fs_errno_kind(errno), "L2: cannot open %s: %s", path,
                            strerror(errno));
        if (fd < 0 && gen_create(dir, path, first_id, err) != 0)
            return -1;
    }
    if (fd < 0)
        return serr_set(err, SERR_IO, "L2: %s keeps disappearing", path);
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size != (off_t)GEN_SIZE) {
        close(fd);
        return serr_set(err, SERR_CORRUPT,
                        "L2: %s is not a generation table of this version (size %lld); remove it "
                        "while no strata process uses %s",
                        path, (long long)st.st_size, dir);
    }
    void *map = mmap(NULL, GEN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return serr_set(err, SERR_IO, "L2: cannot map %s: %s", path, strerror(e));
    gen_header *h = map;
    if (memcmp(h->magic, GEN_MAGIC, 8) != 0 || h->version != GEN_VERSION ||
        h->header_size != GEN_HEADER || h->key_slots != GEN_KEY_SLOTS ||
        h->ns_slots != GEN_NS_SLOTS) {
        munmap(map, GEN_SIZE);
        return serr_set(err, SERR_CORRUPT,
                        "L2: %s is not a generation table of this version; remove it while no "
                        "strata process uses %s",
                        path, dir);
    }
    g->map = map;
    g->hdr = h;
    g->keys = (atomic_ullong *)((char *)map + GEN_HEADER);
    g->nss = g->keys + GEN_KEY_SLOTS;
    return 0;
}

static uint64_t gen_next_id(gen_table *g)
{
    return atomic_fetch_add(&g->hdr->next_id, 1) + 1;
}

/* ---- the cache --------------------------------------------------------------- */

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
    ST_EXPIRE,
    ST_TOUCH,
    ST_CLEAR_SCAN,
    ST_STATS,
    ST_TOTAL_ADD,
    ST_TOTAL_GET,
    ST_FENCE_PUT,
    ST_FENCE_DROP,
    ST_FENCE_SWEEP,
    ST_FENCE_OPEN,
    ST_COUNT
};

typedef struct fs_l2 {
    l2_cache base;
    char dir[PATH_MAX - 100];
    l2_config cfg;
    pthread_mutex_t mu; /* this handle's connection; across processes the index locks */
    sqlite3 *db;
    gen_table gen;
    ns_counters counters[MAX_NS_COUNTERS];
    int ncounters;
    ns_counters overflow;          /* namespaces past MAX_NS_COUNTERS */
    sqlite3_stmt *stmts[ST_COUNT]; /* prepared once, used under mu */
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

/* Transactions, under c->mu: BEGIN IMMEDIATE takes the index's write lock,
 * which every process's writers share, so whatever runs between it and
 * the COMMIT is serialised with every other change of the L2. */
static int txn_begin(fs_l2 *c, strata_error *err)
{
    return sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK
               ? 0
               : db_fail(c, err, "begin");
}

/* Commits when rc is 0, rolls back otherwise; returns the outcome. */
static int txn_end(fs_l2 *c, int rc, strata_error *err)
{
    if (rc == 0 && sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        rc = db_fail(c, err, "commit");
    if (rc != 0 && !sqlite3_get_autocommit(c->db))
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
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

/* Adds delta to the index's total of stored bytes (in a transaction). */
static int add_total_locked(fs_l2 *c, int64_t delta)
{
    if (delta == 0)
        return 0;
    sqlite3_stmt *st =
        cached(c, ST_TOTAL_ADD, "UPDATE totals SET bytes = max(0, bytes + ?1) WHERE id = 1");
    int rc = st != NULL ? 0 : -1;
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, delta);
        rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    }
    release(st);
    return rc;
}

static uint64_t total_locked(fs_l2 *c)
{
    sqlite3_stmt *st = cached(c, ST_TOTAL_GET, "SELECT bytes FROM totals WHERE id = 1");
    uint64_t total = 0;
    if (st != NULL && sqlite3_step(st) == SQLITE_ROW)
        total = (uint64_t)sqlite3_column_int64(st, 0);
    release(st);
    return total;
}

/* Deletes the row and the file of a key, in a transaction (under the
 * index's write lock nobody can put another file in its place meanwhile).
 * With write_id non-zero, only the row of that write. Sets *dropped.
 * -1 when the index refused (the file then stays: a row must never name
 * a missing file that a later write could reuse). */
static int drop_locked(fs_l2 *c, const char *ns, const char *key, uint64_t write_id, int64_t size,
                       bool *dropped)
{
    *dropped = false;
    sqlite3_stmt *st = cached(
        c, ST_DROP, "DELETE FROM entries WHERE ns = ?1 AND key = ?2 AND (?3 = 0 OR write_id = ?3)");
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)write_id);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    bool gone = rc == 0 && sqlite3_changes(c->db) > 0;
    release(st);
    if (gone) {
        char path[PATH_MAX], sub[PATH_MAX];
        entry_path(c, ns, key, path, sizeof path, sub, sizeof sub);
        unlink(path);
        rc = add_total_locked(c, -size);
        *dropped = rc == 0;
    }
    return rc;
}

typedef struct row {
    bool found;
    int64_t size, expires, last_access;
    uint64_t write_id;
    l2_meta meta;
} row;

static int read_row(fs_l2 *c, const char *ns, const char *key, row *r, strata_error *err)
{
    memset(r, 0, sizeof *r);
    sqlite3_stmt *st = NULL;
    if ((st = cached(c, ST_READ,
                     "SELECT size, expires, last_access, write_id, ctype, codec, raw_size"
                     " FROM entries WHERE ns = ?1 AND key = ?2")) == NULL)
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

/* Looks a key up under the lock: a live value, or SERR_NOT_FOUND (an
 * expired value is removed on the way; expiry changes nothing a node may
 * hold, so it moves no token). */
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
        if ((st = cached(c, ST_TOUCH,
                         "UPDATE entries SET last_access = ?3 WHERE ns = ?1 AND key = ?2")) !=
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
    /* a change makes its slot odd before its commit and even after it:
     * read before the value, an even pair means every change it names is
     * visible in the index */
    uint64_t n = atomic_load_explicit(ns_slot(&c->gen, ns), memory_order_acquire);
    uint64_t k = atomic_load_explicit(key_slot(&c->gen, ns, key), memory_order_acquire);
    out->w[0] = n;
    out->w[1] = k;
    out->w[2] = 0;
    out->w[3] = ((n | k) & 1) == 0 ? 1 : 0;
    return 0;
}

/* Evicts least recently used entries until the cache fits its limit (in
 * a transaction). Eviction moves no token: a node's copy of an evicted
 * value is as current as it was. */
static int evict_locked(fs_l2 *c)
{
    uint64_t total = total_locked(c);
    while (total > c->cfg.max_bytes) {
        sqlite3_stmt *st = NULL;
        if ((st = cached(c, ST_LRU,
                         "SELECT ns, key, size, write_id FROM entries"
                         " ORDER BY last_access LIMIT 32")) == NULL)
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

/* Whether an open fence stands on the key (in a transaction). */
static int fenced_locked(fs_l2 *c, const char *ns, const char *key, bool *fenced, strata_error *err)
{
    sqlite3_stmt *st = cached(c, ST_FENCE_OPEN,
                              "SELECT 1 FROM fences WHERE ns = ?1 AND key = ?2 AND expires > ?3"
                              " LIMIT 1");
    if (st == NULL)
        return db_fail(c, err, "fences");
    sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, clock_wall_ms());
    int step = sqlite3_step(st);
    release(st);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return db_fail(c, err, "fences");
    *fenced = step == SQLITE_ROW;
    return 0;
}

/* Settles the slots of (ns, key) under the index's write lock (see
 * gen_settle); best effort. */
static void settle_slots(fs_l2 *c, const char *ns, const char *key)
{
    strata_error err;
    pthread_mutex_lock(&c->mu);
    if (txn_begin(c, &err) == 0) {
        gen_settle(ns_slot(&c->gen, ns));
        gen_settle(key_slot(&c->gen, ns, key));
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
    if (strlen(ns) > L2_NS_MAX || strlen(key) > L2_KEY_MAX)
        return serr_set(err, SERR_INVALID, "cache key too long");
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
    uint64_t id = gen_next_id(&c->gen);
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

    atomic_ullong *nslot = ns_slot(&c->gen, ns), *kslot = key_slot(&c->gen, ns, key);
    pthread_mutex_lock(&c->mu);
    int rc = txn_begin(c, err);
    bool began = rc == 0;
    uint64_t ngen = 0, kgen = 0, odd = 0;
    if (rc == 0) {
        ngen = gen_settle(nslot);
        kgen = gen_settle(kslot);
    }
    if (rc == 0 && fill != NULL) {
        /* the check and the write in one transaction: no change of this
         * key, in any process, can fall between them */
        bool fenced = false;
        if (fill->w[0] != ngen || fill->w[1] != kgen)
            rc = serr_set(err, SERR_CONFLICT, "the key changed since this fill began");
        else if ((rc = fenced_locked(c, ns, key, &fenced, err)) == 0 && fenced)
            rc = serr_set(err, SERR_CONFLICT, "a change of this key is in progress");
    }
    if (rc == 0 && fill == NULL)
        odd = gen_begin(kslot);
    row r = {0};
    if (rc == 0)
        rc = read_row(c, ns, key, &r, err);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = serr_set(err, SERR_IO, "L2: cannot move %s into place: %s", path, strerror(errno));
    uint64_t size = len + HEADER_SIZE;
    int64_t now = clock_wall_ms();
    if (rc == 0) {
        sqlite3_stmt *st = NULL;
        if ((st = cached(c, ST_UPSERT,
                         "INSERT OR REPLACE INTO entries(ns, key, size, expires, last_access,"
                         " write_id, ctype, codec, raw_size, fence, written_at)"
                         " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULL, ?5)")) == NULL) {
            rc = db_fail(c, err, "write");
        } else {
            sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)size);
            sqlite3_bind_int64(st, 4, ttl_ms ? now + (int64_t)ttl_ms : 0);
            sqlite3_bind_int64(st, 5, now);
            sqlite3_bind_int64(st, 6, (sqlite3_int64)id);
            sqlite3_bind_text(st, 7, m.content_type, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 8, m.codec);
            sqlite3_bind_int64(st, 9, (sqlite3_int64)m.raw_size);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = db_fail(c, err, "write");
        }
        release(st);
    }
    if (rc == 0 && add_total_locked(c, (int64_t)size - (r.found ? r.size : 0)) != 0)
        rc = db_fail(c, err, "write");
    if (rc == 0 && evict_locked(c) != 0)
        rc = db_fail(c, err, "evict");
    if (began)
        rc = txn_end(c, rc, err);
    bool settled = odd != 0 && gen_end(kslot, odd);
    if (rc == 0) {
        counters_for(c, ns)->sets++;
        if (new_token && fill != NULL) {
            *new_token = *fill; /* a fill changes nothing a node may hold */
        } else if (new_token && settled) {
            new_token->w[0] = ngen; /* read under the write lock: no clear since */
            new_token->w[1] = odd + 1;
            new_token->w[3] = 1;
        }
    }
    pthread_mutex_unlock(&c->mu);
    if (rc != 0)
        unlink(tmp); /* (gone already when it was moved into place) */
    else if (write_id)
        *write_id = id;
    return rc;
}

/* Removes the expired fences of a key (in a transaction). */
static int sweep_fences_locked(fs_l2 *c, const char *ns, const char *key)
{
    sqlite3_stmt *st = cached(c, ST_FENCE_SWEEP,
                              "DELETE FROM fences WHERE ns = ?1 AND key = ?2 AND expires <= ?3");
    if (st == NULL)
        return -1;
    sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, clock_wall_ms());
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
    release(st);
    return rc;
}

/* The common part of del and fence_open, in a transaction that has moved
 * the key's token: drops the value. */
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
    return sweep_fences_locked(c, ns, key) == 0 ? 0 : db_fail(c, err, "fences");
}

static int fs_del(l2_cache *base, const char *ns, const char *key, const l2_fence_id *close_ids,
                  size_t nclose, bool *found, strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    atomic_ullong *kslot = key_slot(&c->gen, ns, key);
    bool live = false;
    pthread_mutex_lock(&c->mu);
    int rc = txn_begin(c, err);
    uint64_t odd = 0;
    if (rc == 0) {
        /* whether or not L2 holds a value: a node may hold one it evicted */
        gen_settle(ns_slot(&c->gen, ns));
        odd = gen_begin(kslot);
        rc = remove_value_locked(c, ns, key, &live, err);
    }
    for (size_t i = 0; rc == 0 && i < nclose; i++) {
        sqlite3_stmt *st =
            cached(c, ST_FENCE_DROP, "DELETE FROM fences WHERE ns = ?1 AND key = ?2 AND id = ?3");
        if (st == NULL) {
            rc = db_fail(c, err, "fences");
            break;
        }
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)close_ids[i]);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_fail(c, err, "fences");
        release(st);
    }
    if (odd != 0) { /* (began) */
        rc = txn_end(c, rc, err);
        gen_end(kslot, odd);
    }
    if (rc == 0 && live)
        counters_for(c, ns)->deletes++;
    pthread_mutex_unlock(&c->mu);
    if (found)
        *found = rc == 0 && live;
    return rc;
}

static int fs_fence_open(l2_cache *base, const char *ns, const char *key, uint64_t hold_ms,
                         l2_fence_id *id, strata_error *err)
{
    fs_l2 *c = (fs_l2 *)base;
    *id = 0;
    if (strlen(ns) > L2_NS_MAX || strlen(key) > L2_KEY_MAX)
        return serr_set(err, SERR_INVALID, "cache key too long");
    if (hold_ms == 0)
        hold_ms = c->cfg.fence_ttl_ms;
    if (hold_ms > (uint64_t)INT64_MAX / 4)
        hold_ms = (uint64_t)INT64_MAX / 4;
    atomic_ullong *kslot = key_slot(&c->gen, ns, key);
    uint64_t fid = gen_next_id(&c->gen);
    bool live = false;
    pthread_mutex_lock(&c->mu);
    /* the fence must survive a crash of the machine, not only of the
     * process: this one commit is synced (FULL) */
    sqlite3_exec(c->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    int rc = txn_begin(c, err);
    uint64_t odd = 0;
    if (rc == 0) {
        gen_settle(ns_slot(&c->gen, ns));
        odd = gen_begin(kslot);
        rc = remove_value_locked(c, ns, key, &live, err);
    }
    if (rc == 0) {
        sqlite3_stmt *st = cached(c, ST_FENCE_PUT,
                                  "INSERT OR REPLACE INTO fences(ns, key, id, expires)"
                                  " VALUES(?1, ?2, ?3, ?4)");
        if (st == NULL) {
            rc = db_fail(c, err, "fence");
        } else {
            sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, key, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, (sqlite3_int64)fid);
            sqlite3_bind_int64(st, 4, clock_wall_ms() + (int64_t)hold_ms);
            if (sqlite3_step(st) != SQLITE_DONE)
                rc = db_fail(c, err, "fence");
        }
        release(st);
    }
    if (odd != 0) /* (began) */
        rc = txn_end(c, rc, err);
    sqlite3_exec(c->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    if (odd != 0)
        gen_end(kslot, odd);
    if (rc == 0 && live)
        counters_for(c, ns)->deletes++;
    pthread_mutex_unlock(&c->mu);
    if (rc == 0)
        *id = fid;
    return rc;
}

typedef struct victim {
    char *key;
    int64_t size;
    uint64_t write_id;
    bool live; /* a value not yet expired */
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
    atomic_ullong *nslot = ns_slot(&c->gen, ns);
    pthread_mutex_lock(&c->mu);
    int rc = txn_begin(c, err);
    uint64_t odd = 0;
    if (rc == 0)
        odd = gen_begin(nslot); /* every token of ns moves, matched or not */
    sqlite3_stmt *st = NULL;
    if (rc == 0 &&
        (st = cached(c, ST_CLEAR_SCAN,
                     "SELECT key, size, expires, write_id FROM entries"
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
        int64_t exp = sqlite3_column_int64(st, 2);
        v[n].key = strdup(key);
        v[n].size = sqlite3_column_int64(st, 1);
        v[n].write_id = (uint64_t)sqlite3_column_int64(st, 3);
        v[n].live = exp == 0 || exp > now;
        if (v[n].key == NULL) {
            rc = serr_set(err, SERR_NOMEM, "out of memory");
            break;
        }
        n++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = db_fail(c, err, "clear");
    release(st);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        bool dropped;
        if (drop_locked(c, ns, v[i].key, v[i].write_id, v[i].size, &dropped) != 0)
            rc = db_fail(c, err, "clear");
        v[i].live = v[i].live && dropped;
    }
    if (odd != 0) { /* (began) */
        rc = txn_end(c, rc, err);
        gen_end(nslot, odd);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        *count += v[i].live;
    if (rc == 0)
        counters_for(c, ns)->deletes += *count;
    pthread_mutex_unlock(&c->mu);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0 && v[i].live && on_key)
            on_key(ctx, v[i].key);
        free(v[i].key);
    }
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
    if ((st = cached(c, ST_STATS,
                     "SELECT count(*), coalesce(sum(size), 0) FROM entries WHERE ns = ?1"
                     " AND (expires = 0 OR expires > ?2)")) == NULL) {
        rc = db_fail(c, err, "stats");
    } else {
        sqlite3_bind_text(st, 1, ns, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, clock_wall_ms());
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            out->items = (uint64_t)sqlite3_column_int64(st, 0);
            out->bytes = (uint64_t)sqlite3_column_int64(st, 1);
        } else {
            rc = db_fail(c, err, "stats");
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
    if (c->gen.map != NULL)
        munmap(c->gen.map, GEN_SIZE);
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
    "INSERT OR IGNORE INTO fences(ns, key, id, expires)"
    "  SELECT ns, key, 0, fence FROM entries"
    "  WHERE fence IS NOT NULL AND fence > CAST(strftime('%s', 'now') AS INTEGER) * 1000;"
    "DELETE FROM entries WHERE fence IS NOT NULL;"
    "DELETE FROM fences WHERE expires <= CAST(strftime('%s', 'now') AS INTEGER) * 1000;"
    "INSERT OR IGNORE INTO totals(id, bytes)"
    "  SELECT 1, coalesce(sum(size), 0) FROM entries;";

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
     * are the exception, synced one by one) */
    if (sqlite3_open_v2(path, &c->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK ||
        sqlite3_busy_timeout(c->db, 10000) != SQLITE_OK ||
        sqlite3_exec(c->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", NULL, NULL,
                     &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK ||
        sqlite3_exec(c->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
        serr_set(err, SERR_IO, "L2 index %s: %s", path,
                 msg ? msg : (c->db ? sqlite3_errmsg(c->db) : "cannot open"));
        sqlite3_free(msg);
        fs_close(&c->base);
        return NULL;
    }
    /* ids continue past every write id the index names (a table made
     * afresh beside an old index), from a random high point as well */
    uint64_t first_id = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(c->db, "SELECT coalesce(max(write_id), 0) FROM entries", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        first_id = (uint64_t)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    uint32_t r = 0;
    if (getrandom(&r, sizeof r, 0) == sizeof r)
        first_id += (uint64_t)r << 16;
    /* without the table the nodes' L1 copies could not be kept coherent:
     * no L2 at all rather than an incoherent one */
    if (gen_open(&c->gen, dir, first_id, err) != 0) {
        fs_close(&c->base);
        return NULL;
    }
    return &c->base;
}
