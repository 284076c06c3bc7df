/* Connections to one MongoDB deployment (or a MongoDB-wire server such as
 * FerretDB), shared by the MongoDB store, the MongoDB L2 and the GridFS
 * blob store: the URL, a libmongoc client pool with timeouts, and the
 * mapping of libmongoc's errors onto strata_error.
 *
 * URL: mongodb://[user:password@]host[:port][,host...]/DB[?options]
 *   DB is required ([A-Za-z0-9_-]{1,63}): each role keeps its collections
 *   in it under names of its own. libmongoc reads the options; where the
 *   URL does not set them, Strata sets serverSelectionTimeoutMS=5000,
 *   connectTimeoutMS=2000, socketTimeoutMS=30000 and maxPoolSize=1024, so
 *   that a server that is down costs a bounded wait, never a hang.
 *   Connections are made only as they are needed; the cap is high because
 *   a store operation may hold a second or third client while it holds one
 *   (an abort, a blob claim's release, a beat thread), so a pool smaller
 *   than about 3 x --threads could leave every thread waiting for another.
 *   The server is not contacted by mongo_conn_open.
 *
 * Errors. libmongoc's errors map to: SERR_CONFLICT for a duplicate key
 * (server code 11000: a unique index refused the write), SERR_UNAVAILABLE
 * when no server could be selected or the connection failed or timed out,
 * SERR_IO for anything else the server refused. The detail names the
 * operation and libmongoc's message; it may name hosts, so it is for the
 * log (5xx details shown to clients are generic).
 *
 * Thread safety: every function may be called from any thread; a client
 * taken with mongo_conn_pop belongs to the caller until mongo_conn_push
 * gives it back (libmongoc clients are not thread-safe, the pool is). */
#ifndef STRATA_MONGO_CONN_H
#define STRATA_MONGO_CONN_H

#include <mongoc/mongoc.h>
#include <stdbool.h>

#include "error.h"

#define MONGO_DB_MAX 63

typedef struct mongo_conn mongo_conn;

/* Parses url and makes the pool; appname names the role in the server's
 * logs ("strata-store", "strata-l2", "strata-blobs"). NULL with *err set:
 * SERR_INVALID (not a mongodb:// URL, no or a malformed database name, an
 * option libmongoc refuses, waitQueueTimeoutMS), SERR_NOMEM. */
mongo_conn *mongo_conn_open(const char *url, const char *appname, strata_error *err);

/* Closes the pool; every client must have been pushed back. NULL is a no-op. */
void mongo_conn_close(mongo_conn *c);

/* The database name from the URL. */
const char *mongo_conn_db(const mongo_conn *c);

/* How many clients the pool holds at most (maxPoolSize). */
int mongo_conn_pool_size(const mongo_conn *c);

/* A client from the pool, waiting while every client is out. Never NULL
 * (libmongoc blocks until one is free; waitQueueTimeoutMS, which would
 * make it give up, is refused by mongo_conn_open). A caller that holds a
 * client for as long as a remote peer decides (a streamed upload) must
 * bound how many it holds at once, below mongo_conn_pool_size, or slow
 * peers could leave every other caller waiting here. */
mongoc_client_t *mongo_conn_pop(mongo_conn *c);
void mongo_conn_push(mongo_conn *c, mongoc_client_t *cl);

/* Collection `name` of the URL's database through client cl (caller
 * destroys it with mongoc_collection_destroy). */
mongoc_collection_t *mongo_conn_collection(mongo_conn *c, mongoc_client_t *cl, const char *name);

/* Sets *err from a libmongoc error as described above, with "what: " in
 * front of the message; returns -1. */
int mongo_conn_error(const bson_error_t *e, const char *what, strata_error *err);

/* Whether e is a duplicate-key refusal (code 11000). */
bool mongo_conn_is_duplicate(const bson_error_t *e);

/* The server's clock (hello's localTime), in ms since the epoch, through
 * client cl: for ages of documents stamped with $currentDate, so that no
 * node compares its own clock with the server's. SERR_UNAVAILABLE when the
 * server does not answer, SERR_IO when it gives no time. */
int mongo_conn_server_ms(mongoc_client_t *cl, int64_t *out, strata_error *err);

/* Sends {ping: 1}: 0 when the server answers, else SERR_UNAVAILABLE. */
int mongo_conn_ping(mongo_conn *c, strata_error *err);

#endif
