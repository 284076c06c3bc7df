/* The request-body path: wire bytes kept, content decoded on the fly into
 * a size and a hash, bounded both ways. */
#include <check.h>
#include <string.h>

#include "../../api/body.h"
#include "../support/harness.h"

START_TEST(plain_body_is_measured_and_hashed)
{
    http_body b;
    strata_error err;
    ck_assert_int_eq(body_begin(&b, NULL, 1 << 20, 1 << 20, &err), 0);
    ck_assert_int_eq(body_feed(&b, "hello ", 6, &err), 0);
    ck_assert_int_eq(body_feed(&b, "world", 5, &err), 0);
    ck_assert_int_eq(body_finish(&b, &err), 0);
    unsigned char want[SHA256_LEN];
    sha256_oneshot("hello world", 11, want, NULL);
    ck_assert_mem_eq(b.raw_sha256, want, SHA256_LEN);
    ck_assert_uint_eq(b.raw_size, 11);
    ck_assert_uint_eq(b.wire.len, 11);
    body_free(&b);
}
END_TEST

START_TEST(encoded_body_keeps_wire_bytes_and_hashes_content)
{
    const char *codecs[] = {"zstd", "lz4", "gzip"};
    static char text[200000];
    for (size_t i = 0; i < sizeof text; i++)
        text[i] = "abcdefgh"[(i * 31 + i / 1000) % 8];
    strata_buf z, scratch;
    sbuf_init(&z, 0);
    sbuf_init(&scratch, 0);
    enum scodec c;
    scodec_from_name(codecs[_i], &c);
    ck_assert_int_eq(scodec_compress(c, SCODEC_DEFAULT_LEVEL, text, sizeof text, &z, NULL), 0);
    http_body b;
    strata_error err;
    ck_assert_int_eq(body_begin(&b, codecs[_i], 1 << 20, 1 << 20, &err), 0);
    for (size_t o = 0; o < z.len; o += 1000)
        ck_assert_int_eq(body_feed(&b, z.data + o, z.len - o < 1000 ? z.len - o : 1000, &err), 0);
    ck_assert_msg(body_finish(&b, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(b.raw_size, sizeof text);
    ck_assert_uint_eq(b.wire.len, z.len);
    ck_assert_int_eq(memcmp(b.wire.data, z.data, z.len), 0);
    unsigned char want[SHA256_LEN];
    sha256_oneshot(text, sizeof text, want, NULL);
    ck_assert_mem_eq(b.raw_sha256, want, SHA256_LEN);
    const unsigned char *data;
    size_t len;
    ck_assert_int_eq(body_content(&b, &scratch, &data, &len, &err), 0);
    ck_assert_uint_eq(len, sizeof text);
    ck_assert_int_eq(memcmp(data, text, len), 0);
    body_free(&b);
    sbuf_free(&z);
    sbuf_free(&scratch);
}
END_TEST

START_TEST(bomb_is_refused_while_it_arrives)
{
    strata_buf z;
    sbuf_init(&z, 0);
    make_zstd_bomb(&z, 0);
    http_body b;
    strata_error err;
    ck_assert_int_eq(body_begin(&b, "zstd", 64 << 20, 8 << 20, &err), 0);
    int rc = 0;
    for (size_t o = 0; o < z.len && rc == 0; o += 4096)
        rc = body_feed(&b, z.data + o, z.len - o < 4096 ? z.len - o : 4096, &err);
    ck_assert_int_ne(rc, 0);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
    ck_assert_ptr_nonnull(strstr(err.detail, "decompresses past"));
    ck_assert_uint_le(b.wire.alloc, 64 * 1024); /* only wire bytes were kept */
    body_free(&b);
    sbuf_free(&z);
}
END_TEST

START_TEST(mismatched_and_unknown_encodings)
{
    http_body b;
    strata_error err;
    ck_assert_int_eq(body_begin(&b, "zstd", 1 << 20, 1 << 20, &err), 0);
    int rc = body_feed(&b, "plainly not zstd", 16, &err);
    if (rc == 0)
        rc = body_finish(&b, &err);
    ck_assert_int_ne(rc, 0);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.detail, "Content-Encoding"));
    body_free(&b);
    ck_assert_int_ne(body_begin(&b, "br", 1 << 20, 1 << 20, &err), 0);
    ck_assert_int_eq(err.kind, SERR_UNSUPPORTED);
    body_free(&b);
    ck_assert_int_ne(body_begin(&b, "gzip, zstd", 1 << 20, 1 << 20, &err), 0);
    body_free(&b);
}
END_TEST

START_TEST(wire_cap_is_enforced)
{
    http_body b;
    strata_error err;
    ck_assert_int_eq(body_begin(&b, NULL, 1024, 1 << 20, &err), 0);
    static char chunk[600];
    ck_assert_int_eq(body_feed(&b, chunk, sizeof chunk, &err), 0);
    ck_assert_int_ne(body_feed(&b, chunk, sizeof chunk, &err), 0);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
    body_free(&b);
}
END_TEST

static Suite *body_suite(void)
{
    Suite *s = suite_create("body");
    TCase *t = tcase_create("body");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, plain_body_is_measured_and_hashed);
    tcase_add_loop_test(t, encoded_body_keeps_wire_bytes_and_hashes_content, 0, 3);
    tcase_add_test(t, bomb_is_refused_while_it_arrives);
    tcase_add_test(t, mismatched_and_unknown_encodings);
    tcase_add_test(t, wire_cap_is_enforced);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(body_suite());
}
