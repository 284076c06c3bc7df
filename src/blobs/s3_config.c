/* S3 client configuration (s3_client.h): an s3_config from an
 * s3://BUCKET/PREFIX URL, its parameters and the AWS_* / STRATA_S3_*
 * environment, and the checks s3_client_new shares (s3_config.h). */
#include "s3_client.h"
#include "s3_config.h"

#include "../common/hex.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *env(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static int copy_field(char *dst, size_t cap, const char *src, size_t len, const char *what,
                      strata_error *err)
{
    if (len >= cap)
        return serr_set(err, SERR_INVALID, "the S3 %s is longer than %zu bytes", what, cap - 1);
    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}

/* Decodes %XX in place; -1 on a bad escape. */
static int url_unescape(char *s)
{
    char *w = s;
    for (char *r = s; *r != '\0'; r++) {
        if (*r == '%') {
            int hi = hex_digit(r[1]), lo = hi >= 0 ? hex_digit(r[2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return -1;
            *w++ = (char)(hi << 4 | lo);
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return 0;
}

/* Checks "http(s)://authority" (a trailing '/' dropped) and writes its
 * authority into host when host is not NULL. */
int s3_endpoint_check(char *ep, char *host, size_t host_cap, strata_error *err)
{
    size_t len = strlen(ep);
    while (len > 0 && ep[len - 1] == '/')
        ep[--len] = '\0';
    const char *auth = NULL;
    if (strncmp(ep, "http://", 7) == 0)
        auth = ep + 7;
    else if (strncmp(ep, "https://", 8) == 0)
        auth = ep + 8;
    if (auth == NULL || auth[0] == '\0' || strpbrk(auth, "/?#@ \t\r\n\\") != NULL)
        return serr_set(err, SERR_INVALID,
                        "the S3 endpoint \"%.100s\" is not http(s)://HOST[:PORT]", ep);
    if (host != NULL && copy_field(host, host_cap, auth, strlen(auth), "endpoint host", err) != 0)
        return -1;
    return 0;
}

bool s3_bucket_valid(const char *b)
{
    size_t len = strlen(b);
    if (len == 0 || len > 63)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)b[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_')
            return false;
    }
    return true;
}

int s3_config_from_url(const char *url, s3_config *cfg, strata_error *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->timeout_ms = 30000;
    cfg->max_retries = 4;
    if (url == NULL || strncmp(url, "s3://", 5) != 0)
        return serr_set(err, SERR_INVALID, "an S3 URL starts with s3://BUCKET");
    const char *rest = url + 5;
    const char *q = strchr(rest, '?');
    size_t path_len = q != NULL ? (size_t)(q - rest) : strlen(rest);
    const char *slash = memchr(rest, '/', path_len);
    size_t blen = slash != NULL ? (size_t)(slash - rest) : path_len;
    if (copy_field(cfg->bucket, sizeof cfg->bucket, rest, blen, "bucket name", err) != 0)
        return -1;
    if (!s3_bucket_valid(cfg->bucket))
        return serr_set(err, SERR_INVALID,
                        "\"%.80s\" is not an S3 bucket name (s3://BUCKET/PREFIX)", cfg->bucket);
    if (slash != NULL) {
        const char *p = slash + 1;
        size_t plen = path_len - blen - 1;
        while (plen > 0 && *p == '/') {
            p++;
            plen--;
        }
        if (copy_field(cfg->prefix, sizeof cfg->prefix - 1, p, plen, "prefix", err) != 0)
            return -1;
        if (url_unescape(cfg->prefix) != 0)
            return serr_set(err, SERR_INVALID, "a bad %% escape in the S3 prefix");
        plen = strlen(cfg->prefix);
        if (plen > 0 && cfg->prefix[plen - 1] != '/') {
            cfg->prefix[plen++] = '/';
            cfg->prefix[plen] = '\0';
        }
        if (plen > S3_KEY_TOTAL_MAX - S3_KEY_MAX)
            return serr_set(err, SERR_INVALID, "the S3 prefix is longer than %d bytes",
                            S3_KEY_TOTAL_MAX - S3_KEY_MAX);
    }

    const char *v;
    const char *region = (v = env("AWS_REGION")) != NULL ? v : env("AWS_DEFAULT_REGION");
    if (region == NULL)
        region = "us-east-1";
    if (copy_field(cfg->region, sizeof cfg->region, region, strlen(region), "region", err) != 0)
        return -1;
    const char *ep = env("STRATA_S3_ENDPOINT");
    if (ep == NULL)
        ep = env("AWS_ENDPOINT_URL_S3");
    if (ep == NULL)
        ep = env("AWS_ENDPOINT_URL");
    if (ep != NULL &&
        copy_field(cfg->endpoint, sizeof cfg->endpoint, ep, strlen(ep), "endpoint", err) != 0)
        return -1;

    /* URL parameters override the environment; others are left to the
     * caller (an S3 L2 reads its own from the same URL) */
    if (q != NULL) {
        const char *p = q + 1;
        while (*p != '\0') {
            const char *amp = strchr(p, '&');
            size_t len = amp != NULL ? (size_t)(amp - p) : strlen(p);
            const char *eq = memchr(p, '=', len);
            if (eq != NULL) {
                size_t nlen = (size_t)(eq - p), vlen = len - nlen - 1;
                char val[300];
                if (copy_field(val, sizeof val, eq + 1, vlen, "URL parameter", err) != 0)
                    return -1;
                if (url_unescape(val) != 0)
                    return serr_set(err, SERR_INVALID, "a bad %% escape in the S3 URL");
                if (nlen == 8 && strncmp(p, "endpoint", 8) == 0) {
                    if (copy_field(cfg->endpoint, sizeof cfg->endpoint, val, strlen(val),
                                   "endpoint", err) != 0)
                        return -1;
                } else if (nlen == 6 && strncmp(p, "region", 6) == 0) {
                    if (val[0] == '\0' || copy_field(cfg->region, sizeof cfg->region, val,
                                                     strlen(val), "region", err) != 0)
                        return serr_set(err, SERR_INVALID, "a bad region= in the S3 URL");
                } else if (nlen == 10 && strncmp(p, "timeout_ms", 10) == 0) {
                    char *end = NULL;
                    errno = 0;
                    long t = strtol(val, &end, 10);
                    if (errno != 0 || end == val || *end != '\0' || t < 1 || t > 3600000)
                        return serr_set(err, SERR_INVALID,
                                        "timeout_ms=%.40s: not a number of ms in 1..3600000", val);
                    cfg->timeout_ms = t;
                }
            }
            if (amp == NULL)
                break;
            p = amp + 1;
        }
    }
    for (const char *r = cfg->region; *r != '\0'; r++)
        if (!isalnum((unsigned char)*r) && *r != '-' && *r != '_')
            return serr_set(err, SERR_INVALID, "\"%.64s\" is not an S3 region", cfg->region);
    if (cfg->endpoint[0] == '\0')
        snprintf(cfg->endpoint, sizeof cfg->endpoint, "https://s3.%s.amazonaws.com", cfg->region);
    if (s3_endpoint_check(cfg->endpoint, NULL, 0, err) != 0)
        return -1;

    const char *ak = env("AWS_ACCESS_KEY_ID"), *sk = env("AWS_SECRET_ACCESS_KEY");
    if (ak == NULL || sk == NULL)
        return serr_set(err, SERR_INVALID,
                        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
    if (copy_field(cfg->access_key, sizeof cfg->access_key, ak, strlen(ak), "access key", err) ||
        copy_field(cfg->secret_key, sizeof cfg->secret_key, sk, strlen(sk), "secret key", err))
        return -1;
    const char *tok = env("AWS_SESSION_TOKEN");
    if (tok != NULL && copy_field(cfg->session_token, sizeof cfg->session_token, tok, strlen(tok),
                                  "session token", err) != 0)
        return -1;
    return 0;
}
