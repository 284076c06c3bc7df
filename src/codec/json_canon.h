/* Canonical JSON: object keys sorted bytewise, compact separators, UTF-8
 * left as is (no \u escapes), reals printed with 17 significant digits.
 * Two documents that differ only in key order or whitespace canonicalise
 * to the same bytes, and so to the same hash. */
#ifndef STRATA_JSON_CANON_H
#define STRATA_JSON_CANON_H

#include <jansson.h>

#include "../common/error.h"
#include "sha256.h"

/* Returns a malloc'd NUL-terminated string (caller frees) or NULL. */
char *json_canon_dump(const json_t *value, size_t *len, strata_error *err);

int json_canon_hash(const json_t *value, unsigned char out[SHA256_LEN], strata_error *err);

#endif
