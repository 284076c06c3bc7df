/* Access control over real HTTP: bearer tokens with scopes from a token
 * file, every documented route with no token and with tokens of each
 * scope, refusals that change nothing and read no body, metrics, the
 * access log, and reloads on SIGHUP under load. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../api/auth.h"
#include "../../api/request.h"
#include "../../src/codec/sha256.h"
#include "../support/harness.h"

/* Tokens: their bytes are what clients send; the file holds hashes. */
#define TOK_SETUP    "setup-0123456789abcdef0123456789abcdef"
#define TOK_OBSERVER "observer-0123456789abcdef0123456789abcd"
#define TOK_READ     "reader-0123456789abcdef0123456789abcdef"
#define TOK_WRITE    "writer-0123456789abcdef0123456789abcdef"
#define TOK_ADMIN    "admin-0123456789abcdef0123456789abcdef0"
#define TOK_DOOMED   "doomed-0123456789abcdef0123456789abcdef"
#define TOK_UNKNOWN  "unknown-0123456789abcdef0123456789abcde"

typedef struct token_line {
    const char *token, *scopes, *name;
} token_line;

static const token_line BASE_TOKENS[] = {
    {TOK_SETUP, "read,write,admin", "setup"},
    {TOK_OBSERVER, "read,admin", "observer"},
    {TOK_READ, "read", "reader"},
    {TOK_WRITE, "write", "writer"},
    {TOK_ADMIN, "admin", "admin-only"},
    {TOK_DOOMED, "read", "doomed"},
};
#define N_BASE (sizeof BASE_TOKENS / sizeof BASE_TOKENS[0])

static test_server S;
static char tokens_path[300];
static char access_path[300];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void hash_line(const token_line *t, char *out, size_t cap)
{
    unsigned char d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    ck_assert_int_eq(sha256_oneshot(t->token, strlen(t->token), d, NULL), 0);
    sha256_to_hex(d, hex);
    snprintf(out, cap, "sha256:%s %s %s\n", hex, t->scopes, t->name);
}

/* Writes a token file the way an operator should: a new file renamed
 * over the old one, so a reload never sees half of it. */
static void write_tokens_raw(const char *path, const char *text)
{
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(rename(tmp, path), 0);
}

static void write_tokens(const char *path, const token_line *lines, size_t n,
                         const token_line *extra, size_t nextra)
{
    static char text[16384];
    size_t len = (size_t)snprintf(text, sizeof text, "# strata test tokens\n\n");
    for (size_t i = 0; i < n + nextra; i++) {
        char line[256];
        hash_line(i < n ? &lines[i] : &extra[i - n], line, sizeof line);
        len += (size_t)snprintf(text + len, sizeof text - len, "%s", line);
    }
    write_tokens_raw(path, text);
}

static void start_with(test_server *s, const char *const *more)
{
    const char *args[24];
    int n = 0;
    args[n++] = "--auth-tokens";
    args[n++] = tokens_path;
    for (int i = 0; more && more[i]; i++)
        args[n++] = more[i];
    args[n] = NULL;
    ck_assert_int_eq(server_start(s, args), 0);
}

static void setup_files(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(tokens_path, sizeof tokens_path, "%s/strata-auth-tokens-%d", tmp ? tmp : "/tmp",
             (int)getpid());
    snprintf(access_path, sizeof access_path, "%s/strata-auth-access-%d.log", tmp ? tmp : "/tmp",
             (int)getpid());
    write_tokens(tokens_path, BASE_TOKENS, N_BASE, NULL, 0);
}

static void start_shared(void)
{
    setup_files();
    const char *more[] = {"--gc-grace",   "0",         "--retention", "dictionary:keep=2",
                          "--access-log", access_path, NULL};
    start_with(&S, more);
}

static void stop_shared(void)
{
    int code = server_stop(&S, 20);
    server_cleanup(&S);
    unlink(tokens_path);
    unlink(access_path);
    if (code != 0) {
        fprintf(stderr, "shared server exited with %d\n", code);
        exit(1);
    }
}

/* One request with a bearer token (NULL: none) and an optional body. */
static long call_as(const test_server *s, const char *token, const char *method, const char *path,
                    const char *ctype, const char *body, http_resp *out)
{
    char authz[256], ct[128];
    const char *h[4];
    int n = 0;
    if (token) {
        snprintf(authz, sizeof authz, "Authorization: Bearer %s", token);
        h[n++] = authz;
    }
    if (ctype) {
        snprintf(ct, sizeof ct, "Content-Type: %s", ctype);
        h[n++] = ct;
    }
    h[n] = NULL;
    http_resp r;
    if (http_do(s, method, path, h, body, body ? strlen(body) : 0, &r) != 0)
        return -1;
    long status = r.status;
    if (out)
        *out = r;
    else
        http_resp_free(&r);
    return status;
}

static void must(const char *token, const char *method, const char *path, const char *body,
                 long want)
{
    http_resp r;
    long st = call_as(&S, token, method, path, body ? "application/json" : NULL, body, &r);
    ck_assert_msg(st == want, "%s %s: %ld (want %ld) %.300s", method, path, st, want,
                  st >= 0 ? r.body : "");
    if (st >= 0)
        http_resp_free(&r);
}

static void assert_problem(const http_resp *r, long status)
{
    char ct[128];
    ck_assert_int_eq(r->status, status);
    ck_assert_int_eq(http_header(r, "Content-Type", ct, sizeof ct), 0);
    ck_assert_str_eq(ct, "application/problem+json");
    json_t *j = json_loadb(r->body, r->body_len, 0, NULL);
    ck_assert_msg(j != NULL, "not JSON: %.200s", r->body);
    ck_assert_int_eq(json_integer_value(json_object_get(j, "status")), status);
    ck_assert_str_eq(json_string_value(json_object_get(j, "type")),
                     status == 401 ? "urn:strata:problem:unauthenticated"
                                   : "urn:strata:problem:forbidden");
    ck_assert(strlen(json_string_value(json_object_get(j, "detail"))) > 0);
    json_decref(j);
}

/* ---- the route table ----------------------------------------------------- */

#define JSON_SAVE_DICT "{\"content\": 1, \"word\": \"w\", \"provider\": \"p\"}"
#define JSON_SAVE_CORPUS                                                                           \
    "{\"content\": {\"words\": [\"x\"]}, \"corpus_type\": \"language\", \"language\": \"en\"}"
#define JSON_SAVE_SEM                                                                              \
    "{\"content\": 1, \"corpus_id\": \"kid1\", \"model_name\": \"m\", \"embedding_dimension\": "   \
    "2, \"corpus_version\": \"1.0.0\"}"
#define JSON_SAVE_LIT "{\"content\": 1, \"title\": \"t\", \"authors\": [\"a\"], \"source\": \"s\"}"
#define JSON_SAVE_TRIE                                                                             \
    "{\"content\": 1, \"corpus_ids\": [\"kid1\"], \"node_count\": 1, \"max_depth\": 1}"
