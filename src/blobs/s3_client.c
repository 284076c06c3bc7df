/* The S3 client over libcurl (s3_client.h). Every request is signed here
 * (s3_sigv4.h) and sent path-style: ENDPOINT/BUCKET/PREFIXKEY.
 *
 * Connections: a client keeps a pool of curl easy handles; a request takes
 * one (the most recently returned: a warm connection), and gives it back,
 * so connections are reused across requests and threads and the number of
 * handles never exceeds the number of requests in flight. DNS and TLS
 * sessions are shared between the handles (a curl share); connection
 * caches are not (libcurl does not support sharing them across threads).
 *
 * Time: cfg.timeout_ms bounds one operation, its retries included (each
 * attempt gets what is left), so that a server that stops answering costs
 * a caller at most timeout_ms.
 *
 * Memory: bodies are never copied (uploads read the caller's bytes, GET
 * appends into the caller's buffer up to its bound); error bodies,
 * listings and other small answers are held up to fixed bounds. */
#include "s3_client.h"
#include "s3_sigv4.h"

#include "../common/hex.h"

#include <ctype.h>
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define POOL_MAX        64          /* idle easy handles kept per client */
#define ERR_BODY_MAX    (64u << 10) /* an error body or a small XML answer */
#define LIST_BODY_MAX   (1u << 20)  /* one listing page */
#define TOKEN_MAX       4096        /* a continuation token or marker */
#define DEFAULT_PAGE    1000
#define CONNECT_MAX_MS  10000
#define BACKOFF_BASE_MS 100
#define META_TOTAL_MAX  2048 /* S3's bound on user metadata (names + values) */
#define PARTS_MAX       10000
#define KEY_TOTAL_MAX   1024 /* S3's bound on a key, prefix included */
#define MAX_SIGNED      24

struct s3_client {
    s3_config cfg;
    char host[256]; /* the endpoint's authority: the Host header */
    pthread_mutex_t mu;
    CURL *idle[POOL_MAX];
    int n_idle;
    CURLSH *share;
    pthread_mutex_t share_mu[CURL_LOCK_DATA_LAST];
};

/* ---- libcurl global state ------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init_once(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- configuration -------------------------------------------------------- */

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
static int check_endpoint(char *ep, char *host, size_t host_cap, strata_error *err)
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

static bool valid_bucket(const char *b)
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
    if (!valid_bucket(cfg->bucket))
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
        if (plen > KEY_TOTAL_MAX - S3_KEY_MAX)
            return serr_set(err, SERR_INVALID, "the S3 prefix is longer than %d bytes",
                            KEY_TOTAL_MAX - S3_KEY_MAX);
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
    if (check_endpoint(cfg->endpoint, NULL, 0, err) != 0)
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

/* ---- the client and its handle pool -------------------------------------- */

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *ud)
{
    (void)h;
    (void)access;
    s3_client *c = ud;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_lock(&c->share_mu[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *ud)
{
    (void)h;
    s3_client *c = ud;
    if ((int)data >= 0 && data < CURL_LOCK_DATA_LAST)
        pthread_mutex_unlock(&c->share_mu[data]);
}

static bool printable(const char *s)
{
    for (; *s != '\0'; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e)
            return false;
    return true;
}

s3_client *s3_client_new(const s3_config *cfg, strata_error *err)
{
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_rc != CURLE_OK) {
        serr_set(err, SERR_INTERNAL, "libcurl initialisation failed: %s",
                 curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    if (cfg == NULL || !valid_bucket(cfg->bucket) || cfg->region[0] == '\0' ||
        cfg->access_key[0] == '\0' || cfg->secret_key[0] == '\0') {
        serr_set(err, SERR_INVALID, "an S3 configuration needs a bucket, a region, credentials");
        return NULL;
    }
    if (!printable(cfg->access_key) || !printable(cfg->secret_key) ||
        !printable(cfg->session_token) || strlen(cfg->prefix) > KEY_TOTAL_MAX - S3_KEY_MAX) {
        serr_set(err, SERR_INVALID, "the S3 credentials or prefix hold bad bytes or are too long");
        return NULL;
    }
    s3_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory for an S3 client");
        return NULL;
    }
    c->cfg = *cfg;
    if (check_endpoint(c->cfg.endpoint, c->host, sizeof c->host, err) != 0) {
        free(c);
        return NULL;
    }
    size_t plen = strlen(c->cfg.prefix);
    if (plen > 0 && c->cfg.prefix[plen - 1] != '/') {
        if (plen + 1 >= sizeof c->cfg.prefix || plen + 1 > KEY_TOTAL_MAX - S3_KEY_MAX) {
            serr_set(err, SERR_INVALID, "the S3 prefix is too long");
            free(c);
            return NULL;
        }
        c->cfg.prefix[plen] = '/';
        c->cfg.prefix[plen + 1] = '\0';
    }
    if (c->cfg.timeout_ms <= 0)
        c->cfg.timeout_ms = 30000;
    if (c->cfg.max_retries < 0)
        c->cfg.max_retries = 0;
    if (c->cfg.max_retries > 10)
        c->cfg.max_retries = 10;
    if (c->cfg.list_page_size <= 0 || c->cfg.list_page_size > DEFAULT_PAGE)
        c->cfg.list_page_size = DEFAULT_PAGE;
    pthread_mutex_init(&c->mu, NULL);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&c->share_mu[i], NULL);
    c->share = curl_share_init();
    if (c->share != NULL) {
        curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
        curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
        curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }
    return c;
}

void s3_client_free(s3_client *c)
{
    if (c == NULL)
        return;
    for (int i = 0; i < c->n_idle; i++)
        curl_easy_cleanup(c->idle[i]);
    if (c->share != NULL)
        curl_share_cleanup(c->share);
    pthread_mutex_destroy(&c->mu);
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_destroy(&c->share_mu[i]);
    OPENSSL_cleanse(c->cfg.secret_key, sizeof c->cfg.secret_key);
    free(c);
}

const s3_config *s3_client_config(const s3_client *c)
{
    return &c->cfg;
}

static CURL *handle_take(s3_client *c)
{
    CURL *h = NULL;
    pthread_mutex_lock(&c->mu);
    if (c->n_idle > 0)
        h = c->idle[--c->n_idle];
    pthread_mutex_unlock(&c->mu);
    return h != NULL ? h : curl_easy_init();
}

static void handle_give(s3_client *c, CURL *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    if (c->n_idle < POOL_MAX) {
        c->idle[c->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (h != NULL)
        curl_easy_cleanup(h);
}

/* ---- one request, its answer, and retries -------------------------------- */

typedef struct hdr {
    const char *name;
    const char *value;
} hdr;

typedef struct request {
    const char *method; /* GET HEAD PUT POST DELETE */
    const char *op;     /* names the operation in errors */
    const char *key;    /* relative key; NULL: the bucket itself */
    const char *query;  /* built with build_query, or NULL */
    hdr extra[MAX_SIGNED - 4];
    int n_extra;
    bool upload; /* sends body (possibly empty) */
    const void *body;
    size_t body_len;
    const char *body_hash; /* NULL: computed */
    /* GET: appended to sink (at most sink_max bytes); NULL: held in resp.body */
    strata_buf *sink;
    size_t sink_max;
    bool ranged; /* asked for [off, off+len) (len 0: to the end) */
    uint64_t off, len;
    size_t body_cap;   /* bound of resp.body; 0: ERR_BODY_MAX */
    bool error_in_200; /* CopyObject, CompleteMultipartUpload: 200 may carry <Error> */
} request;

typedef struct response {
    CURL *h;
    long status;
    int attempts;
    /* from the headers */
    bool have_len, have_total;
    uint64_t content_length, total;
    int64_t mtime_ms;
    char etag[S3_ETAG_MAX];
    int n_meta;
    char meta_name[S3_META_MAX][64];
    char meta_value[S3_META_MAX][256];
    /* body */
    char *body;
    size_t body_len, body_cap;
    bool overflow;
    strata_buf *sink;
    size_t sink_start, sink_max;
    bool ranged;
    uint64_t off, len, pos;
    bool too_large, sink_failed;
    bool reserved; /* the sink was sized from Content-Length */
    char sink_detail[STRATA_ERR_DETAIL_MAX];
    char code[64]; /* an S3 error code from the body */
    char message[160];
    char curl_err[CURL_ERROR_SIZE];
} response;

static void response_free(response *rs)
{
    free(rs->body);
    rs->body = NULL;
}

static void reset_headers(response *rs)
{
    rs->have_len = rs->have_total = false;
    rs->content_length = rs->total = 0;
    rs->mtime_ms = 0;
    rs->etag[0] = '\0';
    rs->n_meta = 0;
}

static bool parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 20)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    response *rs = ud;
    size_t n = size * nmemb;
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        reset_headers(rs); /* a new answer (after a 100 Continue, say) */
        return n;
    }
    const char *colon = memchr(p, ':', n);
    if (colon == NULL)
        return n;
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);
    char val[512];
    if (vlen >= sizeof val)
        vlen = sizeof val - 1; /* no header we read is longer */
    memcpy(val, v, vlen);
    val[vlen] = '\0';
