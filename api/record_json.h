/* Rendering version records for the API. */
#ifndef STRATA_RECORD_JSON_H
#define STRATA_RECORD_JSON_H

#include <jansson.h>

#include "../src/service/versions.h"

/* The record as clients see it (a new reference; NULL when out of memory). */
json_t *record_json(versions_svc *svc, const store_version *v);
/* The ETag of a version: its data hash, quoted. */
void record_etag(const store_version *v, char *out, size_t cap);

#endif
