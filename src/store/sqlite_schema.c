/* The SQLite store's layout, and the migrations that bring an older file
 * up to it (in the same transaction as the layout: a crash leaves the
 * file as it was). */
#include "sqlite_internal.h"

#include <stdio.h>

/* A version row. Every index on it is a B-tree page more that a save
 * writes (and syncs, and checkpoints): the rows hold only what queries
 * look up, by (type, id, vkey) and by blob key. The version string is a
 * function of vkey, so the key already makes it unique. */
#define VERSIONS_COLUMNS                                                                           \
    "  resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, vkey INTEGER NOT NULL,"             \
    "  version TEXT NOT NULL, namespace TEXT NOT NULL, created_at INTEGER NOT NULL,"               \
    "  data_hash TEXT NOT NULL, blob_key TEXT, is_latest INTEGER NOT NULL,"                        \
    "  supersedes INTEGER, superseded_by INTEGER, doc TEXT NOT NULL, content BLOB,"                \
    "  access_count INTEGER NOT NULL DEFAULT 0, last_accessed INTEGER,"                            \
    "  PRIMARY KEY(resource_type, resource_id, vkey)"
#define VERSIONS_COLUMN_NAMES                                                                      \
    "resource_type, resource_id, vkey, version, namespace, created_at, data_hash, blob_key,"       \
    " is_latest, supersedes, superseded_by, doc, content, access_count, last_accessed"

