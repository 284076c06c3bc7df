#include "glob.h"

#include <stdint.h>
#include <string.h>

/* Length of the UTF-8 sequence starting at s (1 for a stray byte). */
static size_t char_len(const unsigned char *s)
{
    size_t n = *s < 0x80           ? 1
               : (*s >> 5) == 0x6  ? 2
               : (*s >> 4) == 0xe  ? 3
               : (*s >> 3) == 0x1e ? 4
                                   : 1;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 1;
    return n;
}

/* The code point at s (its bytes, for a stray byte), and its length. */
static uint32_t code_point(const unsigned char *s, size_t *len)
{
    *len = char_len(s);
    if (*len == 1)
        return *s;
    uint32_t c = *s & (0xff >> (*len + 1));
    for (size_t i = 1; i < *len; i++)
        c = (c << 6) | (s[i] & 0x3f);
    return c;
}

/* Matches one character c against the set at p (just after '[').
 * Returns the position after the closing ']', or NULL for an unclosed
 * set (then '[' is literal). */
static const unsigned char *match_set(const unsigned char *p, uint32_t c, bool *hit)
{
    bool negate = *p == '!' || *p == '^';
    if (negate)
        p++;
    bool in = false, first = true;
    while (*p != '\0' && (*p != ']' || first)) {
        first = false;
        size_t l;
        uint32_t lo = code_point(p, &l), hi = lo;
        p += l;
        if (*p == '-' && p[1] != ']' && p[1] != '\0') {
            hi = code_point(p + 1, &l);
            p += 1 + l;
        }
        if (lo <= c && c <= hi)
            in = true;
    }
    if (*p != ']')
        return NULL;
    *hit = in != negate;
    return p + 1;
}

bool glob_match(const char *pattern, const char *text)
{
    const unsigned char *p = (const unsigned char *)pattern, *t = (const unsigned char *)text;
    /* the last '*' seen and where the text stood: backtrack there on a
     * mismatch (linear in practice, no recursion) */
    const unsigned char *star_p = NULL, *star_t = NULL;
    while (*t != '\0') {
        size_t tl;
        uint32_t c = code_point(t, &tl);
        if (*p == '*') {
            star_p = ++p;
            star_t = t;
            continue;
        }
        if (*p == '?') {
            p++;
            t += tl;
            continue;
        }
        if (*p == '[') {
            bool hit = false;
            const unsigned char *after = match_set(p + 1, c, &hit);
            if (after != NULL) {
                if (hit) {
                    p = after;
                    t += tl;
                    continue;
                }
                goto mismatch;
            }
            /* unclosed: '[' stands for itself */
        }
        if (*p != '\0' && *p == *t) {
            p++;
            t++;
            continue;
        }
    mismatch:
        if (star_p == NULL)
            return false;
        p = star_p;
        star_t += char_len(star_t);
        t = star_t;
    }
    while (*p == '*')
        p++;
    return *p == '\0';
}

size_t glob_literal_prefix(const char *pattern)
{
    return strcspn(pattern, "*?[");
}
