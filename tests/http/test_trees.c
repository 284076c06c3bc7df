/* Corpus trees, dependencies and cascades over real HTTP, with Debian's
 * word lists (wamerican, wbritish, wcanadian, installed by scripts/deps)
 * checked against coreutils. */
#include <check.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../support/harness.h"

static test_server S;
static const char *const JSON_CT[] = {"Content-Type: application/json", NULL};

static void start(void)
{
    const char *args[] = {"--max-body", "16M", NULL};
    ck_assert_int_eq(server_start(&S, args), 0);
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

static long call(const char *method, const char *path, const char *json, json_t **out)
{
    http_resp r;
    ck_assert_int_eq(
        http_do(&S, method, path, json ? JSON_CT : NULL, json, json ? strlen(json) : 0, &r), 0);
    long status = r.status;
    if (out) {
        *out = json_loadb(r.body, r.body_len, 0, NULL);
        ck_assert_msg(*out != NULL, "not JSON (%ld): %.300s", status, r.body);
    }
    http_resp_free(&r);
    return status;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "%s is missing: scripts/deps installs wamerican, wbritish, wcanadian",
                  path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    ck_assert_int_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static char *run(const char *cmd, size_t *len)
{
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while ((got = fread(buf + n, 1, cap - n, p)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            ck_assert_ptr_nonnull(nb);
            buf = nb;
            cap *= 2;
        }
    }
    ck_assert_int_eq(pclose(p), 0);
    *len = n;
    return buf;
}

static void post_wordlist(const char *id, const char *file)
{
    size_t len;
    char *words = slurp(file, &len);
    char path[128];
    snprintf(path, sizeof path, "/corpus/%s/versions?corpus_type=language&language=en", id);
    const char *h[] = {"Content-Type: text/plain", NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&S, "POST", path, h, words, len, &r), 0);
    ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body);
    http_resp_free(&r);
    free(words);
}

static void assert_vocabulary_is(const char *master, const char *shell)
{
    size_t want_len;
    char *want = run(shell, &want_len);
    char path[128];
    snprintf(path, sizeof path, "/trees/%s/vocabulary", master);
    const char *h[] = {"Accept: text/plain", NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&S, "GET", path, h, NULL, 0, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(r.body_len == want_len, "vocabulary is %zu bytes, coreutils says %zu", r.body_len,
                  want_len);
    ck_assert_int_eq(memcmp(r.body, want, want_len), 0);
    http_resp_free(&r);
    free(want);
}

START_TEST(english_is_the_union_of_the_word_lists)
{
    post_wordlist("american", "/usr/share/dict/american-english");
    post_wordlist("british", "/usr/share/dict/british-english");
    post_wordlist("canadian", "/usr/share/dict/canadian-english");
    json_t *tree;
    ck_assert_int_eq(call("POST", "/trees",
                          "{\"master\": \"english\", \"language\": \"en\", \"children\":"
                          " [\"american\", {\"id\": \"british\"}, {\"id\": \"canadian\"}]}",
                          &tree),
                     201);
    ck_assert_uint_eq(json_array_size(json_object_get(tree, "children")), 3);
    json_decref(tree);
    assert_vocabulary_is("english",
                         "cat /usr/share/dict/american-english /usr/share/dict/british-english "
                         "/usr/share/dict/canadian-english | LC_ALL=C sort -u");
    /* the master's record: a manifest of the exact child versions */
    json_t *rec;
    ck_assert_int_eq(call("GET", "/corpus/english", NULL, &rec), 200);
    ck_assert(json_is_true(json_object_get(rec, "is_master")));
    json_t *deps = json_object_get(json_object_get(rec, "version_info"), "dependencies");
    ck_assert_uint_eq(json_array_size(deps), 3);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(deps, 0), "version")),
                     "1.0.0");
    json_decref(rec);
    /* detaching british leaves exactly the union of the other two */
    ck_assert_int_eq(call("DELETE", "/trees/english/children/british", NULL, NULL), 200);
    assert_vocabulary_is("english", "cat /usr/share/dict/american-english "
                                    "/usr/share/dict/canadian-english | LC_ALL=C sort -u");
    ck_assert_int_eq(call("GET", "/corpus/english", NULL, &rec), 200);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(rec, "version_info"), "version")),
        "1.0.1");
    json_decref(rec);
    /* paged JSON agrees with the stream */
    json_t *page;
    ck_assert_int_eq(call("GET", "/trees/english/vocabulary?limit=2", NULL, &page), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(page, "items")), 2);
    ck_assert(json_is_string(json_object_get(page, "next")));
    json_decref(page);
}
END_TEST