#define IS(name) (nlen == sizeof name - 1 && strncasecmp(p, name, nlen) == 0)
    if (IS("etag")) {
        if (vlen < sizeof rs->etag)
            memcpy(rs->etag, val, vlen + 1);
    } else if (IS("content-length")) {
        rs->have_len = parse_u64(val, vlen, &rs->content_length);
    } else if (IS("content-range")) {
        const char *slash = strrchr(val, '/');
        if (slash != NULL)
            rs->have_total = parse_u64(slash + 1, strlen(slash + 1), &rs->total);
    } else if (IS("last-modified")) {
        time_t t = curl_getdate(val, NULL);
        if (t != (time_t)-1)
            rs->mtime_ms = (int64_t)t * 1000;
    } else if (nlen > 11 && nlen - 11 < 64 && strncasecmp(p, "x-amz-meta-", 11) == 0 &&
               rs->n_meta < S3_META_MAX && vlen < 256) {
        char *name = rs->meta_name[rs->n_meta];
        for (size_t i = 0; i < nlen - 11; i++)
            name[i] = (char)tolower((unsigned char)p[11 + i]);
        name[nlen - 11] = '\0';
        memcpy(rs->meta_value[rs->n_meta], val, vlen + 1);
        rs->n_meta++;
    }
#undef IS
    return n;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    response *rs = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(rs->h, CURLINFO_RESPONSE_CODE, &status);
    if (rs->sink != NULL && status >= 200 && status < 300) {
        const char *d = p;
        size_t m = n;
        if (!rs->reserved && rs->have_len) {
            /* one allocation of the announced size (within the bound) */
            rs->reserved = true;
            uint64_t want = rs->content_length;
            if (status == 200 && rs->ranged && rs->len > 0 && rs->len < want)
                want = rs->len;
            if (want > 0 && want <= rs->sink_max) {
                /* capped for the call so that the buffer is not doubled past it */
                size_t cap = rs->sink->cap;
                if (cap == 0 || cap - rs->sink->len > want)
                    rs->sink->cap = rs->sink->len + (size_t)want;
                sbuf_reserve(rs->sink, (size_t)want, NULL);
                rs->sink->cap = cap;
            }
        }
        if (status == 200 && rs->ranged) {
            /* the server ignored Range: keep [off, off+len) of the whole */
            uint64_t pos = rs->pos, stop = rs->len > 0 ? rs->off + rs->len : UINT64_MAX;
            rs->pos += n;
            if (pos + m <= rs->off || pos >= stop)
                return n;
            if (pos < rs->off) {
                d += rs->off - pos;
                m -= (size_t)(rs->off - pos);
                pos = rs->off;
            }
            if (pos + m > stop)
                m = (size_t)(stop - pos);
        }
        if (rs->sink->len - rs->sink_start + m > rs->sink_max) {
            rs->too_large = true;
            return 0; /* aborts the transfer */
        }
        strata_error e;
        if (sbuf_append(rs->sink, d, m, &e) != 0) {
            rs->sink_failed = true;
            snprintf(rs->sink_detail, sizeof rs->sink_detail, "%s", e.detail);
            return 0;
        }
        return n;
    }
    /* an error body or a small answer: kept up to its bound, the rest read
     * and dropped (so that the connection stays usable) */
    if (rs->body == NULL) {
        rs->body = malloc(rs->body_cap + 1);
        if (rs->body == NULL) {
            rs->sink_failed = true;
            snprintf(rs->sink_detail, sizeof rs->sink_detail, "out of memory for an S3 answer");
            return 0;
        }
        rs->body_len = 0;
    }
    size_t room = rs->body_cap - rs->body_len, m = n;
    if (m > room) {
        m = room;
        rs->overflow = true;
    }
    memcpy(rs->body + rs->body_len, p, m);
    rs->body_len += m;
    rs->body[rs->body_len] = '\0';
    return n;
}

typedef struct upload_src {
    const unsigned char *data;
    size_t len, pos;
} upload_src;

static size_t on_read(char *buf, size_t size, size_t nmemb, void *ud)
{
    upload_src *u = ud;
    size_t room = size * nmemb, left = u->len - u->pos;
    size_t n = left < room ? left : room;
    if (n > 0)
        memcpy(buf, u->data + u->pos, n);
    u->pos += n;
    return n;
}

static int on_seek(void *ud, curl_off_t offset, int origin)
{
    upload_src *u = ud;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > u->len)
        return CURL_SEEKFUNC_FAIL;
    u->pos = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

/* ---- small XML answers ---------------------------------------------------- */

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

/* Decodes XML text [s, s+len) (entities and character references) into
 * out (cap bytes, NUL-terminated). -1 when it does not fit or is bad. */
static int xml_text(const char *s, size_t len, char *out, size_t cap)
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

/* Finds <tag>...</tag> in [p, end); sets the text's bounds and returns the
 * position after the closing tag, or NULL. */
