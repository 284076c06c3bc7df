#include "resource_types.h"

#include "../codec/json_parse.h"
#include "../common/utf8.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "../codec/policy.h"
#include "../store/store.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static const field_def DICTIONARY[] = {
    {"word", FIELD_STRING, true, false},
    {"provider", FIELD_STRING, true, false},
    {"language", FIELD_STRING, false, false},
    {"provider_version", FIELD_STRING, false, false},
    {"fetch_timestamp", FIELD_STRING, false, false},
};

static const field_def CORPUS[] = {
    {"corpus_type", FIELD_STRING, true, false},  {"language", FIELD_STRING, true, false},
    {"parent", FIELD_STRING, false, false},      {"children", FIELD_STRINGS, false, false},
    {"is_master", FIELD_BOOL, false, false},     {"dialect", FIELD_STRING, false, false},
    {"iso_code", FIELD_STRING, false, false},    {"totals", FIELD_OBJECT, false, false},
    {"authors", FIELD_STRINGS, false, false},    {"periods", FIELD_STRINGS, false, false},
    {"genres", FIELD_STRINGS, false, false},     {"works", FIELD_STRINGS, false, false},
    {"vocabulary_size", FIELD_INT, false, true}, {"vocabulary_hash", FIELD_STRING, false, true},
};

static const field_def SEMANTIC[] = {
    {"corpus_id", FIELD_STRING, true, false},
    {"corpus_version", FIELD_STRING, true, false},
    {"model_name", FIELD_STRING, true, false},
    {"embedding_dimension", FIELD_INT, true, false},
    {"index_type", FIELD_STRING, false, false},
    {"quantization", FIELD_STRING, false, false},
    {"build_time_seconds", FIELD_NUMBER, false, false},
    {"memory_usage_mb", FIELD_NUMBER, false, false},
    {"num_vectors", FIELD_INT, false, false},
};

static const field_def LITERATURE[] = {
    {"title", FIELD_STRING, true, false},          {"authors", FIELD_STRINGS, true, false},
    {"publication_year", FIELD_INT, false, false}, {"source", FIELD_STRING, true, false},
    {"language", FIELD_STRING, false, false},      {"text_stats", FIELD_OBJECT, false, false},
};

static const field_def TRIE[] = {
    {"corpus_ids", FIELD_STRINGS, true, false},
    {"node_count", FIELD_INT, true, false},
    {"max_depth", FIELD_INT, true, false},
    {"supports_fuzzy", FIELD_BOOL, false, false},
};

static const field_def SEARCH[] = {
    {"corpus_id", FIELD_STRING, true, false},
    {"trie_index_id", FIELD_STRING, false, false},
    {"semantic_index_id", FIELD_STRING, false, false},
    {"component_versions", FIELD_OBJECT, false, false},
    {"search_config", FIELD_OBJECT, false, false},
};

static const resource_type_def TYPES[] = {
    {"dictionary", DICTIONARY, N(DICTIONARY), COMPRESS_NEVER, NULL, 0, false, 5},
    {"corpus", CORPUS, N(CORPUS), COMPRESS_ABOVE_COUNT, "vocabulary_size", 10000, false, 3},
    {"semantic", SEMANTIC, N(SEMANTIC), COMPRESS_NEVER, NULL, 0, true, 5},
    {"literature", LITERATURE, N(LITERATURE), COMPRESS_ALWAYS, NULL, 0, false, 3},
    {"trie", TRIE, N(TRIE), COMPRESS_ABOVE_COUNT, "node_count", 10000, false, 5},
    {"search", SEARCH, N(SEARCH), COMPRESS_POLICY, NULL, 0, false, 10},
};

const resource_type_def *resource_type_find(const char *name)
{
    for (size_t i = 0; name && i < N(TYPES); i++)
        if (strcmp(TYPES[i].name, name) == 0)
            return &TYPES[i];
    return NULL;
}

const char *resource_type_names(void)
{
    return "dictionary, corpus, semantic, literature, trie, search";
}

const field_def *resource_type_field(const resource_type_def *t, const char *name)
{
    for (size_t i = 0; i < t->nfields; i++)
        if (strcmp(t->fields[i].name, name) == 0)
            return &t->fields[i];
    return NULL;
}

