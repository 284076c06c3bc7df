#include "json_canon.h"

#include <stdlib.h>
#include <string.h>

#include "json_write.h"

char *json_canon_dump(const json_t *value, size_t *len, strata_error *err)
{
    if (value == NULL) {
        serr_set(err, SERR_INVALID, "no JSON value to canonicalise");
        return NULL;
    }
    return json_write_text(value, JSON_WRITE_SORT_KEYS, len, err);
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