static const char *xml_find(const char *p, const char *end, const char *tag, const char **text,
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

/* The decoded text of <tag> in [p, end) into out; -1 when absent or bad. */
static int xml_get(const char *p, const char *end, const char *tag, char *out, size_t cap)
{
    const char *t;
    size_t len;
    if (xml_find(p, end, tag, &t, &len) == NULL)
        return -1;
    return xml_text(t, len, out, cap);
}

/* Milliseconds since the epoch of "YYYY-MM-DDTHH:MM:SS[.fff]Z"; 0 if bad. */
static int64_t iso8601_ms(const char *s)
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

/* Fills rs->code and rs->message from an <Error> body. */
static void parse_error_body(response *rs)
{
    rs->code[0] = rs->message[0] = '\0';
    if (rs->body == NULL)
        return;
    const char *end = rs->body + rs->body_len;
    if (xml_get(rs->body, end, "Code", rs->code, sizeof rs->code) != 0)
        rs->code[0] = '\0';
    const char *t;
    size_t len;
    if (xml_find(rs->body, end, "Message", &t, &len) != NULL) {
        /* a long message is cut rather than lost */
        while (len > 0 && xml_text(t, len, rs->message, sizeof rs->message) != 0)
            len = len > sizeof rs->message - 8 ? sizeof rs->message - 8 : len - 1;
    }
}

/* ---- sending --------------------------------------------------------------- */

static bool retryable_curl(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static bool retryable_code(const char *code)
{
    return strcmp(code, "SlowDown") == 0 || strcmp(code, "InternalError") == 0 ||
           strcmp(code, "ServiceUnavailable") == 0 || strcmp(code, "RequestTimeout") == 0;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static uint32_t jitter_rand(void)
{
    static _Thread_local uint32_t state;
    if (state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = (uint32_t)ts.tv_nsec ^ (uint32_t)(uintptr_t)&state ^ 0x9e3779b9u;
        if (state == 0)
            state = 1;
    }
    state ^= state << 13;
    state ^= state >> 17;
    state ^= state << 5;
    return state;
}

/* "/BUCKET[/PREFIXKEY]" (decoded) into out. */
static int object_path(const s3_client *c, const char *key, char *out, size_t cap,
                       strata_error *err)
{
    int w = key != NULL ? snprintf(out, cap, "/%s/%s%s", c->cfg.bucket, c->cfg.prefix, key)
                        : snprintf(out, cap, "/%s", c->cfg.bucket);
    if (w < 0 || (size_t)w >= cap)
        return serr_set(err, SERR_INVALID, "an S3 key is too long");
    return 0;
}

static int append_header(struct curl_slist **list, const char *name, const char *value,
                         strata_error *err)
{
    size_t len = strlen(name) + strlen(value) + 3;
    char *line = malloc(len);
    if (line == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory for a request header");
    snprintf(line, len, "%s: %s", name, value);
    struct curl_slist *l = curl_slist_append(*list, line);
    free(line);
    if (l == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory for a request header");
    *list = l;
    return 0;
}

/* One attempt: signs rq now and sends it on h. Returns the curl code; a
 * local failure (signing, memory) sets err and returns CURLE_ABORTED_BY_CALLBACK
 * with *local set. */
static CURLcode attempt(s3_client *c, const request *rq, response *rs, const char *path,
                        const char *hash, long timeout_ms, bool *local, strata_error *err)
{
    char date[S3_SIGV4_DATE_LEN + 1];
    char auth[S3_SIGV4_AUTH_MAX];
    s3_sigv4_header hs[MAX_SIGNED];
    int n = 0;
    *local = false;
    s3_sigv4_amz_date(time(NULL), date);
    hs[n++] = (s3_sigv4_header){"host", c->host};
    hs[n++] = (s3_sigv4_header){"x-amz-content-sha256", hash};
    hs[n++] = (s3_sigv4_header){"x-amz-date", date};
    if (c->cfg.session_token[0] != '\0')
        hs[n++] = (s3_sigv4_header){"x-amz-security-token", c->cfg.session_token};
    for (int i = 0; i < rq->n_extra; i++)
        hs[n++] = (s3_sigv4_header){rq->extra[i].name, rq->extra[i].value};
    s3_sigv4_request sr = {.method = rq->method,
                           .path = path,
                           .query = rq->query,
                           .headers = hs,
                           .n_headers = n,
                           .payload_hash = hash};
    s3_sigv4_creds cr = {.access_key = c->cfg.access_key,
                         .secret_key = c->cfg.secret_key,
                         .region = c->cfg.region,
                         .service = "s3"};
    if (s3_sigv4_authorization(&sr, &cr, auth, sizeof auth, NULL, err) != 0) {
        *local = true;
        return CURLE_ABORTED_BY_CALLBACK;
    }

    struct curl_slist *list = NULL;
    bool ok = true;
    for (int i = 0; i < n && ok; i++)
        ok = append_header(&list, hs[i].name, hs[i].value, err) == 0;
    ok = ok && append_header(&list, "Authorization", auth, err) == 0;
    /* "Expect:" (no value) stops curl's 100-continue round trip */
    struct curl_slist *l = ok ? curl_slist_append(list, "Expect:") : NULL;
    if (l == NULL) {
        if (ok)
            serr_set(err, SERR_NOMEM, "out of memory for a request header");
        curl_slist_free_all(list);
        *local = true;
        return CURLE_ABORTED_BY_CALLBACK;
    }
    list = l;

    size_t plen = strlen(path);
    size_t ulen = strlen(c->cfg.endpoint) + 3 * plen + (rq->query ? strlen(rq->query) : 0) + 4;
    char *url = malloc(ulen);
    if (url == NULL) {
        curl_slist_free_all(list);
        serr_set(err, SERR_NOMEM, "out of memory for an S3 URL");
        *local = true;
        return CURLE_ABORTED_BY_CALLBACK;
    }
    size_t el = (size_t)snprintf(url, ulen, "%s", c->cfg.endpoint);
    long pl = s3_sigv4_uri_encode(path, plen, true, url + el, ulen - el);
    if (pl >= 0 && rq->query != NULL && rq->query[0] != '\0')
        snprintf(url + el + (size_t)pl, ulen - el - (size_t)pl, "?%s", rq->query);

    CURL *h = rs->h;
    upload_src src = {.data = rq->body, .len = rq->body_len, .pos = 0};
    curl_easy_reset(h);
    rs->curl_err[0] = '\0';
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    if (c->share != NULL)
        curl_easy_setopt(h, CURLOPT_SHARE, c->share);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     timeout_ms < CONNECT_MAX_MS ? timeout_ms : (long)CONNECT_MAX_MS);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, rs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, rs);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, rs->curl_err);
    if (strcmp(rq->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else if (rq->upload) {
        curl_easy_setopt(h, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(h, CURLOPT_READFUNCTION, on_read);
        curl_easy_setopt(h, CURLOPT_READDATA, &src);
        curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(h, CURLOPT_SEEKDATA, &src);
        curl_easy_setopt(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)rq->body_len);
        if (strcmp(rq->method, "PUT") != 0)
            curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    } else if (strcmp(rq->method, "GET") != 0) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, rq->method);
    }
    CURLcode rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &rs->status);
    /* options point at this frame: none may outlive it (the connection does) */
    curl_easy_reset(h);
    curl_slist_free_all(list);
    free(url);
    return rc;
}

/* Sends rq with retries. Returns 0 when an HTTP answer arrived (any status:
 * rs->status, and rs->code/message for an error body), -1 with err set when
 * none did, the sink refused the body, or retries ran out on a 5xx. */
static int perform(s3_client *c, const request *rq, response *rs, strata_error *err)
{
    char *path = NULL, hash[S3_SIGV4_HASH_HEX + 1];
    size_t path_cap =
        strlen(c->cfg.bucket) + strlen(c->cfg.prefix) + (rq->key != NULL ? strlen(rq->key) : 0) + 4;
    memset(rs, 0, sizeof *rs);
    rs->body_cap = rq->body_cap > 0 ? rq->body_cap : ERR_BODY_MAX;
    path = malloc(path_cap);
    if (path == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory for an S3 request");
    if (object_path(c, rq->key, path, path_cap, err) != 0) {
        free(path);
        return -1;
    }
    if (rq->body_hash != NULL)
        snprintf(hash, sizeof hash, "%s", rq->body_hash);
    else if (s3_sigv4_sha256_hex(rq->upload ? rq->body : "", rq->upload ? rq->body_len : 0, hash,
                                 err) != 0) {
        free(path);
        return -1;
    }
    rs->h = handle_take(c);
    if (rs->h == NULL) {
        free(path);
        return serr_set(err, SERR_NOMEM, "cannot create a curl handle");
    }
    const char *what = rq->key != NULL ? rq->key : "(bucket)";
    int64_t deadline = now_ms() + c->cfg.timeout_ms;
    int rc = -1;
    for (int a = 0;; a++) {
        rs->attempts = a + 1;
        reset_headers(rs);
        rs->status = 0;
        rs->body_len = 0;
        if (rs->body != NULL)
            rs->body[0] = '\0';
        rs->overflow = rs->too_large = rs->sink_failed = false;
        rs->code[0] = rs->message[0] = '\0';
        rs->sink = rq->sink;
        rs->sink_start = rq->sink != NULL ? rq->sink->len : 0;
        rs->sink_max = rq->sink_max;
        rs->ranged = rq->ranged;
        rs->off = rq->off;
        rs->len = rq->len;
        rs->pos = 0;
        rs->reserved = false;
        int64_t left = deadline - now_ms();
        if (left < 1)
            left = 1;
        bool local = false;
        CURLcode cc = attempt(c, rq, rs, path, hash, (long)left, &local, err);
        bool retry = false;
        if (local)
            break;
        if (rs->too_large) {
            serr_set(err, SERR_TOO_LARGE, "S3 %s %.80s: more than %zu bytes", rq->op, what,
                     rq->sink_max);
            break;
        }
        if (rs->sink_failed) {
            serr_set(err, SERR_NOMEM, "S3 %s %.80s: %s", rq->op, what, rs->sink_detail);
            break;
        }
        if (cc != CURLE_OK) {
            const char *why = rs->curl_err[0] != '\0' ? rs->curl_err : curl_easy_strerror(cc);
            if (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
                (cc == CURLE_OPERATION_TIMEDOUT && rs->status == 0))
                serr_set(err, SERR_UNAVAILABLE, "cannot connect to S3 at %.100s: %.100s",
                         c->cfg.endpoint, why);
            else
                serr_set(err, SERR_UNAVAILABLE, "S3 %s %.80s at %.60s failed: %.80s", rq->op, what,
                         c->cfg.endpoint, why);
            retry = retryable_curl(cc);
        } else {
            if (rs->status < 200 || rs->status >= 300 ||
                (rq->error_in_200 && rs->body != NULL && strstr(rs->body, "<Error>") != NULL))
                parse_error_body(rs);
            if (rs->status >= 500 || retryable_code(rs->code)) {
                serr_set(err, SERR_UNAVAILABLE, "%s: %.120s (S3 %s %.60s, HTTP %ld)",
                         rs->code[0] ? rs->code : "ServerError",
                         rs->message[0] ? rs->message : "the server failed", rq->op, what,
                         rs->status);
                retry = true;
            } else {
                rc = 0;
                break;
            }
        }
        if (!retry || a >= c->cfg.max_retries)
            break;
        int64_t delay = (int64_t)BACKOFF_BASE_MS << a;
        delay = delay / 2 + (int64_t)(jitter_rand() % (uint32_t)(delay / 2 + 1));
        if (now_ms() + delay >= deadline)
            break;
        sleep_ms(delay);
    }
    if (rc != 0 && rq->sink != NULL)
        rq->sink->len = rs->sink_start; /* nothing half-appended */
    handle_give(c, rs->h);
    rs->h = NULL;
    free(path);
    return rc;
}

static bool auth_code(const char *code)
{
    static const char *const codes[] = {
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "AccessDenied",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "MissingSecurityHeader",
        "RequestTimeTooSkewed",
        "InvalidSecurity",
        "AccountProblem",
        "NoSuchBucket",
        "PermanentRedirect",
        "AllAccessDisabled",
        "InvalidBucketName",
        "XAdminUserNotFound", /* versitygw: an unknown access key, with a 404 */
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strcmp(code, codes[i]) == 0)
            return true;
    return false;
}

/* The error for an answer the operation did not expect. */
static int answer_error(const request *rq, response *rs, strata_error *err)
{
    const char *what = rq->key != NULL ? rq->key : "(bucket)";
    if (rs->code[0] == '\0')
        parse_error_body(rs);
    const char *code = rs->code[0] != '\0' ? rs->code : NULL;
    const char *msg = rs->message[0] != '\0' ? rs->message : "no error message";
    enum strata_err_kind kind = SERR_IO;
    /* a 404 names a missing object only with one of these codes (or none,
     * as a HEAD answer has no body): a missing bucket or user is not a
     * missing object */
    bool missing = code == NULL || strcmp(code, "NoSuchKey") == 0 ||
                   strcmp(code, "NoSuchUpload") == 0 || strcmp(code, "NoSuchVersion") == 0 ||
                   strcmp(code, "NotFound") == 0;
    if (code != NULL && auth_code(code))
        kind = SERR_UNAVAILABLE;
    else if (rs->status == 404 && missing)
        kind = SERR_NOT_FOUND;
    else if (rs->status == 412 || (code != NULL && strcmp(code, "ConditionalRequestConflict") == 0))
        kind = SERR_PRECONDITION;
    else if (rs->status == 401 || rs->status == 403 || rs->status >= 500)
        kind = SERR_UNAVAILABLE;
    if (code == NULL) {
        code = rs->status == 404   ? "NotFound"
               : rs->status == 412 ? "PreconditionFailed"
               : rs->status == 403 ? "Forbidden"
                                   : "UnexpectedAnswer";
    }
    return serr_set(err, kind, "%s: %.150s (S3 %s %.60s, HTTP %ld)", code, msg, rq->op, what,
                    rs->status);
}

/* ---- argument checks and request parts ----------------------------------- */

static int check_key(const char *key, strata_error *err)
{
    if (key == NULL || key[0] == '\0')
        return serr_set(err, SERR_INVALID, "an S3 key is empty");
    if (strlen(key) > S3_KEY_MAX)
        return serr_set(err, SERR_INVALID, "an S3 key is longer than %d bytes", S3_KEY_MAX);
    return 0;
}

/* Adds opts' content type and metadata (and, when cond, its conditions) to
 * rq; names points at room for S3_META_MAX header names. */
static int add_opts(request *rq, const s3_put_opts *opts, bool cond, char (*names)[80],
                    strata_error *err)
{
    if (opts == NULL)
        return 0;
    if (cond && opts->if_none_match)
        rq->extra[rq->n_extra++] = (hdr){"If-None-Match", "*"};
    if (cond && opts->if_match != NULL) {
        if (opts->if_match[0] == '\0' || strlen(opts->if_match) >= S3_ETAG_MAX ||
            strpbrk(opts->if_match, "\r\n") != NULL)
            return serr_set(err, SERR_INVALID, "a bad If-Match ETag");
        rq->extra[rq->n_extra++] = (hdr){"If-Match", opts->if_match};
    }
    if (opts->content_type != NULL) {
        if (opts->content_type[0] == '\0' || strlen(opts->content_type) > 255 ||
            strpbrk(opts->content_type, "\r\n") != NULL)
            return serr_set(err, SERR_INVALID, "a bad content type for S3");
        rq->extra[rq->n_extra++] = (hdr){"Content-Type", opts->content_type};
    }
    if (opts->n_meta < 0 || opts->n_meta > S3_META_MAX || (opts->n_meta > 0 && opts->meta == NULL))
        return serr_set(err, SERR_INVALID, "%d metadata entries (at most %d)", opts->n_meta,
                        S3_META_MAX);
    size_t total = 0;
    for (int i = 0; i < opts->n_meta; i++) {
        const char *name = opts->meta[i].name, *value = opts->meta[i].value;
        size_t nl = name != NULL ? strlen(name) : 0, vl = value != NULL ? strlen(value) : 0;
        if (nl == 0 || nl > 63 || value == NULL || vl > 255)
            return serr_set(err, SERR_INVALID,
                            "S3 metadata needs a name of 1-63 bytes, a value "
                            "of at most 255");
        for (size_t k = 0; k < nl; k++)
            if (!(islower((unsigned char)name[k]) || isdigit((unsigned char)name[k]) ||
                  name[k] == '-'))
                return serr_set(err, SERR_INVALID,
                                "the S3 metadata name \"%.63s\" is not [a-z0-9-]", name);
        for (size_t k = 0; k < vl; k++)
            if ((unsigned char)value[k] < 0x20 || (unsigned char)value[k] > 0x7e)
                return serr_set(err, SERR_INVALID,
                                "the S3 metadata %s holds a byte outside printable ASCII", name);
        if (vl > 0 && (value[0] == ' ' || value[vl - 1] == ' '))
            return serr_set(err, SERR_INVALID, "the S3 metadata %s starts or ends with a space",
                            name);
        for (int j = 0; j < i; j++)
            if (strcmp(opts->meta[j].name, name) == 0)
                return serr_set(err, SERR_INVALID, "the S3 metadata %s is given twice", name);
        total += nl + vl;
        snprintf(names[i], 80, "x-amz-meta-%s", name);
        rq->extra[rq->n_extra++] = (hdr){names[i], value};
    }
    if (total > META_TOTAL_MAX)
        return serr_set(err, SERR_INVALID, "S3 metadata over %d bytes", META_TOTAL_MAX);
    return 0;
}

/* Encodes name=value pairs (n of them; value NULL: "name=") into a sorted
 * canonical query in out. */
static int build_query(const char *const pairs[][2], int n, char *out, size_t cap,
                       strata_error *err)
{
    size_t tcap = cap;
    char *tmp = malloc(tcap);
    if (tmp == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory for a query");
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        const char *v = pairs[i][1] != NULL ? pairs[i][1] : "";
        long a, b;
        if (used + 2 >= tcap)
            goto full;
        if (i > 0)
            tmp[used++] = '&';
        a = s3_sigv4_uri_encode(pairs[i][0], strlen(pairs[i][0]), false, tmp + used, tcap - used);
        if (a < 0 || used + (size_t)a + 2 >= tcap)
            goto full;
        used += (size_t)a;
        tmp[used++] = '=';
        b = s3_sigv4_uri_encode(v, strlen(v), false, tmp + used, tcap - used);
        if (b < 0)
            goto full;
        used += (size_t)b;
    }
    tmp[used] = '\0';
    int rc = s3_sigv4_canonical_query(tmp, out, cap, err);
    free(tmp);
    return rc;
full:
    free(tmp);
    return serr_set(err, SERR_INVALID, "an S3 query is too long");
}

static void fill_info(const response *rs, s3_object_info *info)
{
    if (info == NULL)
        return;
    memset(info, 0, sizeof *info);
    info->size = rs->have_total ? rs->total : rs->content_length;
    info->mtime_ms = rs->mtime_ms;
    snprintf(info->etag, sizeof info->etag, "%s", rs->etag);
    info->n_meta = rs->n_meta;
    for (int i = 0; i < rs->n_meta; i++) {
        memcpy(info->meta_name[i], rs->meta_name[i], sizeof info->meta_name[i]);
        memcpy(info->meta_value[i], rs->meta_value[i], sizeof info->meta_value[i]);
    }
}

/* ---- operations ------------------------------------------------------------ */

int s3_check(s3_client *c, strata_error *err)
{
    char query[2048];
    const char *pairs[][2] = {{"list-type", "2"}, {"max-keys", "1"}, {"prefix", c->cfg.prefix}};
    if (build_query(pairs, 3, query, sizeof query, err) != 0)
        return -1;
    request rq = {.method = "GET", .op = "ListObjectsV2", .query = query};
    response rs;
    int rc = perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 200) {
        answer_error(&rq, &rs, err);
        if (err != NULL)
            err->kind = SERR_UNAVAILABLE; /* whatever it is, the bucket is not usable */
        rc = -1;
    }
    response_free(&rs);
    return rc;
}

int s3_put(s3_client *c, const char *key, const void *data, size_t len, const s3_put_opts *opts,
           char *etag_out, strata_error *err)
{
    char names[S3_META_MAX][80];
    request rq = {.method = "PUT",
                  .op = "PutObject",
                  .key = key,
                  .upload = true,
                  .body = data,
                  .body_len = len};
    if (etag_out != NULL)
        etag_out[0] = '\0';
    if (check_key(key, err) != 0 || add_opts(&rq, opts, true, names, err) != 0)
        return -1;
    if (data == NULL && len > 0)
        return serr_set(err, SERR_INVALID, "no bytes to put");
    response rs;
    int rc = perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 200)
        rc = answer_error(&rq, &rs, err);
    if (rc == 0 && etag_out != NULL)
        snprintf(etag_out, S3_ETAG_MAX, "%s", rs.etag);
    response_free(&rs);
    return rc;
}

