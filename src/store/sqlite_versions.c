/* Heads and versions: reading (rows decoded, chain fields derived),
 * writing by compare-and-swap on the head, lists, deletes with their
 * tombstones, dependents, pins and staleness. */
#include "sqlite_internal.h"
#include "../codec/json_write.h"
#include "../common/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void copy_text(char *dst, size_t cap, sqlite3_stmt *st, int col)
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
static int collect_page(sq_conn *db, sqlite3_stmt *st, size_t limit, store_page *out,
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

static int sq_get_head_on(sq_conn *db, const char *type, const char *id, store_head *out,
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
    sq_release(st);
    return result;
}

int sq_get_head(store *base, store_txn *txn, const char *type, const char *id, store_head *out,
                strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sq_conn *db = read_conn(s, txn, err);
    if (db == NULL)
        return -1;
    int rc = sq_get_head_on(db, type, id, out, err);
    read_done(s, txn, db);
    return rc;
}

int sq_get_version(store *base, store_txn *txn, const char *type, const char *id, uint64_t vkey,
                   store_version *out, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    memset(out, 0, sizeof *out);
    sq_conn *db = read_conn(s, txn, err);
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
    sq_release(st);
    read_done(s, txn, db);
    return result;
}

struct put_ctx {
    store_version *v;
    uint64_t expected_latest, expected_max;
    const store_dep *deps;
    size_t ndeps;
    uint64_t claim;
};

static int do_put(sq_conn *db, void *arg, strata_error *err)
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
        if (sqlite3_changes(db->h) == 0)
            return serr_set(err, SERR_RETRY, "the claim on blob %.12s lapsed", v->blob_key);
    }
    char version[SEMVER_STR_MAX];
    semver_format(v->vkey, version);
    size_t doc_len = 2;
    char *doc = v->doc ? json_write_text(v->doc, 0, &doc_len, NULL) : strdup("{}");
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
    sqlite3_bind_text(st, 10, doc, (int)doc_len, free);
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
    /* whether anything depends on this resource, seen in this write: an
     * index probe here spares the caller a read transaction of its own
     * after the commit, for nothing, on nearly every save */
    if (prepare(db, "SELECT 1 FROM dependencies WHERE to_type = ?1 AND to_id = ?2 LIMIT 1", &st,
                err) != 0)
        return -1;
    sqlite3_bind_text(st, 1, v->type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, v->id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int failed =
        rc != SQLITE_ROW && rc != SQLITE_DONE ? db_error(db, err, "look for dependents") : 0;
    sq_release(st);
    if (failed)
        return -1;
    v->no_dependents = rc == SQLITE_DONE;
    v->is_latest = true;
    v->supersedes = cur_latest;
    v->superseded_by = 0;
    return 0;
}

int sq_put_version(store *base, store_txn *txn, store_version *v, uint64_t expected_latest,
                   uint64_t expected_max, const store_dep *deps, size_t ndeps, uint64_t claim,
                   strata_error *err)
{
    if (claim == 0 && v->blob_key[0])
        return serr_set(err, SERR_INTERNAL, "a version in a blob needs the save's claim on it");
    struct put_ctx c = {v, expected_latest, expected_max, deps, ndeps, claim};
    return in_write((sqlite_store *)base, txn, do_put, &c, err);
}

int sq_list_versions(store *base, const char *type, const char *id, const store_list_opts *o,
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
    sq_conn *db = reader_get(s, err);
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
    sq_release(st);
    reader_put(s, db);
    return finish_page(rc, out, o->limit, 'v', err);
}

int sq_list_resources(store *base, const char *type, const store_list_opts *o, store_page *out,
                      strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    memset(out, 0, sizeof *out);
    char after[STORE_ID_MAX + 1] = "";
    if (o->cursor && store_cursor_decode_str(o->cursor, 'r', after, sizeof after) != 0)
        return serr_set(err, SERR_INVALID, "cursor is not valid for this list");
    sq_conn *db = reader_get(s, err);
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
    sq_release(st);
    reader_put(s, db);
    return finish_page(rc, out, o->limit, 'r', err);
}

