/* The JSON writer against jansson's json_dumps, which it stands in for:
 * the same bytes for every kind of value (random trees, escapes, UTF-8,
 * the edges of integers and reals, keys with NUL bytes, sorted keys), and
 * errors where json_dumps fails or a bound is passed, with the buffer left
 * as it was. And the records written with it (api/record_json.c): a
 * record written whole equals its rendered form with the counts put back,
 * and is valid JSON. */
#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../api/record_json.h"
#include "../../src/codec/json_write.h"
#include "../support/harness.h"

#define DUMP_FLAGS        (JSON_COMPACT | JSON_ENCODE_ANY)
#define SORTED_DUMP_FLAGS (DUMP_FLAGS | JSON_SORT_KEYS)

/* Writes value both ways (members in order, then sorted) and compares
 * each with json_dumps. */
static void assert_same_as_jansson(const json_t *value)
{
    for (int sorted = 0; sorted <= 1; sorted++) {
        char *want = json_dumps(value, sorted ? SORTED_DUMP_FLAGS : DUMP_FLAGS);
        ck_assert_ptr_nonnull(want);
        size_t len = 0;
        char *got = json_write_text(value, sorted ? JSON_WRITE_SORT_KEYS : 0, &len, NULL);
        ck_assert_ptr_nonnull(got);
        ck_assert_uint_eq(len, strlen(want));
        ck_assert_str_eq(got, want);
        free(got);
        free(want);
    }
}

/* ---- random trees ------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Bytes that exercise every branch of string writing: ASCII, the escaped
 * characters, other controls, NUL, and 2-, 3- and 4-byte UTF-8. */
static json_t *random_string(void)
{
    static const char *pieces[] = {"a",  "Z",  " ",  "/",    "\"",          "\\",   "\b",
                                   "\f", "\n", "\r", "\t",   "\x01",        "\x1f", "\x7f",
                                   "é",  "€",  "𝄞",  "日本", "\xef\xbf\xbd"};
    char buf[256];
    size_t n = 0, count = rnd() % 12;
    for (size_t i = 0; i < count; i++) {
        const char *p = pieces[rnd() % (sizeof pieces / sizeof *pieces)];
        size_t l = strlen(p);
        memcpy(buf + n, p, l);
        n += l;
    }
    if (rnd() % 8 == 0)
        buf[n++] = '\0'; /* an embedded NUL, as "\u0000" parses to */
    return json_stringn(buf, n);
}

static json_t *random_real(void)
{
    static const double reals[] = {0.0,     -0.0,    1.0,       -1.5,   0.1,
                                   1e20,    1e21,    1e-7,      1e-300, 5e-324,
                                   1e308,   123.456, 2.5e-5,    -3e100, 1.7976931348623157e308,
                                   1.0 / 3, 100.0,   12345678.9};
    if (rnd() % 2)
        return json_real(reals[rnd() % (sizeof reals / sizeof *reals)]);
    double d;
    uint64_t bits = rnd();
    memcpy(&d, &bits, sizeof d);
    return json_real(d); /* NaN and infinities are refused: NULL, not put */
}

static json_t *random_value(int depth)
{
    int kind = (int)(rnd() % (depth >= 5 ? 6 : 8));
    switch (kind) {
    case 0:
        return json_null();
    case 1:
        return json_boolean(rnd() % 2);
    case 2: {
        static const json_int_t edges[] = {0, -1, 1, 9, 10, INT64_MAX, INT64_MIN, -9999999999};
        return json_integer(rnd() % 2 ? edges[rnd() % 8] : (json_int_t)rnd());
    }
    case 3: {
        json_t *r = random_real();
        return r ? r : json_real(2.0);
    }
    case 4:
    case 5:
        return random_string();
    case 6: {
        json_t *a = json_array();
        for (size_t i = 0, n = rnd() % 6; i < n; i++)
            json_array_append_new(a, random_value(depth + 1));
        return a;
    }
    default: {
        json_t *o = json_object();
        for (size_t i = 0, n = rnd() % 6; i < n; i++) {
            json_t *k = random_string();
            json_object_setn_new(o, json_string_value(k), json_string_length(k),
                                 random_value(depth + 1));
            json_decref(k);
        }
        return o;
    }
    }
}

START_TEST(random_trees_match_jansson)
{
    rng_state = 0x9e3779b97f4a7c15ull + (uint64_t)_i * 7919;
    for (int i = 0; i < 200; i++) {
        json_t *v = random_value(0);
        assert_same_as_jansson(v);
        json_decref(v);
    }
}
END_TEST

/* ---- chosen values ------------------------------------------------------ */