static const char *kind_name(enum field_kind k)
{
    switch (k) {
    case FIELD_STRING:
        return "a string";
    case FIELD_INT:
        return "an integer";
    case FIELD_NUMBER:
        return "a number";
    case FIELD_BOOL:
        return "true or false";
    case FIELD_STRINGS:
        return "an array of strings";
    case FIELD_OBJECT:
        return "an object";
    }
    return "a value";
}

int field_check(const field_def *f, const json_t *v, strata_error *err)
{
    bool ok = false;
    switch (f->kind) {
    case FIELD_STRING:
        ok = json_is_string(v) && json_string_length(v) <= 4096;
        break;
    case FIELD_INT: {
        long long n;
        ok = json_whole_number(v, &n) && n >= 0;
        break;
    }
    case FIELD_NUMBER:
        ok = json_is_number(v);
        break;
    case FIELD_BOOL:
        ok = json_is_boolean(v);
        break;
    case FIELD_STRINGS: {
        ok = json_is_array(v) && json_array_size(v) <= 100000;
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item) ok = ok && json_is_string(item);
        break;
    }
    case FIELD_OBJECT:
        ok = json_is_object(v);
        break;
    }
    if (!ok)
        return serr_set(err, SERR_INVALID, "field '%s' must be %s", f->name, kind_name(f->kind));
    return 0;
}

json_t *field_from_text(const field_def *f, const char *text, strata_error *err)
{
    char *end = NULL;
    json_t *v = NULL;
    switch (f->kind) {
    case FIELD_STRING:
        v = json_string(text);
        break;
    case FIELD_INT: {
        errno = 0;
        long long n = strtoll(text, &end, 10);
        if (errno == 0 && end != text && *end == '\0')
            v = json_integer(n);
        break;
    }
    case FIELD_NUMBER: {
        errno = 0;
        double d = strtod(text, &end);
        if (errno == 0 && end != text && *end == '\0')
            v = json_real(d);
        break;
    }
    case FIELD_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0)
            v = json_boolean(text[0] == 't');
        break;
    case FIELD_STRINGS: {
        v = json_array();
        const char *p = text;
        while (v && *p) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            if (n > 0)
                json_array_append_new(v, json_stringn(p, n));
            p = comma ? comma + 1 : p + n;
        }
        break;
    }
    case FIELD_OBJECT:
        v = json_loads(text, JSON_DECODE_ANY, NULL);
        break;
    }
    if (v == NULL || field_check(f, v, err) != 0) {
        json_decref(v);
        if (v == NULL)
            serr_set(err, SERR_INVALID, "field '%s' must be %s", f->name, kind_name(f->kind));
        return NULL;
    }
    return v;
}

enum scodec resource_codec_for(const resource_type_def *t, const json_t *fields, size_t raw_size)
{
    switch (t->compress) {
    case COMPRESS_NEVER:
        return SCODEC_NONE;
    case COMPRESS_ALWAYS:
        return raw_size > 0 ? SCODEC_ZSTD : SCODEC_NONE;
    case COMPRESS_ABOVE_COUNT: {
        const json_t *n = json_object_get(fields, t->count_field);
        return json_is_integer(n) && json_integer_value(n) > t->count_threshold ? SCODEC_ZSTD
                                                                                : SCODEC_NONE;
    }
    case COMPRESS_POLICY:
        break;
    }
    return policy_codec_for(t->name, raw_size);
}

int resource_id_check(const char *what, const char *id, size_t max, strata_error *err)
{
    size_t len = id ? strlen(id) : 0;
    if (len == 0)
        return serr_set(err, SERR_INVALID, "%s must not be empty", what);
    if (len > max)
        return serr_set(err, SERR_INVALID, "%s is %zu bytes; at most %zu are allowed", what, len,
                        max);
    if (strcmp(id, ".") == 0 || strstr(id, "..") != NULL)
        return serr_set(err, SERR_INVALID, "%s must not be '.' or contain '..'", what);
    for (const unsigned char *p = (const unsigned char *)id; *p;) {
        if (*p < 0x20 || *p == 0x7f)
            return serr_set(err, SERR_INVALID, "%s contains a control character", what);
        if (*p == '/' || *p == '\\')
            return serr_set(err, SERR_INVALID, "%s must not contain '/' or '\\'", what);
        size_t n = utf8_seq_len(p, strlen((const char *)p));
        if (n == 0)
            return serr_set(err, SERR_INVALID, "%s is not valid UTF-8", what);
        p += n;
    }
    return 0;
}
