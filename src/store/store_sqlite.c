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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/fsutil.h"
#include "sqlite_internal.h"

static void sq_close(store *base)
{
    sqlite_store *s = (sqlite_store *)base;
    for (int i = 0; i < s->nidle; i++)
        sq_conn_close(s->idle[i]);
    sq_conn_close(s->writer);
    pthread_mutex_destroy(&s->write_mu);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_cond_destroy(&s->pool_cv);
    free(s);
}

static const store_ops SQLITE_OPS = {
    .name = "sqlite",
    .caps = STORE_CAP_TRANSACTIONS | STORE_CAP_BLOB_CLAIMS | STORE_CAP_LEASES | STORE_CAP_TREE_TXN,
    .ping = sq_ping,
    .transact = sq_transact,
    .get_head = sq_get_head,
    .get_version = sq_get_version,
    .put_version = sq_put_version,
    .list_versions = sq_list_versions,
    .list_resources = sq_list_resources,
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
    if (sq_conn_open(path, &s->writer, err) != 0 || sq_migrate(s->writer, err) != 0) {
        sq_close(&s->base);
        return NULL;
    }
    return &s->base;
}
