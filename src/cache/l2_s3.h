/* The L2 on S3 (or an S3-compatible server), over s3_client.h, shared by
 * every node that opens the same bucket and prefix. See l2.h for the
 * contract; what is particular to S3:
 *
 *   s3://BUCKET[/PREFIX][?endpoint=URL&region=R&timeout_ms=N]
 *   (credentials, region and endpoint as s3_client.h reads them; use a
 *   prefix of its own, not the blob store's)
 *
 * Layout under PREFIX (l2_s3_layout.h has the details). NS and KEY are
 * the namespace and key with every byte outside [A-Za-z0-9_-] written
 * %XX; a key whose form would pass 200 bytes is named ~LEN-SHA256 instead
 * (its bytes stay in the object):
 *   format          the format record ("strata-l2-s3 1"), made with
 *                   If-None-Match: * by the first node; a foreign one
 *                   refuses the open (SERR_CORRUPT).
 *   n/NS            the namespace's clear epoch: every clear PUTs a new
 *                   random body; E is a hash of its ETag (0 while none).
 *   v/NS/KEY        the key's state object: a value, or a blank (no
 *                   value). Body: a small self-describing header (magic,
 *                   kind, the generation g, the key) then the value's
 *                   bytes; x-amz-meta-g holds g, x-amz-meta-m the write
 *                   id, raw size, the caller's expiry and the expiry
 *                   instant, x-amz-meta-t the content type (hex). A
 *                   listing tells a value from a blank by its size.
 *   v/NS/KEY!a      the key's access marker (empty; see recency).
 *   f/NS/KEY/ID     an open fence (body: its hold in ms).
 *
 * Tokens are (E, g), read with a HEAD of n/NS and of v/NS/KEY: two
 * requests per token, and S3's strong read-after-write consistency makes
 * every change acknowledged on any node visible to every later token.
 * g is a random 64-bit value that a set, del, fence or clear replaces
 * (the latter three by PUTting a blank of a new g). A key with no state
 * object gets a blank one, made with If-None-Match: *, by the first
 * token() that finds it absent: so "absent" is never a token, and a
 * fill can never succeed against a key that was written and removed
 * since its token (the ABA that a plain "absent" token would allow).
 *
 * Fills and fences across nodes, by conditional writes (versitygw v1.8.0
 * and S3 honour If-None-Match: * and If-Match on PutObject; measured: 16
 * racing conditional PUTs, exactly one wins). A fill HEADs the state
 * object (its g must be the token's), checks E and that no fence of the
 * key is open (a LIST of f/NS/KEY/), then PUTs the value If-Match the
 * ETag it read (the body holds g and the write id, so every state has
 * its own ETag). fence_open PUTs its fence object, then a new blank over
 * the state object; a clear replaces E, then lists the matching state
 * objects and puts a new blank over each. So a fill that passed its
 * checks before a change either lands before the change's blank (which
 * replaces it) or meets a changed ETag (412: SERR_CONFLICT). The checks
 * of E and of the fences are not atomic with the PUT; the blanks after
 * them are what make that safe. They are PUTs, not DELETEs, because a
 * server orders a conditional PUT with other PUTs of the key but may not
 * with a DELETE: versitygw v1.8.0 checks If-Match under a per-key lock
 * that its DeleteObject does not take, so a fill checked before a DELETE
 * could land after it (seen: a stale latest served on one node of three,
 * once in five runs of multiproc). (A fill whose answer was lost may have
 * landed: it passed its conditions, so what it left is current.)
 *
 * Fence expiry. S3 offers no clock finer than a second (Last-Modified),
 * and DESIGN.md forbids comparing the clocks of different nodes. A node
 * takes a fence for expired once hold_ms have passed on its own
 * monotonic clock since it first saw the fence (its opener: at the
 * opening): never sooner than hold_ms after the opening, and at most
 * hold_ms after the node first met it (a node that restarts meets it
 * anew). The sweeper deletes fence objects that it has seen expire.
 *
 * Ids. Write ids and fence ids are random 64-bit values (getrandom),
 * unique with overwhelming probability: S3 has no counter, and one kept
 * by compare-and-swap would serialise every write of every node.
 *
 * TTL. A value's expiry instant is the writer's wall clock plus the TTL;
 * a read past it is a miss and replaces the value by a blank (If-Match:
 * never a newer value). TTLs are freshness bounds, not coherence: a skew
 * between nodes' clocks moves them by the skew, tokens and fences never.
 *
 * Recency and the byte budget (max_bytes, over every value of the
 * prefix). S3 has no access time; a read records one by PUTting the
 * empty marker v/NS/KEY!a, at most once a minute per key and node (one
 * PUT of no bytes; a self-copy of the value would cost its size, and
 * versitygw's posix backend does not restart Last-Modified on one). A
 * value's recency is the later Last-Modified of it and its marker (S3's
 * clock, whole seconds; ties broken by the order in which this node used
 * the keys). Each node keeps an estimate of the total (its last listing
 * plus what it wrote since); a set that takes it past max_bytes runs an
 * eviction pass (one at a time per node): a listing of v/, then the
 * least recently used values are replaced by blanks until the total is
 * 90% of max_bytes. Every replacement is If-Match the ETag of a HEAD
 * that showed the value as judged, so no pass removes a newer value.
 * Nodes that run passes at once may each evict: the budget errs low.
 * Other nodes' writes count once the next listing sees them.
 *
 * The sweeper (a thread per handle, every 30 s; several nodes may sweep
 * at once, which only repeats work): the budget as above; the expiry of
 * up to 256 values per sweep, in turn (a HEAD each); markers whose value
 * is gone; blanks untouched for 10 minutes (HEAD, then DELETE: a fill
 * that lands between the two is lost, a miss, since s3_client has no
 * conditional DELETE); fence objects it has seen expire.
 *
 * Stats: hits..evictions count this handle's own operations, as on the
 * disk L2; items and bytes come from a listing of v/NS/ (values only).
 * health: the format record and one signed request (s3_check), failing
 * with the server's cause ("SignatureDoesNotMatch: ...").
 *
 * Failures: every S3 failure is an error of the call (the cache manager
 * takes it as a miss); a value that does not read as one (metadata or
 * header malformed, another key's, a blank) is a miss. The L2's client
 * retries at most twice, and once a call met an unreachable server (or
 * refused credentials) every call fails at once for a second (a
 * breaker), so that a down L2 costs callers misses, not waits; health
 * always asks the server, and its success closes the breaker. */
#ifndef STRATA_L2_S3_H
#define STRATA_L2_S3_H

#include "l2.h"

/* Opens the S3 L2 of url: reads or makes the format record. A server not
 * reachable, or refusing the credentials, does not fail the open: the
 * record is checked again by the next operation, which fails until then
 * (health names the cause). Starts the sweeper. NULL with *err set
 * otherwise: SERR_INVALID (a malformed URL or missing credentials),
 * SERR_CORRUPT (a format record of something else), SERR_NOMEM. */
l2_cache *l2_s3_open(const char *url, const l2_config *cfg, strata_error *err);

#endif
