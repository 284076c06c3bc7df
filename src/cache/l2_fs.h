/* L2 on local disk, shared by every process that opens the same
 * directory (several strata processes on one data directory):
 *
 * - values: one file per entry, named by the SHA-256 of (namespace, key),
 *   so no key can reach outside the directory. Writes go through a temp
 *   file and a rename; each file carries a CRC and the write id its index
 *   row names, so a file torn by a crash or replaced under a reader reads
 *   as a miss, never as a wrong value;
 * - DIR/index.db: an SQLite index (namespace, key, size, expiry, last
 *   access, write id) for LRU eviction past the size limit, TTLs and glob
 *   clears that never read the files; the open fences; the total size.
 *   Every change runs in one BEGIN IMMEDIATE transaction, which is what
 *   serialises the processes' writers;
 * - DIR/generations: the generation table behind tokens, write ids and
 *   fence ids, mapped MAP_SHARED by every process (l2_generations.h: its
 *   layout, the odd/even settle protocol, how it is created race-free).
 *   A change makes its slot odd inside its index transaction and even
 *   again after the commit; a token is the pair of generations of its
 *   namespace and key. The table survives kill -9 of anyone; the
 *   generations are compared, never ordered by time, and need not survive
 *   a crash of the host (every L1 dies with it), while open fences, in
 *   the index, do: commits survive a crash of a process (WAL), and an
 *   index last opened under another boot of the machine is emptied by
 *   its first opener (l2_fs.c, boot_rule), so a fence a crash of the
 *   machine lost cannot let the value it distrusted be served. (Without a
 *   boot id to read, each fence's commit is synced instead.)
 *
 * Files: l2_fs.c (the index, the value files and the operations) and
 * l2_generations.c (the generation table). */
#ifndef STRATA_L2_FS_H
#define STRATA_L2_FS_H

#include "l2.h"

/* See l2_open. Fails (SERR_IO, SERR_UNAVAILABLE on a full disk,
 * SERR_CORRUPT for a generation table of another layout) when the index
 * or the generation table cannot be opened, created or mapped. */
l2_cache *l2_fs_open(const char *dir, const l2_config *cfg, strata_error *err);

#endif
