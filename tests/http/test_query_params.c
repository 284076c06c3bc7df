/* Boolean, numeric and string query parameters accept exactly their
 * documented forms on every route; anything else is a 400 naming the
 * parameter, and a dry_run that does not read cleanly never deletes. */
#include <check.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/harness.h"

static test_server S;
static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};
static const char *const TEXT_CT[] = {"Content-Type: text/plain", NULL};

static void start(void)
{
    ck_assert_int_eq(server_start(&S, NULL), 0);
}

static void stop(void)
{
    int code = server_stop(&S, 60);
    server_cleanup(&S);
    if (code != 0) {
        fprintf(stderr, "server exited with %d\n", code);
        exit(1);
    }
}

static long call(const char *method, const char *path, const char *const *headers, const char *body,
                 json_t **out)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, method, path, headers, body, body ? strlen(body) : 0, &r), 0);
    long status = r.status;
    if (out) {
        *out = json_loadb(r.body, r.body_len, 0, NULL);
        ck_assert_msg(*out != NULL, "%s %s: not JSON (%ld): %.300s", method, path, status, r.body);
    }
    http_resp_free(&r);
    return status;
}

/* 400, problem+json, and the detail names the parameter. */
static void expect_400(const char *method, const char *path, const char *const *headers,
                       const char *body, const char *param)
{
    http_resp r;
    ck_assert_int_eq(http_do(&S, method, path, headers, body, body ? strlen(body) : 0, &r), 0);
    ck_assert_msg(r.status == 400, "%s %s: %ld, not 400: %.300s", method, path, r.status, r.body);
    char ct[128];
    ck_assert_int_eq(http_header(&r, "Content-Type", ct, sizeof ct), 0);
    ck_assert_str_eq(ct, "application/problem+json");
    json_t *p = json_loadb(r.body, r.body_len, 0, NULL);
    ck_assert_ptr_nonnull(p);
    const char *detail = json_string_value(json_object_get(p, "detail"));
    char want[96];
    snprintf(want, sizeof want, "query parameter '%s'", param);
    ck_assert_msg(detail != NULL && strstr(detail, want) != NULL, "%s %s: detail %s lacks %s",
                  method, path, detail ? detail : "(none)", want);
    json_decref(p);
    http_resp_free(&r);
}

static size_t version_count(const char *res)
{
    char path[160];
    snprintf(path, sizeof path, "/%s/versions?limit=1000", res);
    json_t *list;
    ck_assert_int_eq(call("GET", path, NULL, NULL, &list), 200);
    size_t n = json_array_size(json_object_get(list, "items"));
    json_decref(list);
    return n;
}

static void save_versions(const char *id, int n)
{
    char path[128], body[256];
    snprintf(path, sizeof path, "/dictionary/%s/versions", id);
    for (int i = 0; i < n; i++) {
        snprintf(body, sizeof body,
                 "{\"content\": \"sense %d\", \"word\": \"%s\", \"provider\": \"p\"}", i, id);
        ck_assert_int_eq(call("POST", path, JSON_CT, body, NULL), 201);
    }
}

/* Values after "dry_run=" (or whole tails, for repeats and bare names)
 * that are not a boolean. */
static const char *const BAD_BOOL[] = {
    "dry_run=%00",
    "dry_run=%00true",
    "dry_run=true%00",
    "dry_run=x",
    "dry_run=TRUE",
    "dry_run=True",
    "dry_run=2",
    "dry_run=-1",
    "dry_run=yes",
    "dry_run=%20true",
    "dry_run=true+",
    "dry_run=%zz",
    "dry_run=%",
    "dry_run=%2",
    "dry_run=t",
    "dry_run=01",
    "dry_run=true&dry_run=false",
    "dry_run&dry_run=0",
    "dry_run=1&dry%5Frun=0",
};