int s3_head(s3_client *c, const char *key, s3_object_info *info, strata_error *err)
{
    if (check_key(key, err) != 0)
        return -1;
    request rq = {.method = "HEAD", .op = "HeadObject", .key = key};
    response rs;
    int rc = perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status == 200) {
        fill_info(&rs, info);
    } else if (rc == 0 && rs.status == 404) {
        rc = serr_set(err, SERR_NOT_FOUND, "S3 object %.120s not found", key);
    } else if (rc == 0) {
        /* HEAD answers carry no body: ask for one byte to learn the cause */
        strata_buf tmp;
        sbuf_init(&tmp, 1);
        request g = {.method = "GET",
                     .op = "HeadObject",
                     .key = key,
                     .sink = &tmp,
                     .sink_max = 1,
                     .ranged = true,
                     .off = 0,
                     .len = 1};
        g.extra[g.n_extra++] = (hdr){"Range", "bytes=0-0"};
        response gs;
        int grc = perform(c, &g, &gs, err);
        if (grc == 0 && (gs.status < 200 || gs.status >= 300) && gs.status != 416)
            rc = answer_error(&g, &gs, err);
        else if (grc == 0)
            rc = answer_error(&rq, &rs, err);
        else
            rc = -1;
        response_free(&gs);
        sbuf_free(&tmp);
    }
    response_free(&rs);
    return rc;
}