static void post_words(const char *id, const char *words_json)
{
    char body[1024], path[128];
    snprintf(
        body, sizeof body,
        "{\"content\": {\"words\": %s}, \"corpus_type\": \"literature\", \"language\": \"en\"}",
        words_json);
    snprintf(path, sizeof path, "/corpus/%s/versions", id);
    long status = call("POST", path, body, NULL);
    ck_assert_msg(status == 201 || status == 200, "save %s: %ld", id, status);
}

static json_t *vocabulary_json(const char *master)
{
    char path[128];
    snprintf(path, sizeof path, "/trees/%s/vocabulary?limit=100", master);
    json_t *page;
    ck_assert_int_eq(call("GET", path, NULL, &page), 200);
    return page;
}

static long long freq_of(json_t *page, const char *word, long long *children)
{
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(page, "items"), i, it)
    {
        if (strcmp(json_string_value(json_object_get(it, "word")), word) == 0) {
            if (children)
                *children = json_integer_value(json_object_get(it, "children"));
            return json_integer_value(json_object_get(it, "frequency"));
        }
    }
    return -1;
}

START_TEST(changes_climb_a_deep_tree)
{
    post_words("shakespeare", "[\"thou\", \"art\", \"thou\"]");
    post_words("chaucer", "[\"whan\", \"art\"]");
    post_words("twain", "[\"reckon\", \"art\"]");
    ck_assert_int_eq(call("POST", "/trees",
                          "{\"master\": \"uk\", \"language\": \"en\", \"children\":"
                          " [\"shakespeare\", \"chaucer\"]}",
                          NULL),
                     201);
    ck_assert_int_eq(
        call("POST", "/trees",
             "{\"master\": \"en\", \"language\": \"en\", \"children\":"
             " [\"uk\", \"twain\", {\"id\": \"scots\", \"words\": [\"ken\", \"art\"]}]}",
             NULL),
        201);
    json_t *v = vocabulary_json("en");
    long long kids = 0;
    ck_assert_int_eq(freq_of(v, "thou", NULL), 2); /* listed twice in shakespeare */
    ck_assert_int_eq(freq_of(v, "art", &kids), 4);
    ck_assert_int_eq(kids, 3); /* uk, twain, scots */
    ck_assert_int_eq(freq_of(v, "ken", NULL), 1);
    json_decref(v);
    /* a new version of a leaf: both masters above follow */
    post_words("shakespeare", "[\"thou\", \"forsooth\"]");
    v = vocabulary_json("en");
    ck_assert_int_eq(freq_of(v, "forsooth", NULL), 1);
    ck_assert_int_eq(freq_of(v, "thou", NULL), 1);
    ck_assert_int_eq(freq_of(v, "art", &kids), 3);
    ck_assert_int_eq(kids, 3); /* uk still has art, from chaucer */
    json_decref(v);
    json_t *rec;
    ck_assert_int_eq(call("GET", "/corpus/uk", NULL, &rec), 200);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(rec, "version_info"), "version")),
        "1.0.1");
    json_decref(rec);
    json_t *tree;
    ck_assert_int_eq(call("GET", "/trees/en?depth=2", NULL, &tree), 200);
    json_t *uk =
        json_array_get(json_object_get(tree, "children"), 2); /* sorted: scots, twain, uk */
    ck_assert_str_eq(json_string_value(json_object_get(uk, "id")), "uk");
    ck_assert_uint_eq(json_array_size(json_object_get(uk, "children")), 2);
    json_decref(tree);
    /* loops, second parents, and direct saves to a master are refused */
    ck_assert_int_eq(call("POST", "/trees/uk/children", "{\"id\": \"en\"}", NULL), 409);
    ck_assert_int_eq(call("POST", "/trees/uk/children", "{\"id\": \"uk\"}", NULL), 409);
    ck_assert_int_eq(call("POST", "/trees/uk/children", "{\"id\": \"twain\"}", NULL), 409);
    ck_assert_int_eq(call("POST", "/corpus/uk/versions",
                          "{\"content\": {\"words\": [\"x\"]}, \"corpus_type\": \"language\","
                          " \"language\": \"en\"}",
                          NULL),
                     409);
    ck_assert_int_eq(call("DELETE", "/corpus/chaucer", NULL, NULL), 409);
    ck_assert_int_eq(call("DELETE", "/trees/uk/children/twain", NULL, NULL), 404);
    ck_assert_int_eq(call("POST", "/trees/nowhere/children", "{\"id\": \"twain\"}", NULL), 404);
    ck_assert_int_eq(call("POST", "/trees/uk/children", "{\"id\": \"ghost\"}", NULL), 404);
}
END_TEST

