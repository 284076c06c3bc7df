#include "l1_sketch.h"

#include <stdlib.h>
#include <string.h>

#define ROWS            4
#define MAX_TABLE_WORDS ((size_t)1 << 18) /* 2 MiB */
#define MAX_DOOR_BITS   ((size_t)1 << 24) /* 2 MiB */

#define MIX 0x9e3779b97f4a7c15ull

static size_t pow2_at_least(size_t n, size_t lo, size_t hi)
{
    size_t p = lo;
    while (p < n && p < hi)
        p *= 2;
    return p;
}

bool l1_sketch_init(l1_sketch *s, size_t capacity)
{
    memset(s, 0, sizeof *s);
    size_t words = pow2_at_least(capacity, 8, MAX_TABLE_WORDS);
    size_t bits = pow2_at_least(capacity * 64, 512, MAX_DOOR_BITS);
    s->table = calloc(words, sizeof *s->table);
    s->door = calloc(bits / 64, sizeof *s->door);
    if (s->table == NULL || s->door == NULL) {
        l1_sketch_free(s);
        return false;
    }
    s->table_mask = words - 1;
    s->door_mask = bits - 1;
    size_t sample = capacity * 10;
    s->sample = sample < 64 ? 64 : sample > (1u << 30) ? (1u << 30) : (uint32_t)sample;
    return true;
}

void l1_sketch_free(l1_sketch *s)
{
    free(s->table);
    free(s->door);
    memset(s, 0, sizeof *s);
}

/* A key's four counters all lie in one 64-byte block of the table (one
 * cache line: a lookup touches one line, not four), one per row: row i
 * uses word 2i or 2i+1 of the block and, in it, one of the 16 nibbles,
 * each picked by its own 5 bits of one mix of h. Written out for the four
 * rows: this runs under the shard's lock on every lookup. */
typedef struct cells {
    uint64_t *w[ROWS];
    unsigned sh[ROWS], v[ROWS];
} cells;

static inline void cell(cells *c, uint64_t *block, int i, uint64_t y)
{
    c->w[i] = block + 2 * i + (y & 1);
    c->sh[i] = (unsigned)(4 * ((y >> 1) & 15));
    c->v[i] = (unsigned)(*c->w[i] >> c->sh[i]) & 15;
}

/* Finds h's cells and reads them; returns the smallest count. */
static inline unsigned cells_of(const l1_sketch *s, uint64_t h, cells *c)
{
    uint64_t x = (h ^ (h >> 31)) * MIX;
    x ^= x >> 29;
    uint64_t *block = s->table + (((size_t)x & s->table_mask) & ~(size_t)7);
    cell(c, block, 0, x >> 20);
    cell(c, block, 1, x >> 25);
    cell(c, block, 2, x >> 30);
    cell(c, block, 3, x >> 35);
    unsigned a = c->v[0] < c->v[1] ? c->v[0] : c->v[1];
    unsigned b = c->v[2] < c->v[3] ? c->v[2] : c->v[3];
    return a < b ? a : b;
}

/* The doorkeeper's two bits lie in one word. */
static uint64_t door_bits(const l1_sketch *s, uint64_t h, size_t *word)
{
    *word = (size_t)(h >> 12) & (s->door_mask >> 6);
    return (uint64_t)1 << (h & 63) | (uint64_t)1 << ((h >> 6) & 63);
}

static bool door_has(const l1_sketch *s, uint64_t h)
{
    size_t w;
    uint64_t bits = door_bits(s, h, &w);
    return (s->door[w] & bits) == bits;
}

static void door_set(l1_sketch *s, uint64_t h)
{
    size_t w;
    uint64_t bits = door_bits(s, h, &w);
    s->door[w] |= bits;
}

static void age(l1_sketch *s)
{
    for (size_t i = 0; i <= s->table_mask; i++)
        s->table[i] = (s->table[i] >> 1) & 0x7777777777777777ull;
    memset(s->door, 0, (s->door_mask + 1) / 8);
    s->additions /= 2;
}

void l1_sketch_add(l1_sketch *s, uint64_t h)
{
    if (s->table == NULL)
        return;
    if (!door_has(s, h)) {
        door_set(s, h);
    } else {
        /* conservative update: raise only the counters at the minimum */
        cells c;
        unsigned min = cells_of(s, h, &c);
        if (min < 15)
            for (int i = 0; i < ROWS; i++)
                if (c.v[i] == min)
                    *c.w[i] += (uint64_t)1 << c.sh[i];
    }
    if (++s->additions >= s->sample)
        age(s);
}

unsigned l1_sketch_estimate(const l1_sketch *s, uint64_t h)
{
    if (s->table == NULL)
        return 0;
    cells c;
    unsigned min = cells_of(s, h, &c);
    return min + (door_has(s, h) ? 1u : 0u);
}