int s3_get(s3_client *c, const char *key, uint64_t offset, uint64_t len, size_t max_len,
           strata_buf *out, s3_object_info *info, strata_error *err)
{
    char range[64];
    if (check_key(key, err) != 0)
        return -1;
    if (out == NULL)
        return serr_set(err, SERR_INVALID, "s3_get needs a buffer");
    request rq = {.method = "GET", .op = "GetObject", .key = key, .sink = out, .sink_max = max_len};
    if (offset > 0 || len > 0) {
        if (len > 0 && offset > UINT64_MAX - len)
            len = UINT64_MAX - offset;
        if (len > 0)
            snprintf(range, sizeof range, "bytes=%" PRIu64 "-%" PRIu64, offset, offset + len - 1);
        else
            snprintf(range, sizeof range, "bytes=%" PRIu64 "-", offset);
        rq.extra[rq.n_extra++] = (hdr){"Range", range};
        rq.ranged = true;
        rq.off = offset;
        rq.len = len;
    }
    response rs;
    int rc = perform(c, &rq, &rs, err);
    if (rc == 0 && (rs.status == 200 || rs.status == 206)) {
        fill_info(&rs, info);
        if (info != NULL && !rs.have_len && !rs.have_total && !rq.ranged)
            info->size = out->len - rs.sink_start; /* chunked: what arrived is the whole */
    } else if (rc == 0 && rs.status == 416) {
        /* a range past the end: nothing to append; the size from a HEAD */
        rc = info != NULL ? s3_head(c, key, info, err) : 0;
    } else if (rc == 0) {
        rc = answer_error(&rq, &rs, err);
    }
    response_free(&rs);
    return rc;
}