static void save(const char *type, const char *id, const char *fields, const char *deps, long want)
{
    char path[128];
    static int n;
    size_t cap = strlen(fields) + strlen(deps) + 128;
    char *body = malloc(cap);
    snprintf(body, cap, "{\"content\": {\"n\": %d}, %s, \"dependencies\": %s}", ++n, fields, deps);
    snprintf(path, sizeof path, "/%s/%s/versions", type, id);
    json_t *out = NULL;
    long status = call("POST", path, body, &out);
    ck_assert_msg(status == want, "%s/%s: %ld %s", type, id, status,
                  json_string_value(json_object_get(out, "detail")));
    json_decref(out);
    free(body);
}

static bool is_stale(const char *type, const char *id, json_t **reason)
{
    char path[128];
    snprintf(path, sizeof path, "/%s/%s", type, id);
    json_t *rec;
    ck_assert_int_eq(call("GET", path, NULL, &rec), 200);
    bool stale = json_is_true(json_object_get(rec, "stale"));
    if (reason)
        *reason = json_incref(json_object_get(rec, "stale_reason"));
    json_decref(rec);
    return stale;
}

START_TEST(a_new_version_marks_dependents_stale_and_rebuild_orders_them)
{
    post_words("c", "[\"alpha\", \"beta\"]");
    save("trie", "t", "\"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1",
         "[{\"type\": \"corpus\", \"id\": \"c\"}]", 201);
    save("semantic", "s",
         "\"corpus_id\": \"c\", \"model_name\": \"m\", \"embedding_dimension\": 4, "
         "\"corpus_version\": \"1.0.0\"",
         "[{\"type\": \"corpus\", \"id\": \"c\"}]", 201);
    save("search", "x", "\"corpus_id\": \"c\"",
         "[{\"type\": \"trie\", \"id\": \"t\"}, {\"type\": \"semantic\", \"id\": \"s\"}]", 201);
    ck_assert(!is_stale("trie", "t", NULL));
    json_t *deps;
    ck_assert_int_eq(call("GET", "/corpus/c/dependents", NULL, &deps), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(deps, "items")), 2);
    json_decref(deps);

    post_words("c", "[\"alpha\", \"beta\", \"gamma\"]");
    json_t *reason = NULL;
    ck_assert(is_stale("trie", "t", &reason));
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(reason, "cause"), "version")), "1.0.1");
    json_decref(reason);
    ck_assert(is_stale("semantic", "s", NULL));
    ck_assert(is_stale("search", "x", &reason));
    /* x is stale through t or s, caused by c */
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(reason, "cause"), "id")),
                     "c");
    json_decref(reason);
    json_t *list;
    ck_assert_int_eq(call("GET", "/trie?stale=true", NULL, &list), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(list, "items")), 1);
    json_decref(list);

    json_t *report;
    ck_assert_int_eq(call("POST", "/corpus/c/rebuild", NULL, &report), 200);
    json_t *order = json_object_get(report, "order");
    ck_assert_uint_eq(json_array_size(order), 3); /* t, s and x, x once */
    int pos_t = -1, pos_s = -1, pos_x = -1;
    size_t i;
    json_t *step;
    json_array_foreach(order, i, step)
    {
        const char *id = json_string_value(json_object_get(step, "id"));
        if (strcmp(id, "t") == 0)
            pos_t = (int)i;
        if (strcmp(id, "s") == 0)
            pos_s = (int)i;
        if (strcmp(id, "x") == 0)
            pos_x = (int)i;
        ck_assert_str_eq(json_string_value(json_object_get(step, "action")), "marked_stale");
    }
    ck_assert(pos_t >= 0 && pos_s >= 0 && pos_x >= 0);
    ck_assert(pos_t < pos_x && pos_s < pos_x);
    json_decref(report);
    /* a new version of t clears its own staleness */
    save("trie", "t", "\"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1",
         "[{\"type\": \"corpus\", \"id\": \"c\"}]", 201);
    ck_assert(!is_stale("trie", "t", NULL));
}
END_TEST