struct del_ctx {
    const char *type, *id;
    uint64_t vkey;
    size_t count;
    const char *removed_by;
};

/* Records who removed what and when (vkey 0: the resource itself). */
static int put_tombstone(sq_conn *db, const char *type, const char *id, uint64_t vkey,
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

int bind_tiv(sqlite3_stmt *st, const char *type, const char *id, uint64_t vkey)
{
    sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, id, -1, SQLITE_STATIC);
    return sqlite3_bind_int64(st, 3, (sqlite3_int64)vkey);
}

/* The row goes, with its dependencies and counts, and a tombstone stays.
 * Rows are never updated: the neighbours' chain fields are derived, so
 * only the head moves, to the newest remaining version, when the latest
 * goes. */
static int do_delete_version(sq_conn *db, void *arg, strata_error *err)
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
        if (i == 0 && (sqlite3_changes(db->h) == 0 || !head.exists || c->vkey > head.max_vkey))
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

int sq_delete_version(store *base, store_txn *txn, const char *type, const char *id, uint64_t vkey,
                      const char *removed_by, strata_error *err)
{
    struct del_ctx c = {type, id, vkey, 0, removed_by};
    return in_write((sqlite_store *)base, txn, do_delete_version, &c, err);
}

static int has_tombstone(sq_conn *db, const char *type, const char *id, uint64_t vkey, bool *found,
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
    sq_release(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : db_error(db, err, "tombstone");
}

/* The versions go (each leaving a tombstone), the head stays with no
 * latest and its max_vkey, so a new life numbers on from there. */
static int do_delete_resource(sq_conn *db, void *arg, strata_error *err)
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
            c->count = (size_t)sqlite3_changes(db->h);
    }
    return put_tombstone(db, c->type, c->id, 0, c->removed_by, err);
}

int sq_delete_resource(store *base, store_txn *txn, const char *type, const char *id,
                       const char *removed_by, size_t *count, strata_error *err)
{
    struct del_ctx c = {type, id, 0, 0, removed_by};
    int rc = in_write((sqlite_store *)base, txn, do_delete_resource, &c, err);
    if (rc == 0 && count)
        *count = c.count;
    return rc;
}

int sq_dependents(store *base, const char *type, const char *id, const store_list_opts *o,
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
    sq_conn *db = reader_get(s, err);
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
    sq_release(st);
    reader_put(s, db);
    return finish_page(rc, out, o->limit, 'd', err);
}

/* ---- tombstones, pins and blob references ------------------------------------ */

int sq_get_tombstone(store *base, const char *type, const char *id, uint64_t vkey,
                     store_tombstone *out, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sq_conn *db = reader_get(s, err);
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
    sq_release(st);
    reader_put(s, db);
    return rc;
}

int sq_version_pinned(store *base, const char *type, const char *id, uint64_t vkey, bool *pinned,
                      char *by, size_t by_cap, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *pinned = false;
    sq_conn *db = reader_get(s, err);
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
    sq_release(st);
    reader_put(s, db);
    return rc;
}

/* ---- staleness ------------------------------------------------------------ */

struct stale_ctx {
    const char *type, *id;
    bool stale;
    const json_t *reason;
};

static int do_set_stale(sq_conn *db, void *arg, strata_error *err)
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
    char *reason = c->stale && c->reason ? json_write_text(c->reason, 0, NULL, NULL) : NULL;
    if (reason)
        sqlite3_bind_text(st, 4, reason, -1, free);
    if (step_done(db, st, "mark stale", err) != 0)
        return -1;
    if (sqlite3_changes(db->h) == 0)
        return serr_set(err, SERR_NOT_FOUND, "no resource %s/%s", c->type, c->id);
    return 0;
}

int sq_set_stale(store *base, store_txn *txn, const char *type, const char *id, bool stale,
                 const json_t *reason, strata_error *err)
{
    struct stale_ctx c = {type, id, stale, reason};
    return in_write((sqlite_store *)base, txn, do_set_stale, &c, err);
}
