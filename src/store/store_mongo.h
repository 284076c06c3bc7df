/* The MongoDB store: `--store mongodb://HOST[:PORT]/DB[?options]`, on
 * libmongoc through src/common/mongo_conn.h, for MongoDB and for
 * MongoDB-wire servers such as FerretDB v1.
 *
 * Capabilities: STORE_CAP_TRANSACTIONS | STORE_CAP_BLOB_CLAIMS |
 * STORE_CAP_LEASES, not STORE_CAP_TREE_TXN. Every invariant of store.h is
 * kept with single-document atomic operations, and only those FerretDB v1
 * really makes atomic (an insert refused by a unique index, a delete by
 * _id), since FerretDB v1 and a standalone MongoDB have no multi-document
 * transactions and FerretDB v1's update/findAndModify is no
 * compare-and-swap. transact() is atomic for heads and versions (each head
 * it touches goes to a pending state; one seal document commits them all:
 * mongo_internal.h), not for tree edges and vocabularies, which the
 * service changes under a lease per tree instead (trees.c).
 *
 * Clocks: lease expiry and the age of blob claims are compared in the
 * server's clock (its hello localTime), never in the clocks of the nodes.
 *
 * vocab_apply on one master must not run on two nodes at once (the
 * service holds the master's lease around tree changes): it reads the
 * words' counts, then writes their changes in one bulk of $inc, so two
 * concurrent calls could misreport presence and the size. */
#ifndef STRATA_STORE_MONGO_H
#define STRATA_STORE_MONGO_H

#include "store.h"

/* Opens the store at url (mongodb://...), creates its indexes and checks
 * its schema version. NULL with *err: SERR_INVALID for a bad URL,
 * SERR_UNAVAILABLE when the server does not answer, SERR_IO when it
 * refuses (or holds a layout newer than this build), SERR_NOMEM. */
store *store_mongo_open(const char *url, strata_error *err);

#endif
