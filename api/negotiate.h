/* Content negotiation helpers: media types and Accept-Encoding. */
#ifndef STRATA_NEGOTIATE_H
#define STRATA_NEGOTIATE_H

#include <stdbool.h>
#include <stddef.h>

/* True for application/json and application/...+json (parameters ignored). */
bool media_is_json(const char *content_type);
/* Copies the media type without parameters, lower-cased. */
void media_base(const char *content_type, char *out, size_t cap);
/* Bit (1 << scodec) for each codec the header accepts with q > 0. */
unsigned accept_encoding_mask(const char *header);
/* True when an If-None-Match header names etag (a quoted hash) or is "*";
 * false for NULL. */
bool none_match(const char *header, const char *etag);
/* Percent-encodes one path segment (unreserved characters kept). */
int url_encode_segment(const char *in, char *out, size_t cap);

#endif
