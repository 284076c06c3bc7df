/* The L2 on MongoDB (or a MongoDB-wire server such as FerretDB v1), over
 * mongo_conn.h, shared by every node that opens the same database and
 * prefix. See l2.h for the contract; what is particular to MongoDB:
 *
 *   mongodb://[user:password@]HOST[:PORT][,HOST...]/DB[?options]
 *   options as libmongoc reads them, plus prefix=NAME ([A-Za-z0-9_-]
 *   {1,32}, default "l2") naming the collections; it is taken out before
 *   the URL goes to libmongoc. Where the URL does not set them, the L2
 *   sets serverSelectionTimeoutMS=1500, connectTimeoutMS=1000 and
 *   socketTimeoutMS=5000: a cache must fail fast.
 *
 * The one atomic operation. FerretDB v1.24 runs an update or a
 * findAndModify as a query followed by a write by _id that does not check
 * the filter again: a filtered update is no compare-and-swap (two nodes
 * measured losing each other's changes). What it does atomically is an
 * insert refused by the unique _id: of concurrent inserters of one _id
 * exactly one wins. So everything here that must be a compare-and-swap is
 * such an insert, and every other write only tidies (hints, stubs, bytes
 * of replaced values), so that losing one of them is harmless.
 *
 * Collections (P the prefix):
 *   P_meta  {_id: "format", kind: "strata-l2-mongo", version: 2}, made by
 *           the first node (a unique _id: racing nodes read the winner's);
 *           anything else there refuses the open (SERR_CORRUPT; a version
 *           1 record is the older one-document-per-key layout).
 *   P_keys  C below is the key's chain name "LEN:NS:KEY" (LEN the length
 *           of NS). Lookups go by _id alone: FerretDB scans the collection
 *           for other filters, even $in or $or of _ids.
 *     "s<q>:C"  state q (1, 2, ...) of the key: immutable once inserted.
 *           n (NS), k (KEY), g (the generation, random 64-bit), s (the
 *           value's size, -1 for a blank), for a value w (its write id),
 *           t, c, r, e (content type, codec, raw size, the caller's
 *           expiry) and x (the expiry instant, 0: none); f, the fences
 *           standing: [{i: id, h: hold_ms, o: the server's ms at the
 *           opening}]. A stub {_id, z: 1} is a state shrunk after a newer
 *           one exists.
 *     "p:C"  the key's pointer: n, k, h (a seq of the chain, a hint), a
 *           (the server's time of the key's last change or use). Made,
 *           by insert, before the chain's first state.
 *     "e:NS"  e, the namespace's clear epoch (absent: 0).
 *   P_valsX {_id: w, v: the bytes} of each value, X the low 4 bits of w
 *           in hex (16 collections: FerretDB's finds by _id slow down
 *           with the bytes a collection holds), apart from its state so
 *           that listings of states (stats, the budget, clear, the
 *           sweeper) read no bytes. Inserted before the state that names
 *           it, deleted by the writer that moves past that state.
 * Indexes (n, k) and (s, a) of P_keys serve the listings on MongoDB
 * (FerretDB scans anyway): made by the node that made the format record,
 * else by a sweeper that finds them missing (never by every opener:
 * FerretDB v1.24 deadlocks on concurrent createIndexes of one collection).
 * No TTL index: FerretDB v1 refuses expireAfterSeconds. Namespaces and keys must be valid UTF-8
 * (BSON strings): others are refused with SERR_INVALID.
 *
 * The chain. A key's state is its newest state document. Every change
 * (set, fill, del, fence_open, a clear's blank, an expiry or an eviction)
 * reads the newest state q and inserts q+1; exactly one writer gets q+1,
 * so a writer that inserted q+1 knows that nothing changed the key
 * between its read of q and its write. A conditional change (a fill, an
 * expiry, an eviction) fails when its insert is refused; an unconditional
 * one (set, del, fence_open, a clear's blank) reads the newest state again
 * and retries after a random pause of up to 16 ms (at most 48 inserts, then
 * SERR_RETRY). What a change keeps
 * of q (the fences, the generation of a fill) it copies from the state it
 * read, which the won insert proves was still the newest: no change is
 * lost. For the same reason a change may build on the state this node
 * saw last (one find) instead of looking for the newest: if that one is
 * no longer the newest, its successor exists and the insert is refused.
 *
 * Finding the newest state: from a seq this node saw of the chain (in
 * memory), else the pointer's h, read "s<h>:C", "s<h+1>:C", ... by _id
 * until one is absent; the last present is the newest, because states are
 * contiguous from 1 (see pruning). A node's hint more than 4 behind asks
 * the pointer. A writer moves the pointer with $max after a change when
 * it has not done so for the key within a minute, and at every 8th seq;
 * a lost, late or skipped $max only makes readers walk further: h never
 * passes the newest state, since a writer sets it to the seq it inserted.
 *
 * Pruning (why nothing under the newest state is deleted). A deleted _id
 * can be inserted again: a writer that read state q-1 long ago and was
 * delayed could then insert q after q was deleted, and readers that walk
 * from a low hint would take it for the newest. So no state document of
 * a chain is ever deleted. Once q+1 exists, the writer of q+1 shrinks q,
 * when it held a value, to a stub by _id (a replace: its _id stays taken,
 * so no writer can insert it again) and deletes q's bytes from P_vals (a
 * reader that still looks for them misses); a blank is left as it is (it
 * is about as small). A chain therefore costs its pointer, its newest
 * state and a stub or blank of about 60 bytes plus the key per change, for as
 * long as the prefix lives; reclaiming idle chains safely would need an
 * anchor that outlives them (not done: drop the prefix's collections
 * while no node uses them to start afresh).
 *
 * Tokens are (E, g): E read from "e:NS", g from the newest state. A token
 * of a key with no state inserts state 1, a blank of a new g: "absent" is
 * never a token. set, del and fence_open insert a state of a new g; a fill
 * inserts one that keeps g (l2.h: a fill leaves the token as it is), and
 * so do an expiry and an eviction (a value gone by them makes no node's
 * copy stale).
 *
 * Fills. A fill reads E (it must be the token's) and the newest state q:
 * its g must be the token's and no fence may stand on it (by the server's
 * clock, read when q carries fences); then it inserts q+1 with the value,
 * the same g and the fences still listed but expired dropped. Any change
 * since its read took q+1 first: SERR_CONFLICT.
 *
 * Clears. A clear sets a new random E (a plain $set: any new value moves
 * every token of the namespace), then lists the pointers of the namespace
 * (a prefix regex from the glob, then glob_match) and changes each
 * matching key, unconditionally, to a blank of a new g, counting the live
 * values replaced. A fill that checked the old E inserted its state either
 * before the clear's blank of that key (which replaces it) or is refused
 * by it; every key with a state has a pointer (made before state 1), so
 * the listing, which follows the new E, misses none a fill could reach.
 *
 * Fences. fence_open reads the server's clock (mongo_conn_server_ms),
 * then inserts a blank of a new g whose f adds {id, hold, that time}; del
 * inserts a blank of a new g whose f drops the ids it closes. A fence
 * stands while the server's time is below o + h: measured by the server's
 * clock alone, never by a node's, and from an instant read just before
 * the insert that made it durable (it stands at most one round trip less
 * than hold_ms after fence_open returned). Changes carry the fences they
 * do not close; those that read the server's clock (fence_open, and any
 * change once 32 fences are carried) drop the expired ones. At most 64
 * fences stand on a key (fence_open: SERR_RETRY).
 *
 * Ids. Write ids and fence ids are random 64-bit values (getrandom): a
 * counter document would serialise every write of every node.
 *
 * TTL. A value's expiry instant is the writer's wall clock plus the TTL;
 * a read past it is a miss and blanks the value (an expiry: the insert of
 * q+1, refused if anything changed it since), and the sweeper blanks
 * expired values. TTLs are freshness bounds, not coherence: a skew
 * between nodes' clocks moves them by the skew, tokens and fences never.
 *
 * Recency and the byte budget (max_bytes, over every value of the
 * prefix). A key's recency is its pointer's a: the server's time of its
 * last change or read, stamped by this node at most once a minute per key
 * (and at every 8th seq). Each node keeps an estimate of the total (its last pass
 * plus what it wrote since); a set that takes it past max_bytes runs an
 * eviction pass (one at a time per node): the total of the states' s from
 * the server, then the keys by a, oldest first, their newest values
 * blanked (an eviction: refused if the key changed since) until the total
 * is 90% of max_bytes. Approximate LRU that errs low: reads within the
 * minute do not refresh a, and nodes that run passes at once may each
 * evict.
 *
 * The sweeper (a thread per handle, every 30 s; several nodes may sweep
 * at once, which only repeats work): the budget as above; up to 256
 * expired values blanked, and states found holding a value under a newer
 * state (their writer died before shrinking them) shrunk. Bytes in P_valsX
 * whose state never landed (a writer that died between the two inserts,
 * or lost its connection) are not collected: a bounded leak per such
 * failure.
 *
 * Stats: hits..evictions count this handle's own operations, as on the
 * disk and S3 L2s (a counter document would add a write to every read);
 * items and bytes come from a find over the namespace's value states.
 *
 * Failures: every MongoDB failure is an error of the call (the cache
 * manager takes it as a miss); a state that does not read as a value, or
 * whose bytes are gone, is a miss. A set whose insert may have landed
 * when the call failed blanks it if it is still the newest (best effort).
 * Once a call met an unreachable server every call fails at once for a
 * second (a breaker), so a down L2 costs callers misses, not waits;
 * health always asks the server (a ping), and its success closes the
 * breaker. */
#ifndef STRATA_L2_MONGO_H
#define STRATA_L2_MONGO_H

#include "l2.h"

/* The largest value the MongoDB L2 stores: under the 16 MiB document
 * limit with room for the key and metadata. Larger: SERR_TOO_LARGE. */
#define L2_MONGO_VALUE_MAX (15u * 1024 * 1024)

/* Opens the MongoDB L2 of url and starts its sweeper. The server is not
 * required to answer: the format record and the indexes are made by the
 * first call that reaches it (each call fails until then; health names
 * the cause). NULL with *err set otherwise: SERR_INVALID (a malformed
 * URL or prefix), SERR_CORRUPT (the format record of something else),
 * SERR_NOMEM. */
l2_cache *l2_mongo_open(const char *url, const l2_config *cfg, strata_error *err);

#endif