/* A resource deleted whole and saved again starts with a first version,
 * yet what depended on it before still does: the new version marks it
 * stale (the store looks for dependents as it writes, not only for
 * resources that had a latest version). */
START_TEST(a_recreated_resource_marks_its_old_dependents_stale)
{
    post_words("rc", "[\"alpha\"]");
    save("trie", "rt", "\"corpus_ids\": [\"rc\"], \"node_count\": 1, \"max_depth\": 1",
         "[{\"type\": \"corpus\", \"id\": \"rc\"}]", 201);
    ck_assert(!is_stale("trie", "rt", NULL));
    ck_assert_int_eq(call("DELETE", "/corpus/rc", NULL, NULL), 200);
    ck_assert(!is_stale("trie", "rt", NULL));
    post_words("rc", "[\"alpha\", \"beta\"]");
    json_t *reason = NULL;
    ck_assert(is_stale("trie", "rt", &reason));
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(reason, "cause"), "id")),
                     "rc");
    json_decref(reason);
}
END_TEST

START_TEST(a_dependency_cycle_is_refused_and_changes_nothing)
{
    save("trie", "a", "\"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1", "[]", 201);
    save("trie", "b", "\"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1",
         "[{\"type\": \"trie\", \"id\": \"a\"}]", 201);
    json_t *out;
    ck_assert_int_eq(call("POST", "/trie/a/versions",
                          "{\"content\": 1, \"corpus_ids\": [\"c\"], \"node_count\": 1, "
                          "\"max_depth\": 1, \"dependencies\":"
                          " [{\"type\": \"trie\", \"id\": \"b\"}]}",
                          &out),
                     409);
    const char *detail = json_string_value(json_object_get(out, "detail"));
    ck_assert_msg(strstr(detail, "trie/a") && strstr(detail, "trie/b"), "%s", detail);
    json_decref(out);
    json_t *list;
    ck_assert_int_eq(call("GET", "/trie/a/versions", NULL, &list), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(list, "items")), 1);
    json_decref(list);
    /* and a resource may not depend on itself */
    ck_assert_int_eq(call("POST", "/trie/a/versions",
                          "{\"content\": 2, \"corpus_ids\": [\"c\"], \"node_count\": 1, "
                          "\"max_depth\": 1, \"dependencies\":"
                          " [{\"type\": \"trie\", \"id\": \"a\"}]}",
                          NULL),
                     409);
}
END_TEST

static long versions_count(const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/corpus/%s/versions", id);
    json_t *list;
    if (call("GET", path, NULL, &list) != 200) {
        json_decref(list);
        return -1;
    }
    long n = (long)json_array_size(json_object_get(list, "items"));
    json_decref(list);
    return n;
}

/* The depth limit holds where a tree changes: 409 naming it, nothing
 * changed. */