START_TEST(scalars_and_edges_match_jansson)
{
    json_t *vals[] = {
        json_null(),
        json_true(),
        json_false(),
        json_integer(INT64_MIN),
        json_integer(INT64_MAX),
        json_integer(0),
        json_real(0.5),
        json_real(1e22),
        json_real(-1e-5),
        json_real(1e100),
        json_real(3.0),
        json_string(""),
        json_stringn("a\0b", 3),
        json_string("\x01\x02\x1e\x1f line\nbreak \"quoted\" back\\slash tab\t"),
        json_string("\xf4\x8f\xbf\xbf and \xf0\x90\x80\x80"), /* U+10FFFF, U+10000 */
        json_pack("{s:[], s:{}, s:[[], {}], s:s}", "a", "b", "c", "d", ""),
        json_pack("{s:i, s:i, s:i, s:i}", "b", 1, "a", 2, "ab", 3, "", 4),
    };
    for (size_t i = 0; i < sizeof vals / sizeof *vals; i++) {
        ck_assert_ptr_nonnull(vals[i]);
        assert_same_as_jansson(vals[i]);
        json_decref(vals[i]);
    }
    /* keys that differ only after a NUL, or are prefixes of each other */
    json_t *o = json_object();
    json_object_setn_new(o, "k\0z", 3, json_integer(1));
    json_object_setn_new(o, "k\0a", 3, json_integer(2));
    json_object_setn_new(o, "k", 1, json_integer(3));
    json_object_setn_new(o, "\xc3\xa9", 2, json_integer(4));
    json_object_setn_new(o, "z", 1, json_integer(5));
    assert_same_as_jansson(o);
    json_decref(o);
}
END_TEST

/* ---- failures ----------------------------------------------------------- */

static void assert_refused(const json_t *value, unsigned flags, enum strata_err_kind kind)
{
    strata_buf b;
    sbuf_init(&b, 0);
    strata_error err;
    ck_assert_int_eq(sbuf_append(&b, "kept", 4, &err), 0);
    ck_assert_int_eq(json_write(value, flags, &b, &err), -1);
    ck_assert_int_eq(err.kind, kind);
    ck_assert_uint_eq(b.len, 4);
    ck_assert_ptr_null(json_write_text(value, flags, NULL, NULL));
    sbuf_free(&b);
}

START_TEST(invalid_utf8_is_refused)
{
    static const char *bad[] = {"\xff", "a\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *s = json_stringn_nocheck(bad[i], strlen(bad[i]));
        ck_assert_ptr_null(json_dumps(s, DUMP_FLAGS));
        assert_refused(s, 0, SERR_INVALID);
        json_t *o = json_object();
        /* jansson writes such a key half and goes on (invalid JSON) */
        json_object_setn_new_nocheck(o, bad[i], strlen(bad[i]), json_integer(1));
        assert_refused(o, 0, SERR_INVALID);
        assert_refused(o, JSON_WRITE_SORT_KEYS, SERR_INVALID);
        json_decref(o);
        json_decref(s);
    }
}
END_TEST

START_TEST(depth_cycles_null_and_cap_are_errors)
{
    assert_refused(NULL, 0, SERR_INVALID);

    json_t *deep = json_array(), *inner = deep;
    for (int i = 0; i < JSON_WRITE_MAX_DEPTH; i++) {
        json_t *next = json_array();
        json_array_append_new(inner, next);
        inner = next;
    }
    assert_refused(deep, 0, SERR_INVALID);
    json_decref(deep);

    /* exactly at the bound: written */
    json_t *ok = json_array();
    inner = ok;
    for (int i = 1; i < JSON_WRITE_MAX_DEPTH; i++) {
        json_t *next = json_array();
        json_array_append_new(inner, next);
        inner = next;
    }
    size_t len = 0;
    char *text = json_write_text(ok, 0, &len, NULL);
    ck_assert_ptr_nonnull(text);
    ck_assert_uint_eq(len, 2 * JSON_WRITE_MAX_DEPTH);
    free(text);
    json_decref(ok);

    /* the deepest document jansson's parser gives is written as json_dumps
     * writes it */
    char *nested = malloc(2 * JSON_PARSER_MAX_DEPTH + 1);
    memset(nested, '[', JSON_PARSER_MAX_DEPTH);
    memset(nested + JSON_PARSER_MAX_DEPTH, ']', JSON_PARSER_MAX_DEPTH);
    nested[2 * JSON_PARSER_MAX_DEPTH] = '\0';
    json_t *parsed = json_loads(nested, 0, NULL);
    ck_assert_ptr_nonnull(parsed);
    assert_same_as_jansson(parsed);
    json_decref(parsed);
    free(nested);

    /* a cycle (jansson allows making one through arrays) */
    json_t *a = json_array(), *b = json_array();
    json_array_append(a, b);
    json_array_append(b, a);
    assert_refused(a, 0, SERR_INVALID);
    json_array_clear(b);
    json_decref(a);
    json_decref(b);

    /* the buffer's cap */
    strata_buf capped;
    sbuf_init(&capped, 8);
    strata_error err;
    json_t *big = json_string("more than eight bytes");
    ck_assert_int_eq(json_write(big, 0, &capped, &err), -1);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
    ck_assert_uint_eq(capped.len, 0);
    json_decref(big);
    sbuf_free(&capped);
}
END_TEST

