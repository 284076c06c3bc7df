/* The MongoDB store's layout: its collections' indexes, created at open
 * (createIndexes is idempotent), and a schema version document so that a
 * later layout can tell an older database and migrate it. */
#include "mongo_internal.h"

#include <stdio.h>

/* 2: vocabularies in chunks with a directory (mongo_trees.c) */
#define SCHEMA_VERSION 2

typedef struct index_spec {
    int coll;
    const char *name;
    const char *fields[5]; /* ascending, NULL-terminated */
    bool unique;
} index_spec;

static const index_spec INDEXES[] = {
    {MC_PTRS, "type_id", {"t", "i", NULL}, false},
    {MC_VERSIONS, "type_id_vkey", {"t", "i", "k", NULL}, true},
    {MC_VERSIONS, "blob", {"b", NULL}, false},
    {MC_DEPS, "reverse", {"tt", "ti", "ft", "fi", NULL}, false},
    {MC_DEPS, "forward", {"ft", "fi", "fk", NULL}, false},
    {MC_ACCESS, "version", {"v", NULL}, false},
    {MC_ACCESS, "resource", {"t", "i", NULL}, false},
    {MC_EDGES, "parent", {"p", NULL}, false},
    {MC_VOCAB, "master", {"m", NULL}, false},
    {MC_CLAIMS, "key", {"k", NULL}, false},
};

static int create_index(mg *m, const index_spec *ix, strata_error *err)
{
    bson_t cmd = BSON_INITIALIZER, arr, one, key;
    BSON_APPEND_UTF8(&cmd, "createIndexes", MC_NAMES[ix->coll]);
    BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &arr);
    BSON_APPEND_DOCUMENT_BEGIN(&arr, "0", &one);
    BSON_APPEND_DOCUMENT_BEGIN(&one, "key", &key);
    for (int i = 0; ix->fields[i] != NULL; i++)
        BSON_APPEND_INT32(&key, ix->fields[i], 1);
    bson_append_document_end(&one, &key);
    BSON_APPEND_UTF8(&one, "name", ix->name);
    if (ix->unique)
        BSON_APPEND_BOOL(&one, "unique", true);
    bson_append_document_end(&arr, &one);
    bson_append_array_end(&cmd, &arr);
    bson_error_t be;
    bool ok = mongoc_client_command_simple(m->cl, mongo_conn_db(m->s->conn), &cmd, NULL, NULL, &be);
    bson_destroy(&cmd);
    if (ok)
        return 0;
    char what[96];
    snprintf(what, sizeof what, "store: index %s.%s", MC_NAMES[ix->coll], ix->name);
    return mongo_conn_error(&be, what, err);
}

int mg_migrate(mongo_store *s, strata_error *err)
{
    mg m;
    mg_begin(&m, s);
    int rc = 0;
    /* the schema version: written by the first open after it made the
     * indexes, checked by every one. Later opens make no index: FerretDB
     * v1.24 can deadlock on concurrent createIndexes of one collection,
     * and nodes often start together. */
    bson_t *filter = BCON_NEW("_id", BCON_UTF8("schema"));
    bson_t *update = BCON_NEW("$setOnInsert", "{", "version", BCON_INT32(SCHEMA_VERSION), "}");
    bson_t cur;
    bool made = false;
    rc = mg_find_one(&m, MC_META, filter, NULL, &cur, &made, "store: schema version", err);
    if (rc == 0 && made) {
        made = bs_i64(&cur, "version") == SCHEMA_VERSION;
        bson_destroy(&cur);
    }
    for (size_t i = 0; rc == 0 && !made && i < sizeof INDEXES / sizeof *INDEXES; i++)
        rc = create_index(&m, &INDEXES[i], err);
    if (rc == 0 && !made)
        rc = mg_update(&m, MC_META, filter, update, true, NULL, "store: schema version", err);
    if (rc != 0 && err->kind == SERR_CONFLICT) /* two opens at once: the other one wrote it */
        rc = 0;
    bson_t doc;
    bool found = false;
    if (rc == 0)
        rc = mg_find_one(&m, MC_META, filter, NULL, &doc, &found, "store: schema version", err);
    if (rc == 0 && !found)
        rc = serr_set(err, SERR_IO, "store: the schema version document is missing");
    if (rc == 0) {
        int64_t version = bs_i64(&doc, "version");
        /* no release wrote another layout: version 1 (one document per
         * vocabulary) came only from development builds, and is not read */
        if (version != SCHEMA_VERSION)
            rc = serr_set(err, SERR_IO,
                          "store: schema version %lld is not the one this build knows (%d)",
                          (long long)version, SCHEMA_VERSION);
        bson_destroy(&doc);
    }
    bson_destroy(filter);
    bson_destroy(update);
    mg_end(&m);
    return rc;
}