START_TEST(tree_depth_is_enforced_where_a_tree_changes)
{
    post_words("leaf", "[\"w\"]");
    char body[256], prev[16] = "leaf";
    for (int level = 1; level <= 32; level++) {
        snprintf(body, sizeof body,
                 "{\"master\": \"m%d\", \"language\": \"en\", \"children\": [\"%s\"]}", level,
                 prev);
        ck_assert_int_eq(call("POST", "/trees", body, NULL), 201);
        snprintf(prev, sizeof prev, "m%d", level);
    }
    json_t *out;
    ck_assert_int_eq(call("POST", "/trees",
                          "{\"master\": \"m33\", \"language\": \"en\", \"children\": [\"m32\"]}",
                          &out),
                     409);
    ck_assert_msg(strstr(json_string_value(json_object_get(out, "detail")), "32") != NULL, "%s",
                  json_string_value(json_object_get(out, "detail")));
    json_decref(out);
    ck_assert_int_eq(call("GET", "/corpus/m33", NULL, NULL), 404);
    /* attaching under the deepest master: a plain corpus fits at 32 ... */
    post_words("x1", "[\"a\"]");
    ck_assert_int_eq(call("POST", "/trees/m1/children", "{\"id\": \"x1\"}", NULL), 201);
    /* ... a master with children of its own does not */
    post_words("x2", "[\"b\"]");
    ck_assert_int_eq(call("POST", "/trees",
                          "{\"master\": \"sub\", \"language\": \"en\", \"children\": [\"x2\"]}",
                          NULL),
                     201);
    long before = versions_count("m32");
    ck_assert_int_eq(call("POST", "/trees/m1/children", "{\"id\": \"sub\"}", NULL), 409);
    ck_assert_int_eq(versions_count("m32"), before);
    /* and the leaf's masters follow it all the way up */
    post_words("leaf", "[\"w\", \"deep\"]");
    json_t *voc = vocabulary_json("m32");
    char *text = json_dumps(voc, 0);
    bool deep = strstr(text, "deep") != NULL;
    free(text);
    json_decref(voc);
    ck_assert(deep);
}
END_TEST

/* Tree requests answering 4xx leave nothing behind. */
START_TEST(refused_tree_requests_leave_nothing_behind)
{
    ck_assert_int_eq(
        call("POST", "/trees",
             "{\"master\": \"dup\", \"language\": \"en\", \"children\":"
             " [{\"id\": \"da\", \"words\": [\"x\"]}, {\"id\": \"da\", \"words\": [\"y\"]}]}",
             NULL),
        400);
    ck_assert_int_eq(call("GET", "/corpus/da", NULL, NULL), 404);
    ck_assert_int_eq(
        call("POST", "/trees",
             "{\"master\": \"bad\", \"language\": \"en\", \"children\":"
             " [{\"id\": \"okc\", \"words\": [\"x\"]}, {\"id\": \"badc\", \"words\": [1]}]}",
             NULL),
        400);
    ck_assert_int_eq(call("GET", "/corpus/okc", NULL, NULL), 404);
    ck_assert_int_eq(call("POST", "/trees",
                          "{\"master\": \"ghostm\", \"language\": \"en\", \"children\":"
                          " [{\"id\": \"g1\", \"words\": [\"x\"]}, \"ghost\"]}",
                          NULL),
                     404);
    ck_assert_int_eq(call("GET", "/corpus/g1", NULL, NULL), 404);
    /* an inline child that already has another master: 409 before any save */
    ck_assert_int_eq(call("POST", "/trees",
                          "{\"master\": \"t1\", \"language\": \"en\", \"children\":"
                          " [{\"id\": \"shared\", \"words\": [\"x\"]}]}",
                          NULL),
                     201);
    ck_assert_int_eq(call("POST", "/trees", "{\"master\": \"t2\", \"language\": \"en\"}", NULL),
                     201);
    long child_before = versions_count("shared"), t1_before = versions_count("t1");
    ck_assert_int_eq(
        call("POST", "/trees/t2/children", "{\"id\": \"shared\", \"words\": [\"y\"]}", NULL), 409);
    ck_assert_int_eq(versions_count("shared"), child_before);
    ck_assert_int_eq(versions_count("t1"), t1_before);
}
END_TEST

