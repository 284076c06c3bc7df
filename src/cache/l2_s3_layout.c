#include "l2_s3_layout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "../codec/sha256.h"
#include "../common/hex.h"

static bool plain(unsigned char b)
{
    return (b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b == '_' ||
           b == '-';
}

/* The written form of s[0, n) into out (room for cap bytes and a NUL);
 * its length, or cap + 1 when it does not fit. */
static size_t encode(const char *s, size_t n, char *out, size_t cap)
{
    static const char digits[] = "0123456789ABCDEF";
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        size_t need = plain(b) ? 1 : 3;
        if (at + need > cap)
            return cap + 1;
        if (need == 1) {
            out[at++] = (char)b;
        } else {
            out[at++] = '%';
            out[at++] = digits[b >> 4];
            out[at++] = digits[b & 15];
        }
    }
    out[at] = '\0';
    return at;
}

/* Decodes s[0, n) into out (cap bytes with the NUL); its length, or -1
 * for a form encode() never writes. */
static long decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (at + 1 >= cap)
            return -1;
        unsigned char b = (unsigned char)s[i];
        if (plain(b)) {
            out[at++] = (char)b;
            continue;
        }
        if (b != '%' || i + 2 >= n)
            return -1;
        int hi = hex_digit(s[i + 1]), lo = hex_digit(s[i + 2]);
        if (hi < 0 || lo < 0)
            return -1;
        unsigned char d = (unsigned char)(hi << 4 | lo);
        if (plain(d) || d == 0)
            return -1;
        out[at++] = (char)d;
        i += 2;
    }
    out[at] = '\0';
    return (long)at;
}

int l2s3_ns_part(const char *ns, char *out)
{
    size_t n = strlen(ns);
    if (n == 0 || n > L2_NS_MAX)
        return -1;
    return encode(ns, n, out, L2S3_NS_ENC_MAX) <= L2S3_NS_ENC_MAX ? 0 : -1;
}

int l2s3_key_part(const char *key, char *out)
{
    size_t n = strlen(key);
    if (n > L2_KEY_MAX)
        return -1;
    if (encode(key, n, out, L2S3_ENC_MAX) <= L2S3_ENC_MAX)
        return 0;
    unsigned char d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    if (sha256_oneshot(key, n, d, NULL) != 0)
        return -1;
    sha256_to_hex(d, hex);
    snprintf(out, L2S3_ENC_MAX + 1, "~%zu-%s", n, hex);
    return 0;
}

int l2s3_state_name(const char *ns, const char *key, char kind, char *out, strata_error *err)
{
    char nsp[L2S3_NS_ENC_MAX + 1], kp[L2S3_ENC_MAX + 1];
    if (l2s3_ns_part(ns, nsp) != 0 || l2s3_key_part(key, kp) != 0)
        return serr_set(err, SERR_INVALID, "cache namespace or key too long");
    snprintf(out, L2S3_NAME_MAX, "v/%s/%s%s", nsp, kp, kind == 'a' ? "!a" : "");
    return 0;
}

int l2s3_epoch_name(const char *ns, char *out, strata_error *err)
{
    char nsp[L2S3_NS_ENC_MAX + 1];
    if (l2s3_ns_part(ns, nsp) != 0)
        return serr_set(err, SERR_INVALID, "cache namespace too long");
    snprintf(out, L2S3_NAME_MAX, "n/%s", nsp);
    return 0;
}

int l2s3_fence_dir(const char *ns, const char *key, char *out, strata_error *err)
{
    char nsp[L2S3_NS_ENC_MAX + 1], kp[L2S3_ENC_MAX + 1];
    if (l2s3_ns_part(ns, nsp) != 0 || l2s3_key_part(key, kp) != 0)
        return serr_set(err, SERR_INVALID, "cache namespace or key too long");
    snprintf(out, L2S3_NAME_MAX, "f/%s/%s/", nsp, kp);
    return 0;
}

void l2s3_fence_name(const char *dir, uint64_t id, char *out)
{
    char hex[17];
    l2s3_hex64(id, hex);
    snprintf(out, L2S3_NAME_MAX, "%s%s", dir, hex);
}

