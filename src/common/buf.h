/* A growable byte buffer with a hard cap: growth past `cap` fails instead
 * of allocating, which is how every client-controlled size is bounded. */
#ifndef STRATA_BUF_H
#define STRATA_BUF_H

#include <stddef.h>

#include "error.h"

typedef struct strata_buf {
    unsigned char *data;
    size_t len;
    size_t alloc;
    size_t cap; /* 0 means SIZE_MAX */
} strata_buf;

void sbuf_init(strata_buf *b, size_t cap);
void sbuf_free(strata_buf *b);
void sbuf_reset(strata_buf *b);

/* Makes room for `extra` more bytes; SERR_TOO_LARGE past the cap. */
int sbuf_reserve(strata_buf *b, size_t extra, strata_error *err);
int sbuf_append(strata_buf *b, const void *data, size_t len, strata_error *err);
/* Gives an empty, unallocated buffer room for `size` bytes at an address
 * aligned to `align` (a power of two, a multiple of sizeof(void *)), for
 * bytes bound for O_DIRECT I/O (fs_write_atomic). Growth past `size`
 * reallocates and may lose the alignment. A buffer that already holds an
 * allocation just reserves. SERR_TOO_LARGE past the cap, SERR_NOMEM. */
int sbuf_reserve_aligned(strata_buf *b, size_t size, size_t align, strata_error *err);

/* Hands the bytes to the caller (who frees them) and empties the buffer. */
unsigned char *sbuf_take(strata_buf *b, size_t *len);

#endif