/* Dependents: 404 for what never existed, pages that cover every one. */
START_TEST(dependents_are_paginated_and_404_for_nothing)
{
    ck_assert_int_eq(call("GET", "/corpus/nothere/dependents", NULL, NULL), 404);
    ck_assert_int_eq(call("POST", "/trie/nothere/cleanup", NULL, NULL), 404);
    post_words("p", "[\"x\"]");
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "pt%d", i);
        save("trie", id, "\"corpus_ids\": [\"p\"], \"node_count\": 1, \"max_depth\": 1",
             "[{\"type\": \"corpus\", \"id\": \"p\"}]", 201);
    }
    json_t *page;
    ck_assert_int_eq(call("GET", "/corpus/p/dependents?limit=2", NULL, &page), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(page, "items")), 2);
    const char *next = json_string_value(json_object_get(page, "next"));
    ck_assert_ptr_nonnull(next);
    char path[512];
    snprintf(path, sizeof path, "/corpus/p/dependents?limit=2&cursor=%s", next);
    json_decref(page);
    ck_assert_int_eq(call("GET", path, NULL, &page), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(page, "items")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(page, "items"), 0), "resource_id")),
                     "pt2");
    ck_assert(json_is_null(json_object_get(page, "next")));
    json_decref(page);
}
END_TEST

/* The cycle check sees every dependency, not the first 256: a cycle
 * through the 300th is found. */
START_TEST(the_cycle_check_is_complete)
{
    save("trie", "hub", "\"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1", "[]", 201);
    for (int i = 0; i < 299; i++) {
        char id[16];
        snprintf(id, sizeof id, "leaf%d", i);
        save("trie", id, "\"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1", "[]", 201);
    }
    save("trie", "leaf299", "\"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1",
         "[{\"type\": \"trie\", \"id\": \"hub\"}]", 201);
    size_t cap = 300 * 48 + 256;
    char *deps = malloc(cap);
    size_t n = (size_t)snprintf(deps, cap, "[");
    for (int i = 0; i < 300; i++)
        n += (size_t)snprintf(deps + n, cap - n, "%s{\"type\": \"trie\", \"id\": \"leaf%d\"}",
                              i ? ", " : "", i);
    snprintf(deps + n, cap - n, "]");
    save("trie", "hub", "\"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1", deps, 409);
    free(deps);
}
END_TEST

/* Dependencies name what exists, once each: 400 naming the entry. */
START_TEST(dependencies_on_what_does_not_exist_are_refused)
{
    save("trie", "d", "\"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1", "[]", 201);
    static const char *const bad[][2] = {
        {"[{\"type\": \"trie\", \"id\": \"nothere\"}]", "dependencies[0]"},
        {"[{\"type\": \"trie\", \"id\": \"d\", \"version\": \"9.9.9\"}]", "dependencies[0]"},
        {"[{\"type\": \"trie\", \"id\": \"d\"}, {\"type\": \"corpus\", \"id\": \"gone\"}]",
         "dependencies[1]"},
        {"[{\"type\": \"trie\", \"id\": \"d\"}, {\"type\": \"trie\", \"id\": \"d\", "
         "\"version\": \"1.0.0\"}]",
         "dependencies[1]"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"content\": 1, \"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1, "
                 "\"dependencies\": %s}",
                 bad[i][0]);
        json_t *out;
        ck_assert_int_eq(call("POST", "/trie/e/versions", body, &out), 400);
        const char *detail = json_string_value(json_object_get(out, "detail"));
        ck_assert_msg(strstr(detail, bad[i][1]) != NULL, "%s", detail);
        json_decref(out);
    }
    ck_assert_int_eq(call("GET", "/trie/e", NULL, NULL), 404);
    save("trie", "e", "\"corpus_ids\": [\"c\"], \"node_count\": 1, \"max_depth\": 1",
         "[{\"type\": \"trie\", \"id\": \"d\", \"version\": \"1.0.0\"}]", 201);
}
END_TEST

/* Client numbers are checked: frequencies past the bound, or summing past
 * it, are 400 (they used to overflow a signed 64-bit sum). */
