/* The L1's frequency sketch (W-TinyLFU's "TinyLFU"): how often a key was
 * asked for lately, estimated in a few bytes per cached item. A count-min
 * sketch of 4-bit counters (four rows, saturating at 15) behind a
 * doorkeeper bloom filter: a key's first sighting only sets its
 * doorkeeper bits, so keys seen once never reach the counters. After
 * every sample (ten times the capacity) of recorded sightings, every
 * counter is halved and the doorkeeper cleared, so old popularity fades.
 *
 * Not thread-safe: each L1 shard keeps one under its own lock. */
#ifndef STRATA_L1_SKETCH_H
#define STRATA_L1_SKETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct l1_sketch {
    uint64_t *table; /* 16 counters of 4 bits per word */
    uint64_t *door;  /* the doorkeeper's bits */
    size_t table_mask, door_mask;
    uint32_t additions, sample;
} l1_sketch;

/* Sized for a cache of capacity items; false when out of memory (the
 * sketch then stays empty and l1_sketch_free is still safe). */
bool l1_sketch_init(l1_sketch *s, size_t capacity);
void l1_sketch_free(l1_sketch *s);
/* Records one sighting of the key of (well mixed) hash h. */
void l1_sketch_add(l1_sketch *s, uint64_t h);
/* The estimated sightings of h since the last ageing or so, 0 to 16. */
unsigned l1_sketch_estimate(const l1_sketch *s, uint64_t h);

#endif
