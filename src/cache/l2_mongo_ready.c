/* Opening and guarding the MongoDB L2 (l2_mongo.h): its URL, the format
 * record and the indexes, a breaker that makes every call fail at once
 * for a second after one met an unreachable server, and what a handle
 * keeps in its own memory (counters, recency stamps), none of which is
 * what keeps nodes coherent. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "../common/clock.h"
#include "l2_mongo_int.h"

#define DOWN_MS      1000
#define DOWN_TAG     "MongoDB L2 down"
#define FORMAT_KIND  "strata-l2-mongo"
#define FORMAT_VER   2
#define MAX_URL_OPTS 32

/* ---- the URL ----------------------------------------------------------------------- */

static bool valid_prefix(const char *p, size_t n)
{
    if (n == 0 || n > L2M_PREFIX_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* Whether query (the options, '&'-separated) sets option name. */
static bool has_option(const char *query, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p; p = strchr(p, '&'), p = p ? p + 1 : NULL)
        if (strncasecmp(p, name, n) == 0 && p[n] == '=')
            return true;
    return false;
}

int l2m_parse_url(const char *url, char *out, size_t cap, char prefix[L2M_PREFIX_MAX + 1],
                  strata_error *err)
{
    if (strncmp(url, "mongodb://", 10) != 0)
        return serr_set(err, SERR_INVALID, "a MongoDB L2 URL starts with mongodb://");
    snprintf(prefix, L2M_PREFIX_MAX + 1, "l2");
    const char *q = strchr(url, '?');
    size_t base = q ? (size_t)(q - url) : strlen(url);
    if (base + 1 > cap)
        return serr_set(err, SERR_INVALID, "MongoDB L2 URL too long");
    memcpy(out, url, base);
    size_t at = base;
    char sep = '?';
    char kept[1024] = "";
    size_t kl = 0;
    /* every option but prefix= goes on, in its order */
    for (const char *p = q ? q + 1 : NULL; p && *p;) {
        size_t n = strcspn(p, "&");
        if (n > 7 && strncmp(p, "prefix=", 7) == 0) {
            if (!valid_prefix(p + 7, n - 7))
                return serr_set(err, SERR_INVALID,
                                "the MongoDB L2's prefix= is 1 to %d characters [A-Za-z0-9_-]",
                                L2M_PREFIX_MAX);
            snprintf(prefix, L2M_PREFIX_MAX + 1, "%.*s", (int)(n - 7), p + 7);
        } else if (n == 6 && strncmp(p, "prefix", 6) == 0) {
            return serr_set(err, SERR_INVALID, "the MongoDB L2's prefix= is empty");
        } else if (n > 0) {
            if (at + n + 2 > cap || kl + n + 2 > sizeof kept)
                return serr_set(err, SERR_INVALID, "MongoDB L2 URL too long");
            out[at++] = sep;
            memcpy(out + at, p, n);
            at += n;
            memcpy(kept + kl, p, n);
            kl += n;
            kept[kl++] = '&';
            kept[kl] = '\0';
            sep = '&';
        }
        p += n;
        if (*p == '&')
            p++;
    }
    /* a cache fails fast: a miss beats a wait */
    static const struct {
        const char *name;
        int ms;
    } defaults[] = {
        {"serverSelectionTimeoutMS", 1500}, {"connectTimeoutMS", 1000}, {"socketTimeoutMS", 5000}};
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        if (has_option(kept, defaults[i].name))
            continue;
        int n = snprintf(out + at, cap - at, "%c%s=%d", sep, defaults[i].name, defaults[i].ms);
        if (n < 0 || (size_t)n >= cap - at)
            return serr_set(err, SERR_INVALID, "MongoDB L2 URL too long");
        at += (size_t)n;
        sep = '&';
    }
    out[at] = '\0';
    return 0;
}

/* ---- clients ----------------------------------------------------------------------- */

l2m_coll l2m_take(l2m *c, const char *name)
{
    l2m_coll k;
    k.cl = mongo_conn_pop(c->conn);
    k.co = mongo_conn_collection(c->conn, k.cl, name);
    return k;
}

void l2m_put(l2m *c, l2m_coll *k)
{
    if (k->co)
        mongoc_collection_destroy(k->co);
    mongo_conn_push(c->conn, k->cl);
    k->co = NULL;
    k->cl = NULL;
}

/* ---- the format record and the indexes --------------------------------------------- */