START_TEST(frequencies_are_bounded)
{
    static const char *const bad[] = {
        "{\"frequencies\": {\"a\": 9223372036854775807, \"a \": 9223372036854775807}}",
        "{\"frequencies\": {\"a\": 1000000000001}}",
        "{\"frequencies\": {\"a\": 600000000000, \" a\": 600000000000}}",
        "{\"frequencies\": {\"a\": -1}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"content\": %s, \"corpus_type\": \"base\", \"language\": \"en\"}", bad[i]);
        json_t *out;
        ck_assert_int_eq(call("POST", "/corpus/fq/versions", body, &out), 400);
        ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(out, "detail")), "frequen"));
        json_decref(out);
    }
    ck_assert_int_eq(call("GET", "/corpus/fq", NULL, NULL), 404);
    ck_assert_int_eq(call("POST", "/corpus/fq/versions",
                          "{\"content\": {\"frequencies\": {\"a\": 500000000000, \" a\": "
                          "500000000000}}, \"corpus_type\": \"base\", \"language\": \"en\"}",
                          NULL),
                     201);
}
END_TEST

/* Contract findings: whole reals are integers, 0.0.0 is no version, a
 * tree's versions cannot be deleted from under it, words are UTF-8, a
 * master's manifest is not a client's, Location is encoded, and a removed
 * resource's versions list is 410. */
START_TEST(contract_findings_hold)
{
    ck_assert_int_eq(call("POST", "/trie/real/versions",
                          "{\"content\": 1, \"corpus_ids\": [\"c\"], \"node_count\": 2.0,"
                          " \"max_depth\": 1, \"ttl\": 5.0}",
                          NULL),
                     201);
    json_t *rec;
    ck_assert_int_eq(call("GET", "/trie/real", NULL, &rec), 200);
    ck_assert(json_is_integer(json_object_get(rec, "node_count")));
    json_decref(rec);
    ck_assert_int_eq(call("POST", "/corpus/realf/versions",
                          "{\"content\": {\"frequencies\": {\"a\": 3.0}}, \"corpus_type\": "
                          "\"base\", \"language\": \"en\"}",
                          NULL),
                     201);
    ck_assert_int_eq(call("POST", "/trie/real/versions",
                          "{\"content\": 2, \"corpus_ids\": [\"c\"], \"node_count\": 2.5,"
                          " \"max_depth\": 1}",
                          NULL),
                     400);
    /* 0.0.0 */
    ck_assert_int_eq(call("GET", "/trie/real/versions/0.0.0", NULL, NULL), 404);
    ck_assert_int_eq(call("DELETE", "/trie/real/versions/0.0.0", NULL, NULL), 404);
    ck_assert_int_eq(call("GET", "/trie/real", NULL, NULL), 200);
    ck_assert_int_eq(call("POST", "/trie/dep0/versions",
                          "{\"content\": 1, \"corpus_ids\": [\"c\"], \"node_count\": 1,"
                          " \"max_depth\": 1, \"dependencies\": [{\"type\": \"trie\", \"id\":"
                          " \"real\", \"version\": \"0.0.0\"}]}",
                          NULL),
                     400);
    /* a tree's versions */
    post_words("kid", "[\"k\"]");
    ck_assert_int_eq(call("POST", "/trees",
                          "{\"master\": \"mum\", \"language\": \"en\", \"children\": [\"kid\"]}",
                          NULL),
                     201);
    ck_assert_int_eq(call("DELETE", "/corpus/kid/versions/latest", NULL, NULL), 409);
    ck_assert_int_eq(call("DELETE", "/corpus/mum/versions/latest", NULL, NULL), 409);
    ck_assert_int_eq(call("GET", "/trees/mum", NULL, NULL), 200);
    /* a corpus that is no master lists no children (and leaks nothing:
     * the ASan build's server fails its exit otherwise) */
    json_t *kids;
    ck_assert_int_eq(call("GET", "/trees/kid/children", NULL, &kids), 200);
    ck_assert_uint_eq(json_array_size(json_object_get(kids, "items")), 0);
    json_decref(kids);
    /* words */
    const char *ct[] = {"Content-Type: text/plain", NULL};
    http_resp r;
    ck_assert_int_eq(http_do(&S, "POST", "/corpus/badw/versions?corpus_type=base&language=en", ct,
                             "ab\xff"
                             "cd\nok\n",
                             8, &r),
                     0);
    ck_assert_int_eq(r.status, 400);
    http_resp_free(&r);
    /* a master's manifest */
    ck_assert_int_eq(call("POST", "/trees",
                          "{\"master\": \"m-c\", \"language\": \"en\", \"content\": {\"x\": 1}}",
                          NULL),
                     400);
    /* Location is percent-encoded */
    const char *cafe = "{\"master\": \"caf\xc3\xa9 m\", \"language\": \"fr\"}";
    ck_assert_int_eq(http_do(&S, "POST", "/trees", JSON_CT, cafe, strlen(cafe), &r), 0);
    ck_assert_int_eq(r.status, 201);
    char loc[128];
    ck_assert_int_eq(http_header(&r, "Location", loc, sizeof loc), 0);
    ck_assert_str_eq(loc, "/trees/caf%C3%A9%20m");
    http_resp_free(&r);
    /* a removed resource's list */
    ck_assert_int_eq(call("DELETE", "/trie/real", NULL, NULL), 200);
    ck_assert_int_eq(call("GET", "/trie/real/versions", NULL, NULL), 410);
}
END_TEST

