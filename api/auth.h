/* Access control: bearer tokens with scopes.
 *
 * Tokens live in a file (--auth-tokens), one per line:
 *
 *     sha256:<64 hex digits> <scopes> <name>     # a comment may follow
 *
 * where the hex is the SHA-256 of the token's bytes, <scopes> is a
 * comma-separated list of read, write and admin, and <name> (1-64 of
 * A-Z a-z 0-9 . _ - @ :) is what the access log shows. Blank lines and
 * lines starting with # are ignored. Only hashes are stored: a presented
 * token is hashed and compared with every entry in constant time.
 *
 * Scopes do not imply one another: a token may do what its listed scopes
 * allow and nothing else (an admin-only token cannot read). What each
 * request needs is decided by auth_need_for from its route and method.
 *
 * The table is immutable once parsed; a reload (SIGHUP) parses the file
 * into a new table and swaps it in. A decision holds a reference to the
 * table it started with for as long as it runs (a short mutex guards only
 * the pointer swap and the reference count, never a request). A file that
 * fails to parse on reload leaves the old table in place. */
#ifndef STRATA_AUTH_H
#define STRATA_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "../src/common/buf.h"
#include "../src/common/error.h"
#include "router.h"

enum auth_scope {
    AUTH_SCOPE_READ = 1u << 0,
    AUTH_SCOPE_WRITE = 1u << 1,
    AUTH_SCOPE_ADMIN = 1u << 2,
};

/* What a request needs to be served. */
enum auth_need {
    AUTH_NEED_NONE = 0, /* always open: /health, /ready, /openapi.yaml */
    AUTH_NEED_TOKEN,    /* any known token (a path or method no route takes) */
    AUTH_NEED_READ,
    AUTH_NEED_WRITE,
    AUTH_NEED_ADMIN,
};

#define AUTH_NAME_MAX  64
#define AUTH_TOKEN_MAX 1024 /* longer presented tokens are refused unhashed */

/* The policy, from the matched route (NULL when no route matched) and the
 * request's method (enum http_method):
 *   /health, /ready, /openapi.yaml           none
 *   /metrics                                 none with metrics_open, else read
 *   /admin/... and POST /{type}/{id}/cleanup admin
 *   any other GET or HEAD                    read
 *   any other method                         write
 *   no route (404, 405, a bad path)          any known token
 * Pure; thread-safe. */
enum auth_need auth_need_for(const route *rt, int method, bool metrics_open);

/* "read", "write", "admin", or "" for none and any token. */
const char *auth_need_name(enum auth_need need);

/* A parsed token file. Immutable; freed by its last reference. */
typedef struct auth_table auth_table;

/* Parses the text of a token file. source names it in errors, which read
 * "SOURCE:LINE: what is wrong" (a bad hash, an unknown scope, a bad or
 * repeated name, a repeated hash, extra fields, a line over 4 KiB).
 * Returns 0 and *out (zero tokens is valid: every protected request is then
 * refused), or -1 with *out NULL and err set. Thread-safe. */
int auth_table_parse(const char *text, size_t len, const char *source, auth_table **out,
                     strata_error *err);
size_t auth_table_count(const auth_table *t);
void auth_table_free(auth_table *t);

/* The access-control state of a server: the token file, its current table
 * and the refusal counters. */
typedef struct auth auth;

/* Reads and parses the file at path. path NULL or "" gives a disabled auth
 * (every request allowed) that still counts and renders its metrics.
 * NULL with err set when the file cannot be read (SERR_INVALID naming
 * --auth-tokens and the file) or parsed, or SERR_NOMEM. */
auth *auth_open(const char *path, strata_error *err);
void auth_close(auth *a);
bool auth_enabled(const auth *a);
/* Tokens in the current table (0 when disabled). */
size_t auth_token_count(auth *a);

/* Re-reads the file and swaps the new table in; decisions already under
 * way finish with the table they took. On failure the old table stays and
 * -1 is returned with err naming the file and line. A disabled auth has
 * nothing to reload: 0. Safe to call from any thread, concurrently with
 * auth_check. */
int auth_reload(auth *a, strata_error *err);

typedef struct auth_result {
    int status;                   /* 0 allowed, 401, 403, or 503 (hashing failed) */
    const char *slug;             /* problem type slug when refused */
    char name[AUTH_NAME_MAX + 1]; /* the matched token's name, "" if none */
    char detail[160];             /* problem detail when refused */
} auth_result;

/* Decides a request that needs `need`, given the values of its
 * Authorization headers (nauth of them; authz the first, NULL if none).
 * Allowed when auth is disabled or need is NONE. Otherwise a missing,
 * repeated, malformed or unknown bearer token is 401 ("unauthenticated"),
 * a known token without the needed scope 403 ("forbidden"); refusals are
 * counted. Never fails otherwise; out is always filled. Thread-safe. */
void auth_check(auth *a, enum auth_need need, const char *authz, int nauth, auth_result *out);

/* Appends strata_auth_refused_total{reason}, strata_auth_tokens and
 * strata_auth_reloads_total{result} in the Prometheus text format.
 * -1 with err set when the buffer cannot grow. Thread-safe. */
int auth_metrics_render(auth *a, strata_buf *out, strata_error *err);

/* The "sha256:<hex>" of a token (its bytes, as given). The token must be
 * 1-AUTH_TOKEN_MAX characters of the RFC 6750 token alphabet
 * (A-Z a-z 0-9 - . _ ~ + / and trailing =). out needs 72 bytes.
 * -1 with err set (SERR_INVALID naming the problem) otherwise. */
int auth_hash_token(const char *token, size_t len, char *out, size_t cap, strata_error *err);

#endif
