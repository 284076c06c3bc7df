#include "json_write.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/utf8.h"

typedef struct writer {
    strata_buf *out;
    unsigned flags;
    strata_error *err;
} writer;

static int put(writer *w, const void *bytes, size_t n)
{
    strata_buf *b = w->out;
    if (b->alloc - b->len < n && sbuf_reserve(b, n, w->err) != 0)
        return -1;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return 0;
}

static int put_char(writer *w, char c)
{
    return put(w, &c, 1);
}

static const char hex_upper[] = "0123456789ABCDEF";

/* A string as jansson writes it: '"', '\' and control characters escaped
 * (the common ones by name, the rest as \u00XX), everything else as it
 * is, after checking that it is UTF-8. */
static int put_string(writer *w, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;
    if (put_char(w, '"') != 0)
        return -1;
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x80) {
            size_t n = utf8_seq_len(p, (size_t)(end - p));
            if (n == 0) {
                serr_set(w->err, SERR_INVALID, "a JSON string is not valid UTF-8");
                return -1;
            }
            p += n;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            p++;
            continue;
        }
        if (put(w, run, (size_t)(p - run)) != 0)
            return -1;
        /* the characters with a short escape, and its letter */
        static const char named[] = "\"\\\b\f\n\r\t", letter[] = "\"\\bfnrt";
        const char *hit = memchr(named, c, sizeof named - 1); /* never the NUL */
        char esc[6] = {'\\', 'u', '0', '0', hex_upper[c >> 4], hex_upper[c & 0xF]};
        size_t n = 6;
        if (hit != NULL) {
            esc[1] = letter[hit - named];
            n = 2;
        }
        if (put(w, esc, n) != 0)
            return -1;
        run = ++p;
    }
    if (put(w, run, (size_t)(p - run)) != 0)
        return -1;
    return put_char(w, '"');
}

static int put_integer(writer *w, json_int_t v)
{
    char digits[24], *p = digits + sizeof digits;
    /* through unsigned, so that the most negative value has a magnitude */
    uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + mag % 10);
        mag /= 10;
    } while (mag != 0);
    if (v < 0)
        *--p = '-';
    return put(w, p, (size_t)(digits + sizeof digits - p));
}

/* As jansson's jsonp_dtostr with precision 17: a '.' or an exponent
 * always (so that it reads back as a real), and the exponent without a
 * '+' or leading zeros. The process never changes LC_NUMERIC, so the
 * decimal point is '.'. */
static int put_real(writer *w, double v)
{
    char text[64];
    int n = snprintf(text, sizeof text, "%.17g", v);
    if (n < 0 || (size_t)n >= sizeof text - 3) {
        serr_set(w->err, SERR_INVALID, "a JSON real could not be written");
        return -1;
    }
    size_t len = (size_t)n;
    char *e = strchr(text, 'e');
    if (e == NULL && strchr(text, '.') == NULL) {
        memcpy(text + len, ".0", 3);
        len += 2;
    }
    if (e != NULL) {
        char *start = e + 1, *digits = e + 2;
        if (*start == '-')
            start++;
        while (*digits == '0')
            digits++;
        if (digits != start) {
            memmove(start, digits, len - (size_t)(digits - text) + 1);
            len -= (size_t)(digits - start);
        }
    }
    return put(w, text, len);
}

static int put_value(writer *w, const json_t *v, int depth);

typedef struct member {
    const char *key;
    size_t len;
    json_t *value;
} member;

static int member_cmp(const void *a, const void *b)
{
    const member *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->len < y->len ? x->len : y->len);
    if (c != 0)
        return c;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int put_member(writer *w, bool first, const char *key, size_t len, const json_t *value,
                      int depth)
{
    if (!first && put_char(w, ',') != 0)
        return -1;
    if (put_string(w, key, len) != 0 || put_char(w, ':') != 0)
        return -1;
    return put_value(w, value, depth);
}

