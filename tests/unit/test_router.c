/* Router: matching, decoding, specificity, 405 and Allow. */
#include <check.h>
#include <string.h>

#include "../../api/router.h"
#include "../support/harness.h"

static void h_a(struct request *q, struct reply *r)
{
    (void)q;
    (void)r;
}
static void h_b(struct request *q, struct reply *r)
{
    (void)q;
    (void)r;
}

static router *R;
static route_match M;
static char SCRATCH[ROUTE_MAX_PATH + 16];

static void setup(void)
{
    R = router_new();
    ck_assert_int_eq(router_add(R, HTTP_GET, "/health", h_a), 0);
    ck_assert_int_eq(router_add(R, HTTP_GET | HTTP_DELETE, "/{type}/{id}", h_a), 0);
    ck_assert_int_eq(router_add(R, HTTP_GET | HTTP_POST, "/{type}/{id}/versions", h_b), 0);
    ck_assert_int_eq(router_add(R, HTTP_GET | HTTP_PUT | HTTP_DELETE, "/cache/{ns}/{key}", h_b), 0);
    ck_assert_int_eq(router_add(R, HTTP_POST, "/trees", h_b), 0);
    ck_assert_int_eq(router_add(R, HTTP_GET, "/{type}", h_a), 0);
}

static void teardown(void)
{
    router_free(R);
}

START_TEST(literal_and_params)
{
    router_match(R, HTTP_GET, "/health", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_FOUND);
    ck_assert_str_eq(M.route->pattern, "/health");
    router_match(R, HTTP_POST, "/dictionary/apple/versions", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_FOUND);
    ck_assert_str_eq(route_param(&M, "type"), "dictionary");
    ck_assert_str_eq(route_param(&M, "id"), "apple");
    ck_assert_ptr_null(route_param(&M, "nope"));
}
END_TEST

START_TEST(segments_are_decoded_after_splitting)
{
    router_match(R, HTTP_GET, "/corpus/a%2Fb", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_FOUND);
    ck_assert_str_eq(route_param(&M, "id"), "a/b"); /* stays one segment; handler judges */
    router_match(R, HTTP_GET, "/corpus/caf%C3%A9%20au%20lait", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_str_eq(route_param(&M, "id"), "caf\xc3\xa9 au lait");
    router_match(R, HTTP_GET, "/corpus/a%00b", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_BAD_PATH);
    router_match(R, HTTP_GET, "/corpus/a%zz", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_BAD_PATH);
    router_match(R, HTTP_GET, "/corpus/a%2", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_BAD_PATH);
}
END_TEST

START_TEST(literals_beat_params)
{
    router_match(R, HTTP_GET, "/cache/dictionary/apple", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_FOUND);
    ck_assert_str_eq(M.route->pattern, "/cache/{ns}/{key}");
    /* the more specific pattern decides: no fall-through to /{type}/{id}/versions */
    router_match(R, HTTP_POST, "/cache/dictionary/versions", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_METHOD_NOT_ALLOWED);
    /* GET /trees: /trees is POST only; answer 405 rather than /{type} */
    router_match(R, HTTP_GET, "/trees", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_METHOD_NOT_ALLOWED);
    ck_assert_int_eq(M.allow, HTTP_POST);
}
END_TEST

START_TEST(method_not_allowed_lists_allow)
{
    router_match(R, HTTP_PUT, "/health", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_METHOD_NOT_ALLOWED);
    char allow[64];
    http_methods_format(M.allow, allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, HEAD");
    router_match(R, HTTP_HEAD, "/health", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_FOUND);
    router_match(R, HTTP_POST, "/dictionary/apple", &M, SCRATCH, sizeof SCRATCH);
    http_methods_format(M.allow, allow, sizeof allow);
    ck_assert_str_eq(allow, "GET, HEAD, DELETE");
}
END_TEST

START_TEST(not_found_shapes)
{
    const char *paths[] = {"/", "/health/", "/dictionary/apple/versions/1/content/x/y/z", "/a//b",
                           "/dictionary/apple/nope"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        router_match(R, HTTP_GET, paths[i], &M, SCRATCH, sizeof SCRATCH);
        ck_assert_msg(M.status == ROUTE_NOT_FOUND, "%s gave %d", paths[i], M.status);
    }
    router_match(R, HTTP_GET, "no-slash", &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_BAD_PATH);
    static char longpath[ROUTE_MAX_PATH + 10];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    router_match(R, HTTP_GET, longpath, &M, SCRATCH, sizeof SCRATCH);
    ck_assert_int_eq(M.status, ROUTE_BAD_PATH);
}
END_TEST

START_TEST(bad_patterns_are_refused)
{
    ck_assert_int_eq(router_add(R, HTTP_GET, "no-slash", h_a), -1);
    ck_assert_int_eq(router_add(R, HTTP_GET, "/a//b", h_a), -1);
    ck_assert_int_eq(router_add(R, 0, "/x", h_a), -1);
    ck_assert_int_eq(http_method_parse("GET"), HTTP_GET);
    ck_assert_int_eq(http_method_parse("BREW"), 0);
}
END_TEST

static Suite *router_suite(void)
{
    Suite *s = suite_create("router");
    TCase *t = tcase_create("router");
    tcase_add_checked_fixture(t, setup, teardown);
    tcase_add_test(t, literal_and_params);
    tcase_add_test(t, segments_are_decoded_after_splitting);
    tcase_add_test(t, literals_beat_params);
    tcase_add_test(t, method_not_allowed_lists_allow);
    tcase_add_test(t, not_found_shapes);
    tcase_add_test(t, bad_patterns_are_refused);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(router_suite());
}
