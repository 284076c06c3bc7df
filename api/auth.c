#include "auth.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../src/codec/sha256.h"

#define AUTH_FILE_MAX   (16u << 20) /* bytes of a token file */
#define AUTH_LINE_MAX   4096
#define AUTH_TOKENS_MAX 100000

typedef struct auth_entry {
    unsigned char hash[SHA256_LEN];
    unsigned scopes;
    char name[AUTH_NAME_MAX + 1];
} auth_entry;

struct auth_table {
    atomic_long refs;
    size_t n;
    auth_entry entries[];
};

struct auth {
    bool enabled;
    char path[1024];
    pthread_mutex_t lock; /* guards `current` and taking a reference to it */
    auth_table *current;
    atomic_ullong refused_unauthenticated;
    atomic_ullong refused_forbidden;
    atomic_ullong reloads_ok;
    atomic_ullong reloads_failed;
};

/* ---- policy ------------------------------------------------------------ */

enum auth_need auth_need_for(const route *rt, int method, bool metrics_open)
{
    if (rt == NULL)
        return AUTH_NEED_TOKEN;
    const char *p = rt->pattern;
    if (strcmp(p, "/health") == 0 || strcmp(p, "/ready") == 0 || strcmp(p, "/openapi.yaml") == 0)
        return AUTH_NEED_NONE;
    if (strcmp(p, "/metrics") == 0)
        return metrics_open ? AUTH_NEED_NONE : AUTH_NEED_READ;
    if (strncmp(p, "/admin/", 7) == 0 || strcmp(p, "/{type}/{id}/cleanup") == 0)
        return AUTH_NEED_ADMIN;
    if (method == HTTP_GET || method == HTTP_HEAD)
        return AUTH_NEED_READ;
    return AUTH_NEED_WRITE;
}

const char *auth_need_name(enum auth_need need)
{
    switch (need) {
    case AUTH_NEED_READ:
        return "read";
    case AUTH_NEED_WRITE:
        return "write";
    case AUTH_NEED_ADMIN:
        return "admin";
    case AUTH_NEED_NONE:
    case AUTH_NEED_TOKEN:
        break;
    }
    return "";
}

static unsigned need_scope(enum auth_need need)
{
    switch (need) {
    case AUTH_NEED_READ:
        return AUTH_SCOPE_READ;
    case AUTH_NEED_WRITE:
        return AUTH_SCOPE_WRITE;
    case AUTH_NEED_ADMIN:
        return AUTH_SCOPE_ADMIN;
    case AUTH_NEED_NONE:
    case AUTH_NEED_TOKEN:
        break;
    }
    return 0;
}

/* ---- the token file ---------------------------------------------------- */

static bool name_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '.' ||
           c == '_' || c == '-' || c == '@' || c == ':';
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* Splits a line into at most 4 whitespace-separated fields, stopping at a
 * field that starts with '#'. Returns the count (4 means "too many"). */
static int split_fields(char *line, char *fields[4])
{
    int n = 0;
    char *p = line;
    for (;;) {
        while (is_space(*p))
            p++;
        if (*p == '\0' || *p == '#')
            return n;
        if (n == 4)
            return 4;
        fields[n++] = p;
        while (*p != '\0' && !is_space(*p))
            p++;
        if (*p == '\0')
            return n;
        *p++ = '\0';
    }
}

static int parse_scopes(char *s, unsigned *out)
{
    unsigned scopes = 0;
    for (char *save = NULL, *tok = strtok_r(s, ",", &save); tok != NULL;
         tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "read") == 0)
            scopes |= AUTH_SCOPE_READ;
        else if (strcmp(tok, "write") == 0)
            scopes |= AUTH_SCOPE_WRITE;
        else if (strcmp(tok, "admin") == 0)
            scopes |= AUTH_SCOPE_ADMIN;
        else
            return -1;
    }
    *out = scopes;
    return scopes != 0 ? 0 : -1;
}