/* 0 when the format record read is ours; SERR_CORRUPT otherwise. */
static int format_ours(l2m *c, const bson_t *doc, strata_error *err)
{
    bson_iter_t it;
    const char *kind = NULL;
    if (bson_iter_init_find(&it, doc, "kind") && BSON_ITER_HOLDS_UTF8(&it))
        kind = bson_iter_utf8(&it, NULL);
    int64_t ver = -1;
    if (bson_iter_init_find(&it, doc, "version") && BSON_ITER_HOLDS_NUMBER(&it))
        ver = bson_iter_as_int64(&it);
    if (kind == NULL || strcmp(kind, FORMAT_KIND) != 0)
        return serr_set(err, SERR_CORRUPT,
                        "MongoDB L2: collection %s holds no Strata L2 format record (drop the "
                        "prefix's collections while no node uses them, or use another prefix)",
                        c->meta);
    if (ver != FORMAT_VER)
        return serr_set(err, SERR_CORRUPT,
                        "MongoDB L2: format version %lld in %s, this build reads %d",
                        (long long)ver, c->meta, FORMAT_VER);
    return 0;
}

/* 0 when the format record is ours; *made when this call made it. */
static int check_format(l2m *c, bool *made, strata_error *err)
{
    *made = false;
    l2m_coll k = l2m_take(c, c->meta);
    bson_error_t be;
    int rc = -1;
    for (int attempt = 0; attempt < 3; attempt++) {
        bson_t *filter = BCON_NEW("_id", BCON_UTF8("format"));
        bson_t *opts = BCON_NEW("limit", BCON_INT64(1));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(k.co, filter, opts, NULL);
        const bson_t *doc;
        bool found = mongoc_cursor_next(cur, &doc), failed = false;
        if (found)
            rc = format_ours(c, doc, err);
        else if ((failed = mongoc_cursor_error(cur, &be)))
            mongo_conn_error(&be, "MongoDB L2: reading the format record", err);
        mongoc_cursor_destroy(cur);
        bson_destroy(opts);
        bson_destroy(filter);
        if (found || failed)
            break;
        /* absent: the first node makes it, racing ones meet 11000 and
         * read the winner's */
        bson_t *rec = BCON_NEW("_id", BCON_UTF8("format"), "kind", BCON_UTF8(FORMAT_KIND),
                               "version", BCON_INT32(FORMAT_VER));
        bool ok = mongoc_collection_insert_one(k.co, rec, NULL, NULL, &be);
        bson_destroy(rec);
        if (ok) {
            rc = 0;
            *made = true;
            break;
        }
        if (!mongo_conn_is_duplicate(&be)) {
            mongo_conn_error(&be, "MongoDB L2: making the format record", err);
            break;
        }
    }
    l2m_put(c, &k);
    if (rc != 0 && err->kind == SERR_OK)
        serr_set(err, SERR_RETRY, "MongoDB L2: the format record keeps changing");
    return rc;
}

/* Whether the keys collection has both indexes: createIndexes is asked
 * only when not, because FerretDB v1.24 wedges (a panic that leaves its
 * catalog locked: every later collection creation hangs) when a client
 * dies during one. */
static bool indexes_exist(l2m_coll *k)
{
    mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts(k->co, NULL);
    const bson_t *doc;
    int found = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it)) {
            const char *name = bson_iter_utf8(&it, NULL);
            found |= strcmp(name, "n_k") == 0 ? 1 : strcmp(name, "s_a") == 0 ? 2 : 0;
        }
    }
    bson_error_t be;
    bool failed = mongoc_cursor_error(cur, &be);
    mongoc_cursor_destroy(cur);
    return !failed && found == 3;
}

int l2m_make_indexes(l2m *c, strata_error *err)
{
    if (atomic_load(&c->indexed))
        return 0;
    l2m_coll k = l2m_take(c, c->keys);
    if (indexes_exist(&k)) {
        l2m_put(c, &k);
        atomic_store(&c->indexed, true);
        return 0;
    }
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(c->keys), "indexes", "[", "{", "key", "{",
                           "n", BCON_INT32(1), "k", BCON_INT32(1), "}", "name", BCON_UTF8("n_k"),
                           "}", "{", "key", "{", "s", BCON_INT32(1), "a", BCON_INT32(1), "}",
                           "name", BCON_UTF8("s_a"), "}", "]");
    bson_error_t be;
    bool ok = mongoc_collection_write_command_with_opts(k.co, cmd, NULL, NULL, &be);
    bson_destroy(cmd);
    l2m_put(c, &k);
    if (!ok)
        return mongo_conn_error(&be, "MongoDB L2: making the indexes", err);
    atomic_store(&c->indexed, true);
    return 0;
}

