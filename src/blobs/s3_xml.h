/* Inside the S3 client (s3_client.h): bounded reading of the small XML
 * answers S3 sends (error bodies, listings, multipart answers) and the
 * escaping of the one XML body it sends. Not an XML parser: S3's answers
 * are flat enough to be read by finding <Tag>text</Tag> pairs. Pure
 * functions of their arguments; safe from any thread. */
#ifndef STRATA_S3_XML_H
#define STRATA_S3_XML_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/error.h"

/* Decodes XML text [s, s+len) (the five entities and &#N; / &#xN;
 * character references) into out (cap bytes, NUL-terminated). 0, or -1
 * when it does not fit or holds a bad reference; out is then unspecified. */
int s3_xml_text(const char *s, size_t len, char *out, size_t cap);

/* Finds the first <tag>...</tag> in [p, end) (p NULL: none); sets *text
 * and *text_len to the undecoded text between them and returns the
 * position after the closing tag, or NULL when there is none (outputs
 * then untouched). tag is at most 60 bytes. */
const char *s3_xml_find(const char *p, const char *end, const char *tag, const char **text,
                        size_t *text_len);

/* The decoded text of the first <tag> in [p, end) into out (cap bytes):
 * 0, or -1 when absent, bad or too long (out then unspecified). */
int s3_xml_get(const char *p, const char *end, const char *tag, char *out, size_t cap);

/* Milliseconds since the epoch of "YYYY-MM-DDTHH:MM:SS[.fff]Z" (UTC, as
 * S3 writes LastModified and Initiated); 0 when s is not that. */
int64_t s3_iso8601_ms(const char *s);

/* Appends s to b with &, < and > escaped. -1 with err (SERR_NOMEM, or the
 * buffer's bound) when b cannot grow; b then holds a prefix of it. */
int s3_xml_escape_append(strata_buf *b, const char *s, strata_error *err);

#endif