static const char SCHEMA[] =
    "CREATE TABLE IF NOT EXISTS resources("
    "  resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, namespace TEXT NOT NULL,"
    "  latest_vkey INTEGER, max_vkey INTEGER NOT NULL,"
    "  stale INTEGER NOT NULL DEFAULT 0, stale_reason TEXT, updated_at INTEGER NOT NULL,"
    "  PRIMARY KEY(resource_type, resource_id)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS versions(" VERSIONS_COLUMNS ");"
    "CREATE INDEX IF NOT EXISTS versions_blob ON versions(blob_key) WHERE blob_key IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS dependencies("
    "  from_type TEXT NOT NULL, from_id TEXT NOT NULL, from_vkey INTEGER NOT NULL,"
    "  to_type TEXT NOT NULL, to_id TEXT NOT NULL, to_vkey INTEGER NOT NULL DEFAULT 0,"
    "  PRIMARY KEY(from_type, from_id, from_vkey, to_type, to_id)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS dependencies_reverse ON dependencies(to_type, to_id);"
    "CREATE TABLE IF NOT EXISTS tree_edges("
    "  child TEXT PRIMARY KEY, parent TEXT NOT NULL, child_vkey INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS tree_edges_parent ON tree_edges(parent);"
    "CREATE TABLE IF NOT EXISTS vocab("
    "  master TEXT NOT NULL, word TEXT NOT NULL, children INTEGER NOT NULL,"
    "  frequency INTEGER NOT NULL, PRIMARY KEY(master, word)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS tombstones("
    "  resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, vkey INTEGER NOT NULL,"
    "  removed_at INTEGER NOT NULL, removed_by TEXT NOT NULL,"
    "  PRIMARY KEY(resource_type, resource_id, vkey)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS vocab_sizes("
    "  master TEXT PRIMARY KEY, size INTEGER NOT NULL) WITHOUT ROWID;"
    /* access counts beside the (immutable) version rows */
    "CREATE TABLE IF NOT EXISTS access("
    "  resource_type TEXT NOT NULL, resource_id TEXT NOT NULL, vkey INTEGER NOT NULL,"
    "  count INTEGER NOT NULL, last INTEGER,"
    "  PRIMARY KEY(resource_type, resource_id, vkey)) WITHOUT ROWID;"
    /* coordination between processes: blob claims, doomed blobs, leases */
    "CREATE TABLE IF NOT EXISTS blob_claims("
    "  key TEXT NOT NULL, claim INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    "  PRIMARY KEY(key, claim)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS blob_doomed("
    "  key TEXT PRIMARY KEY, token INTEGER NOT NULL, doomed_at INTEGER NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS leases("
    "  name TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL) WITHOUT ROWID;";

/* The layout's version, kept in PRAGMA user_version. MIGRATIONS[i] takes a
 * database from version i to i + 1; open runs the ones a database lacks in
 * the same transaction as SCHEMA, so a crash leaves it as it was. */
#define SCHEMA_VERSION 3

static const char *const MIGRATIONS[SCHEMA_VERSION] = {
    /* 0 -> 1: a deleted resource keeps its head (no latest, max_vkey
     * kept), so that its numbers are never issued again. Resources deleted
     * before lost their heads: rebuild them from their version tombstones,
     * and let no head sit below a number its tombstones name. */
    "INSERT INTO resources(resource_type, resource_id, namespace, latest_vkey, max_vkey, stale,"
    "  stale_reason, updated_at)"
    " SELECT t.resource_type, t.resource_id, '', NULL, max(t.vkey), 0, NULL, max(t.removed_at)"
    " FROM tombstones t WHERE NOT EXISTS(SELECT 1 FROM resources r"
    "   WHERE r.resource_type = t.resource_type AND r.resource_id = t.resource_id)"
    " GROUP BY t.resource_type, t.resource_id HAVING max(t.vkey) > 0;"
    "UPDATE resources SET max_vkey = (SELECT max(t.vkey) FROM tombstones t"
    "   WHERE t.resource_type = resources.resource_type"
    "   AND t.resource_id = resources.resource_id)"
    " WHERE max_vkey < (SELECT max(t.vkey) FROM tombstones t"
    "   WHERE t.resource_type = resources.resource_type"
    "   AND t.resource_id = resources.resource_id);",
    /* 1 -> 2: version rows become immutable. The latest flag and the chain
     * columns are derived when read (the columns stay, unused, so that
     * older files open); access counts move to their own table. */
    "DROP INDEX IF EXISTS versions_one_latest;"
    "DROP INDEX IF EXISTS versions_id_latest;"
    "INSERT OR IGNORE INTO access(resource_type, resource_id, vkey, count, last)"
    " SELECT resource_type, resource_id, vkey, access_count, last_accessed FROM versions"
    " WHERE access_count > 0;",
    /* 2 -> 3: fewer pages per save. Indexes no query used go (namespace
     * and type of resources and of versions, creation time, data hash:
     * random keys, a page of their own in every save), and so does
     * UNIQUE(type, id, version), which only SQLite's rebuild of the table
     * can drop: a new table, the rows copied, the old one dropped and the
     * new one renamed, in this transaction. A file already in this layout
     * is rebuilt the same way. */
    "DROP INDEX IF EXISTS resources_ns_type;"
    "DROP INDEX IF EXISTS versions_ns_type;"
    "DROP INDEX IF EXISTS versions_created;"
    "DROP INDEX IF EXISTS versions_hash;"
    "DROP TABLE IF EXISTS versions_v3;"
    "CREATE TABLE versions_v3(" VERSIONS_COLUMNS ");"
    "INSERT INTO versions_v3(" VERSIONS_COLUMN_NAMES ") SELECT " VERSIONS_COLUMN_NAMES
    " FROM versions;"
    "DROP TABLE versions;"
    "ALTER TABLE versions_v3 RENAME TO versions;"
    "CREATE INDEX versions_blob ON versions(blob_key) WHERE blob_key IS NOT NULL;",
};

/* A version as readers see it: the row as written, its place in the
 * chain derived from the head and its neighbours, its access counts. A
 * row above the head's max_vkey (written, never linked) is ignored. */
/* Creates or upgrades the layout to SCHEMA_VERSION in one transaction. */
int sq_migrate(sq_conn *db, strata_error *err)
{
    if (exec(db, "BEGIN IMMEDIATE", err) != 0)
        return -1;
    int rc = exec(db, SCHEMA, err);
    int version = 0;
    sqlite3_stmt *st = NULL;
    if (rc == 0 && (rc = prepare(db, "PRAGMA user_version", &st, err)) == 0) {
        if (sqlite3_step(st) == SQLITE_ROW)
            version = sqlite3_column_int(st, 0);
        else
            rc = db_error(db, err, "schema version");
        sq_release(st);
    }
    if (rc == 0 && (version < 0 || version > SCHEMA_VERSION))
        rc = serr_set(err, SERR_IO, "store: schema version %d is not one this build knows (0-%d)",
                      version, SCHEMA_VERSION);
    for (int i = version; rc == 0 && i < SCHEMA_VERSION; i++)
        rc = exec(db, MIGRATIONS[i], err);
    if (rc == 0 && version != SCHEMA_VERSION) {
        char sql[48];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
        rc = exec(db, sql, err);
    }
    if (rc == 0)
        rc = exec(db, "COMMIT", err);
    if (rc != 0)
        sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}
