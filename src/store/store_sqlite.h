/* The embedded store: one SQLite file in WAL mode. */
#ifndef STRATA_STORE_SQLITE_H
#define STRATA_STORE_SQLITE_H

#include "store.h"

store *store_sqlite_open(const char *path, strata_error *err);

#endif
