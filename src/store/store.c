#include "store.h"
#include "../common/hex.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_mongo.h"
#include "store_sqlite.h"

void store_version_clear(store_version *v)
{
    json_decref(v->doc);
    json_decref(v->stale_reason);
    free(v->content);
    memset(v, 0, sizeof *v);
}

void store_version_free(store_version *v)
{
    if (v == NULL)
        return;
    store_version_clear(v);
    free(v);
}

void store_page_free(store_page *p)
{
    for (size_t i = 0; i < p->count; i++)
        store_version_free(p->items[i]);
    free(p->items);
    free(p->next);
    memset(p, 0, sizeof *p);
}

void vocab_items_free(vocab_item *items, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(items[i].word);
    free(items);
}

store *store_open(const char *url, strata_error *err)
{
    if (strncmp(url, "sqlite:", 7) == 0)
        return store_sqlite_open(url + 7, err);
    if (strncmp(url, "mongodb://", 10) == 0)
        return store_mongo_open(url, err);
    serr_set(err, SERR_INVALID, "unsupported store URL '%s'", url);
    return NULL;
}

void store_close(store *s)
{
    if (s != NULL)
        s->ops->close(s);
}

/* Cursors: a kind letter, then hex of the key bytes. Opaque to clients,
 * checked on the way back in. */
static char *cursor_encode(char kind, const unsigned char *p, size_t n)
{
    char *out = malloc(2 * n + 2);
    if (out == NULL)
        return NULL;
    out[0] = kind;
    hex_encode(p, n, out + 1);
    return out;
}

static int cursor_decode(const char *cursor, char kind, unsigned char *out, size_t cap, size_t *n)
{
    if (cursor == NULL || cursor[0] != kind)
        return -1;
    size_t len = strlen(cursor + 1);
    if (len % 2 != 0 || len / 2 > cap || hex_decode(cursor + 1, len / 2, out) != 0)
        return -1;
    *n = len / 2;
    return 0;
}

char *store_cursor_encode(char kind, uint64_t key)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(key >> (56 - 8 * i));
    return cursor_encode(kind, b, 8);
}

int store_cursor_decode(const char *cursor, char kind, uint64_t *key)
{
    unsigned char b[8];
    size_t n;
    if (cursor_decode(cursor, kind, b, sizeof b, &n) != 0 || n != 8)
        return -1;
    *key = 0;
    for (int i = 0; i < 8; i++)
        *key = *key << 8 | b[i];
    return 0;
}

char *store_cursor_encode_str(char kind, const char *key)
{
    return cursor_encode(kind, (const unsigned char *)key, strlen(key));
}

int store_cursor_decode_str(const char *cursor, char kind, char *out, size_t cap)
{
    size_t n;
    if (cap == 0 || cursor_decode(cursor, kind, (unsigned char *)out, cap - 1, &n) != 0)
        return -1;
    out[n] = '\0';
    if (strlen(out) != n)
        return -1; /* an embedded NUL */
    return 0;
}
