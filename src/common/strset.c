#include "strset.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fnv.h"

static uint64_t hash_str(const char *s)
{
    return fnv_str(FNV_BASIS, s);
}

void strset_init(strset *s)
{
    memset(s, 0, sizeof *s);
}

void strset_free(strset *s)
{
    for (size_t i = 0; i < s->cap; i++)
        free(s->slots[i]);
    free(s->slots);
    strset_init(s);
}

static size_t probe(char *const *slots, size_t cap, const char *key)
{
    size_t i = (size_t)hash_str(key) & (cap - 1);
    while (slots[i] != NULL && strcmp(slots[i], key) != 0)
        i = (i + 1) & (cap - 1);
    return i;
}

static bool grow(strset *s)
{
    size_t cap = s->cap ? 2 * s->cap : 64;
    char **slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return false;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i] != NULL)
            slots[probe(slots, cap, s->slots[i])] = s->slots[i];
    free(s->slots);
    s->slots = slots;
    s->cap = cap;
    return true;
}

bool strset_has(const strset *s, const char *key)
{
    return s->cap > 0 && s->slots[probe(s->slots, s->cap, key)] != NULL;
}

bool strset_add(strset *s, const char *key)
{
    if ((s->n + 1) * 2 > s->cap && !grow(s)) {
        s->failed = true;
        return false;
    }
    size_t i = probe(s->slots, s->cap, key);
    if (s->slots[i] != NULL)
        return false;
    s->slots[i] = strdup(key);
    if (s->slots[i] == NULL) {
        s->failed = true;
        return false;
    }
    s->n++;
    return true;
}
