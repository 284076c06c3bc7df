#include "json_canon.h"

#include <stdlib.h>
#include <string.h>

#define CANON_FLAGS (JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17))

char *json_canon_dump(const json_t *value, size_t *len, strata_error *err)
{
    if (value == NULL) {
        serr_set(err, SERR_INVALID, "no JSON value to canonicalise");
        return NULL;
    }
    char *s = json_dumps(value, CANON_FLAGS);
    if (s == NULL) {
        serr_set(err, SERR_NOMEM, "could not serialise JSON");
        return NULL;
    }
    if (len)
        *len = strlen(s);
    return s;
}

int json_canon_hash(const json_t *value, unsigned char out[SHA256_LEN], strata_error *err)
{
    size_t len = 0;
    char *s = json_canon_dump(value, &len, err);
    if (s == NULL)
        return -1;
    int rc = sha256_oneshot(s, len, out, err);
    free(s);
    return rc;
}
