#include "buf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

void sbuf_init(strata_buf *b, size_t cap)
{
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    b->cap = cap ? cap : SIZE_MAX;
}

void sbuf_free(strata_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
}

void sbuf_reset(strata_buf *b)
{
    b->len = 0;
}

int sbuf_reserve(strata_buf *b, size_t extra, strata_error *err)
{
    if (extra > b->cap || b->len > b->cap - extra)
        return serr_set(err, SERR_TOO_LARGE, "size exceeds the limit of %zu bytes", b->cap);
    size_t need = b->len + extra;
    if (need <= b->alloc)
        return 0;
    /* a first reservation is taken as asked (a file read, a known length):
     * doubling it would leave up to half of it unused */
    size_t n = b->alloc ? b->alloc : 256;
    if (b->alloc == 0 && need > n)
        n = need;
    while (n < need)
        n = (n > SIZE_MAX / 2) ? need : n * 2;
    if (n > b->cap)
        n = b->cap;
    unsigned char *p = realloc(b->data, n);
    if (p == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory growing a buffer to %zu bytes", n);
    b->data = p;
    b->alloc = n;
    return 0;
}

int sbuf_reserve_aligned(strata_buf *b, size_t size, size_t align, strata_error *err)
{
    if (b->data != NULL)
        return sbuf_reserve(b, size > b->len ? size - b->len : 0, err);
    if (size > b->cap)
        return serr_set(err, SERR_TOO_LARGE, "size exceeds the limit of %zu bytes", b->cap);
    void *p = NULL;
    if (size == 0)
        return 0;
    if (posix_memalign(&p, align, size) != 0)
        return serr_set(err, SERR_NOMEM, "out of memory allocating %zu bytes", size);
    b->data = p;
    b->alloc = size;
    return 0;
}

int sbuf_append(strata_buf *b, const void *data, size_t len, strata_error *err)
{
    if (len == 0)
        return 0;
    if (sbuf_reserve(b, len, err) != 0)
        return -1;
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

unsigned char *sbuf_take(strata_buf *b, size_t *len)
{
    unsigned char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->alloc = 0;
    return p;
}
