/* Compact JSON text written straight into a buffer.
 *
 * The bytes are exactly those of jansson 2.14's
 * json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY), with
 * JSON_SORT_KEYS added by JSON_WRITE_SORT_KEYS: members in the object's
 * own order, strings as UTF-8 with only '"', '\' and control characters
 * escaped, integers in decimal, reals with 17 significant digits and
 * always a '.' or an exponent. It exists for speed: json_dumps calls back
 * once per token and, to find cycles, formats every container's address
 * into a key of a hash table; on a small save that was a tenth of the
 * server's CPU. Here a depth bound stands in for cycle detection (a
 * cycle always reaches it).
 *
 * Thread safety: pure functions of their arguments; any thread, as long as
 * no other thread changes the value meanwhile. */
#ifndef STRATA_JSON_WRITE_H
#define STRATA_JSON_WRITE_H

#include <jansson.h>
#include <stddef.h>

#include "../common/buf.h"
#include "../common/error.h"

/* Deeper than anything jansson's parser gives (JSON_PARSER_MAX_DEPTH,
 * 2048) plus what a record or a page wraps around it: what json_dumps
 * wrote, this writes. */
#define JSON_WRITE_MAX_DEPTH 4096

/* Object members sorted bytewise by key (JSON_SORT_KEYS). */
#define JSON_WRITE_SORT_KEYS 0x1u

/* Appends the text of value to out.
 * Errors: SERR_INVALID for a NULL value, a string or key that is not valid
 * UTF-8, or nesting deeper than JSON_WRITE_MAX_DEPTH; SERR_TOO_LARGE past
 * out's cap; SERR_NOMEM. On failure out->len is what it was (the bytes
 * past it are unspecified). */
int json_write(const json_t *value, unsigned flags, strata_buf *out, strata_error *err);

/* Appends the len bytes at s as a JSON string. Errors as json_write's. */
int json_write_string(const char *s, size_t len, strata_buf *out, strata_error *err);

/* The same text as a malloc'd NUL-terminated string that the caller frees,
 * its length in *len when len is not NULL: a drop-in for
 * json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY) (flags 0). NULL on any
 * failure json_write reports, described in *err when err is not NULL. */
char *json_write_text(const json_t *value, unsigned flags, size_t *len, strata_error *err);

#endif