#define JSON_SAVE_SEARCH "{\"content\": {\"q\": 1}, \"corpus_id\": \"kid1\"}"

#define BIG_CONTENT_BYTES (80 * 1024) /* past the 64K inline threshold: a blob */

static void fixture(void)
{
    const char *T = TOK_SETUP;
    char body[512];
    for (int i = 1; i <= 3; i++) {
        snprintf(body, sizeof body, "{\"content\": %d, \"word\": \"apple\", \"provider\": \"p\"}",
                 i);
        must(T, "POST", "/dictionary/apple/versions", body, 201);
    }
    for (int i = 1; i <= 4; i++) {
        snprintf(body, sizeof body, "{\"content\": %d, \"word\": \"pear\", \"provider\": \"p\"}",
                 i);
        must(T, "POST", "/dictionary/pear/versions", body, 201);
    }
    for (int i = 1; i <= 2; i++) {
        snprintf(body, sizeof body, "{\"content\": %d, \"word\": \"plum\", \"provider\": \"p\"}",
                 i);
        must(T, "POST", "/dictionary/plum/versions", body, 201);
    }
    must(T, "POST", "/dictionary/gone-1/versions",
         "{\"content\": 1, \"word\": \"gone\", \"provider\": \"p\"}", 201);
    /* a blob that no version references once 1.0.0 is deleted */
    size_t blen = BIG_CONTENT_BYTES + 64;
    char *big = malloc(blen);
    ck_assert_ptr_nonnull(big);
    int n = snprintf(big, blen, "{\"content\": \"");
    memset(big + n, 'x', BIG_CONTENT_BYTES);
    snprintf(big + n + BIG_CONTENT_BYTES, blen - (size_t)n - BIG_CONTENT_BYTES,
             "\", \"word\": \"blobby\", \"provider\": \"p\"}");
    must(T, "POST", "/dictionary/blobby/versions", big, 201);
    free(big);
    must(T, "POST", "/dictionary/blobby/versions",
         "{\"content\": 2, \"word\": \"blobby\", \"provider\": \"p\"}", 201);
    must(T, "DELETE", "/dictionary/blobby/versions/1.0.0", NULL, 204);
    /* corpora, a tree, and a trie that depends on a child */
    const char *kids[] = {"kid1", "kid2", "kid3"};
    for (int i = 0; i < 3; i++) {
        char path[64];
        snprintf(body, sizeof body,
                 "{\"content\": {\"words\": [\"w%d\", \"shared\"]}, \"corpus_type\": "
                 "\"language\", \"language\": \"en\"}",
                 i);
        snprintf(path, sizeof path, "/corpus/%s/versions", kids[i]);
        must(T, "POST", path, body, 201);
    }
    must(T, "POST", "/trees",
         "{\"master\": \"english\", \"language\": \"en\", \"children\": [\"kid1\"]}", 201);
    must(T, "POST", "/trie/auth-trie/versions",
         "{\"content\": 1, \"corpus_ids\": [\"kid1\"], \"node_count\": 1, \"max_depth\": 1, "
         "\"dependencies\": [{\"type\": \"corpus\", \"id\": \"kid1\"}]}",
         201);
    must(T, "POST", "/semantic/sem1/versions", JSON_SAVE_SEM, 201);
    must(T, "POST", "/literature/lit1/versions", JSON_SAVE_LIT, 201);
    must(T, "POST", "/search/srch1/versions", JSON_SAVE_SEARCH, 201);
    must(T, "PUT", "/cache/authns/k1", "{\"v\": 1}", 201);
    must(T, "PUT", "/cache/authns/k2", "{\"v\": 2}", 201);
}