START_TEST(a_bad_dry_run_is_400_and_deletes_nothing)
{
    save_versions("d", 8);
    ck_assert_uint_eq(version_count("dictionary/d"), 8);
    const char *routes[] = {"/dictionary/d/cleanup?keep=6&", "/admin/cleanup?", "/admin/gc?"};
    for (size_t r = 0; r < sizeof routes / sizeof *routes; r++)
        for (size_t i = 0; i < sizeof BAD_BOOL / sizeof *BAD_BOOL; i++) {
            char path[200];
            snprintf(path, sizeof path, "%s%s", routes[r], BAD_BOOL[i]);
            expect_400("POST", path, NULL, NULL, "dry_run");
            /* /admin/cleanup would keep 5 of 8 if it ran for real */
            ck_assert_msg(version_count("dictionary/d") == 8, "%s deleted", path);
        }
}
END_TEST

START_TEST(the_documented_dry_run_forms_work)
{
    save_versions("e", 8);
    /* true: bare, empty, true, 1, and the name percent-encoded */
    const char *dry[] = {"dry_run",   "dry_run=",    "dry_run=true",
                         "dry_run=1", "d%72y_run=1", "dry_run=%74rue"};
    for (size_t i = 0; i < sizeof dry / sizeof *dry; i++) {
        char path[160];
        snprintf(path, sizeof path, "/dictionary/e/cleanup?keep=6&%s", dry[i]);
        json_t *rep;
        ck_assert_int_eq(call("POST", path, NULL, NULL, &rep), 200);
        ck_assert_msg(json_is_true(json_object_get(rep, "dry_run")), "%s is not a dry run", path);
        ck_assert_uint_eq(json_array_size(json_object_get(rep, "removed")), 2);
        json_decref(rep);
        ck_assert_uint_eq(version_count("dictionary/e"), 8);
    }
    json_t *rep;
    ck_assert_int_eq(call("POST", "/admin/gc?dry_run", NULL, NULL, &rep), 200);
    ck_assert(json_is_true(json_object_get(rep, "dry_run")));
    json_decref(rep);
    ck_assert_int_eq(call("POST", "/admin/cleanup?dry_run=1", NULL, NULL, &rep), 200);
    ck_assert(json_is_true(json_object_get(rep, "dry_run")));
    json_decref(rep);
    ck_assert_uint_eq(version_count("dictionary/e"), 8);
    /* false: 0 and false really clean up */
    ck_assert_int_eq(call("POST", "/dictionary/e/cleanup?keep=7&dry_run=0", NULL, NULL, &rep), 200);
    ck_assert(json_is_false(json_object_get(rep, "dry_run")));
    json_decref(rep);
    ck_assert_uint_eq(version_count("dictionary/e"), 7);
    ck_assert_int_eq(call("POST", "/dictionary/e/cleanup?dry_run=false&keep=6", NULL, NULL, &rep),
                     200);
    ck_assert(json_is_false(json_object_get(rep, "dry_run")));
    json_decref(rep);
    ck_assert_uint_eq(version_count("dictionary/e"), 6);
}
END_TEST

/* Values that are not a plain decimal integer. */
static const char *const BAD_UINT[] = {
    "-1",  "%2B5", "+5", "%205", "5%20", "0x10", "1e3",       "99999999999999999999999",
    "%00", "5%00", "",   "5.0",  "5a",   "%35%", "%E2%91%A4", /* a circled 5 */
};

struct uint_case {
    const char *method;
    const char *prefix; /* up to the parameter */
    const char *param;
    const char *ok[4];  /* accepted */
    const char *out[3]; /* well formed, out of range */
};

static const struct uint_case UINT_CASES[] = {
    {"POST",
     "/dictionary/n/cleanup?dry_run&",
     "keep",
     {"1", "06", "%35", "1000000"},
     {"0", "1000001", "9999999999999999999"}},
    {"GET", "/dictionary/n/versions?", "limit", {"1", "1000", "0050", "%31"}, {"0", "1001", NULL}},
    {"GET", "/dictionary?", "limit", {"1", "1000", "7", NULL}, {"0", "1001", NULL}},
    {"GET", "/trees/qm/vocabulary?", "limit", {"1", "10000", "2", NULL}, {"0", "10001", NULL}},
    {"GET", "/trees/qm?", "depth", {"0", "32", "8", NULL}, {"33", "100", NULL}},
};