static int format_ready(l2m *c, strata_error *err)
{
    if (atomic_load(&c->ready))
        return 0;
    pthread_mutex_lock(&c->ready_mu);
    int rc = 0;
    if (!atomic_load(&c->ready)) {
        serr_clear(err);
        bool made;
        rc = check_format(c, &made, err);
        /* the node that made the record makes the indexes; the others
         * leave them to their sweepers (FerretDB v1.24 deadlocks on
         * concurrent createIndexes of one collection; the indexes only
         * make lookups faster) */
        if (rc == 0 && made)
            rc = l2m_make_indexes(c, err);
        if (rc == 0)
            atomic_store(&c->ready, true);
    }
    pthread_mutex_unlock(&c->ready_mu);
    return rc;
}

/* ---- the breaker ------------------------------------------------------------------- */

int l2m_guard(l2m *c, int rc, strata_error *err)
{
    if (rc == 0 || err->kind != SERR_UNAVAILABLE ||
        strncmp(err->detail, DOWN_TAG, sizeof DOWN_TAG - 1) == 0)
        return rc;
    pthread_mutex_lock(&c->down_mu);
    snprintf(c->down_why, sizeof c->down_why, "%s", err->detail);
    atomic_store(&c->down_until, clock_mono_ms() + DOWN_MS);
    pthread_mutex_unlock(&c->down_mu);
    return rc;
}

int l2m_ready(l2m *c, strata_error *err)
{
    uint64_t until = atomic_load(&c->down_until);
    if (until != 0 && clock_mono_ms() < until) {
        pthread_mutex_lock(&c->down_mu);
        serr_set(err, SERR_UNAVAILABLE, DOWN_TAG " (asked again within a second): %s", c->down_why);
        pthread_mutex_unlock(&c->down_mu);
        return -1;
    }
    return format_ready(c, err);
}

int l2m_health(l2m *c, strata_error *err)
{
    int rc = mongo_conn_ping(c->conn, err);
    if (rc == 0)
        rc = format_ready(c, err);
    if (rc == 0) {
        atomic_store(&c->down_until, 0);
        return 0;
    }
    if (err->kind != SERR_UNAVAILABLE) {
        char d[STRATA_ERR_DETAIL_MAX];
        snprintf(d, sizeof d, "%s", err->detail);
        serr_set(err, SERR_UNAVAILABLE, "MongoDB L2: %s", d);
    }
    return l2m_guard(c, -1, err);
}

/* ---- this handle's own memory ------------------------------------------------------ */

static l2m_counters *counters_for(l2m *c, const char *ns)
{
    for (int i = 0; i < c->ncounters; i++)
        if (strcmp(c->counters[i].ns, ns) == 0)
            return &c->counters[i];
    if (c->ncounters == L2M_COUNTERS_MAX)
        return &c->overflow;
    l2m_counters *n = &c->counters[c->ncounters++];
    memset(n, 0, sizeof *n);
    snprintf(n->ns, sizeof n->ns, "%s", ns);
    return n;
}

void l2m_count(l2m *c, const char *ns, int which, uint64_t n)
{
    pthread_mutex_lock(&c->mu);
    counters_for(c, ns)->v[which] += n;
    pthread_mutex_unlock(&c->mu);
}

void l2m_counters_read(l2m *c, const char *ns, l2_stats *out)
{
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < c->ncounters; i++)
        if (strcmp(c->counters[i].ns, ns) == 0) {
            const uint64_t *v = c->counters[i].v;
            out->hits = v[L2M_HITS];
            out->misses = v[L2M_MISSES];
            out->sets = v[L2M_SETS];
            out->deletes = v[L2M_DELETES];
            out->expirations = v[L2M_EXPIRATIONS];
            out->evictions = v[L2M_EVICTIONS];
        }
    pthread_mutex_unlock(&c->mu);
}

bool l2m_touch_due(l2m *c, const char *id, bool write)
{
    uint64_t h = 1469598103934665603ULL, now = clock_mono_ms();
    for (const char *p = id; *p; p++)
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    h |= 1; /* 0 marks an empty slot */
    bool due = false;
    pthread_mutex_lock(&c->mu);
    uint64_t *slot = c->touched[h % L2M_RECENT_SLOTS];
    if (write || slot[0] != h || now - slot[1] >= L2M_TOUCH_MS) {
        slot[0] = h;
        slot[1] = now;
        due = !write;
    }
    pthread_mutex_unlock(&c->mu);
    return due;
}
