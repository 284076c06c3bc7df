/* The request-body path: wire bytes kept, content decoded on the fly into
 * a size and a hash, bounded both ways. */
#include <check.h>
#include <stdint.h>
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

/* A held body: one aligned buffer, the headroom before the bytes, which
 * read back as they were sent; past its expected size it still grows. */
START_TEST(held_body_has_aligned_room_before_its_bytes)
{
    enum { ROOM = 96, ALIGN = 4096, N = 300000 };
    static unsigned char data[N + 5000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 7 + i / 251);
    size_t sent = _i == 0 ? N : sizeof data; /* as declared, or longer */
    http_body b;
    strata_error err;
    ck_assert_int_eq(body_begin(&b, NULL, 1 << 20, 1 << 20, &err), 0);
    ck_assert_int_eq(body_hold(&b, N, ROOM, ALIGN, &err), 0);
    unsigned char *room = body_room(&b);
    ck_assert_ptr_nonnull(room);
    ck_assert_uint_eq((uintptr_t)room % ALIGN, 0);
    ck_assert_uint_eq(b.headroom, ROOM);
    for (size_t o = 0; o < sent; o += 7000)
        ck_assert_int_eq(body_feed(&b, data + o, sent - o < 7000 ? sent - o : 7000, &err), 0);
    ck_assert_int_eq(body_finish(&b, &err), 0);
    ck_assert_uint_eq(b.raw_size, sent);
    const unsigned char *content;
    size_t len;
    strata_buf scratch; /* unused: the body is plain */
    sbuf_init(&scratch, 0);
    ck_assert_int_eq(body_content(&b, &scratch, &content, &len, &err), 0);
    ck_assert_uint_eq(scratch.len, 0);
    ck_assert_uint_eq(len, sent);
    ck_assert_int_eq(memcmp(content, data, sent), 0);
    ck_assert_ptr_eq(body_room(&b) + ROOM, content); /* the room lies right before */
    if (_i == 0)
        ck_assert_ptr_eq(room, body_room(&b)); /* read in without moving */
    size_t wlen;
    ck_assert_ptr_eq(body_wire(&b, &wlen), content);
    ck_assert_uint_eq(wlen, sent);
    unsigned char want[SHA256_LEN];
    sha256_oneshot(data, sent, want, NULL);
    ck_assert_mem_eq(b.raw_sha256, want, SHA256_LEN);
    body_free(&b);
    sbuf_free(&scratch);
}
END_TEST

/* The limit is on the body's bytes, not the room; a hold is refused past
 * it, after the first byte and on an encoded body, leaving the body as
 * it was. */
START_TEST(hold_keeps_the_limits_and_its_preconditions)
{
    http_body b;
    strata_error err;
    static char chunk[600];
    ck_assert_int_eq(body_begin(&b, NULL, 1024, 1 << 20, &err), 0);
    ck_assert_int_ne(body_hold(&b, 2048, 96, 4096, &err), 0);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
    ck_assert_ptr_null(body_room(&b));
    ck_assert_int_eq(body_hold(&b, 1024, 96, 4096, &err), 0);
    ck_assert_int_eq(body_feed(&b, chunk, sizeof chunk, &err), 0);
    ck_assert_int_eq(body_feed(&b, chunk, 1024 - sizeof chunk, &err), 0);
    ck_assert_int_ne(body_feed(&b, chunk, 1, &err), 0); /* byte 1025 */
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
    ck_assert_int_ne(body_hold(&b, 10, 96, 4096, &err), 0); /* too late */
    ck_assert_int_eq(err.kind, SERR_INTERNAL);
    body_free(&b);

    ck_assert_int_eq(body_begin(&b, "zstd", 1024, 1 << 20, &err), 0);
    ck_assert_int_ne(body_hold(&b, 10, 96, 4096, &err), 0);
    ck_assert_int_eq(err.kind, SERR_INTERNAL);
    ck_assert_ptr_null(body_room(&b));
    body_free(&b);
}
END_TEST

static int collect(void *ctx, const void *data, size_t len, strata_error *err)
{
    return sbuf_append(ctx, data, len, err);
}

/* A held body that spills hands the sink its bytes, never the room. */
START_TEST(held_body_spills_without_its_room)
{
    http_body b;
    strata_error err;
    strata_buf got;
    sbuf_init(&got, 0);
    static unsigned char data[5000];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i % 253 + 1);
    ck_assert_int_eq(body_begin(&b, NULL, 1 << 20, 1 << 20, &err), 0);
    body_spill_to(&b, 3000, collect, &got);
    ck_assert_int_eq(body_hold(&b, 3000, 96, 4096, &err), 0);
    ck_assert_int_eq(body_feed(&b, data, 2500, &err), 0);
    ck_assert_uint_eq(got.len, 0);
    ck_assert_int_eq(body_feed(&b, data + 2500, 2500, &err), 0);
    ck_assert(b.spilled);
    ck_assert_ptr_null(body_room(&b));
    ck_assert_uint_eq(got.len, sizeof data);
    ck_assert_int_eq(memcmp(got.data, data, sizeof data), 0);
    body_free(&b);
    sbuf_free(&got);
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
    tcase_add_loop_test(t, held_body_has_aligned_room_before_its_bytes, 0, 2);
    tcase_add_test(t, hold_keeps_the_limits_and_its_preconditions);
    tcase_add_test(t, held_body_spills_without_its_room);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(body_suite());
}
