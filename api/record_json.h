/* Rendering version records for the API. */
#ifndef STRATA_RECORD_JSON_H
#define STRATA_RECORD_JSON_H

#include <jansson.h>

#include "../src/service/versions.h"

/* Appends the record as clients see it, with these access counts, as
 * compact JSON. SERR_NOMEM, SERR_TOO_LARGE past out's cap, SERR_INTERNAL
 * for a stored document that is not valid UTF-8; on failure out->len is
 * what it was. Any thread. */
int record_write(const store_version *v, uint64_t count, int64_t last_ms, strata_buf *out,
                 strata_error *err);
/* The ETag of a version: its data hash, quoted. */
void record_etag(const store_version *v, char *out, size_t cap);

/* A record_renderer (versions.h): record_write's bytes with the access
 * counts left out at *split (they change per read; record_body puts them
 * back). Errors as record_write's. Any thread. */
int record_render(const store_version *v, strata_buf *out, size_t *split, strata_error *err);
/* The body of a rendered record with these counts (malloc'd, *len bytes
 * plus a NUL), byte for byte what record_write writes for the same record
 * and counts; NULL when out of memory. */
unsigned char *record_body(const rendered_record *r, uint64_t count, int64_t last_ms, size_t *len);
/* The ETag of a rendered record (as record_etag). */
void record_etag_of(const rendered_record *r, char *out, size_t cap);

#endif