static int parse_line(char *line, const char *source, int lineno, auth_entry *e, strata_error *err)
{
    char *f[4];
    int n = split_fields(line, f);
    if (n == 0)
        return 1; /* blank or comment */
    if (n != 3)
        return serr_set(err, SERR_INVALID,
                        "%s:%d: expected 3 fields, 'sha256:<hex> <scopes> <name>', found %s",
                        source, lineno,
                        n > 3    ? "more"
                        : n == 1 ? "1"
                                 : "2");
    if (strncasecmp(f[0], "sha256:", 7) != 0 || strlen(f[0] + 7) != SHA256_HEX_LEN ||
        sha256_from_hex(f[0] + 7, e->hash) != 0)
        return serr_set(err, SERR_INVALID,
                        "%s:%d: the hash must be 'sha256:' and 64 hex digits (the token itself "
                        "is never stored; see strata --hash-token)",
                        source, lineno);
    /* the scope text is echoed: keep it short and printable */
    char scope_text[64];
    snprintf(scope_text, sizeof scope_text, "%s", f[1]);
    for (char *c = scope_text; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            *c = '?';
    if (parse_scopes(f[1], &e->scopes) != 0)
        return serr_set(err, SERR_INVALID,
                        "%s:%d: scopes '%s' are not a comma-separated list of read, write and "
                        "admin",
                        source, lineno, scope_text);
    size_t nlen = strlen(f[2]);
    bool ok = nlen >= 1 && nlen <= AUTH_NAME_MAX;
    for (size_t i = 0; ok && i < nlen; i++)
        ok = name_char(f[2][i]);
    if (!ok)
        return serr_set(err, SERR_INVALID,
                        "%s:%d: the name must be 1-%d of A-Z a-z 0-9 . _ - @ :", source, lineno,
                        AUTH_NAME_MAX);
    memcpy(e->name, f[2], nlen + 1);
    return 0;
}

int auth_table_parse(const char *text, size_t len, const char *source, auth_table **out,
                     strata_error *err)
{
    *out = NULL;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    if (lines > AUTH_TOKENS_MAX * 4)
        return serr_set(err, SERR_INVALID, "%s: too many lines", source);
    size_t cap = lines < AUTH_TOKENS_MAX ? lines : AUTH_TOKENS_MAX;
    auth_table *t = calloc(1, sizeof *t + cap * sizeof(auth_entry));
    if (t == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory reading %s", source);
    atomic_init(&t->refs, 1);
    char line[AUTH_LINE_MAX + 1];
    size_t pos = 0;
    int lineno = 0;
    while (pos < len) {
        lineno++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t llen = nl ? (size_t)(nl - (text + pos)) : len - pos;
        if (llen > AUTH_LINE_MAX) {
            serr_set(err, SERR_INVALID, "%s:%d: line longer than %d bytes", source, lineno,
                     AUTH_LINE_MAX);
            goto fail;
        }
        if (memchr(text + pos, '\0', llen) != NULL) {
            serr_set(err, SERR_INVALID, "%s:%d: the line holds a NUL byte", source, lineno);
            goto fail;
        }
        memcpy(line, text + pos, llen);
        line[llen] = '\0';
        pos += llen + (nl ? 1 : 0);
        if (t->n == cap) {
            serr_set(err, SERR_INVALID, "%s:%d: more than %d tokens", source, lineno,
                     AUTH_TOKENS_MAX);
            goto fail;
        }
        auth_entry *e = &t->entries[t->n];
        int rc = parse_line(line, source, lineno, e, err);
        if (rc < 0)
            goto fail;
        if (rc > 0)
            continue;
        for (size_t i = 0; i < t->n; i++) {
            if (memcmp(t->entries[i].hash, e->hash, SHA256_LEN) == 0) {
                serr_set(err, SERR_INVALID, "%s:%d: the same hash as token '%s'", source, lineno,
                         t->entries[i].name);
                goto fail;
            }
            if (strcmp(t->entries[i].name, e->name) == 0) {
                serr_set(err, SERR_INVALID, "%s:%d: the name '%s' is already taken", source, lineno,
                         e->name);
                goto fail;
            }
        }
        t->n++;
    }
    *out = t;
    return 0;
fail:
    free(t);
    return -1;
}

size_t auth_table_count(const auth_table *t)
{
    return t ? t->n : 0;
}

void auth_table_free(auth_table *t)
{
    free(t);
}

static void table_release(auth_table *t)
{
    if (t != NULL && atomic_fetch_sub(&t->refs, 1) == 1)
        free(t);
}

static auth_table *table_acquire(auth *a)
{
    pthread_mutex_lock(&a->lock);
    auth_table *t = a->current;
    if (t != NULL)
        atomic_fetch_add(&t->refs, 1);
    pthread_mutex_unlock(&a->lock);
    return t;
}

static int load_table(const char *path, auth_table **out, strata_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return serr_set(err, SERR_INVALID, "--auth-tokens %s: %s", path, strerror(errno));
    char *text = malloc(AUTH_FILE_MAX + 1);
    if (text == NULL) {
        fclose(f);
        return serr_set(err, SERR_NOMEM, "out of memory reading %s", path);
    }
    size_t len = fread(text, 1, AUTH_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    int rc;
    if (bad)
        rc = serr_set(err, SERR_INVALID, "--auth-tokens %s: read error", path);
    else if (len > AUTH_FILE_MAX)
        rc = serr_set(err, SERR_INVALID, "--auth-tokens %s: larger than %u bytes", path,
                      AUTH_FILE_MAX);
    else {
        char source[1100];
        snprintf(source, sizeof source, "--auth-tokens %s", path);
        rc = auth_table_parse(text, len, source, out, err);
    }
    free(text);
    return rc;
}

/* ---- the state --------------------------------------------------------- */

auth *auth_open(const char *path, strata_error *err)
{
    auth *a = calloc(1, sizeof *a);
    if (a == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    if (pthread_mutex_init(&a->lock, NULL) != 0) {
        free(a);
        serr_set(err, SERR_NOMEM, "cannot create a mutex");
        return NULL;
    }
    if (path == NULL || path[0] == '\0')
        return a;
    if (strlen(path) >= sizeof a->path) {
        serr_set(err, SERR_INVALID, "--auth-tokens: path too long");
        auth_close(a);
        return NULL;
    }
    snprintf(a->path, sizeof a->path, "%s", path);
    if (load_table(a->path, &a->current, err) != 0) {
        auth_close(a);
        return NULL;
    }
    a->enabled = true;
    return a;
}

void auth_close(auth *a)
{
    if (a == NULL)
        return;
    table_release(a->current);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

bool auth_enabled(const auth *a)
{
    return a != NULL && a->enabled;
}

size_t auth_token_count(auth *a)
{
    if (!auth_enabled(a))
        return 0;
    auth_table *t = table_acquire(a);
    size_t n = auth_table_count(t);
    table_release(t);
    return n;
}

int auth_reload(auth *a, strata_error *err)
{
    if (!auth_enabled(a))
        return 0;
    auth_table *t = NULL;
    if (load_table(a->path, &t, err) != 0) {
        atomic_fetch_add(&a->reloads_failed, 1);
        return -1;
    }
    pthread_mutex_lock(&a->lock);
    auth_table *old = a->current;
    a->current = t;
    pthread_mutex_unlock(&a->lock);
    table_release(old);
    atomic_fetch_add(&a->reloads_ok, 1);
    return 0;
}

/* ---- decisions --------------------------------------------------------- */

static bool token_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

/* RFC 6750 b64token: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=" */
static bool valid_token(const char *t, size_t len)
{
    size_t i = 0;
    while (i < len && token_char(t[i]))
        i++;
    if (i == 0)
        return false;
    while (i < len && t[i] == '=')
        i++;
    return i == len;
}

int auth_hash_token(const char *token, size_t len, char *out, size_t cap, strata_error *err)
{
    if (len == 0 || len > AUTH_TOKEN_MAX || !valid_token(token, len))
        return serr_set(err, SERR_INVALID,
                        "a token is 1-%d characters of A-Z a-z 0-9 - . _ ~ + / (then any '=')",
                        AUTH_TOKEN_MAX);
    if (cap < 8 + SHA256_HEX_LEN)
        return serr_set(err, SERR_INTERNAL, "output buffer too small");
    unsigned char digest[SHA256_LEN];
    if (sha256_oneshot(token, len, digest, err) != 0)
        return -1;
    memcpy(out, "sha256:", 7);
    sha256_to_hex(digest, out + 7);
    return 0;
}

static void refuse(auth *a, auth_result *out, int status, const char *detail)
{
    out->status = status;
    out->slug = status == 401 ? "unauthenticated" : status == 403 ? "forbidden" : "unavailable";
    snprintf(out->detail, sizeof out->detail, "%s", detail);
    if (status == 401)
        atomic_fetch_add_explicit(&a->refused_unauthenticated, 1, memory_order_relaxed);
    else if (status == 403)
        atomic_fetch_add_explicit(&a->refused_forbidden, 1, memory_order_relaxed);
}

void auth_check(auth *a, enum auth_need need, const char *authz, int nauth, auth_result *out)
{
    memset(out, 0, sizeof *out);
    if (!auth_enabled(a) || need == AUTH_NEED_NONE)
        return;
    if (nauth == 0 || authz == NULL) {
        refuse(a, out, 401, "this request needs a bearer token (Authorization: Bearer TOKEN)");
        return;
    }
    if (nauth > 1) {
        refuse(a, out, 401, "the request has more than one Authorization header");
        return;
    }
    const char *p = authz;
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t')) {
        refuse(a, out, 401, "the Authorization header must be 'Bearer TOKEN'");
        return;
    }
    p += 6;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t len = strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t'))
        len--;
    if (len == 0 || len > AUTH_TOKEN_MAX || !valid_token(p, len)) {
        refuse(a, out, 401, "the bearer token is not well-formed");
        return;
    }
    unsigned char digest[SHA256_LEN];
    strata_error err;
    if (sha256_oneshot(p, len, digest, &err) != 0) {
        refuse(a, out, 503, "cannot check the token now; retry");
        return;
    }
    auth_table *t = table_acquire(a);
    const auth_entry *found = NULL;
    /* every entry is compared, in constant time each */
    for (size_t i = 0; t != NULL && i < t->n; i++)
        if (CRYPTO_memcmp(t->entries[i].hash, digest, SHA256_LEN) == 0)
            found = &t->entries[i];
    unsigned scopes = found ? found->scopes : 0;
    if (found)
        snprintf(out->name, sizeof out->name, "%s", found->name);
    table_release(t);
    if (found == NULL) {
        refuse(a, out, 401, "the bearer token is not known");
        return;
    }
    unsigned want = need_scope(need);
    if (want != 0 && (scopes & want) == 0) {
        char detail[96];
        snprintf(detail, sizeof detail, "the token lacks the '%s' scope this request needs",
                 auth_need_name(need));
        refuse(a, out, 403, detail);
    }
}

int auth_metrics_render(auth *a, strata_buf *out, strata_error *err)
{
    char text[1024];
    int n = snprintf(
        text, sizeof text,
        "# HELP strata_auth_refused_total Requests refused by access control.\n"
        "# TYPE strata_auth_refused_total counter\n"
        "strata_auth_refused_total{reason=\"unauthenticated\"} %llu\n"
        "strata_auth_refused_total{reason=\"forbidden\"} %llu\n"
        "# HELP strata_auth_tokens Tokens in the current token table (0 without --auth-tokens).\n"
        "# TYPE strata_auth_tokens gauge\n"
        "strata_auth_tokens %zu\n"
        "# HELP strata_auth_reloads_total Token file reloads (SIGHUP) by result.\n"
        "# TYPE strata_auth_reloads_total counter\n"
        "strata_auth_reloads_total{result=\"ok\"} %llu\n"
        "strata_auth_reloads_total{result=\"failed\"} %llu\n",
        (unsigned long long)atomic_load(&a->refused_unauthenticated),
        (unsigned long long)atomic_load(&a->refused_forbidden), auth_token_count(a),
        (unsigned long long)atomic_load(&a->reloads_ok),
        (unsigned long long)atomic_load(&a->reloads_failed));
    if (n < 0 || (size_t)n >= sizeof text)
        return serr_set(err, SERR_INTERNAL, "auth metrics formatting failed");
    return sbuf_append(out, text, (size_t)n, err);
}
