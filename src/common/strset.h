/* A set of strings (copies), for counting distinct keys. Open addressing
 * with linear probing, grown at half load. Not thread-safe: one owner. */
#ifndef STRATA_STRSET_H
#define STRATA_STRSET_H

#include <stdbool.h>
#include <stddef.h>

typedef struct strset {
    char **slots;
    size_t cap, n;
    bool failed; /* an insert ran out of memory: the set is incomplete */
} strset;

void strset_init(strset *s);
void strset_free(strset *s);
/* Adds a copy of key; returns true when it was not there yet. Out of
 * memory: returns false and sets s->failed. */
bool strset_add(strset *s, const char *key);
bool strset_has(const strset *s, const char *key);

#endif
