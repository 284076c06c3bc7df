/* Bounded reading of S3's small XML answers, and escaping (s3_xml.h). */
#include "s3_xml.h"

#include "../common/hex.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Appends the UTF-8 encoding of code point cp. */
static size_t utf8_put(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

int s3_xml_text(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        char tmp[4];
        size_t tn = 1;
        if (s[i] != '&') {
            tmp[0] = s[i++];
        } else {
            const char *semi = memchr(s + i, ';', len - i < 12 ? len - i : 12);
            if (semi == NULL)
                return -1;
            const char *e = s + i + 1;
            size_t elen = (size_t)(semi - e);
            if (elen == 3 && memcmp(e, "amp", 3) == 0) {
                tmp[0] = '&';
            } else if (elen == 2 && memcmp(e, "lt", 2) == 0) {
                tmp[0] = '<';
            } else if (elen == 2 && memcmp(e, "gt", 2) == 0) {
                tmp[0] = '>';
            } else if (elen == 4 && memcmp(e, "quot", 4) == 0) {
                tmp[0] = '"';
            } else if (elen == 4 && memcmp(e, "apos", 4) == 0) {
                tmp[0] = '\'';
            } else if (elen >= 2 && e[0] == '#') {
                uint32_t cp = 0;
                bool hex = e[1] == 'x' || e[1] == 'X';
                size_t k = hex ? 2 : 1;
                if (k >= elen)
                    return -1;
                for (; k < elen; k++) {
                    int d =
                        hex ? hex_digit(e[k]) : (isdigit((unsigned char)e[k]) ? e[k] - '0' : -1);
                    if (d < 0 || cp > 0x10ffff)
                        return -1;
                    cp = cp * (hex ? 16 : 10) + (uint32_t)d;
                }
                if (cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                    return -1;
                tn = utf8_put(cp, tmp);
            } else {
                return -1;
            }
            i = (size_t)(semi - s) + 1;
        }
        if (n + tn >= cap)
            return -1;
        memcpy(out + n, tmp, tn);
        n += tn;
    }
    out[n] = '\0';
    return 0;
}

const char *s3_xml_find(const char *p, const char *end, const char *tag, const char **text,
                        size_t *text_len)
{
    char open[64], close[64];
    int ol = snprintf(open, sizeof open, "<%s>", tag);
    int cl = snprintf(close, sizeof close, "</%s>", tag);
    if (p == NULL || ol <= 0 || cl <= 0)
        return NULL;
    const char *o = memmem(p, (size_t)(end - p), open, (size_t)ol);
    if (o == NULL)
        return NULL;
    const char *t = o + ol;
    const char *c = memmem(t, (size_t)(end - t), close, (size_t)cl);
    if (c == NULL)
        return NULL;
    *text = t;
    *text_len = (size_t)(c - t);
    return c + cl;
}

int s3_xml_get(const char *p, const char *end, const char *tag, char *out, size_t cap)
{
    const char *t;
    size_t len;
    if (s3_xml_find(p, end, tag, &t, &len) == NULL)
        return -1;
    return s3_xml_text(t, len, out, cap);
}

int64_t s3_iso8601_ms(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0, used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &used) != 6)
        return 0;
    const char *f = s + used;
    if (*f == '.') {
        int digits = 0;
        for (f++; isdigit((unsigned char)*f); f++)
            if (digits++ < 3)
                ms = ms * 10 + (*f - '0');
        for (; digits < 3; digits++)
            ms *= 10;
    }
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? 0 : (int64_t)t * 1000 + ms;
}

int s3_xml_escape_append(strata_buf *b, const char *s, strata_error *err)
{
    for (; *s != '\0'; s++) {
        const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
        if (sbuf_append(b, e != NULL ? e : s, e != NULL ? strlen(e) : 1, err) != 0)
            return -1;
    }
    return 0;
}
