/* Sending one S3 request (s3_request.h): the client and its pool of curl
 * handles, signing (s3_sigv4.h), retries with backoff, and the deadline.
 * Requests go path-style: ENDPOINT/BUCKET/PREFIXKEY.
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
#include "s3_request.h"
#include "s3_config.h"
#include "s3_sigv4.h"

#include <openssl/crypto.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POOL_MAX        64          /* idle easy handles kept per client */
#define ERR_BODY_MAX    (64u << 10) /* an error body or a small XML answer */
#define DEFAULT_PAGE    1000        /* keys per listing page: S3's most, and the default */
#define CONNECT_MAX_MS  10000
#define BACKOFF_BASE_MS 100

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
    if (cfg == NULL || !s3_bucket_valid(cfg->bucket) || cfg->region[0] == '\0' ||
        cfg->access_key[0] == '\0' || cfg->secret_key[0] == '\0') {
        serr_set(err, SERR_INVALID, "an S3 configuration needs a bucket, a region, credentials");
        return NULL;
    }
    if (!printable(cfg->access_key) || !printable(cfg->secret_key) ||
        !printable(cfg->session_token) || strlen(cfg->prefix) > S3_KEY_TOTAL_MAX - S3_KEY_MAX) {
        serr_set(err, SERR_INVALID, "the S3 credentials or prefix hold bad bytes or are too long");
        return NULL;
    }
    s3_client *c = calloc(1, sizeof *c);
    if (c == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory for an S3 client");
        return NULL;
    }
    c->cfg = *cfg;
    if (s3_endpoint_check(c->cfg.endpoint, c->host, sizeof c->host, err) != 0) {
        free(c);
        return NULL;
    }
    size_t plen = strlen(c->cfg.prefix);
    if (plen > 0 && c->cfg.prefix[plen - 1] != '/') {
        if (plen + 1 >= sizeof c->cfg.prefix || plen + 1 > S3_KEY_TOTAL_MAX - S3_KEY_MAX) {
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

/* ---- sending ---------------------------------------------------------------- */

/* An upload's bytes: the caller's, read in place (and re-read from the
 * start when curl rewinds to resend). */
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
static CURLcode attempt(s3_client *c, const s3_request *rq, s3_response *rs, const char *path,
                        const char *hash, long timeout_ms, bool *local, strata_error *err)
{
    char date[S3_SIGV4_DATE_LEN + 1];
    char auth[S3_SIGV4_AUTH_MAX];
    s3_sigv4_header hs[S3_SIGNED_MAX];
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
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, s3_response_on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, rs);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, s3_response_on_body);
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

int s3_perform(s3_client *c, const s3_request *rq, s3_response *rs, strata_error *err)
{
    char *path = NULL, hash[S3_SIGV4_HASH_HEX + 1];
    size_t path_cap =
        strlen(c->cfg.bucket) + strlen(c->cfg.prefix) + (rq->key != NULL ? strlen(rq->key) : 0) + 4;
    memset(rs, 0, sizeof *rs);
    rs->body_cap = rq->body_cap > 0 ? rq->body_cap : ERR_BODY_MAX;
    path = malloc(path_cap);
    if (path == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory for an S3 request");
    if (s3_object_path(c, rq->key, path, path_cap, err) != 0) {
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
        s3_response_start(rs, rq);
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
                s3_parse_error_body(rs);
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

/* ---- request parts --------------------------------------------------------- */

int s3_object_path(const s3_client *c, const char *key, char *out, size_t cap, strata_error *err)
{
    int w = key != NULL ? snprintf(out, cap, "/%s/%s%s", c->cfg.bucket, c->cfg.prefix, key)
                        : snprintf(out, cap, "/%s", c->cfg.bucket);
    if (w < 0 || (size_t)w >= cap)
        return serr_set(err, SERR_INVALID, "an S3 key is too long");
    return 0;
}

int s3_build_query(const char *const pairs[][2], int n, char *out, size_t cap, strata_error *err)
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