START_TEST(numbers_are_plain_decimal_in_range)
{
    save_versions("n", 3);
    ck_assert_int_eq(call("POST", "/trees", JSON_CT,
                          "{\"master\": \"qm\", \"language\": \"en\", \"children\":"
                          " [{\"id\": \"qc\", \"words\": [\"ken\", \"art\"]}]}",
                          NULL),
                     201);
    for (size_t c = 0; c < sizeof UINT_CASES / sizeof *UINT_CASES; c++) {
        const struct uint_case *u = &UINT_CASES[c];
        char path[256];
        for (size_t i = 0; i < sizeof BAD_UINT / sizeof *BAD_UINT; i++) {
            snprintf(path, sizeof path, "%s%s=%s", u->prefix, u->param, BAD_UINT[i]);
            expect_400(u->method, path, NULL, NULL, u->param);
        }
        for (size_t i = 0; i < 3 && u->out[i]; i++) {
            snprintf(path, sizeof path, "%s%s=%s", u->prefix, u->param, u->out[i]);
            expect_400(u->method, path, NULL, NULL, u->param);
        }
        /* bare, and given twice */
        snprintf(path, sizeof path, "%s%s", u->prefix, u->param);
        expect_400(u->method, path, NULL, NULL, u->param);
        snprintf(path, sizeof path, "%s%s=5&%s=5", u->prefix, u->param, u->param);
        expect_400(u->method, path, NULL, NULL, u->param);
        for (size_t i = 0; i < 4 && u->ok[i]; i++) {
            snprintf(path, sizeof path, "%s%s=%s", u->prefix, u->param, u->ok[i]);
            ck_assert_msg(call(u->method, path, NULL, NULL, NULL) == 200, "%s refused", path);
        }
    }
    ck_assert_uint_eq(version_count("dictionary/n"), 3); /* every cleanup was a dry run */
}
END_TEST

