/* UTF-8 as JSON (RFC 8259) and jansson accept it: no overlong forms, no
 * surrogates, nothing past U+10FFFF. Pure functions, any thread. */
#ifndef STRATA_UTF8_H
#define STRATA_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence starting at p (1-4, reading no more
 * than avail bytes), or 0 when the bytes there are not one. */
size_t utf8_seq_len(const unsigned char *p, size_t avail);

/* Replaces every byte that is not part of a valid sequence with '?', so
 * that text from a client can go into a JSON string. */
void utf8_scrub(char *s);

#endif