static int put_object_sorted(writer *w, const json_t *v, int depth)
{
    size_t n = json_object_size(v);
    if (n == 0)
        return 0;
    member *m = malloc(n * sizeof *m);
    if (m == NULL) {
        serr_set(w->err, SERR_NOMEM, "out of memory writing JSON");
        return -1;
    }
    size_t i = 0;
    for (void *it = json_object_iter((json_t *)v); it != NULL && i < n;
         it = json_object_iter_next((json_t *)v, it), i++)
        m[i] = (member){json_object_iter_key(it), json_object_iter_key_len(it),
                        json_object_iter_value(it)};
    qsort(m, i, sizeof *m, member_cmp);
    int rc = 0;
    for (size_t k = 0; k < i && rc == 0; k++)
        rc = put_member(w, k == 0, m[k].key, m[k].len, m[k].value, depth);
    free(m);
    return rc;
}

static int put_value(writer *w, const json_t *v, int depth)
{
    if (v == NULL) {
        serr_set(w->err, SERR_INVALID, "no JSON value to write");
        return -1;
    }
    switch (json_typeof(v)) {
    case JSON_NULL:
        return put(w, "null", 4);
    case JSON_TRUE:
        return put(w, "true", 4);
    case JSON_FALSE:
        return put(w, "false", 5);
    case JSON_INTEGER:
        return put_integer(w, json_integer_value(v));
    case JSON_REAL:
        return put_real(w, json_real_value(v));
    case JSON_STRING:
        return put_string(w, json_string_value(v), json_string_length(v));
    case JSON_ARRAY:
    case JSON_OBJECT:
        break;
    default:
        serr_set(w->err, SERR_INVALID, "a JSON value of no known type");
        return -1;
    }
    if (depth >= JSON_WRITE_MAX_DEPTH) {
        serr_set(w->err, SERR_INVALID, "JSON nested deeper than %d levels", JSON_WRITE_MAX_DEPTH);
        return -1;
    }
    if (json_is_array(v)) {
        if (put_char(w, '[') != 0)
            return -1;
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n; i++)
            if ((i > 0 && put_char(w, ',') != 0) ||
                put_value(w, json_array_get(v, i), depth + 1) != 0)
                return -1;
        return put_char(w, ']');
    }
    if (put_char(w, '{') != 0)
        return -1;
    if (w->flags & JSON_WRITE_SORT_KEYS) {
        if (put_object_sorted(w, v, depth + 1) != 0)
            return -1;
    } else {
        bool first = true;
        for (void *it = json_object_iter((json_t *)v); it != NULL;
             it = json_object_iter_next((json_t *)v, it), first = false)
            if (put_member(w, first, json_object_iter_key(it), json_object_iter_key_len(it),
                           json_object_iter_value(it), depth + 1) != 0)
                return -1;
    }
    return put_char(w, '}');
}

int json_write(const json_t *value, unsigned flags, strata_buf *out, strata_error *err)
{
    size_t before = out->len;
    writer w = {.out = out, .flags = flags};
    w.err = err; /* only ever written through */
    if (put_value(&w, value, 0) != 0) {
        out->len = before;
        return -1;
    }
    return 0;
}

int json_write_string(const char *s, size_t len, strata_buf *out, strata_error *err)
{
    size_t before = out->len;
    writer w = {.out = out};
    w.err = err;
    if (put_string(&w, s, len) != 0) {
        out->len = before;
        return -1;
    }
    return 0;
}

char *json_write_text(const json_t *value, unsigned flags, size_t *len, strata_error *err)
{
    strata_buf b;
    sbuf_init(&b, 0);
    strata_error ignored = {0};
    if (err == NULL)
        err = &ignored;
    if (json_write(value, flags, &b, err) != 0 || sbuf_append(&b, "", 1, err) != 0) {
        sbuf_free(&b);
        return NULL;
    }
    size_t n = 0;
    char *s = (char *)sbuf_take(&b, &n);
    if (len)
        *len = n - 1;
    return s;
}