static int delete_object(s3_client *c, const char *key, const char *if_match, strata_error *err)
{
    if (check_key(key, err) != 0)
        return -1;
    request rq = {.method = "DELETE", .op = "DeleteObject", .key = key};
    if (if_match != NULL) {
        if (if_match[0] == '\0' || strlen(if_match) >= S3_ETAG_MAX ||
            strpbrk(if_match, "\r\n") != NULL)
            return serr_set(err, SERR_INVALID, "a bad If-Match ETag");
        rq.extra[rq.n_extra++] = (hdr){"If-Match", if_match};
    }
    response rs;
    int rc = perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 204 && rs.status != 200) {
        parse_error_body(&rs);
        if (!(rs.status == 404 && (rs.code[0] == '\0' || strcmp(rs.code, "NoSuchKey") == 0)))
            rc = answer_error(&rq, &rs, err);
    }
    response_free(&rs);
    return rc;
}

int s3_delete(s3_client *c, const char *key, strata_error *err)
{
    return delete_object(c, key, NULL, err);
}

int s3_delete_if_match(s3_client *c, const char *key, const char *etag, strata_error *err)
{
    return delete_object(c, key, etag, err);
}

int s3_copy(s3_client *c, const char *src_key, const char *dst_key, bool replace_meta,
            const s3_put_opts *opts, strata_error *err)
{
    char names[S3_META_MAX][80];
    if (check_key(src_key, err) != 0 || check_key(dst_key, err) != 0)
        return -1;
    char raw[KEY_TOTAL_MAX + 80], source[3 * (KEY_TOTAL_MAX + 80) + 1];
    if (object_path(c, src_key, raw, sizeof raw, err) != 0)
        return -1;
    if (s3_sigv4_uri_encode(raw, strlen(raw), true, source, sizeof source) < 0)
        return serr_set(err, SERR_INVALID, "the copy source is too long");
    request rq = {
        .method = "PUT", .op = "CopyObject", .key = dst_key, .upload = true, .error_in_200 = true};
    rq.extra[rq.n_extra++] = (hdr){"x-amz-copy-source", source};
    rq.extra[rq.n_extra++] = (hdr){"x-amz-metadata-directive", replace_meta ? "REPLACE" : "COPY"};
    if (opts != NULL && (opts->if_none_match || opts->if_match != NULL)) {
        s3_put_opts cond = {.if_none_match = opts->if_none_match, .if_match = opts->if_match};
        if (add_opts(&rq, &cond, true, names, err) != 0)
            return -1;
    }
    if (replace_meta && opts != NULL) {
        s3_put_opts meta = *opts;
        meta.if_none_match = false;
        meta.if_match = NULL;
        if (add_opts(&rq, &meta, false, names, err) != 0)
            return -1;
    }
    response rs;
    int rc = perform(c, &rq, &rs, err);
    if (rc == 0 && (rs.status != 200 || rs.code[0] != '\0'))
        rc = answer_error(&rq, &rs, err);
    response_free(&rs);
    return rc;
}

/* A key from a listing made relative to the client's prefix; NULL when it
 * is not under it. */
static const char *relative(const s3_client *c, const char *full)
{
    size_t pl = strlen(c->cfg.prefix);
    return strncmp(full, c->cfg.prefix, pl) == 0 ? full + pl : NULL;
}

static int full_prefix(const s3_client *c, const char *key_prefix, char *out, size_t cap,
                       strata_error *err)
{
    int w = snprintf(out, cap, "%s%s", c->cfg.prefix, key_prefix != NULL ? key_prefix : "");
    if (w < 0 || (size_t)w >= cap || (size_t)w > KEY_TOTAL_MAX)
        return serr_set(err, SERR_INVALID, "an S3 listing prefix is too long");
    return 0;
}

