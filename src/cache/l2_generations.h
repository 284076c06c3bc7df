/* The generation table of a disk L2 (DIR/generations): the shared memory
 * behind its tokens, write ids and fence ids, mapped MAP_SHARED by every
 * process that opens the directory.
 *
 * Layout: a 4096-byte header (magic "STRATAGN", version, header size,
 * slot counts, then the id counter), 65536 key slots and 1024 namespace
 * slots, each a 64-bit generation. The key (ns, key) owns the key slot
 * hash(ns NUL key) and the namespace slot hash(ns); unrelated keys may
 * share a slot, which only moves their tokens together (a spurious miss,
 * never a stale hit).
 *
 * The settle protocol (a seqlock across processes). A change of what a
 * slot guards makes it odd inside the change's index transaction
 * (l2_gen_begin) and even again after the commit or rollback
 * (l2_gen_end). A token is the pair (namespace generation, key
 * generation) read before the value: usable only when both are even, and
 * then it names a state every change of which is visible in the index. A
 * slot left odd by a process that died between begin and end is made
 * even by the next writer (l2_gen_settle), which is safe because writers
 * are serialised: see "Thread and process safety".
 *
 * The generations are compared, never ordered by time, and need not
 * survive a crash of the host (every L1 copy they tag dies with it).
 *
 * Thread and process safety. The table needs no process-local state:
 * every operation works on the shared mapping with lock-free 64-bit
 * atomics, from any thread of any process, and a process killed at any
 * point (kill -9) leaves it usable. l2_gen_token, l2_gen_next_id and the
 * slot look-ups need no lock at all. l2_gen_settle and l2_gen_begin must
 * run under "the writers' lock": one that every writer of every process
 * using the table shares (the disk L2: its index's BEGIN IMMEDIATE
 * transaction), held from before l2_gen_begin until the change it starts
 * is committed or rolled back. They rely on it: an odd slot they find is
 * taken for one whose writer is gone. l2_gen_end may run after that lock
 * is released.
 * l2_gen_open may run concurrently in any number of processes on one
 * directory; l2_gen_close must not run while another thread uses the
 * table it closes. */
#ifndef STRATA_L2_GENERATIONS_H
#define STRATA_L2_GENERATIONS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "../common/error.h"
#include "l2.h"

/* A slot of the table: one 64-bit generation in the shared mapping. A
 * pointer to one stays valid until l2_gen_close. */
typedef atomic_ullong l2_gen_slot;

/* One process's mapping of a table. The fields are private; a
 * zero-initialised table is closed (l2_gen_close on it is a no-op). */
typedef struct l2_gen_table {
    void *map;
    struct l2_gen_header *hdr;
    l2_gen_slot *keys; /* the key slots */
    l2_gen_slot *nss;  /* the namespace slots */
} l2_gen_table;

/* Opens the table of directory dir (which must exist), creating it when
 * it is missing, and maps it into *g. A new table is created whole
 * (allocated, not sparse, so that no store into the mapping can meet a
 * full disk; header written; synced) under a temporary name and linked
 * into place, so the name only ever shows a complete table: processes
 * racing to open one directory all map the same table, and none sees a
 * partial one. first_id: the new table's id counter (l2_gen_next_id then
 * issues first_id + 1, ...); ignored when the table exists.
 *
 * Returns 0, or -1 with *err set: SERR_IO (the file cannot be opened,
 * created or mapped, or keeps disappearing), SERR_UNAVAILABLE (creating
 * it met a full disk or quota), SERR_CORRUPT (a file of another size,
 * magic or layout: never repaired here, since processes may have it
 * mapped; the message says to remove it while no process uses dir). On
 * failure *g is zeroed and no temporary file is left behind. */
int l2_gen_open(l2_gen_table *g, const char *dir, uint64_t first_id, strata_error *err);

/* Unmaps the table and zeroes *g; what it holds stays in the file. A
 * zeroed table is a no-op. */
void l2_gen_close(l2_gen_table *g);

/* A fresh id, unique among every id issued by every process sharing the
 * table since it was created (64-bit counter, one atomic add). Never 0
 * unless the counter wraps around. Lock-free. */
uint64_t l2_gen_next_id(l2_gen_table *g);

/* The slot of namespace ns, and the slot of the key (ns, key). Pure
 * functions of the strings (the same slot in every process); never NULL.
 * Lock-free. */
l2_gen_slot *l2_gen_ns_slot(const l2_gen_table *g, const char *ns);
l2_gen_slot *l2_gen_key_slot(const l2_gen_table *g, const char *ns, const char *key);

/* Makes a slot left odd even (one step: a writer that died mid-change,
 * or one that committed and is about to end it itself; whichever CAS
 * comes first wins) and returns the even generation it then holds.
 * Under the writers' lock only. */
uint64_t l2_gen_settle(l2_gen_slot *s);

/* Starts a change of what the slot guards: settles it, then makes it odd.
 * Returns the odd generation, never 0, which the matching l2_gen_end
 * takes. Under the writers' lock only, inside the change's transaction
 * (before its commit). */
uint64_t l2_gen_begin(l2_gen_slot *s);

/* Ends the change that l2_gen_begin returned odd for, after its commit or
 * rollback: the slot becomes odd + 1, unless a later writer settled it
 * already (then it is left alone). True when this call made it even, so
 * that odd + 1 is the generation the change committed under. Needs no
 * lock. */
bool l2_gen_end(l2_gen_slot *s, uint64_t odd);

/* The current token of (ns, key) into *out: w[0] the namespace
 * generation, w[1] the key generation (each read once, acquire), w[2] 0,
 * w[3] 1 when both are even (usable) and 0 otherwise. Cannot fail.
 * Lock-free: two atomic loads. */
void l2_gen_token(const l2_gen_table *g, const char *ns, const char *key, l2_token *out);

/* The usable token of the generations (ns_gen, key_gen), both even, into
 * *out: what l2_gen_token returns while they stand. */
void l2_gen_token_make(l2_token *out, uint64_t ns_gen, uint64_t key_gen);

/* Whether token t names the generations (ns_gen, key_gen); its usability
 * is not checked (see l2_token_usable). */
bool l2_gen_token_names(const l2_token *t, uint64_t ns_gen, uint64_t key_gen);

#endif