/* ---- records ------------------------------------------------------------ */

static void sample_version(store_version *v, bool stale)
{
    memset(v, 0, sizeof *v);
    strcpy(v->type, "dictionary");
    strcpy(v->id, "w\u00e9rd");
    strcpy(v->ns, "default");
    v->vkey = (1ull << 40) | 2; /* any vkey semver_format takes */
    v->created_at_ms = 1700000000123;
    memset(v->data_hash, 'a', SHA256_HEX_LEN);
    v->is_latest = true;
    v->doc = json_pack("{s:s, s:{s:s}, s:[{s:s, s:s}], s:n}", "word", "w\u00e9rd",
                       "content_location", "content_type", "application/json", "dependencies",
                       "type", "dictionary", "id", "other", "ttl");
    static const char content[] = "{\"senses\":[\"a\\nb\",1.5]}";
    v->content = (unsigned char *)strdup(content);
    v->content_len = strlen(content);
    v->stale = stale;
    v->stale_reason = stale ? json_pack("{s:s}", "cause", "x") : NULL;
}

START_TEST(record_written_whole_equals_rendered_with_counts)
{
    for (int stale = 0; stale <= 1; stale++) {
        store_version v;
        sample_version(&v, stale);
        strata_buf whole, rendered;
        sbuf_init(&whole, 0);
        sbuf_init(&rendered, 0);
        strata_error err;
        ck_assert_int_eq(record_write(&v, 7, 1700000001000, &whole, &err), 0);
        size_t split = 0;
        ck_assert_int_eq(record_render(&v, &rendered, &split, &err), 0);
        rendered_record *r = malloc(sizeof *r + rendered.len);
        memset(r, 0, sizeof *r);
        memcpy(r->bytes, rendered.data, rendered.len);
        r->len = rendered.len;
        r->split = split;
        size_t len = 0;
        unsigned char *body = record_body(r, 7, 1700000001000, &len);
        ck_assert_ptr_nonnull(body);
        ck_assert_uint_eq(len, whole.len);
        ck_assert_mem_eq(body, whole.data, len);
        /* valid JSON, with the fields where a client looks for them */
        json_t *parsed = json_loadb((const char *)body, len, 0, NULL);
        ck_assert_ptr_nonnull(parsed);
        ck_assert_str_eq(json_string_value(json_object_get(parsed, "resource_id")), v.id);
        ck_assert_int_eq(json_integer_value(json_object_get(parsed, "access_count")), 7);
        ck_assert(json_is_array(json_object_get(json_object_get(parsed, "content"), "senses")));
        ck_assert(json_is_array(
            json_object_get(json_object_get(parsed, "version_info"), "dependencies")));
        ck_assert_ptr_null(json_object_get(parsed, "dependencies"));
        ck_assert_int_eq(json_is_true(json_object_get(parsed, "stale")), stale);
        ck_assert_int_eq(json_object_get(parsed, "stale_reason") != NULL, stale);
        json_decref(parsed);
        free(body);
        free(r);
        sbuf_free(&whole);
        sbuf_free(&rendered);
        store_version_clear(&v);
    }
}
END_TEST

START_TEST(unwritable_stored_record_is_an_internal_error)
{
    store_version v;
    sample_version(&v, false);
    json_object_set_new(v.doc, "word", json_stringn_nocheck("\xff", 1));
    strata_buf b;
    sbuf_init(&b, 0);
    strata_error err;
    ck_assert_int_eq(sbuf_append(&b, "kept", 4, &err), 0);
    ck_assert_int_eq(record_write(&v, 0, 0, &b, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INTERNAL); /* a 500, not the client's 400 */
    ck_assert_uint_eq(b.len, 4);
    size_t split = 0;
    ck_assert_int_eq(record_render(&v, &b, &split, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INTERNAL);
    ck_assert_uint_eq(b.len, 4);
    sbuf_free(&b);
    store_version_clear(&v);
}
END_TEST

static Suite *json_write_suite(void)
{
    Suite *s = suite_create("json_write");
    TCase *t = tcase_create("same_as_jansson");
    tcase_add_loop_test(t, random_trees_match_jansson, 0, 20);
    tcase_add_test(t, scalars_and_edges_match_jansson);
    suite_add_tcase(s, t);
    t = tcase_create("errors");
    tcase_add_test(t, invalid_utf8_is_refused);
    tcase_add_test(t, depth_cycles_null_and_cap_are_errors);
    suite_add_tcase(s, t);
    t = tcase_create("records");
    tcase_add_test(t, record_written_whole_equals_rendered_with_counts);
    tcase_add_test(t, unwritable_stored_record_is_an_internal_error);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(json_write_suite());
}