int s3_list(s3_client *c, const char *key_prefix, s3_list_fn fn, void *ctx, strata_error *err)
{
    char prefix[KEY_TOTAL_MAX + 1], pagestr[16];
    char *token = malloc(TOKEN_MAX), *prev = malloc(TOKEN_MAX), *query = malloc(4 * TOKEN_MAX);
    char *key = malloc(KEY_TOTAL_MAX * 4 + 1);
    int rc = -1, page = c->cfg.list_page_size;
    if (token == NULL || prev == NULL || query == NULL || key == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory for an S3 listing");
        goto done;
    }
    if (full_prefix(c, key_prefix, prefix, sizeof prefix, err) != 0)
        goto done;
    token[0] = prev[0] = '\0';
    for (;;) {
        snprintf(pagestr, sizeof pagestr, "%d", page);
        const char *pairs[][2] = {{"list-type", "2"},
                                  {"max-keys", pagestr},
                                  {"prefix", prefix},
                                  {"continuation-token", token}};
        if (build_query(pairs, token[0] != '\0' ? 4 : 3, query, 4 * TOKEN_MAX, err) != 0)
            goto done;
        request rq = {
            .method = "GET", .op = "ListObjectsV2", .query = query, .body_cap = LIST_BODY_MAX};
        response rs;
        if (perform(c, &rq, &rs, err) != 0) {
            response_free(&rs);
            goto done;
        }
        if (rs.status != 200) {
            answer_error(&rq, &rs, err);
            response_free(&rs);
            goto done;
        }
        if (rs.overflow || rs.body == NULL) {
            response_free(&rs);
            if (rs.overflow && page > 1) {
                page = page / 4 > 0 ? page / 4 : 1; /* long keys: smaller pages */
                continue;
            }
            serr_set(err, rs.overflow ? SERR_TOO_LARGE : SERR_IO, "S3 ListObjectsV2 answered %s",
                     rs.overflow ? "more than 1 MiB" : "nothing");
            goto done;
        }
        const char *p = rs.body, *end = rs.body + rs.body_len, *t;
        size_t tl;
        bool stop = false;
        while (!stop && (p = xml_find(p, end, "Contents", &t, &tl)) != NULL) {
            char num[32];
            uint64_t size = 0;
            int64_t mtime = 0;
            if (xml_get(t, t + tl, "Key", key, KEY_TOTAL_MAX * 4 + 1) != 0) {
                serr_set(err, SERR_IO, "S3 ListObjectsV2: an entry without a readable Key");
                response_free(&rs);
                goto done;
            }
            if (xml_get(t, t + tl, "Size", num, sizeof num) == 0)
                parse_u64(num, strlen(num), &size);
            if (xml_get(t, t + tl, "LastModified", num, sizeof num) == 0)
                mtime = iso8601_ms(num);
            const char *rel = relative(c, key);
            if (rel != NULL && fn(ctx, rel, size, mtime) != 0)
                stop = true;
        }
        char trunc[8] = "";
        xml_get(rs.body, end, "IsTruncated", trunc, sizeof trunc);
        bool more = strcmp(trunc, "true") == 0;
        memcpy(prev, token, TOKEN_MAX);
        if (!stop && more &&
            xml_get(rs.body, end, "NextContinuationToken", token, TOKEN_MAX) != 0) {
            serr_set(err, SERR_IO, "S3 ListObjectsV2: truncated without a continuation token");
            response_free(&rs);
            goto done;
        }
        response_free(&rs);
        if (stop || !more)
            break;
        if (token[0] == '\0' || strcmp(token, prev) == 0) {
            serr_set(err, SERR_IO, "S3 ListObjectsV2 repeats its continuation token");
            goto done;
        }
    }
    rc = 0;
done:
    free(token);
    free(prev);
    free(query);
    free(key);
    return rc;
}

int s3_mpu_begin(s3_client *c, const char *key, const s3_put_opts *opts,
                 char upload_id[S3_UPLOAD_ID_MAX], strata_error *err)
{
    char names[S3_META_MAX][80];
    upload_id[0] = '\0';
    request rq = {.method = "POST",
                  .op = "CreateMultipartUpload",
                  .key = key,
                  .upload = true,
                  .query = "uploads="};
    if (check_key(key, err) != 0 || add_opts(&rq, opts, false, names, err) != 0)
        return -1;
    response rs;
    int rc = perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 200) {
        rc = answer_error(&rq, &rs, err);
    } else if (rc == 0) {
        if (rs.body == NULL ||
            xml_get(rs.body, rs.body + rs.body_len, "UploadId", upload_id, S3_UPLOAD_ID_MAX) != 0 ||
            upload_id[0] == '\0')
            rc = serr_set(err, SERR_IO, "S3 CreateMultipartUpload %.80s: no UploadId", key);
    }
    response_free(&rs);
    return rc;
}

static int upload_query(const char *upload_id, int part_no, char *out, size_t cap,
                        strata_error *err)
{
    char num[16];
    if (upload_id == NULL || upload_id[0] == '\0' || strlen(upload_id) >= S3_UPLOAD_ID_MAX)
        return serr_set(err, SERR_INVALID, "a bad multipart upload id");
    if (part_no > 0) {
        snprintf(num, sizeof num, "%d", part_no);
        const char *pairs[][2] = {{"partNumber", num}, {"uploadId", upload_id}};
        return build_query(pairs, 2, out, cap, err);
    }
    const char *pairs[][2] = {{"uploadId", upload_id}};
    return build_query(pairs, 1, out, cap, err);
}

int s3_mpu_part(s3_client *c, const char *key, const char *upload_id, int part_no, const void *data,
                size_t len, char etag_out[S3_ETAG_MAX], strata_error *err)
{
    char query[3 * S3_UPLOAD_ID_MAX + 64];
    etag_out[0] = '\0';
    if (check_key(key, err) != 0)
        return -1;
    if (part_no < 1 || part_no > PARTS_MAX)
        return serr_set(err, SERR_INVALID, "part number %d is not in 1..%d", part_no, PARTS_MAX);
    if (data == NULL && len > 0)
        return serr_set(err, SERR_INVALID, "no bytes for a part");
    if (upload_query(upload_id, part_no, query, sizeof query, err) != 0)
        return -1;
    request rq = {.method = "PUT",
                  .op = "UploadPart",
                  .key = key,
                  .query = query,
                  .upload = true,
                  .body = data,
                  .body_len = len};
    response rs;
    int rc = perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 200)
        rc = answer_error(&rq, &rs, err);
    else if (rc == 0 && rs.etag[0] == '\0')
        rc = serr_set(err, SERR_IO, "S3 UploadPart %.80s #%d: no ETag", key, part_no);
    if (rc == 0)
        snprintf(etag_out, S3_ETAG_MAX, "%s", rs.etag);
    response_free(&rs);
    return rc;
}

static int xml_escape_append(strata_buf *b, const char *s, strata_error *err)
{
    for (; *s != '\0'; s++) {
        const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : NULL;
        if (sbuf_append(b, e != NULL ? e : s, e != NULL ? strlen(e) : 1, err) != 0)
            return -1;
    }
    return 0;
}

