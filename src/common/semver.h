/* Versions are semver MAJOR.MINOR.PATCH, each below 2^20, packed into one
 * integer key that sorts like the version does. */
#ifndef STRATA_SEMVER_H
#define STRATA_SEMVER_H

#include <stdint.h>

#define SEMVER_MAX_PART ((1u << 20) - 1)
#define SEMVER_STR_MAX  24

enum semver_bump { BUMP_PATCH = 0, BUMP_MINOR, BUMP_MAJOR };

/* Parses "X.Y.Z" (no leading zeros, no suffix) into a key; -1 if invalid. */
int semver_parse(const char *s, uint64_t *key);
/* Writes "X.Y.Z" for a key; out holds SEMVER_STR_MAX bytes. */
void semver_format(uint64_t key, char *out);
/* The next key after `key` (0 means none yet: gives 1.0.0); 0 on overflow. */
uint64_t semver_next(uint64_t key, enum semver_bump bump);
int semver_parse_bump(const char *s, enum semver_bump *out);

#endif
