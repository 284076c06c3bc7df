/* A version record as cache bytes: its fields as compact JSON, a NUL, then
 * the inline content as it is (so binary content needs no escaping). */
#ifndef STRATA_RECORD_CODEC_H
#define STRATA_RECORD_CODEC_H

#include "../common/buf.h"
#include "../store/store.h"

int record_encode(const store_version *v, strata_buf *out, strata_error *err);
int record_decode(const unsigned char *p, size_t len, store_version *out, strata_error *err);

#endif
