/* Parsing client JSON with bounds: nesting depth is checked by a scan
 * before the parser sees the text (so a 10,000-deep document is refused
 * cheaply, with a clear message), and duplicate keys are refused. */
#ifndef STRATA_JSON_PARSE_H
#define STRATA_JSON_PARSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../common/error.h"

#define JSON_MAX_DEPTH 64

/* Returns a new reference, or NULL with SERR_INVALID naming the problem
 * (and its line and column). `what` names the document ("the body"). */
json_t *json_parse_bounded(const void *data, size_t len, size_t max_depth, const char *what,
                           strata_error *err);

/* Reads v as a whole number: a JSON integer, or a real with an integral
 * value within +-2^53 (JSON, and JSON Schema's "integer", count 5.0 as
 * the number 5). Returns false (out untouched) for anything else. */
bool json_whole_number(const json_t *v, long long *out);

#endif