START_TEST(corpus_content_is_normalised)
{
    const char *h[] = {"Content-Type: text/plain", NULL};
    const char *text = "  zebra\napple\n\n apple \nZebra\n";
    http_resp r;
    ck_assert_int_eq(http_do(&S, "POST", "/corpus/norm/versions?corpus_type=base&language=en", h,
                             text, strlen(text), &r),
                     0);
    ck_assert_int_eq(r.status, 201);
    json_t *rec = json_loadb(r.body, r.body_len, 0, NULL);
    http_resp_free(&r);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "vocabulary_size")), 3);
    json_decref(rec);
    ck_assert_int_eq(http_do(&S, "GET", "/corpus/norm/versions/latest/content", NULL, NULL, 0, &r),
                     0);
    ck_assert_str_eq(r.body, "{\"frequencies\":{\"apple\":2},\"words\":[\"Zebra\",\"apple\","
                             "\"zebra\"]}");
    http_resp_free(&r);
    /* the same vocabulary as JSON is the same content: no new version */
    ck_assert_int_eq(call("POST", "/corpus/norm/versions",
                          "{\"content\": {\"words\": [\"zebra\", \"Zebra\", \"apple\"],"
                          " \"frequencies\": {\"apple\": 2}}, \"corpus_type\": \"base\","
                          " \"language\": \"en\"}",
                          NULL),
                     200);
    /* folding case merges Zebra and zebra */
    ck_assert_int_eq(http_do(&S, "POST",
                             "/corpus/norm/versions?corpus_type=base&language=en&fold_case=true", h,
                             text, strlen(text), &r),
                     0);
    ck_assert_int_eq(r.status, 201);
    rec = json_loadb(r.body, r.body_len, 0, NULL);
    ck_assert_int_eq(json_integer_value(json_object_get(rec, "vocabulary_size")), 2);
    json_decref(rec);
    http_resp_free(&r);
}
END_TEST

static Suite *trees_suite(void)
{
    Suite *s = suite_create("trees");
    TCase *t = tcase_create("trees");
    tcase_set_timeout(t, 600);
    tcase_add_unchecked_fixture(t, start, stop);
    tcase_add_test(t, english_is_the_union_of_the_word_lists);
    tcase_add_test(t, changes_climb_a_deep_tree);
    tcase_add_test(t, a_new_version_marks_dependents_stale_and_rebuild_orders_them);
    tcase_add_test(t, a_recreated_resource_marks_its_old_dependents_stale);
    tcase_add_test(t, a_dependency_cycle_is_refused_and_changes_nothing);
    tcase_add_test(t, dependencies_on_what_does_not_exist_are_refused);
    tcase_add_test(t, dependents_are_paginated_and_404_for_nothing);
    tcase_add_test(t, tree_depth_is_enforced_where_a_tree_changes);
    tcase_add_test(t, refused_tree_requests_leave_nothing_behind);
    tcase_add_test(t, frequencies_are_bounded);
    tcase_add_test(t, contract_findings_hold);
    tcase_add_test(t, the_cycle_check_is_complete);
    tcase_add_test(t, corpus_content_is_normalised);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(trees_suite());
}
