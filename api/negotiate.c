#include "negotiate.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../src/codec/compress.h"

void media_base(const char *content_type, char *out, size_t cap)
{
    size_t n = 0;
    const char *p = content_type ? content_type : "";
    while (*p == ' ')
        p++;
    while (*p && *p != ';' && *p != ' ' && n + 1 < cap)
        out[n++] = (char)tolower((unsigned char)*p++);
    out[n] = '\0';
}

bool media_is_json(const char *content_type)
{
    char base[128];
    media_base(content_type, base, sizeof base);
    size_t n = strlen(base);
    return strcmp(base, "application/json") == 0 ||
           (strncmp(base, "application/", 12) == 0 && n > 5 && strcmp(base + n - 5, "+json") == 0);
}

unsigned accept_encoding_mask(const char *header)
{
    unsigned mask = 0;
    const char *p = header;
    while (p && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ';' && *p != ' ')
            p++;
        char name[32];
        size_t n = (size_t)(p - start) < sizeof name - 1 ? (size_t)(p - start) : sizeof name - 1;
        memcpy(name, start, n);
        name[n] = '\0';
        double q = 1.0;
        while (*p && *p != ',') {
            if (*p == ';') {
                p++;
                while (*p == ' ')
                    p++;
                if (strncasecmp(p, "q=", 2) == 0)
                    q = strtod(p + 2, NULL);
            } else {
                p++;
            }
        }
        enum scodec c;
        if (q > 0 && strcmp(name, "*") == 0)
            mask |= (1u << SCODEC_ZSTD) | (1u << SCODEC_LZ4) | (1u << SCODEC_GZIP);
        else if (q > 0 && n > 0 && scodec_from_name(name, &c) == 0 && c != SCODEC_NONE)
            mask |= 1u << c;
    }
    return mask;
}

int url_encode_segment(const char *in, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '.' || *p == '_' || *p == '~') {
            if (o + 1 >= cap)
                return -1;
            out[o++] = (char)*p;
        } else {
            if (o + 3 >= cap)
                return -1;
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

bool none_match(const char *header, const char *etag)
{
    if (header == NULL)
        return false;
    if (strcmp(header, "*") == 0)
        return true;
    /* a list of ETags, weak or strong: compare the quoted hash */
    return strstr(header, etag) != NULL;
}