bool l2s3_fence_id(const char *dir, const char *name, uint64_t *id)
{
    size_t n = strlen(dir);
    return strncmp(name, dir, n) == 0 && l2s3_parse_hex64(name + n, id) == 0 && *id != 0;
}

int l2s3_parse_name(const char *name, l2s3_listed *out)
{
    memset(out, 0, sizeof *out);
    if (strncmp(name, "v/", 2) != 0)
        return -1;
    const char *ns = name + 2, *slash = strchr(ns, '/');
    if (slash == NULL || slash == ns ||
        decode(ns, (size_t)(slash - ns), out->ns, sizeof out->ns) < 0)
        return -1;
    const char *kp = slash + 1;
    size_t n = strlen(kp);
    if (n >= 2 && strcmp(kp + n - 2, "!a") == 0) {
        out->marker = true;
        n -= 2;
    }
    if (n > L2S3_ENC_MAX || memchr(kp, '/', n) != NULL)
        return -1;
    if (n > 0 && kp[0] == '~') {
        char *end;
        unsigned long len = strtoul(kp + 1, &end, 10);
        if (end == kp + 1 || *end != '-' || len > L2_KEY_MAX ||
            (size_t)(end + 1 - kp) + SHA256_HEX_LEN != n)
            return -1;
        out->hashed = true;
        out->klen = len;
        return 0;
    }
    long len = decode(kp, n, out->key, sizeof out->key);
    if (len < 0)
        return -1;
    out->klen = (size_t)len;
    return 0;
}

int l2s3_sized(uint64_t size, size_t klen, uint64_t *data_len)
{
    *data_len = 0;
    if (size == L2S3_BLANK_HDR + klen)
        return 0;
    if (size < L2S3_VALUE_HDR + klen)
        return -1;
    *data_len = size - L2S3_VALUE_HDR - klen;
    return 1;
}

static void be_put(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t be_get(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

size_t l2s3_header(unsigned char *out, char kind, uint64_t g, const char *key, uint8_t codec)
{
    size_t klen = strlen(key);
    memcpy(out, kind == 'V' ? "SL2V" : "SL2B", 4);
    be_put(out + 4, g, 8);
    be_put(out + 12, klen, 2);
    memcpy(out + 14, key, klen);
    if (kind != 'V')
        return L2S3_BLANK_HDR + klen;
    out[14 + klen] = codec;
    return L2S3_VALUE_HDR + klen;
}

int l2s3_parse_header(const unsigned char *body, size_t len, l2s3_header_view *out)
{
    if (len < L2S3_BLANK_HDR || memcmp(body, "SL2", 3) != 0 || (body[3] != 'B' && body[3] != 'V'))
        return -1;
    out->kind = (char)body[3];
    out->g = be_get(body + 4, 8);
    out->klen = (size_t)be_get(body + 12, 2);
    out->key = (const char *)body + 14;
    out->codec = 0;
    if (out->klen > L2_KEY_MAX || len < L2S3_BLANK_HDR + out->klen)
        return -1;
    if (out->kind == 'B') {
        out->hdr_len = L2S3_BLANK_HDR + out->klen;
        return len == out->hdr_len ? 0 : -1;
    }
    if (len < L2S3_VALUE_HDR + out->klen)
        return -1;
    out->codec = body[14 + out->klen];
    out->hdr_len = L2S3_VALUE_HDR + out->klen;
    return 0;
}

const char *l2s3_meta(const s3_object_info *info, const char *name)
{
    for (int i = 0; i < info->n_meta && i < S3_META_MAX; i++)
        if (strcmp(info->meta_name[i], name) == 0)
            return info->meta_value[i];
    return NULL;
}

void l2s3_hex64(uint64_t v, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)v);
}

int l2s3_parse_hex64(const char *s, uint64_t *out)
{
    if (s == NULL || strlen(s) != 16)
        return -1;
    unsigned char b[8];
    if (hex_decode(s, 8, b) != 0)
        return -1;
    *out = be_get(b, 8);
    return 0;
}

int l2s3_random(uint64_t *out, strata_error *err)
{
    uint64_t r = 0;
    while (r == 0)
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            return serr_set(err, SERR_IO, "no random bytes for an L2 id");
    *out = r;
    return 0;
}