int s3_mpu_complete(s3_client *c, const char *key, const char *upload_id, int n_parts,
                    char (*etags)[S3_ETAG_MAX], strata_error *err)
{
    char query[3 * S3_UPLOAD_ID_MAX + 64];
    if (check_key(key, err) != 0)
        return -1;
    if (n_parts < 1 || n_parts > PARTS_MAX || etags == NULL)
        return serr_set(err, SERR_INVALID, "%d parts to complete (1..%d)", n_parts, PARTS_MAX);
    if (upload_query(upload_id, 0, query, sizeof query, err) != 0)
        return -1;
    strata_buf body;
    sbuf_init(&body, (size_t)n_parts * (S3_ETAG_MAX * 2 + 80) + 128);
    char part[64];
    int rc = sbuf_append(&body, "<CompleteMultipartUpload>", 25, err);
    for (int i = 0; rc == 0 && i < n_parts; i++) {
        if (etags[i][0] == '\0' || memchr(etags[i], '\0', S3_ETAG_MAX) == NULL) {
            rc = serr_set(err, SERR_INVALID, "part %d has no ETag", i + 1);
            break;
        }
        int w = snprintf(part, sizeof part, "<Part><PartNumber>%d</PartNumber><ETag>", i + 1);
        rc = sbuf_append(&body, part, (size_t)w, err);
        if (rc == 0)
            rc = xml_escape_append(&body, etags[i], err);
        if (rc == 0)
            rc = sbuf_append(&body, "</ETag></Part>", 14, err);
    }
    if (rc == 0)
        rc = sbuf_append(&body, "</CompleteMultipartUpload>", 26, err);
    if (rc != 0) {
        sbuf_free(&body);
        return -1;
    }
    request rq = {.method = "POST",
                  .op = "CompleteMultipartUpload",
                  .key = key,
                  .query = query,
                  .upload = true,
                  .body = body.data,
                  .body_len = body.len,
                  .error_in_200 = true};
    rq.extra[rq.n_extra++] = (hdr){"Content-Type", "application/xml"};
    response rs;
    rc = perform(c, &rq, &rs, err);
    if (rc == 0 && (rs.status != 200 || rs.code[0] != '\0')) {
        if (rs.code[0] == '\0')
            parse_error_body(&rs);
        s3_object_info info;
        char suffix[24];
        snprintf(suffix, sizeof suffix, "-%d\"", n_parts);
        if (rs.attempts > 1 && strcmp(rs.code, "NoSuchUpload") == 0 &&
            s3_head(c, key, &info, NULL) == 0 &&
            (strchr(info.etag, '-') == NULL ||
             (strlen(info.etag) > strlen(suffix) &&
              strcmp(info.etag + strlen(info.etag) - strlen(suffix), suffix) == 0)))
            rc = 0; /* an earlier attempt completed it */
        else
            rc = answer_error(&rq, &rs, err);
    }
    response_free(&rs);
    sbuf_free(&body);
    return rc;
}

int s3_mpu_abort(s3_client *c, const char *key, const char *upload_id, strata_error *err)
{
    char query[3 * S3_UPLOAD_ID_MAX + 64];
    if (check_key(key, err) != 0 || upload_query(upload_id, 0, query, sizeof query, err) != 0)
        return -1;
    request rq = {.method = "DELETE", .op = "AbortMultipartUpload", .key = key, .query = query};
    response rs;
    int rc = perform(c, &rq, &rs, err);
    if (rc == 0 && rs.status != 204 && rs.status != 200) {
        parse_error_body(&rs);
        if (!(rs.attempts > 1 && strcmp(rs.code, "NoSuchUpload") == 0))
            rc = answer_error(&rq, &rs, err);
    }
    response_free(&rs);
    return rc;
}

int s3_mpu_list(s3_client *c, const char *key_prefix, s3_upload_fn fn, void *ctx, strata_error *err)
{
    char prefix[KEY_TOTAL_MAX + 1], pagestr[16];
    char *kmark = malloc(KEY_TOTAL_MAX * 4 + 1), *umark = malloc(S3_UPLOAD_ID_MAX);
    char *query = malloc(4 * TOKEN_MAX), *key = malloc(KEY_TOTAL_MAX * 4 + 1);
    char *prevk = malloc(KEY_TOTAL_MAX * 4 + 1), *prevu = malloc(S3_UPLOAD_ID_MAX);
    char id[S3_UPLOAD_ID_MAX], when[40];
    int rc = -1, page = c->cfg.list_page_size;
    if (kmark == NULL || umark == NULL || query == NULL || key == NULL || prevk == NULL ||
        prevu == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory for an S3 upload listing");
        goto done;
    }
    if (full_prefix(c, key_prefix, prefix, sizeof prefix, err) != 0)
        goto done;
    kmark[0] = umark[0] = '\0';
    for (;;) {
        snprintf(pagestr, sizeof pagestr, "%d", page);
        const char *pairs[][2] = {{"uploads", ""},
                                  {"max-uploads", pagestr},
                                  {"prefix", prefix},
                                  {"key-marker", kmark},
                                  {"upload-id-marker", umark}};
        int np = kmark[0] != '\0' ? (umark[0] != '\0' ? 5 : 4) : 3;
        if (build_query(pairs, np, query, 4 * TOKEN_MAX, err) != 0)
            goto done;
        request rq = {.method = "GET",
                      .op = "ListMultipartUploads",
                      .query = query,
                      .body_cap = LIST_BODY_MAX};
        response rs;
        if (perform(c, &rq, &rs, err) != 0) {
            response_free(&rs);
            goto done;
        }
        if (rs.status != 200) {
            answer_error(&rq, &rs, err);
            response_free(&rs);
            goto done;
        }
        if (rs.overflow || rs.body == NULL) {
            response_free(&rs);
            if (rs.overflow && page > 1) {
                page = page / 4 > 0 ? page / 4 : 1;
                continue;
            }
            serr_set(err, rs.overflow ? SERR_TOO_LARGE : SERR_IO,
                     "S3 ListMultipartUploads answered %s",
                     rs.overflow ? "more than 1 MiB" : "nothing");
            goto done;
        }
        const char *p = rs.body, *end = rs.body + rs.body_len, *t;
        size_t tl;
        bool stop = false;
        while (!stop && (p = xml_find(p, end, "Upload", &t, &tl)) != NULL) {
            if (xml_get(t, t + tl, "Key", key, KEY_TOTAL_MAX * 4 + 1) != 0 ||
                xml_get(t, t + tl, "UploadId", id, sizeof id) != 0) {
                serr_set(err, SERR_IO, "S3 ListMultipartUploads: an entry without Key/UploadId");
                response_free(&rs);
                goto done;
            }
            int64_t initiated = 0;
            if (xml_get(t, t + tl, "Initiated", when, sizeof when) == 0)
                initiated = iso8601_ms(when);
            const char *rel = relative(c, key);
            if (rel != NULL && fn(ctx, rel, id, initiated) != 0)
                stop = true;
        }
        char trunc[8] = "";
        xml_get(rs.body, end, "IsTruncated", trunc, sizeof trunc);
        bool more = strcmp(trunc, "true") == 0;
        memcpy(prevk, kmark, strlen(kmark) + 1);
        memcpy(prevu, umark, strlen(umark) + 1);
        if (!stop && more) {
            if (xml_get(rs.body, end, "NextKeyMarker", kmark, KEY_TOTAL_MAX * 4 + 1) != 0)
                kmark[0] = '\0';
            if (xml_get(rs.body, end, "NextUploadIdMarker", umark, S3_UPLOAD_ID_MAX) != 0)
                umark[0] = '\0';
        }
        response_free(&rs);
        if (stop || !more)
            break;
        if (kmark[0] == '\0' || (strcmp(kmark, prevk) == 0 && strcmp(umark, prevu) == 0)) {
            serr_set(err, SERR_IO, "S3 ListMultipartUploads: truncated without a new marker");
            goto done;
        }
    }
    rc = 0;
done:
    free(kmark);
    free(umark);
    free(query);
    free(key);
    free(prevk);
    free(prevu);
    return rc;
}
