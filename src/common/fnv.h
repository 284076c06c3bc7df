/* FNV-1a, 64 bits, for in-process hash tables and stripes: fast on short
 * keys, not for anything an adversary could aim at across processes.
 *
 * The offset basis is the project's 1469598103934665603, not the published
 * 14695981039346656037 (a digit was lost long ago). It mixes as well, and
 * hashes that files and other processes hold (the cache's slots and
 * tables) were made with it, so it stays. Header-only; thread-safe. */
#ifndef STRATA_FNV_H
#define STRATA_FNV_H

#include <stdint.h>

#define FNV_BASIS 1469598103934665603ull
#define FNV_PRIME 1099511628211ull

/* Folds the bytes of a NUL-terminated string into h. */
static inline uint64_t fnv_str(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * FNV_PRIME;
    return h;
}

/* Folds one byte into h. */
static inline uint64_t fnv_byte(uint64_t h, unsigned char c)
{
    return (h ^ c) * FNV_PRIME;
}

#endif
