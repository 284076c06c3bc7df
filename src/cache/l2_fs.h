/* L2 on local disk: one file per entry, named by the SHA-256 of
 * (namespace, key), so no key can reach outside the directory; an SQLite
 * index (namespace, key, size, expiry, last access) for LRU eviction past
 * the size limit, TTLs and glob clears that never read the files. Writes
 * go through a temp file and a rename; each file carries a CRC, so a file
 * torn by a crash reads as a miss, never as a wrong value. */
#ifndef STRATA_L2_FS_H
#define STRATA_L2_FS_H

#include "l2.h"

l2_cache *l2_fs_open(const char *dir, const l2_config *cfg, strata_error *err);

#endif
