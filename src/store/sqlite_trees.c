/* Corpus trees in SQLite: edges (child -> parent, and the child version
 * the parent aggregates) and each master's vocabulary aggregate. */
#include "sqlite_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- corpus trees ------------------------------------------------------------ */

int sq_tree_parent(store *base, store_txn *txn, const char *child, char *parent, size_t cap,
                   bool *has_parent, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    sq_conn *db = read_conn(s, txn, err);
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
    sq_release(st);
    read_done(s, txn, db);
    return rc;
}

int sq_tree_children(store *base, store_txn *txn, const char *parent, tree_child **out, size_t *n,
                     strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *out = NULL;
    *n = 0;
    sq_conn *db = read_conn(s, txn, err);
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
    sq_release(st);
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

static int do_link(sq_conn *db, void *arg, strata_error *err)
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
    if (c->unlink && sqlite3_changes(db->h) == 0)
        return serr_set(err, SERR_NOT_FOUND, "%s is not a child of %s", c->child, c->parent);
    return 0;
}

int sq_tree_link(store *base, store_txn *txn, const char *parent, const char *child,
                 uint64_t child_vkey, strata_error *err)
{
    struct link_ctx c = {parent, child, child_vkey, false};
    return in_write((sqlite_store *)base, txn, do_link, &c, err);
}

int sq_tree_unlink(store *base, store_txn *txn, const char *parent, const char *child,
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
static int do_vocab_apply(sq_conn *db, void *arg, strata_error *err)
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
    sq_release(up);
    sq_release(del);
    sq_release(size);
    return rc;
}

int sq_vocab_apply(store *base, store_txn *txn, const char *master, vocab_delta *d, size_t n,
                   int64_t *size_delta, strata_error *err)
{
    struct vocab_ctx c = {master, d, n, 0};
    int rc = in_write((sqlite_store *)base, txn, do_vocab_apply, &c, err);
    if (rc == 0 && size_delta)
        *size_delta = c.size_delta;
    return rc;
}

static int do_vocab_clear(sq_conn *db, void *arg, strata_error *err)
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

int sq_vocab_clear(store *base, store_txn *txn, const char *master, strata_error *err)
{
    return in_write((sqlite_store *)base, txn, do_vocab_clear, (void *)(uintptr_t)master, err);
}

int sq_vocab_page(store *base, store_txn *txn, const char *master, const char *after, size_t limit,
                  vocab_item **out, size_t *n, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *n = 0;
    *out = calloc(limit ? limit : 1, sizeof **out);
    if (*out == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    sq_conn *db = read_conn(s, txn, err);
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
    sq_release(st);
    read_done(s, txn, db);
    if (rc != 0) {
        vocab_items_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return rc;
}

int sq_vocab_size(store *base, store_txn *txn, const char *master, uint64_t *n, strata_error *err)
{
    sqlite_store *s = (sqlite_store *)base;
    *n = 0;
    sq_conn *db = read_conn(s, txn, err);
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
    sq_release(st);
    read_done(s, txn, db);
    return rc;
}

struct edge_walk {
    int (*fn)(void *ctx, const char *parent, const char *child, uint64_t vkey);
    void *ctx;
};

static int edge_row(sqlite3_stmt *st, void *arg)
{
    struct edge_walk *w = arg;
    return w->fn(w->ctx, (const char *)sqlite3_column_text(st, 0),
                 (const char *)sqlite3_column_text(st, 1), (uint64_t)sqlite3_column_int64(st, 2));
}

int sq_tree_edges(store *base,
                  int (*fn)(void *ctx, const char *parent, const char *child, uint64_t vkey),
                  void *ctx, strata_error *err)
{
    struct edge_walk w = {fn, ctx};
    return sq_each_row((sqlite_store *)base, "SELECT parent, child, child_vkey FROM tree_edges",
                       edge_row, &w, NULL, "tree edges", err);
}