START_TEST(strings_and_stale_are_strict)
{
    save_versions("s", 1);
    const struct {
        const char *path, *param;
    } bad[] = {
        {"/dictionary?namespace=%00", "namespace"},
        {"/dictionary?namespace=a%00b", "namespace"},
        {"/dictionary?namespace=a&namespace=b", "namespace"},
        {"/dictionary?tag=%zz", "tag"},
        {"/dictionary?tag=x%", "tag"},
        {"/dictionary?cursor=%00", "cursor"},
        {"/dictionary/s/versions?cursor=%0", "cursor"},
        {"/trees/qm/vocabulary?cursor=%00", "cursor"},
        {"/dictionary?stale=%00", "stale"},
        {"/dictionary?stale=TRUE", "stale"},
        {"/dictionary?stale=yes", "stale"},
        {"/dictionary?stale=2", "stale"},
        {"/dictionary?stale=true&stale=true", "stale"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_400("GET", bad[i].path, NULL, NULL, bad[i].param);
    const char *ok[] = {"/dictionary?stale",       "/dictionary?stale=true",
                        "/dictionary?stale=1",     "/dictionary?stale=0",
                        "/dictionary?stale=false", "/dictionary?tag=a%20b",
                        "/dictionary?namespace=x"};
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
        ck_assert_msg(call("GET", ok[i], NULL, NULL, NULL) == 200, "%s refused", ok[i]);
    /* nothing is stale: stale=0 lists everything, a bare stale nothing */
    json_t *all, *list;
    ck_assert_int_eq(call("GET", "/dictionary?limit=1000", NULL, NULL, &all), 200);
    ck_assert_int_eq(call("GET", "/dictionary?limit=1000&stale=0", NULL, NULL, &list), 200);
    ck_assert_uint_ge(json_array_size(json_object_get(all, "items")), 1);
    ck_assert_uint_eq(json_array_size(json_object_get(list, "items")),
                      json_array_size(json_object_get(all, "items")));
    json_decref(list);
    json_decref(all);
    ck_assert_int_eq(call("GET", "/dictionary?stale", NULL, NULL, &list), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(list, "items")), 0);
    json_decref(list);
}
END_TEST

START_TEST(byte_save_fields_are_strict)
{
    const struct {
        const char *path, *param;
    } bad[] = {
        {"/dictionary/b/versions?word=%00&provider=p", "word"},
        {"/dictionary/b/versions?word=b&provider=p%zz", "provider"},
        {"/dictionary/b/versions?word=b&provider=p&word=c", "word"},
        {"/dictionary/b/versions?word=b&provider=p&tags=a&t%61gs=b", "tags"},
        {"/dictionary/b/versions?word=b&provider=p&ttl=%2B5", "ttl"},
        {"/dictionary/b/versions?word=b&provider=p&ttl=+5", "ttl"},
        {"/dictionary/b/versions?word=b&provider=p&ttl=5%20", "ttl"},
        {"/dictionary/b/versions?word=b&provider=p&ttl=0x10", "ttl"},
        {"/dictionary/b/versions?word=b&provider=p&ttl=", "ttl"},
        {"/dictionary/b/versions?word=b&provider=p&namespace=%00", "namespace"},
        {"/dictionary/b/versions?word=b&provider=p&bump=%00minor", "bump"},
        {"/corpus/b/versions?corpus_type=language&language=en&fold_case=TRUE", "fold_case"},
        {"/corpus/b/versions?corpus_type=language&language=en&fold_case=%00", "fold_case"},
        {"/corpus/b/versions?corpus_type=language&language=en&is_master=yes", "is_master"},
        {"/literature/b/versions?title=t&authors=A&source=s&publication_year=%2B1999",
         "publication_year"},
        {"/literature/b/versions?title=t&authors=A&source=s&publication_year=1999.0",
         "publication_year"},
        {"/literature/b/versions?title=t&authors=A&source=s&publication_year=-44",
         "publication_year"},
        {"/semantic/b/versions?corpus_id=c&model_name=m&embedding_dimension=3&corpus_version=1.0.0"
         "&build_time_seconds=inf",
         "build_time_seconds"},
        {"/semantic/b/versions?corpus_id=c&model_name=m&embedding_dimension=3&corpus_version=1.0.0"
         "&build_time_seconds=%201",
         "build_time_seconds"},
        {"/semantic/b/versions?corpus_id=c&model_name=m&embedding_dimension=3&corpus_version=1.0.0"
         "&build_time_seconds=1.",
         "build_time_seconds"},
        {"/semantic/b/"
         "versions?corpus_id=c&model_name=m&embedding_dimension=0x3&corpus_version=1.0.0",
         "embedding_dimension"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        expect_400("POST", bad[i].path, TEXT_CT, "some bytes\n", bad[i].param);
    const char *gone[] = {"/dictionary/b", "/corpus/b", "/literature/b", "/semantic/b"};
    for (size_t i = 0; i < sizeof gone / sizeof *gone; i++)
        ck_assert_int_eq(call("GET", gone[i], NULL, NULL, NULL), 404);
    /* the same fields in their documented forms */
    const char *ok[] = {
        "/dictionary/b/versions?word=b&provider=p&ttl=5&tags=a,b&namespace=x&bump=minor",
        "/corpus/b/versions?corpus_type=language&language=en&fold_case=1&is_master=false",
        "/literature/b/versions?title=t&authors=A&source=s&publication_year=1999",
        "/semantic/b/versions?corpus_id=c&model_name=m&embedding_dimension=3&corpus_version=1.0.0"
        "&build_time_seconds=1.5e-1&memory_usage_mb=0",
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        json_t *rec;
        ck_assert_msg(call("POST", ok[i], TEXT_CT, "some bytes\n", &rec) == 201, "%s refused: %s",
                      ok[i], json_string_value(json_object_get(rec, "detail")));
        json_decref(rec);
    }
}
END_TEST

static Suite *query_params_suite(void)
{
    Suite *s = suite_create("query_params");
    TCase *t = tcase_create("query_params");
    tcase_set_timeout(t, 300);
    tcase_add_unchecked_fixture(t, start, stop);
    tcase_add_test(t, a_bad_dry_run_is_400_and_deletes_nothing);
    tcase_add_test(t, the_documented_dry_run_forms_work);
    tcase_add_test(t, numbers_are_plain_decimal_in_range);
    tcase_add_test(t, strings_and_stale_are_strict);
    tcase_add_test(t, byte_save_fields_are_strict);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(query_params_suite());
}
