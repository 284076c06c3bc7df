#include "vocabulary.h"

#include <stdlib.h>
#include <string.h>

typedef struct word_ref {
    const char *p;
    size_t len;
} word_ref;

static int cmp_words(const void *a, const void *b)
{
    const word_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->p, y->p, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

static void trim(const char **p, size_t *len)
{
    while (*len > 0 && is_space(**p)) {
        (*p)++;
        (*len)--;
    }
    while (*len > 0 && is_space((*p)[*len - 1]))
        (*len)--;
}

/* Sorts, de-duplicates and hashes; words must be trimmed and non-empty. */
static int finish(word_ref *w, size_t n, vocab_stats *out, strata_error *err)
{
    if (n > 1) /* qsort needs a valid pointer even for zero items */
        qsort(w, n, sizeof *w, cmp_words);
    sha256_ctx *ctx = sha256_new(err);
    if (ctx == NULL)
        return -1;
    size_t unique = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i > 0 && cmp_words(&w[i - 1], &w[i]) == 0)
            continue;
        unique++;
        rc = sha256_update(ctx, w[i].p, w[i].len, err);
        if (rc == 0)
            rc = sha256_update(ctx, "\n", 1, err);
    }
    unsigned char digest[SHA256_LEN];
    if (rc == 0)
        rc = sha256_final(ctx, digest, err);
    sha256_free(ctx);
    if (rc != 0)
        return -1;
    out->size = unique;
    sha256_to_hex(digest, out->hash_hex);
    return 0;
}

static int add_word(word_ref **w, size_t *n, size_t *cap, const char *p, size_t len,
                    strata_error *err)
{
    trim(&p, &len);
    if (len == 0)
        return 0;
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 1024;
        word_ref *nw = realloc(*w, ncap * sizeof *nw);
        if (nw == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory reading a vocabulary");
        *w = nw;
        *cap = ncap;
    }
    (*w)[(*n)++] = (word_ref){p, len};
    return 0;
}

int vocabulary_from_json(const json_t *content, vocab_stats *out, strata_error *err)
{
    word_ref *w = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    const json_t *words = json_object_get(content, "words");
    const json_t *freqs = json_object_get(content, "frequencies");
    if (words && !json_is_array(words))
        return serr_set(err, SERR_INVALID, "content.words must be an array of strings");
    if (freqs && !json_is_object(freqs))
        return serr_set(err, SERR_INVALID, "content.frequencies must be an object");
    size_t i;
    const json_t *item;
    json_array_foreach(words, i, item)
    {
        if (!json_is_string(item)) {
            free(w);
            return serr_set(err, SERR_INVALID, "content.words[%zu] is not a string", i);
        }
        if ((rc = add_word(&w, &n, &cap, json_string_value(item), json_string_length(item), err)) !=
            0)
            break;
    }
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)freqs, key, val)
    {
        if (rc != 0)
            break;
        if (!json_is_integer(val) || json_integer_value(val) < 0) {
            free(w);
            return serr_set(err, SERR_INVALID,
                            "content.frequencies['%.64s'] must be a non-negative integer", key);
        }
        rc = add_word(&w, &n, &cap, key, strlen(key), err);
    }
    if (rc == 0)
        rc = finish(w, n, out, err);
    free(w);
    return rc;
}

int vocabulary_from_text(const unsigned char *text, size_t len, vocab_stats *out, strata_error *err)
{
    word_ref *w = NULL;
    size_t n = 0, cap = 0;
    const char *p = (const char *)text, *end = p + len;
    int rc = 0;
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (memchr(p, '\0', l) != NULL) {
            rc = serr_set(err, SERR_INVALID, "the word list contains a NUL byte");
            break;
        }
        rc = add_word(&w, &n, &cap, p, l, err);
        p += l + 1;
    }
    if (rc == 0)
        rc = finish(w, n, out, err);
    free(w);
    return rc;
}
