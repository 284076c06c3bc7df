/* The embedded store: one SQLite file in WAL mode. */
#ifndef STRATA_STORE_SQLITE_H
#define STRATA_STORE_SQLITE_H

#include "store.h"

store *store_sqlite_open(const char *path, strata_error *err);

/* Commits this handle has made, and writes (in_write calls and
 * transactions) that joined them: writes / commits is the mean size of a
 * commit group (see sqlite_internal.h). Any thread. */
void store_sqlite_commit_stats(store *s, uint64_t *commits, uint64_t *writes);

#endif