static void fp_add(strata_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fp_add(strata_buf *b, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    ck_assert_int_eq(
        sbuf_append(b, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1, NULL), 0);
}

/* Everything a write could change, read with the observer's token:
 * every resource of every type with its versions and staleness, the
 * trees, the cache entries, and what retention and the blob collector
 * would remove. Volatile fields (access counts) are left out. */
static char *fingerprint(void)
{
    static const char *const TYPES[] = {"dictionary", "corpus", "semantic",
                                        "literature", "trie",   "search"};
    strata_buf b;
    sbuf_init(&b, 0);
    http_resp r;
    for (size_t t = 0; t < 6; t++) {
        char path[256];
        snprintf(path, sizeof path, "/%s?limit=1000", TYPES[t]);
        ck_assert_int_eq(call_as(&S, TOK_OBSERVER, "GET", path, NULL, NULL, &r), 200);
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        http_resp_free(&r);
        size_t i;
        json_t *it;
        json_array_foreach(json_object_get(j, "items"), i, it)
        {
            const char *id = json_string_value(json_object_get(it, "resource_id"));
            json_t *vi = json_object_get(it, "version_info");
            fp_add(&b, "%s/%s latest=%s stale=%d hash=%s versions=", TYPES[t], id,
                   json_string_value(json_object_get(vi, "version")),
                   json_is_true(json_object_get(it, "stale")),
                   json_string_value(json_object_get(vi, "data_hash")));
            snprintf(path, sizeof path, "/%s/%s/versions?limit=1000", TYPES[t], id);
            ck_assert_int_eq(call_as(&S, TOK_OBSERVER, "GET", path, NULL, NULL, &r), 200);
            json_t *vs = json_loadb(r.body, r.body_len, 0, NULL);
            http_resp_free(&r);
            size_t k;
            json_t *v;
            json_array_foreach(json_object_get(vs, "items"), k, v)
            {
                json_t *info = json_object_get(v, "version_info");
                fp_add(&b, "%s,", json_string_value(json_object_get(info, "version")));
            }
            json_decref(vs);
            fp_add(&b, "\n");
        }
        json_decref(j);
    }
    static const char *const READS[] = {"/trees/english/children", "/trees/auth-master",
                                        "/cache/authns/k1",        "/cache/authns/k2",
                                        "/cache/authns/k3",        "/cache/default/k"};
    for (size_t i = 0; i < sizeof READS / sizeof READS[0]; i++) {
        long st = call_as(&S, TOK_OBSERVER, "GET", READS[i], NULL, NULL, &r);
        fp_add(&b, "%s %ld %.400s\n", READS[i], st, st == 200 ? r.body : "");
        http_resp_free(&r);
    }
    ck_assert_int_eq(call_as(&S, TOK_OBSERVER, "POST", "/admin/gc?dry_run", NULL, NULL, &r), 200);
    json_t *gc = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    /* An S3 store gives blob times in whole seconds (rounded up), so with
     * --gc-grace 0 a blob a served change left unreferenced turns
     * removable up to a second later, on its own: there only the scan
     * (which a collection that ran would shrink) is part of the state. */
    bool whole_seconds = strncmp(S.blobs_url, "s3://", 5) == 0;
    fp_add(&b, "gc scanned=%lld removable=%lld\n",
           (long long)json_integer_value(json_object_get(gc, "blobs_scanned")),
           whole_seconds ? -1LL
                         : (long long)json_integer_value(json_object_get(gc, "blobs_removed")));
    json_decref(gc);
    ck_assert_int_eq(call_as(&S, TOK_OBSERVER, "POST", "/admin/cleanup?dry_run", NULL, NULL, &r),
                     200);
    json_t *cl = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    fp_add(&b, "cleanup removable=%lld\n",
           (long long)json_integer_value(json_object_get(cl, "removed_total")));
    json_decref(cl);
    fp_add(&b, "%c", '\0');
    size_t len;
    return (char *)sbuf_take(&b, &len);
}

typedef struct route_row {
    const char *method;
    const char *spec; /* the path as openapi.yaml names it */
    const char *path; /* a concrete request */
    const char *body; /* JSON, or NULL */
    enum auth_need need;
} route_row;

/* In order: a row's refused requests are checked against the state its
 * allowed request (run last) then changes. */
static const route_row ROUTES[] = {
    {"GET", "/health", "/health", NULL, AUTH_NEED_NONE},
    {"GET", "/ready", "/ready", NULL, AUTH_NEED_NONE},
    {"GET", "/openapi.yaml", "/openapi.yaml", NULL, AUTH_NEED_NONE},
    {"GET", "/metrics", "/metrics", NULL, AUTH_NEED_READ},
    {"GET", "/{type}", "/dictionary", NULL, AUTH_NEED_READ},
    {"GET", "/{type}/{id}", "/dictionary/apple", NULL, AUTH_NEED_READ},
    {"GET", "/dictionary/{id}/versions", "/dictionary/apple/versions", NULL, AUTH_NEED_READ},
    {"GET", "/corpus/{id}/versions", "/corpus/kid1/versions", NULL, AUTH_NEED_READ},
    {"GET", "/semantic/{id}/versions", "/semantic/sem1/versions?limit=5", NULL, AUTH_NEED_READ},
    {"GET", "/literature/{id}/versions", "/literature/lit1/versions", NULL, AUTH_NEED_READ},
    {"GET", "/trie/{id}/versions", "/trie/auth-trie/versions", NULL, AUTH_NEED_READ},
    {"GET", "/search/{id}/versions", "/search/srch1/versions", NULL, AUTH_NEED_READ},
    {"GET", "/{type}/{id}/versions/{version}", "/dictionary/apple/versions/latest", NULL,
     AUTH_NEED_READ},
    {"GET", "/{type}/{id}/versions/{version}/content", "/dictionary/apple/versions/1.0.0/content",
     NULL, AUTH_NEED_READ},
    {"HEAD", "/{type}/{id}/versions/{version}/content", "/dictionary/apple/versions/1.0.0/content",
     NULL, AUTH_NEED_READ},
    {"GET", "/{type}/{id}/dependents", "/corpus/kid1/dependents", NULL, AUTH_NEED_READ},
    {"GET", "/trees/{master}", "/trees/english", NULL, AUTH_NEED_READ},
    {"GET", "/trees/{master}/children", "/trees/english/children", NULL, AUTH_NEED_READ},
    {"GET", "/trees/{master}/vocabulary", "/trees/english/vocabulary", NULL, AUTH_NEED_READ},
    {"GET", "/cache", "/cache", NULL, AUTH_NEED_READ},
    {"GET", "/cache/{ns}", "/cache/authns", NULL, AUTH_NEED_READ},
    {"GET", "/cache/{ns}/{key}", "/cache/authns/k2", NULL, AUTH_NEED_READ},
    {"HEAD", "/cache/{ns}/{key}", "/cache/authns/k2", NULL, AUTH_NEED_READ},
    /* writes */
    {"POST", "/dictionary/{id}/versions", "/dictionary/new-d/versions", JSON_SAVE_DICT,
     AUTH_NEED_WRITE},
    {"POST", "/corpus/{id}/versions", "/corpus/new-c/versions", JSON_SAVE_CORPUS, AUTH_NEED_WRITE},
    {"POST", "/semantic/{id}/versions", "/semantic/new-s/versions", JSON_SAVE_SEM, AUTH_NEED_WRITE},
    {"POST", "/literature/{id}/versions", "/literature/new-l/versions", JSON_SAVE_LIT,
     AUTH_NEED_WRITE},
    {"POST", "/trie/{id}/versions", "/trie/new-t/versions", JSON_SAVE_TRIE, AUTH_NEED_WRITE},
    {"POST", "/search/{id}/versions", "/search/new-x/versions", JSON_SAVE_SEARCH, AUTH_NEED_WRITE},
    {"POST", "/{type}/{id}/rebuild", "/corpus/kid1/rebuild", NULL, AUTH_NEED_WRITE},
    {"DELETE", "/{type}/{id}/versions/{version}", "/dictionary/plum/versions/1.0.0", NULL,
     AUTH_NEED_WRITE},
    {"DELETE", "/{type}/{id}", "/dictionary/gone-1", NULL, AUTH_NEED_WRITE},
    {"POST", "/batch", "/batch",
     "{\"operations\": [{\"op\": \"save\", \"type\": \"dictionary\", \"id\": \"batched\", "
     "\"content\": 1, \"word\": \"b\", \"provider\": \"p\"}]}",
     AUTH_NEED_WRITE},
    {"POST", "/trees", "/trees",
     "{\"master\": \"auth-master\", \"language\": \"en\", \"children\": [\"kid3\"]}",
     AUTH_NEED_WRITE},
    {"POST", "/trees/{master}/children", "/trees/english/children", "{\"id\": \"kid2\"}",
     AUTH_NEED_WRITE},
    {"DELETE", "/trees/{master}/children/{child}", "/trees/english/children/kid1", NULL,
     AUTH_NEED_WRITE},
    {"PUT", "/cache/{ns}/{key}", "/cache/authns/k3", "{\"v\": 3}", AUTH_NEED_WRITE},
    {"DELETE", "/cache/{ns}/{key}", "/cache/authns/k2", NULL, AUTH_NEED_WRITE},
    {"DELETE", "/cache/{ns}", "/cache/authns?pattern=k*", NULL, AUTH_NEED_WRITE},
    /* admin */
    {"POST", "/{type}/{id}/cleanup", "/dictionary/apple/cleanup?keep=1", NULL, AUTH_NEED_ADMIN},
    {"POST", "/admin/cleanup", "/admin/cleanup", NULL, AUTH_NEED_ADMIN},
    {"POST", "/admin/gc", "/admin/gc", NULL, AUTH_NEED_ADMIN},
};
#define N_ROUTES (sizeof ROUTES / sizeof ROUTES[0])

typedef struct who {
    const char *label;
    const char *token;
    unsigned scopes;
    bool known;
} who;

static const who CALLERS[] = {
    {"no token", NULL, 0, false},
    {"an unknown token", TOK_UNKNOWN, 0, false},
    {"a read token", TOK_READ, AUTH_SCOPE_READ, true},
    {"a write token", TOK_WRITE, AUTH_SCOPE_WRITE, true},
    {"an admin token", TOK_ADMIN, AUTH_SCOPE_ADMIN, true},
};
#define N_CALLERS (sizeof CALLERS / sizeof CALLERS[0])

/* The documented answer: 0 (served), 401 or 403. */
static long expected(enum auth_need need, const who *w)
{
    if (need == AUTH_NEED_NONE)
        return 0;
    if (!w->known)
        return 401;
    unsigned want = need == AUTH_NEED_READ    ? AUTH_SCOPE_READ
                    : need == AUTH_NEED_WRITE ? AUTH_SCOPE_WRITE
                                              : AUTH_SCOPE_ADMIN;
    return (w->scopes & want) ? 0 : 403;
}

/* (path, method) pairs of the served openapi.yaml's `paths:`. */
static int spec_operations(char ops[][2][128], int cap)
{
    http_resp r;
    ck_assert_int_eq(call_as(&S, NULL, "GET", "/openapi.yaml", NULL, NULL, &r), 200);
    int n = 0;
    bool in_paths = false;
    char current[128] = "";
    for (char *line = strtok(r.body, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        if (line[0] != ' ' && line[0] != '#' && line[0] != '\0') {
            in_paths = strncmp(line, "paths:", 6) == 0;
            continue;
        }
        if (!in_paths)
            continue;
        if (strncmp(line, "  /", 3) == 0) {
            snprintf(current, sizeof current, "%s", line + 2);
            char *colon = strrchr(current, ':');
            if (colon)
                *colon = '\0';
            continue;
        }
        static const char *const METHODS[] = {"get", "head", "post", "put", "delete", "patch"};
        for (size_t m = 0; m < 6; m++) {
            size_t ml = strlen(METHODS[m]);
            if (strncmp(line, "    ", 4) == 0 && line[4] != ' ' &&
                strncmp(line + 4, METHODS[m], ml) == 0 && line[4 + ml] == ':') {
                ck_assert_int_lt(n, cap);
                snprintf(ops[n][0], 128, "%s", current);
                for (size_t k = 0; k <= ml; k++)
                    ops[n][1][k] = (char)(METHODS[m][k] >= 'a' ? METHODS[m][k] - 32 : 0);
                n++;
            }
        }
    }
    http_resp_free(&r);
    return n;
}

START_TEST(the_table_covers_every_documented_operation)
{
    static char ops[128][2][128];
    int n = spec_operations(ops, 128);
    ck_assert_int_gt(n, 30);
    for (int i = 0; i < n; i++) {
        bool found = false;
        for (size_t k = 0; k < N_ROUTES && !found; k++)
            found =
                strcmp(ROUTES[k].spec, ops[i][0]) == 0 && strcmp(ROUTES[k].method, ops[i][1]) == 0;
        ck_assert_msg(found, "openapi.yaml has %s %s; the table does not", ops[i][1], ops[i][0]);
    }
    for (size_t k = 0; k < N_ROUTES; k++) {
        bool found = false;
        for (int i = 0; i < n && !found; i++)
            found =
                strcmp(ROUTES[k].spec, ops[i][0]) == 0 && strcmp(ROUTES[k].method, ops[i][1]) == 0;
        ck_assert_msg(found, "the table has %s %s; openapi.yaml does not", ROUTES[k].method,
                      ROUTES[k].spec);
    }
}
END_TEST

/* The first line where two fingerprints differ (each cut to fit). */
static void first_difference(const char *a, const char *b, char was[400], char now[400])
{
    while (*a && *a == *b) {
        const char *na = strchr(a, '\n'), *nb = strchr(b, '\n');
        if (na == NULL || nb == NULL || na - a != nb - b || memcmp(a, b, (size_t)(na - a)) != 0)
            break;
        a = na + 1;
        b = nb + 1;
    }
    snprintf(was, 400, "%.*s", (int)strcspn(a, "\n"), a);
    snprintf(now, 400, "%.*s", (int)strcspn(b, "\n"), b);
}

START_TEST(every_route_answers_each_caller_as_documented)
{
    fixture();
    int refused = 0, served = 0;
    for (size_t k = 0; k < N_ROUTES; k++) {
        const route_row *row = &ROUTES[k];
        bool changes = row->need == AUTH_NEED_WRITE || row->need == AUTH_NEED_ADMIN;
        char *before = changes ? fingerprint() : NULL;
        /* refusals first, each checked to change nothing */
        for (size_t c = 0; c < N_CALLERS; c++) {
            long want = expected(row->need, &CALLERS[c]);
            if (want == 0)
                continue;
            http_resp r;
            long st = call_as(&S, CALLERS[c].token, row->method, row->path,
                              row->body ? "application/json" : NULL, row->body, &r);
            ck_assert_msg(st == want, "%s %s with %s: %ld, documented %ld", row->method, row->path,
                          CALLERS[c].label, st, want);
            char www[128] = "";
            http_header(&r, "WWW-Authenticate", www, sizeof www);
            if (want == 401)
                ck_assert_str_eq(www, "Bearer realm=\"strata\"");
            if (strcmp(row->method, "HEAD") != 0)
                assert_problem(&r, want);
            else
                ck_assert_uint_eq(r.body_len, 0);
            http_resp_free(&r);
            refused++;
            if (changes) {
                char *after = fingerprint();
                char was[400], now[400];
                first_difference(before, after, was, now);
                ck_assert_msg(strcmp(before, after) == 0,
                              "%s %s refused for %s changed the state: '%s' became '%s'",
                              row->method, row->path, CALLERS[c].label, was, now);
                free(after);
            }
        }
        /* then whoever may: served (2xx), and the state check meant something */
        for (size_t c = 0; c < N_CALLERS; c++) {
            if (expected(row->need, &CALLERS[c]) != 0)
                continue;
            http_resp r;
            long st = call_as(&S, CALLERS[c].token, row->method, row->path,
                              row->body ? "application/json" : NULL, row->body, &r);
            ck_assert_msg(st >= 200 && st < 300, "%s %s with %s: %ld %.300s", row->method,
                          row->path, CALLERS[c].label, st, r.body);
            http_resp_free(&r);
            served++;
            if (changes) {
                char *after = fingerprint();
                ck_assert_msg(strcmp(before, after) != 0,
                              "%s %s served for %s changed nothing: the refusal check is vacuous",
                              row->method, row->path, CALLERS[c].label);
                free(after);
            }
        }
        free(before);
    }
    ck_assert_int_gt(refused, 100);
    ck_assert_int_gt(served, N_ROUTES - 1);
}
END_TEST

/* ---- refusals in detail ---------------------------------------------------- */

START_TEST(malformed_and_repeated_credentials_are_401)
{
    static const char *const BAD[][2] = {
        {"Authorization: Basic dXNlcjpwYXNz", NULL},
        {"Authorization: Bearer", NULL},
        {"Authorization: Bearer ", NULL},
        {"Authorization: Bearer two words", NULL},
        {"Authorization: Bearer bad\"quote", NULL},
        {"Authorization: Bearer " TOK_READ "x", NULL},
        {"Authorization: Bearer " TOK_READ, "Authorization: Bearer " TOK_READ},
    };
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        const char *h[] = {BAD[i][0], BAD[i][1], NULL};
        http_resp r;
        ck_assert_int_eq(http_do(&S, "GET", "/dictionary", h, NULL, 0, &r), 0);
        ck_assert_msg(r.status == 401, "%s: %ld", BAD[i][0], r.status);
        assert_problem(&r, 401);
        char www[128];
        ck_assert_int_eq(http_header(&r, "WWW-Authenticate", www, sizeof www), 0);
        ck_assert_str_eq(www, "Bearer realm=\"strata\"");
        http_resp_free(&r);
    }
    /* the scheme is case-insensitive */
    const char *ok[] = {"Authorization: bearer " TOK_READ, NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary", ok, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    http_resp_free(&r);
    /* a 403 names the scope it lacks */
    ck_assert_int_eq(call_as(&S, TOK_READ, "PUT", "/cache/authns/x", "application/json", "1", &r),
                     403);
    assert_problem(&r, 403);
    ck_assert_ptr_nonnull(strstr(r.body, "'write'"));
    char www[160];
    ck_assert_int_eq(http_header(&r, "WWW-Authenticate", www, sizeof www), 0);
    ck_assert_ptr_nonnull(strstr(www, "insufficient_scope"));
    http_resp_free(&r);
    /* unknown paths and methods reveal nothing without a token */
    ck_assert_int_eq(call_as(&S, NULL, "GET", "/no/such/path/here", NULL, NULL, NULL), 401);
    ck_assert_int_eq(call_as(&S, NULL, "PATCH", "/dictionary/apple", NULL, NULL, NULL), 401);
    ck_assert_int_eq(call_as(&S, TOK_ADMIN, "GET", "/no/such/path/here", NULL, NULL, NULL), 404);
    ck_assert_int_eq(call_as(&S, TOK_READ, "PATCH", "/dictionary/apple", NULL, NULL, NULL), 405);
}
END_TEST

/* A refused request without a body keeps its connection. */
START_TEST(a_refusal_without_a_body_keeps_the_connection)
{
    http_client *c = http_client_new();
    http_resp r;
    ck_assert_int_eq(http_client_do(c, &S, "GET", "/dictionary", NULL, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 401);
    http_resp_free(&r);
    const char *h[] = {"Authorization: Bearer " TOK_READ, NULL};
    ck_assert_int_eq(http_client_do(c, &S, "GET", "/dictionary", h, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_int_eq(r.new_connections, 0);
    http_resp_free(&r);
    http_client_free(c);
}
END_TEST

/* A refused upload is answered at once, before its body is sent, and the
 * connection closes: the body is never read, nothing is stored. */
START_TEST(a_refused_upload_is_answered_before_its_body)
{
    static const char *const AUTHS[] = {"", "Authorization: Bearer " TOK_READ "\r\n"};
    static const char *const FRAMING[] = {"Content-Length: 10000000\r\n",
                                          "Transfer-Encoding: chunked\r\n"};
    for (int a = 0; a < 2; a++) {
        for (int f = 0; f < 2; f++) {
            int fd = raw_connect(S.port);
            ck_assert_int_ge(fd, 0);
            char head[512];
            int n = snprintf(head, sizeof head,
                             "PUT /cache/authns/uploaded HTTP/1.1\r\nHost: x\r\n%s%s"
                             "Content-Type: application/octet-stream\r\n\r\n",
                             AUTHS[a], FRAMING[f]);
            ck_assert_int_eq(raw_send(fd, head, (size_t)n), 0);
            char buf[4096];
            ssize_t got = raw_read_response(fd, buf, sizeof buf, 3000);
            ck_assert_msg(got > 0, "no answer before the body (auth %d, framing %d)", a, f);
            ck_assert_ptr_nonnull(strstr(buf, a == 0 ? "HTTP/1.1 401" : "HTTP/1.1 403"));
            ck_assert_ptr_nonnull(strcasestr(buf, "Connection: close"));
            ck_assert_ptr_nonnull(strstr(buf, "application/problem+json"));
            /* the server closes: sending the body is pointless */
            char more[16];
            ck_assert_int_eq(raw_recv(fd, more, sizeof more, 3000), 0);
            close(fd);
        }
    }
    ck_assert_int_eq(call_as(&S, TOK_READ, "GET", "/cache/authns/uploaded", NULL, NULL, NULL), 404);
}
END_TEST

/* The value of a sample line (not the HELP text) that starts with name. */
static long metric(const char *text, const char *name)
{
    char key[256];
    snprintf(key, sizeof key, "\n%s", name);
    const char *p = strstr(text, key);
    ck_assert_msg(p != NULL, "no %s in /metrics", name);
    return atol(p + strlen(key));
}

START_TEST(metrics_need_read_and_count_refusals)
{
    http_resp r;
    ck_assert_int_eq(call_as(&S, NULL, "GET", "/metrics", NULL, NULL, &r), 401);
    http_resp_free(&r);
    ck_assert_int_eq(call_as(&S, TOK_WRITE, "GET", "/metrics", NULL, NULL, &r), 403);
    http_resp_free(&r);
    ck_assert_int_eq(call_as(&S, TOK_READ, "GET", "/metrics", NULL, NULL, &r), 200);
    long u0 = metric(r.body, "strata_auth_refused_total{reason=\"unauthenticated\"} ");
    long f0 = metric(r.body, "strata_auth_refused_total{reason=\"forbidden\"} ");
    ck_assert_int_ge(u0, 1);
    ck_assert_int_ge(f0, 1);
    ck_assert_ptr_nonnull(strstr(r.body, "strata_http_requests_total{")); /* the usual metrics */
    http_resp_free(&r);
    ck_assert_int_eq(call_as(&S, NULL, "GET", "/dictionary", NULL, NULL, NULL), 401);
    ck_assert_int_eq(call_as(&S, TOK_UNKNOWN, "GET", "/dictionary", NULL, NULL, NULL), 401);
    ck_assert_int_eq(call_as(&S, TOK_ADMIN, "GET", "/dictionary", NULL, NULL, NULL), 403);
    ck_assert_int_eq(call_as(&S, TOK_READ, "GET", "/metrics", NULL, NULL, &r), 200);
    ck_assert_int_eq(metric(r.body, "strata_auth_refused_total{reason=\"unauthenticated\"} "),
                     u0 + 2);
    ck_assert_int_eq(metric(r.body, "strata_auth_refused_total{reason=\"forbidden\"} "), f0 + 1);
    ck_assert_int_eq(metric(r.body, "strata_auth_tokens "), (long)N_BASE);
    http_resp_free(&r);
}
END_TEST

START_TEST(metrics_open_serves_metrics_without_a_token)
{
    test_server s2;
    const char *more[] = {"--metrics-open", NULL};
    start_with(&s2, more);
    http_resp r;
    ck_assert_int_eq(call_as(&s2, NULL, "GET", "/metrics", NULL, NULL, &r), 200);
    ck_assert_ptr_nonnull(strstr(r.body, "strata_auth_refused_total"));
    http_resp_free(&r);
    ck_assert_int_eq(call_as(&s2, NULL, "GET", "/cache", NULL, NULL, NULL), 401);
    ck_assert_int_eq(server_stop(&s2, 20), 0);
    server_cleanup(&s2);
}
END_TEST

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return strdup("");
    strata_buf b;
    sbuf_init(&b, 0);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        sbuf_append(&b, chunk, n, NULL);
    fclose(f);
    sbuf_append(&b, "", 1, NULL);
    size_t len;
    return (char *)sbuf_take(&b, &len);
}

START_TEST(the_access_log_names_the_token_never_the_token)
{
    const char *h1[] = {"Authorization: Bearer " TOK_READ, "X-Request-Id: authlog-read", NULL};
    const char *h2[] = {"Authorization: Bearer " TOK_UNKNOWN, "X-Request-Id: authlog-unknown",
                        NULL};
    const char *h3[] = {"Authorization: Bearer " TOK_READ, "X-Request-Id: authlog-forbidden", NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary", h1, NULL, 0, &r), 0);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "GET", "/dictionary", h2, NULL, 0, &r), 0);
    http_resp_free(&r);
    ck_assert_int_eq(http_do(&S, "DELETE", "/cache/authns/zz", h3, NULL, 0, &r), 0);
    http_resp_free(&r);
    char *log = NULL;
    for (int i = 0; i < 50; i++) { /* the access log is flushed every 100 ms */
        free(log);
        log = slurp(access_path);
        if (strstr(log, "authlog-forbidden"))
            break;
        sleep_ms(50);
    }
    ck_assert_msg(strstr(log, "GET /dictionary 200 ") && strstr(log, " authlog-read reader\n"),
                  "%s", log);
    ck_assert_ptr_nonnull(strstr(log, " authlog-unknown -\n"));
    ck_assert_ptr_nonnull(strstr(log, "DELETE /cache/authns/zz 403 "));
    ck_assert_ptr_nonnull(strstr(log, " authlog-forbidden reader\n"));
    ck_assert_ptr_null(strstr(log, TOK_READ));
    ck_assert_ptr_null(strstr(log, TOK_UNKNOWN));
    free(log);
    char *srvlog = slurp(S.log_path);
    ck_assert_ptr_null(strstr(srvlog, TOK_READ));
    ck_assert_ptr_null(strstr(srvlog, TOK_UNKNOWN));
    free(srvlog);
}
END_TEST

/* ---- reloads ---------------------------------------------------------------- */

typedef struct hammer {
    pthread_t thread;
    atomic_bool *stop;
    long ok, failed;
    char first_failure[256];
} hammer;

static void *hammer_run(void *arg)
{
    hammer *h = arg;
    http_client *c = http_client_new();
    const char *hdr[] = {"Authorization: Bearer " TOK_READ, NULL};
    int i = 0;
    while (!atomic_load(h->stop)) {
        http_resp r;
        /* keep-alive connections, and every 8th request a new one */
        if (i++ % 8 == 0) {
            http_client_free(c);
            c = http_client_new();
        }
        int rc = http_client_do(c, &S, "GET", i % 2 ? "/dictionary/apple" : "/cache/authns/k1", hdr,
                                NULL, 0, &r);
        if (rc == 0 && (r.status == 200 || r.status == 404)) {
            h->ok++;
        } else {
            if (h->failed++ == 0)
                snprintf(h->first_failure, sizeof h->first_failure, "rc %d status %ld", rc,
                         rc == 0 ? r.status : 0);
        }
        if (rc == 0)
            http_resp_free(&r);
    }
    http_client_free(c);
    return NULL;
}

static bool wait_status(const char *token, long want, int timeout_ms)
{
    for (int waited = 0; waited <= timeout_ms; waited += 20) {
        if (call_as(&S, token, "GET", "/dictionary", NULL, NULL, NULL) == want)
            return true;
        sleep_ms(20);
    }
    return false;
}

START_TEST(tokens_reload_on_sighup_under_load)
{
    atomic_bool stop;
    atomic_init(&stop, false);
    hammer hs[4];
    memset(hs, 0, sizeof hs);
    for (int i = 0; i < 4; i++) {
        hs[i].stop = &stop;
        ck_assert_int_eq(pthread_create(&hs[i].thread, NULL, hammer_run, &hs[i]), 0);
    }
    /* several reloads, each adding a token that then works */
    static char toks[5][64], names[5][32];
    token_line extra[5];
    for (int round = 0; round < 5; round++) {
        snprintf(toks[round], sizeof toks[round], "rotated-%d-0123456789abcdef0123456789", round);
        snprintf(names[round], sizeof names[round], "rotated-%d", round);
        extra[round] = (token_line){toks[round], "read", names[round]};
        ck_assert_int_eq(call_as(&S, toks[round], "GET", "/dictionary", NULL, NULL, NULL), 401);
        write_tokens(tokens_path, BASE_TOKENS, N_BASE, extra, (size_t)round + 1);
        ck_assert_int_eq(kill(S.pid, SIGHUP), 0);
        ck_assert_msg(wait_status(toks[round], 200, 5000), "token of round %d never worked", round);
        sleep_ms(100);
    }
    /* a file that does not parse keeps the tokens in force */
    write_tokens_raw(tokens_path, "sha256:nothex read broken\n");
    ck_assert_int_eq(kill(S.pid, SIGHUP), 0);
    sleep_ms(300);
    ck_assert_int_eq(call_as(&S, toks[4], "GET", "/dictionary", NULL, NULL, NULL), 200);
    /* a removed token is refused */
    ck_assert_int_eq(call_as(&S, TOK_DOOMED, "GET", "/dictionary", NULL, NULL, NULL), 200);
    token_line without[N_BASE];
    size_t nw = 0;
    for (size_t i = 0; i < N_BASE; i++)
        if (strcmp(BASE_TOKENS[i].name, "doomed") != 0)
            without[nw++] = BASE_TOKENS[i];
    write_tokens(tokens_path, without, nw, NULL, 0);
    ck_assert_int_eq(kill(S.pid, SIGHUP), 0);
    ck_assert_msg(wait_status(TOK_DOOMED, 401, 5000), "a removed token is still accepted");
    ck_assert_int_eq(call_as(&S, toks[4], "GET", "/dictionary", NULL, NULL, NULL), 401);
    sleep_ms(200);
    atomic_store(&stop, true);
    long ok = 0, failed = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(hs[i].thread, NULL);
        ok += hs[i].ok;
        failed += hs[i].failed;
        ck_assert_msg(hs[i].failed == 0, "thread %d: %ld failed, first: %s", i, hs[i].failed,
                      hs[i].first_failure);
    }
    ck_assert_int_eq(failed, 0);
    ck_assert_int_gt(ok, 200);
    http_resp r;
    ck_assert_int_eq(call_as(&S, TOK_READ, "GET", "/metrics", NULL, NULL, &r), 200);
    ck_assert_int_eq(metric(r.body, "strata_auth_reloads_total{result=\"ok\"} "), 6);
    ck_assert_int_eq(metric(r.body, "strata_auth_reloads_total{result=\"failed\"} "), 1);
    http_resp_free(&r);
    char *log = slurp(S.log_path);
    ck_assert_ptr_nonnull(strstr(log, "the token file was not reloaded"));
    free(log);
    /* the shared file is whole again for the rest of the run */
    write_tokens(tokens_path, BASE_TOKENS, N_BASE, NULL, 0);
    ck_assert_int_eq(kill(S.pid, SIGHUP), 0);
    ck_assert(wait_status(TOK_DOOMED, 200, 5000));
}
END_TEST

/* ---- start-up ------------------------------------------------------------------ */

/* Runs strata with args to its exit; its stderr into err. */
static int run_strata(const char *const *args, const char *stdin_text, char *out, size_t out_cap,
                      char *err, size_t err_cap)
{
    const char *bin = getenv("STRATA_BIN");
    ck_assert_ptr_nonnull(bin);
    char dir[] = "/tmp/strata-auth-run-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char outp[64], errp[64], inp[64];
    snprintf(outp, sizeof outp, "%s/out", dir);
    snprintf(errp, sizeof errp, "%s/err", dir);
    snprintf(inp, sizeof inp, "%s/in", dir);
    FILE *in = fopen(inp, "w");
    ck_assert_ptr_nonnull(in);
    fputs(stdin_text ? stdin_text : "", in);
    fclose(in);
    const char *argv[32];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--data-dir";
    char data[64];
    snprintf(data, sizeof data, "%s/data", dir);
    argv[n++] = data;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    char l2[512], blobs[512];
    n = strata_env_args(argv, n, 32, data, args, l2, sizeof l2, blobs, sizeof blobs, NULL);
    ck_assert_int_ge(n, 0);
    argv[n] = NULL;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int i0 = open(inp, O_RDONLY), o = open(outp, O_WRONLY | O_CREAT, 0600),
            e = open(errp, O_WRONLY | O_CREAT, 0600);
        dup2(i0, 0);
        dup2(o, 1);
        dup2(e, 2);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int status = 0, code = -1;
    for (int i = 0; i < 1000; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        sleep_ms(10);
    }
    if (code == -1) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    char *o = slurp(outp), *e = slurp(errp);
    snprintf(out, out_cap, "%s", o);
    snprintf(err, err_cap, "%s", e);
    free(o);
    free(e);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
    return code;
}

START_TEST(a_bad_token_file_stops_the_start)
{
    char path[] = "/tmp/strata-auth-bad-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    static const char *const BAD[][2] = {
        {"# ok\nsha256:abc read short\n", ":2:"},
        {"sha256:0000000000000000000000000000000000000000000000000000000000000000 rw x\n",
         "scopes 'rw'"},
        {"sha256:0000000000000000000000000000000000000000000000000000000000000000 read\n", ":1:"},
        {"sha256:0000000000000000000000000000000000000000000000000000000000000000 read a b\n",
         ":1:"},
        {"sha256:0000000000000000000000000000000000000000000000000000000000000000 read a\n"
         "sha256:0000000000000000000000000000000000000000000000000000000000000000 write b\n",
         ":2: the same hash"},
        {"sha256:0000000000000000000000000000000000000000000000000000000000000000 read a\n"
         "sha256:1111111111111111111111111111111111111111111111111111111111111111 write a\n",
         "already taken"},
        {"0000000000000000000000000000000000000000000000000000000000000000 read a\n", ":1:"},
        {"sha256:0000000000000000000000000000000000000000000000000000000000000000 read bad/name\n",
         "name"},
    };
    char out[4096], err[4096];
    for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
        write_tokens_raw(path, BAD[i][0]);
        const char *args[] = {"--auth-tokens", path, NULL};
        int code = run_strata(args, NULL, out, sizeof out, err, sizeof err);
        ck_assert_msg(code == 2, "case %zu: exit %d, %s", i, code, err);
        ck_assert_msg(strstr(err, "--auth-tokens") && strstr(err, path) && strstr(err, BAD[i][1]),
                      "case %zu: %s", i, err);
        ck_assert_ptr_null(strstr(out, "listening"));
    }
    unlink(path);
    const char *missing[] = {"--auth-tokens", "/nonexistent/strata-tokens", NULL};
    ck_assert_int_eq(run_strata(missing, NULL, out, sizeof out, err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "--auth-tokens /nonexistent/strata-tokens"));
    /* an empty file is valid: nothing but the open routes is served */
    write_tokens_raw(path, "# nobody yet\n");
    test_server s2;
    const char *args[] = {"--auth-tokens", path, NULL};
    ck_assert_int_eq(server_start(&s2, args), 0);
    ck_assert_int_eq(call_as(&s2, NULL, "GET", "/health", NULL, NULL, NULL), 200);
    ck_assert_int_eq(call_as(&s2, TOK_SETUP, "GET", "/dictionary", NULL, NULL, NULL), 401);
    ck_assert_int_eq(server_stop(&s2, 20), 0);
    server_cleanup(&s2);
    unlink(path);
}
END_TEST

START_TEST(without_a_token_file_everything_is_open_and_the_log_says_so)
{
    test_server s2;
    ck_assert_int_eq(server_start(&s2, NULL), 0);
    ck_assert_int_eq(call_as(&s2, NULL, "PUT", "/cache/default/k", "application/json", "1", NULL),
                     201);
    ck_assert_int_eq(call_as(&s2, NULL, "POST", "/admin/gc?dry_run", NULL, NULL, NULL), 200);
    ck_assert_int_eq(call_as(&s2, TOK_UNKNOWN, "GET", "/metrics", NULL, NULL, NULL), 200);
    char *log = slurp(s2.log_path);
    ck_assert_msg(strstr(log, "access control is off"), "%s", log);
    free(log);
    ck_assert_int_eq(server_stop(&s2, 20), 0);
    server_cleanup(&s2);
}
END_TEST

START_TEST(hash_token_prints_the_sha256_line)
{
    char out[512], err[512];
    const char *args[] = {"--hash-token", NULL};
    ck_assert_int_eq(run_strata(args, TOK_READ "\n", out, sizeof out, err, sizeof err), 0);
    unsigned char d[SHA256_LEN];
    char want[128], hex[SHA256_HEX_LEN + 1];
    sha256_oneshot(TOK_READ, strlen(TOK_READ), d, NULL);
    sha256_to_hex(d, hex);
    snprintf(want, sizeof want, "sha256:%s\n", hex);
    ck_assert_str_eq(out, want);
    /* printf %s TOKEN | sha256sum gives the same hex */
    ck_assert_int_eq(run_strata(args, TOK_READ, out, sizeof out, err, sizeof err), 0);
    ck_assert_str_eq(out, want);
    ck_assert_int_eq(run_strata(args, "has a space\n", out, sizeof out, err, sizeof err), 2);
    ck_assert_ptr_nonnull(strstr(err, "--hash-token"));
    ck_assert_int_eq(run_strata(args, "", out, sizeof out, err, sizeof err), 2);
}
END_TEST

/* ---- the parser and the policy, without a server ------------------------- */

START_TEST(token_table_parsing)
{
    auth_table *t = NULL;
    strata_error err;
    const char *good =
        "# comment\n\n  sha256:00000000000000000000000000000000000000000000000000"
        "00000000000000 read,write,admin ci-bot # trailing\r\n"
        "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\tadmin\tops@x";
    ck_assert_int_eq(auth_table_parse(good, strlen(good), "f", &t, &err), 0);
    ck_assert_uint_eq(auth_table_count(t), 2);
    auth_table_free(t);
    ck_assert_int_eq(auth_table_parse("", 0, "f", &t, &err), 0);
    ck_assert_uint_eq(auth_table_count(t), 0);
    auth_table_free(t);
    const char *nul = "sha256:0000000000000000000000000000000000000000000000000000000000000000 "
                      "read a\0b\n";
    ck_assert_int_eq(auth_table_parse(nul, 82, "f", &t, &err), -1);
    ck_assert_ptr_null(t);
    const char *dup_scope =
        "sha256:0000000000000000000000000000000000000000000000000000000000000000 read,,write a\n";
    ck_assert_int_eq(auth_table_parse(dup_scope, strlen(dup_scope), "f", &t, &err), 0);
    auth_table_free(t);
    const char *empty_scope =
        "sha256:0000000000000000000000000000000000000000000000000000000000000000 , a\n";
    ck_assert_int_eq(auth_table_parse(empty_scope, strlen(empty_scope), "f", &t, &err), -1);
    ck_assert_ptr_nonnull(strstr(err.detail, "f:1:"));
}
END_TEST

static void no_handler(request *req, reply *rep)
{
    (void)req;
    (void)rep;
}

START_TEST(policy_and_checks_without_a_server)
{
    router *r = router_new();
    ck_assert_int_eq(router_add(r, HTTP_GET, "/health", no_handler), 0);
    ck_assert_int_eq(router_add(r, HTTP_GET, "/metrics", no_handler), 0);
    ck_assert_int_eq(router_add(r, HTTP_POST, "/admin/gc", no_handler), 0);
    ck_assert_int_eq(router_add(r, HTTP_POST | HTTP_GET, "/{type}/{id}/cleanup", no_handler), 0);
    ck_assert_int_eq(router_add(r, HTTP_GET | HTTP_DELETE, "/cache/{ns}", no_handler), 0);
    ck_assert_int_eq(auth_need_for(router_at(r, 0), HTTP_HEAD, false), AUTH_NEED_NONE);
    ck_assert_int_eq(auth_need_for(router_at(r, 1), HTTP_GET, false), AUTH_NEED_READ);
    ck_assert_int_eq(auth_need_for(router_at(r, 1), HTTP_GET, true), AUTH_NEED_NONE);
    ck_assert_int_eq(auth_need_for(router_at(r, 2), HTTP_POST, false), AUTH_NEED_ADMIN);
    ck_assert_int_eq(auth_need_for(router_at(r, 3), HTTP_POST, false), AUTH_NEED_ADMIN);
    ck_assert_int_eq(auth_need_for(router_at(r, 4), HTTP_GET, false), AUTH_NEED_READ);
    ck_assert_int_eq(auth_need_for(router_at(r, 4), HTTP_HEAD, false), AUTH_NEED_READ);
    ck_assert_int_eq(auth_need_for(router_at(r, 4), HTTP_DELETE, false), AUTH_NEED_WRITE);
    ck_assert_int_eq(auth_need_for(NULL, HTTP_GET, false), AUTH_NEED_TOKEN);
    router_free(r);

    strata_error err;
    auth *off = auth_open(NULL, &err);
    ck_assert_ptr_nonnull(off);
    auth_result res;
    auth_check(off, AUTH_NEED_ADMIN, NULL, 0, &res);
    ck_assert_int_eq(res.status, 0);
    ck_assert_int_eq(auth_reload(off, &err), 0);
    auth_close(off);

    auth *on = auth_open(tokens_path, &err);
    ck_assert_msg(on != NULL, "%s", err.detail);
    auth_check(on, AUTH_NEED_TOKEN, "Bearer " TOK_ADMIN, 1, &res);
    ck_assert_int_eq(res.status, 0);
    ck_assert_str_eq(res.name, "admin-only");
    auth_check(on, AUTH_NEED_READ, "Bearer " TOK_ADMIN, 1, &res); /* admin implies nothing */
    ck_assert_int_eq(res.status, 403);
    auth_check(on, AUTH_NEED_WRITE, "Bearer " TOK_READ, 1, &res);
    ck_assert_int_eq(res.status, 403);
    auth_check(on, AUTH_NEED_READ, "Bearer " TOK_WRITE, 1, &res); /* write implies nothing */
    ck_assert_int_eq(res.status, 403);
    auth_check(on, AUTH_NEED_NONE, NULL, 0, &res);
    ck_assert_int_eq(res.status, 0);
    auth_check(on, AUTH_NEED_READ, "Bearer " TOK_UNKNOWN, 1, &res);
    ck_assert_int_eq(res.status, 401);
    ck_assert_str_eq(res.name, "");
    auth_close(on);
}
END_TEST

static Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *u = tcase_create("parser");
    tcase_add_unchecked_fixture(u, setup_files, NULL);
    tcase_add_test(u, token_table_parsing);
    tcase_add_test(u, policy_and_checks_without_a_server);
    suite_add_tcase(s, u);

    TCase *t = tcase_create("http");
    tcase_set_timeout(t, 300);
    tcase_add_unchecked_fixture(t, start_shared, stop_shared);
    tcase_add_test(t, the_table_covers_every_documented_operation);
    tcase_add_test(t, every_route_answers_each_caller_as_documented);
    tcase_add_test(t, malformed_and_repeated_credentials_are_401);
    tcase_add_test(t, a_refusal_without_a_body_keeps_the_connection);
    tcase_add_test(t, a_refused_upload_is_answered_before_its_body);
    tcase_add_test(t, metrics_need_read_and_count_refusals);
    tcase_add_test(t, the_access_log_names_the_token_never_the_token);
    tcase_add_test(t, tokens_reload_on_sighup_under_load);
    tcase_add_test(t, metrics_open_serves_metrics_without_a_token);
    tcase_add_test(t, a_bad_token_file_stops_the_start);
    tcase_add_test(t, without_a_token_file_everything_is_open_and_the_log_says_so);
    tcase_add_test(t, hash_token_prints_the_sha256_line);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(auth_suite());
}
