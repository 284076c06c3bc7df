/* A corpus vocabulary, computed by the service rather than trusted from
 * the client. Normalisation: each word is trimmed of surrounding white
 * space, empty words are dropped, duplicates removed; no case folding.
 * The vocabulary hash is the SHA-256 of the sorted (bytewise) unique
 * words, each followed by "\n": the same bytes as `LC_ALL=C sort -u`. */
#ifndef STRATA_VOCABULARY_H
#define STRATA_VOCABULARY_H

#include <jansson.h>
#include <stddef.h>

#include "../codec/sha256.h"
#include "../common/error.h"

typedef struct vocab_stats {
    size_t size;
    char hash_hex[SHA256_HEX_LEN + 1];
} vocab_stats;

/* {"words": [...], "frequencies": {...}}: the union of both. */
int vocabulary_from_json(const json_t *content, vocab_stats *out, strata_error *err);
/* text/plain, one word per line. */
int vocabulary_from_text(const unsigned char *text, size_t len, vocab_stats *out,
                         strata_error *err);

#endif
