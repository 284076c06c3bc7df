#include "vocabulary.h"

#include "../codec/json_parse.h"
#include "../common/utf8.h"

#include <stdlib.h>
#include <string.h>

void vocabulary_free(vocabulary *v)
{
    free(v->w);
    free(v->arena);
    memset(v, 0, sizeof *v);
}

static int cmp_words(const void *a, const void *b)
{
    const vocab_word *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->word, y->word, n);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* While building: a word from "frequencies" carries an explicit count. */
#define EXPLICIT_FLAG ((size_t)1 << (sizeof(size_t) * 8 - 1))

/* Words are gathered into an arena (offsets first, pointers at the end,
 * since the arena may move while it grows). */
typedef struct builder {
    vocab_word *w;
    size_t n, cap;
    char *arena;
    size_t used, arena_cap;
    bool fold;
} builder;

static int add_word(builder *b, const char *p, size_t len, int64_t freq, bool explicit_freq,
                    strata_error *err)
{
    while (len > 0 && is_space(*p)) {
        p++;
        len--;
    }
    while (len > 0 && is_space(p[len - 1]))
        len--;
    if (len == 0)
        return 0;
    if (len > VOCAB_WORD_MAX)
        return serr_set(err, SERR_INVALID, "a word is longer than %d bytes", VOCAB_WORD_MAX);
    if (memchr(p, '\0', len) != NULL)
        return serr_set(err, SERR_INVALID, "a word contains a NUL byte");
    /* words go into JSON: text that is not UTF-8 is refused, never dropped */
    for (size_t i = 0; i < len;) {
        size_t n = utf8_seq_len((const unsigned char *)p + i, len - i);
        if (n == 0) /* the answer's detail shows the bad bytes as '?' */
            return serr_set(err, SERR_INVALID, "the word '%.*s' is not valid UTF-8",
                            (int)(len < 64 ? len : 64), p);
        i += n;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        vocab_word *nw = realloc(b->w, cap * sizeof *nw);
        if (nw == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory reading a vocabulary");
        b->w = nw;
        b->cap = cap;
    }
    if (b->used + len + 1 > b->arena_cap) {
        size_t cap = b->arena_cap ? b->arena_cap * 2 : 64 * 1024;
        while (cap < b->used + len + 1)
            cap *= 2;
        char *na = realloc(b->arena, cap);
        if (na == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory reading a vocabulary");
        b->arena = na;
        b->arena_cap = cap;
    }
    char *dst = b->arena + b->used;
    memcpy(dst, p, len);
    dst[len] = '\0';
    if (b->fold)
        for (size_t i = 0; i < len; i++)
            if (dst[i] >= 'A' && dst[i] <= 'Z')
                dst[i] = (char)(dst[i] - 'A' + 'a');
    /* len's top bit marks an explicit frequency until finish() */
    b->w[b->n++] =
        (vocab_word){(char *)(uintptr_t)b->used, len | (explicit_freq ? EXPLICIT_FLAG : 0), freq};
    b->used += len + 1;
    return 0;
}

/* Turns offsets into pointers, sorts, merges duplicates: a word's
 * frequency is the sum of its explicit counts when it has any, otherwise
 * the number of times it was listed. */
static int finish(builder *b, vocabulary *out, strata_error *err)
{
    bool *explicit_freq = calloc(b->n ? b->n : 1, sizeof *explicit_freq);
    if (explicit_freq == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    for (size_t i = 0; i < b->n; i++) {
        b->w[i].word = b->arena + (uintptr_t)b->w[i].word;
        if (b->w[i].len & EXPLICIT_FLAG) {
            b->w[i].len &= ~EXPLICIT_FLAG;
            b->w[i].freq = -b->w[i].freq - 1; /* explicit counts sort as negatives */
        }
    }
    if (b->n > 1)
        qsort(b->w, b->n, sizeof *b->w, cmp_words);
    size_t k = 0;
    for (size_t i = 0; i < b->n; i++) {
        bool ex = b->w[i].freq < 0;
        int64_t f = ex ? -b->w[i].freq - 1 : b->w[i].freq;
        if (k > 0 && cmp_words(&b->w[k - 1], &b->w[i]) == 0) {
            if (ex && !explicit_freq[k - 1])
                b->w[k - 1].freq = f; /* explicit replaces counted */
            else if (ex == explicit_freq[k - 1])
                b->w[k - 1].freq += f; /* both at most VOCAB_FREQ_MAX: no overflow */
            explicit_freq[k - 1] |= ex;
            if (b->w[k - 1].freq > VOCAB_FREQ_MAX) {
                free(explicit_freq);
                return serr_set(err, SERR_INVALID,
                                "the frequency of '%.64s' adds up past %lld, the most a word may "
                                "have",
                                b->w[k - 1].word, (long long)VOCAB_FREQ_MAX);
            }
        } else {
            b->w[k] = b->w[i];
            b->w[k].freq = f;
            explicit_freq[k] = ex;
            k++;
        }
    }
    free(explicit_freq);
    out->w = b->w;
    out->n = k;
    out->arena = b->arena;
    return 0;
}

static void builder_free(builder *b)
{
    free(b->w);
    free(b->arena);
}

int vocabulary_from_json(const json_t *content, bool fold_case, vocabulary *out, strata_error *err)
{
    memset(out, 0, sizeof *out);
    builder b = {.fold = fold_case};
    const json_t *words = json_object_get(content, "words");
    const json_t *freqs = json_object_get(content, "frequencies");
    if (!json_is_object(content))
        return serr_set(err, SERR_INVALID,
                        "corpus content must be {\"words\": [...], \"frequencies\": {...}}");
    if (words && !json_is_array(words))
        return serr_set(err, SERR_INVALID, "content.words must be an array of strings");
    if (freqs && !json_is_object(freqs))
        return serr_set(err, SERR_INVALID, "content.frequencies must be an object");
    int rc = 0;
    size_t i;
    const json_t *item;
    json_array_foreach(words, i, item)
    {
        if (!json_is_string(item)) {
            rc = serr_set(err, SERR_INVALID, "content.words[%zu] is not a string", i);
            break;
        }
        if ((rc = add_word(&b, json_string_value(item), json_string_length(item), 1, false, err)) !=
            0)
            break;
    }
    const char *key;
    const json_t *val;
    json_object_foreach((json_t *)freqs, key, val)
    {
        if (rc != 0)
            break;
        long long freq = -1;
        if (!json_whole_number(val, &freq) || freq < 0 || freq > VOCAB_FREQ_MAX) {
            rc = serr_set(err, SERR_INVALID,
                          "content.frequencies['%.64s'] must be an integer from 0 to %lld", key,
                          (long long)VOCAB_FREQ_MAX);
            break;
        }
        rc = add_word(&b, key, strlen(key), freq, true, err);
    }
    if (rc != 0 || finish(&b, out, err) != 0) {
        builder_free(&b);
        return -1;
    }
    return 0;
}

int vocabulary_from_text(const unsigned char *text, size_t len, bool fold_case, vocabulary *out,
                         strata_error *err)
{
    memset(out, 0, sizeof *out);
    builder b = {.fold = fold_case};
    const char *p = (const char *)text, *end = p + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (add_word(&b, p, l, 1, false, err) != 0) {
            builder_free(&b);
            return -1;
        }
        p += l + 1;
    }
    if (finish(&b, out, err) != 0) {
        builder_free(&b);
        return -1;
    }
    return 0;
}

json_t *vocabulary_to_json(const vocabulary *v)
{
    json_t *words = json_array(), *freqs = json_object();
    for (size_t i = 0; words && freqs && i < v->n; i++) {
        json_array_append_new(words, json_stringn(v->w[i].word, v->w[i].len));
        if (v->w[i].freq != 1)
            json_object_set_new(freqs, v->w[i].word, json_integer(v->w[i].freq));
    }
    return json_pack("{s:o, s:o}", "words", words, "frequencies", freqs);
}

void vocabulary_hash(const vocabulary *v, char out[SHA256_HEX_LEN + 1])
{
    sha256_ctx *ctx = sha256_new(NULL);
    unsigned char d[SHA256_LEN] = {0};
    for (size_t i = 0; ctx && i < v->n; i++) {
        sha256_update(ctx, v->w[i].word, v->w[i].len, NULL);
        sha256_update(ctx, "\n", 1, NULL);
    }
    if (ctx)
        sha256_final(ctx, d, NULL);
    sha256_free(ctx);
    sha256_to_hex(d, out);
}
