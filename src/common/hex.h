/* Lower-case hex, and little-endian integers in byte arrays. */
#ifndef STRATA_HEX_H
#define STRATA_HEX_H

#include <stddef.h>
#include <stdint.h>

/* 0-15 for a hex digit (either case), -1 otherwise. */
int hex_digit(char c);
/* Writes 2 * len lower-case digits and a NUL. */
void hex_encode(const void *data, size_t len, char *out);
/* Reads exactly 2 * len digits; -1 on anything else. */
int hex_decode(const char *hex, size_t len, void *out);

void le64_put(unsigned char *p, uint64_t v);
uint64_t le64_get(const unsigned char *p);

#endif
