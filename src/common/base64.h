/* Base64 (RFC 4648, standard alphabet, padded): for header values such as
 * Repr-Digest's byte sequences (RFC 8941). */
#ifndef STRATA_BASE64_H
#define STRATA_BASE64_H

#include <stddef.h>

/* Length of the encoding of n bytes, without the terminating NUL. */
#define BASE64_LEN(n) ((((n) + 2) / 3) * 4)

/* Writes the encoding of data and a NUL; out holds BASE64_LEN(len) + 1. */
void base64_encode(const void *data, size_t len, char *out);

#endif
