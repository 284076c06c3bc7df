/* The six resource types of the design, their own fields and how their
 * content is stored. */
#ifndef STRATA_RESOURCE_TYPES_H
#define STRATA_RESOURCE_TYPES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../codec/compress.h"
#include "../common/error.h"

enum field_kind { FIELD_STRING, FIELD_INT, FIELD_NUMBER, FIELD_BOOL, FIELD_STRINGS, FIELD_OBJECT };

typedef struct field_def {
    const char *name;
    enum field_kind kind;
    bool required;
    bool computed; /* set by the service; a client value is ignored */
} field_def;

enum compress_rule {
    COMPRESS_NEVER,       /* dictionary, semantic */
    COMPRESS_ALWAYS,      /* literature (when it pays) */
    COMPRESS_ABOVE_COUNT, /* corpus (words), trie (nodes) above count_threshold */
    COMPRESS_POLICY,      /* the codec policy by profile and size (search: lz4) */
};

typedef struct resource_type_def {
    const char *name;
    const field_def *fields;
    size_t nfields;
    enum compress_rule compress;
    const char *count_field; /* for COMPRESS_ABOVE_COUNT */
    long count_threshold;
    bool always_external;
    int keep_versions; /* retention default */
} resource_type_def;

const resource_type_def *resource_type_find(const char *name);
/* "dictionary, corpus, ..." for messages. */
const char *resource_type_names(void);
const field_def *resource_type_field(const resource_type_def *t, const char *name);

/* Checks one value against its field kind; names the field on failure. */
int field_check(const field_def *f, const json_t *value, strata_error *err);
/* Converts a query-string value to the field's kind (strings lists are
 * comma-separated). Returns a new reference or NULL with err set. */
json_t *field_from_text(const field_def *f, const char *text, strata_error *err);

/* The codec to store external content with, given its raw size and the
 * record's type fields (for count thresholds). */
enum scodec resource_codec_for(const resource_type_def *t, const json_t *fields, size_t raw_size);

/* Resource ids and namespaces: 1-200 bytes of valid UTF-8, no control
 * characters, no '/', '\\', no ".." and not "." (checked after
 * percent-decoding). */
int resource_id_check(const char *what, const char *id, size_t max, strata_error *err);

#endif
