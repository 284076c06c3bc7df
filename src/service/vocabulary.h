/* A corpus vocabulary, computed by the service rather than trusted from
 * the client. Normalisation: each word is trimmed of surrounding white
 * space, empty words are dropped, duplicates merged (their frequencies
 * added); no case folding unless asked (then ASCII letters only). A word
 * from a list counts 1 each time it appears; "frequencies" add their
 * counts. A word's frequency, given or summed, is at most VOCAB_FREQ_MAX
 * (SERR_INVALID past it).
 *
 * The stored form of a corpus is canonical JSON:
 *   {"words": [sorted bytewise, unique], "frequencies": {word: count}}
 * where "frequencies" lists only counts other than 1. The vocabulary hash
 * is the SHA-256 of the sorted unique words, each followed by "\n": the
 * bytes of `LC_ALL=C sort -u`. */
#ifndef STRATA_VOCABULARY_H
#define STRATA_VOCABULARY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../codec/sha256.h"
#include "../common/error.h"

#define VOCAB_WORD_MAX 1024 /* bytes of one word */
/* The largest frequency of a word in one corpus (10^12): so that a master
 * summing up to 2^23 children still cannot overflow a signed 64-bit sum. */
#define VOCAB_FREQ_MAX 1000000000000ll

typedef struct vocab_word {
    char *word;
    size_t len;
    int64_t freq;
} vocab_word;

typedef struct vocabulary {
    vocab_word *w; /* sorted bytewise, unique */
    size_t n;
    char *arena; /* the words' bytes */
} vocabulary;

void vocabulary_free(vocabulary *v);

/* {"words": [...], "frequencies": {...}} */
int vocabulary_from_json(const json_t *content, bool fold_case, vocabulary *out, strata_error *err);
/* text, one word per line */
int vocabulary_from_text(const unsigned char *text, size_t len, bool fold_case, vocabulary *out,
                         strata_error *err);

/* The canonical stored form (a new reference). */
json_t *vocabulary_to_json(const vocabulary *v);
void vocabulary_hash(const vocabulary *v, char out[SHA256_HEX_LEN + 1]);

#endif
