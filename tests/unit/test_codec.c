/* Codec: SHA-256, canonical JSON, compression round trips, corruption,
 * decompression caps (the bomb), policy and the stored-blob format. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/codec/blob_format.h"
#include "../../src/codec/compress.h"
#include "../../src/codec/json_canon.h"
#include "../../src/codec/policy.h"
#include "../../src/codec/sha256.h"
#include "../support/harness.h"

/* ---- inputs ------------------------------------------------------------- */

enum { IN_EMPTY, IN_ONE, IN_RANDOM, IN_TEXT, N_INPUTS };

static unsigned char *make_input(int kind, size_t *len)
{
    static const char *words[] = {"apple ",  "banana ",     "cherry ", "dictionary ",
                                  "corpus ", "literature ", "trie ",   "semantic "};
    unsigned char *p = NULL;
    switch (kind) {
    case IN_EMPTY:
        *len = 0;
        return malloc(1);
    case IN_ONE:
        *len = 1;
        p = malloc(1);
        p[0] = 'x';
        return p;
    case IN_RANDOM: {
        *len = 1 << 20;
        p = malloc(*len);
        unsigned long long x = 0x9e3779b97f4a7c15ull;
        for (size_t i = 0; i < *len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            p[i] = (unsigned char)x;
        }
        return p;
    }
    default: {
        *len = 8u << 20;
        p = malloc(*len);
        size_t o = 0, i = 0;
        while (o < *len) {
            const char *w = words[(i * 7 + i / 3) % 8];
            size_t n = strlen(w);
            if (o + n > *len)
                n = *len - o;
            memcpy(p + o, w, n);
            o += n;
            i++;
        }
        return p;
    }
    }
}

static const enum scodec CODECS[] = {SCODEC_NONE, SCODEC_ZSTD, SCODEC_LZ4, SCODEC_GZIP};
#define N_CODECS 4

/* ---- SHA-256 -------------------------------------------------------------- */

START_TEST(sha256_known_vectors)
{
    unsigned char d[SHA256_LEN];
    char hex[SHA256_HEX_LEN + 1];
    ck_assert_int_eq(sha256_oneshot("abc", 3, d, NULL), 0);
    sha256_to_hex(d, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    ck_assert_int_eq(sha256_oneshot("", 0, d, NULL), 0);
    sha256_to_hex(d, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    unsigned char back[SHA256_LEN];
    ck_assert_int_eq(sha256_from_hex(hex, back), 0);
    ck_assert_mem_eq(back, d, SHA256_LEN);
    ck_assert_int_eq(sha256_from_hex("zz", back), -1);
}
END_TEST

START_TEST(sha256_streaming_equals_oneshot)
{
    size_t len;
    unsigned char *in = make_input(IN_TEXT, &len);
    unsigned char a[SHA256_LEN], b[SHA256_LEN];
    sha256_oneshot(in, len, a, NULL);
    sha256_ctx *ctx = sha256_new(NULL);
    ck_assert_ptr_nonnull(ctx);
    for (size_t o = 0; o < len; o += 4097)
        sha256_update(ctx, in + o, len - o < 4097 ? len - o : 4097, NULL);
    ck_assert_int_eq(sha256_final(ctx, b, NULL), 0);
    ck_assert_mem_eq(a, b, SHA256_LEN);
    sha256_free(ctx);
    free(in);
}
END_TEST

/* ---- canonical JSON ------------------------------------------------------- */

START_TEST(canonical_json_ignores_key_order_and_space)
{
    json_t *a = json_loads("{\"b\": 1, \"a\": {\"y\": [1, 2, {\"k\": \"v\", \"j\": null}], \"x\": "
                           "\"\xc3\xa9t\xc3\xa9\"}}",
                           0, NULL);
    json_t *b =
        json_loads("{\"a\":{\"x\":\"\xc3\xa9t\xc3\xa9\",\"y\":[1,2,{\"j\":null,\"k\":\"v\"}]},"
                   "\"b\":1}",
                   0, NULL);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    unsigned char ha[SHA256_LEN], hb[SHA256_LEN];
    ck_assert_int_eq(json_canon_hash(a, ha, NULL), 0);
    ck_assert_int_eq(json_canon_hash(b, hb, NULL), 0);
    ck_assert_mem_eq(ha, hb, SHA256_LEN);
    size_t len;
    char *s = json_canon_dump(a, &len, NULL);
    /* sorted, compact, UTF-8 kept as is */
    ck_assert_str_eq(
        s, "{\"a\":{\"x\":\"\xc3\xa9t\xc3\xa9\",\"y\":[1,2,{\"j\":null,\"k\":\"v\"}]},\"b\":1}");
    free(s);
    json_decref(a);
    json_decref(b);
}
END_TEST

START_TEST(canonical_json_differs_when_values_differ)
{
    json_t *a = json_pack("{s:i, s:s}", "n", 1, "w", "apple");
    json_t *b = json_pack("{s:i, s:s}", "n", 2, "w", "apple");
    json_t *c = json_pack("[s, s]", "a", "b");
    json_t *d = json_pack("[s, s]", "b", "a");
    unsigned char ha[SHA256_LEN], hb[SHA256_LEN], hc[SHA256_LEN], hd[SHA256_LEN];
    json_canon_hash(a, ha, NULL);
    json_canon_hash(b, hb, NULL);
    json_canon_hash(c, hc, NULL);
    json_canon_hash(d, hd, NULL);
    ck_assert_int_ne(memcmp(ha, hb, SHA256_LEN), 0);
    ck_assert_int_ne(memcmp(hc, hd, SHA256_LEN), 0); /* array order matters */
    json_decref(a);
    json_decref(b);
    json_decref(c);
    json_decref(d);
}
END_TEST

/* ---- compression ---------------------------------------------------------- */

/* _i runs over codec x input */
START_TEST(roundtrip_oneshot)
{
    enum scodec codec = CODECS[_i / N_INPUTS];
    size_t len;
    unsigned char *in = make_input(_i % N_INPUTS, &len);
    strata_buf z, out;
    sbuf_init(&z, 0);
    sbuf_init(&out, 0);
    strata_error err;
    ck_assert_msg(scodec_compress(codec, SCODEC_DEFAULT_LEVEL, in, len, &z, &err) == 0, "%s",
                  err.detail);
    if (codec != SCODEC_NONE && _i % N_INPUTS == IN_TEXT)
        ck_assert_uint_lt(z.len, len / 4); /* text really compresses */
    ck_assert_msg(scodec_decompress(codec, z.data, z.len, len, &out, &err) == 0, "%s: %s",
                  scodec_name(codec), err.detail);
    ck_assert_uint_eq(out.len, len);
    if (len)
        ck_assert_int_eq(memcmp(out.data, in, len), 0);
    sbuf_free(&z);
    sbuf_free(&out);
    free(in);
}
END_TEST

START_TEST(roundtrip_streaming_small_pieces)
{
    enum scodec codec = CODECS[_i / N_INPUTS];
    size_t len;
    unsigned char *in = make_input(_i % N_INPUTS, &len);
    strata_buf z, out;
    sbuf_init(&z, 0);
    sbuf_init(&out, 0);
    strata_error err;
    sencoder *e = sencoder_new(codec, SCODEC_DEFAULT_LEVEL, SCODEC_SIZE_UNKNOWN, &err);
    ck_assert_ptr_nonnull(e);
    for (size_t o = 0; o < len; o += 100003)
        ck_assert_int_eq(
            sencoder_feed(e, in + o, len - o < 100003 ? len - o : 100003, buf_sink, &z, &err), 0);
    ck_assert_int_eq(sencoder_finish(e, buf_sink, &z, &err), 0);
    sencoder_free(e);
    sdecoder *d = sdecoder_new(codec, len, &err);
    ck_assert_ptr_nonnull(d);
    for (size_t o = 0; o < z.len; o += 7)
        ck_assert_msg(
            sdecoder_feed(d, z.data + o, z.len - o < 7 ? z.len - o : 7, buf_sink, &out, &err) == 0,
            "%s", err.detail);
    if (codec == SCODEC_NONE && len == 0)
        ck_assert_int_eq(sdecoder_finish(d, buf_sink, &out, &err), 0);
    else
        ck_assert_msg(sdecoder_finish(d, buf_sink, &out, &err) == 0, "%s", err.detail);
    ck_assert_uint_eq(sdecoder_total_out(d), len);
    sdecoder_free(d);
    ck_assert_uint_eq(out.len, len);
    if (len)
        ck_assert_int_eq(memcmp(out.data, in, len), 0);
    sbuf_free(&z);
    sbuf_free(&out);
    free(in);
}
END_TEST

/* Flipping any byte, truncating, or appending garbage gives an error,
 * never a crash and never silently different content. _i: codec 1..3 */
START_TEST(corrupted_input_is_an_error)
{
    enum scodec codec = CODECS[1 + _i];
    size_t len;
    unsigned char *in = make_input(IN_TEXT, &len);
    len = 300000;
    strata_buf z, out;
    sbuf_init(&z, 0);
    sbuf_init(&out, 0);
    ck_assert_int_eq(scodec_compress(codec, SCODEC_DEFAULT_LEVEL, in, len, &z, NULL), 0);
    int errors = 0, trials = 0;
    for (size_t pos = 0; pos < z.len; pos += z.len / 97 + 1) {
        z.data[pos] ^= 0x5a;
        strata_error err;
        sbuf_reset(&out);
        int rc = scodec_decompress(codec, z.data, z.len, len, &out, &err);
        trials++;
        if (rc != 0)
            errors++;
        else /* a flip the checksum cannot see must at least not change the content */
            ck_assert(out.len == len && memcmp(out.data, in, len) == 0);
        z.data[pos] ^= 0x5a;
    }
    ck_assert_int_gt(errors, trials * 9 / 10);
    strata_error err;
    sbuf_reset(&out);
    ck_assert_int_ne(scodec_decompress(codec, z.data, z.len / 2, len, &out, &err), 0);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_int_ne(scodec_decompress(codec, "garbage!", 8, len, &out, &err), 0);
    ck_assert_int_ne(scodec_decompress(codec, "", 0, len, &out, &err), 0);
    unsigned char *tail = malloc(z.len + 5);
    memcpy(tail, z.data, z.len);
    memcpy(tail + z.len, "junk!", 5);
    ck_assert_int_ne(scodec_decompress(codec, tail, z.len + 5, len, &out, &err), 0);
    free(tail);
    sbuf_free(&z);
    sbuf_free(&out);
    free(in);
}
END_TEST

static long peak_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = atol(line + 6);
    if (f)
        fclose(f);
    return kib;
}

static void reset_peak_rss(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (f) {
        fputs("5", f);
        fclose(f);
    }
}

START_TEST(zstd_bomb_is_refused_within_the_cap)
{
    strata_buf z, out;
    sbuf_init(&z, 0);
    sbuf_init(&out, 0);
    make_zstd_bomb(&z, _i);
    ck_assert_uint_lt(z.len, 64 * 1024); /* about 32 KiB on the wire */
    const size_t cap = 16u << 20;
    reset_peak_rss();
    long before = peak_rss_kib();
    strata_error err;
    ck_assert_int_ne(scodec_decompress(SCODEC_ZSTD, z.data, z.len, cap, &out, &err), 0);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
    ck_assert_uint_eq(out.len, 0);
    ck_assert_uint_le(out.alloc, cap);
    long grew = peak_rss_kib() - before;
    /* never past the cap (plus decoder state), nowhere near 1 GiB */
    ck_assert_msg(grew < (long)(cap / 1024) + 48 * 1024, "peak RSS grew by %ld KiB", grew);
    /* the streaming decoder stops at the cap too */
    sdecoder *d = sdecoder_new(SCODEC_ZSTD, cap, &err);
    int rc = sdecoder_feed(d, z.data, z.len, NULL, NULL, &err);
    ck_assert_int_ne(rc, 0);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
    ck_assert_uint_le(sdecoder_total_out(d), cap);
    sdecoder_free(d);
    sbuf_free(&z);
    sbuf_free(&out);
}
END_TEST

START_TEST(codec_names)
{
    enum scodec c;
    ck_assert_int_eq(scodec_from_name("ZSTD", &c), 0);
    ck_assert_int_eq(c, SCODEC_ZSTD);
    ck_assert_int_eq(scodec_from_name("x-gzip", &c), 0);
    ck_assert_int_eq(c, SCODEC_GZIP);
    ck_assert_int_eq(scodec_from_name("identity", &c), 0);
    ck_assert_int_eq(c, SCODEC_NONE);
    ck_assert_int_eq(scodec_from_name("br", &c), -1);
    ck_assert_int_eq(scodec_from_name("zstd, gzip", &c), -1);
    ck_assert_str_eq(scodec_name(SCODEC_LZ4), "lz4");
}
END_TEST

/* ---- policy --------------------------------------------------------------- */

START_TEST(policy_follows_the_design)
{
    ck_assert_int_eq(policy_codec_for("corpus", 1023), SCODEC_NONE);
    ck_assert_int_eq(policy_codec_for("corpus", 1024), SCODEC_ZSTD);
    ck_assert_int_eq(policy_codec_for(NULL, 5000), SCODEC_ZSTD);
    ck_assert_int_eq(policy_codec_for("semantic", 1 << 20), SCODEC_NONE);
    ck_assert_int_eq(policy_codec_for("search", 1 << 20), SCODEC_LZ4);
    ck_assert_int_eq(policy_codec_for("realtime", 1 << 20), SCODEC_LZ4);
    ck_assert(policy_compression_pays(1000, 949));
    ck_assert(!policy_compression_pays(1000, 950));
    ck_assert(!policy_compression_pays(0, 0));
}
END_TEST

/* ---- blob format ---------------------------------------------------------- */

START_TEST(blob_roundtrip_and_verification)
{
    size_t len;
    unsigned char *in = make_input(IN_TEXT, &len);
    strata_buf blob, raw;
    sbuf_init(&blob, 0);
    sbuf_init(&raw, 0);
    blob_header h, h2;
    strata_error err;
    ck_assert_int_eq(blob_encode(in, len, SCODEC_ZSTD, &blob, &h, &err), 0);
    ck_assert_int_eq(h.codec, SCODEC_ZSTD);
    ck_assert_uint_eq(h.raw_size, len);
    ck_assert_uint_eq(h.payload_size + BLOB_HEADER_SIZE, blob.len);
    ck_assert_int_eq(blob_decode(blob.data, blob.len, len, &raw, &h2, &err), 0);
    ck_assert_uint_eq(raw.len, len);
    ck_assert_int_eq(memcmp(raw.data, in, len), 0);
    ck_assert_mem_eq(h.raw_sha256, h2.raw_sha256, SHA256_LEN);
    /* one flipped byte anywhere is caught */
    size_t positions[] = {2, 30, 90, BLOB_HEADER_SIZE + 5, blob.len - 1};
    for (size_t i = 0; i < sizeof positions / sizeof positions[0]; i++) {
        blob.data[positions[i]] ^= 1;
        sbuf_reset(&raw);
        ck_assert_int_ne(blob_decode(blob.data, blob.len, len, &raw, &h2, &err), 0);
        ck_assert_int_eq(err.kind, SERR_CORRUPT);
        blob.data[positions[i]] ^= 1;
    }
    ck_assert_int_ne(blob_decode(blob.data, 10, len, &raw, &h2, &err), 0);
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    sbuf_free(&blob);
    sbuf_free(&raw);
    free(in);
}
END_TEST

START_TEST(blob_keeps_raw_bytes_when_compression_does_not_pay)
{
    size_t len;
    unsigned char *in = make_input(IN_RANDOM, &len);
    strata_buf blob, raw;
    sbuf_init(&blob, 0);
    sbuf_init(&raw, 0);
    blob_header h;
    ck_assert_int_eq(blob_encode(in, len, SCODEC_ZSTD, &blob, &h, NULL), 0);
    ck_assert_int_eq(h.codec, SCODEC_NONE);
    ck_assert_uint_eq(h.payload_size, len);
    ck_assert_int_eq(blob_decode(blob.data, blob.len, len, &raw, &h, NULL), 0);
    ck_assert_int_eq(memcmp(raw.data, in, len), 0);
    sbuf_free(&blob);
    sbuf_free(&raw);
    free(in);
}
END_TEST

/* Framing in place gives byte for byte the blob that encoding raw bytes
 * builds by copying them, and writes nothing but the header's room. */
START_TEST(blob_framed_in_place_equals_an_encoded_one)
{
    size_t len;
    unsigned char *in = make_input(IN_RANDOM, &len);
    unsigned char sha[SHA256_LEN];
    sha256_oneshot(in, len, sha, NULL);
    strata_buf blob, raw;
    sbuf_init(&blob, 0);
    sbuf_init(&raw, 0);
    blob_header want, got;
    ck_assert_int_eq(blob_encode_hashed(in, len, sha, SCODEC_NONE, &blob, &want, NULL), 0);
    unsigned char *framed = malloc(BLOB_HEADER_SIZE + len + 1);
    ck_assert_ptr_nonnull(framed);
    memset(framed, 0xA5, BLOB_HEADER_SIZE);
    memcpy(framed + BLOB_HEADER_SIZE, in, len);
    framed[BLOB_HEADER_SIZE + len] = 0x5A;
    blob_frame_raw_in_place(framed, len, sha, &got);
    ck_assert_uint_eq(blob.len, BLOB_HEADER_SIZE + len);
    ck_assert_int_eq(memcmp(framed, blob.data, blob.len), 0);
    ck_assert_uint_eq(framed[BLOB_HEADER_SIZE + len], 0x5A);
    ck_assert_int_eq(memcmp(&got, &want, sizeof got), 0);
    ck_assert_int_eq(blob_decode(framed, BLOB_HEADER_SIZE + len, len, &raw, &got, NULL), 0);
    ck_assert_int_eq(memcmp(raw.data, in, len), 0);
    free(framed);
    sbuf_free(&blob);
    sbuf_free(&raw);
    free(in);
}
END_TEST

START_TEST(blob_from_precompressed_bytes)
{
    const char *text = "the quick brown fox jumps over the lazy dog, again and again and again";
    strata_buf z, blob, raw;
    sbuf_init(&z, 0);
    sbuf_init(&blob, 0);
    sbuf_init(&raw, 0);
    ck_assert_int_eq(scodec_compress(SCODEC_GZIP, 6, text, strlen(text), &z, NULL), 0);
    unsigned char sha[SHA256_LEN];
    sha256_oneshot(text, strlen(text), sha, NULL);
    blob_header h;
    ck_assert_int_eq(
        blob_encode_precompressed(SCODEC_GZIP, z.data, z.len, strlen(text), sha, &blob, &h, NULL),
        0);
    /* the payload is the client's bytes, unchanged */
    ck_assert_int_eq(memcmp(blob.data + BLOB_HEADER_SIZE, z.data, z.len), 0);
    ck_assert_int_eq(blob_decode(blob.data, blob.len, 1000, &raw, &h, NULL), 0);
    ck_assert_uint_eq(raw.len, strlen(text));
    /* a wrong raw hash is caught at decode */
    sha[0] ^= 1;
    sbuf_reset(&blob);
    blob_encode_precompressed(SCODEC_GZIP, z.data, z.len, strlen(text), sha, &blob, &h, NULL);
    strata_error err;
    sbuf_reset(&raw);
    ck_assert_int_ne(blob_decode(blob.data, blob.len, 1000, &raw, &h, &err), 0);
    ck_assert_int_eq(err.kind, SERR_CORRUPT);
    sbuf_free(&z);
    sbuf_free(&blob);
    sbuf_free(&raw);
}
END_TEST

static Suite *codec_suite(void)
{
    Suite *s = suite_create("codec");
    TCase *t = tcase_create("sha256");
    tcase_add_test(t, sha256_known_vectors);
    tcase_add_test(t, sha256_streaming_equals_oneshot);
    suite_add_tcase(s, t);
    t = tcase_create("canonical_json");
    tcase_add_test(t, canonical_json_ignores_key_order_and_space);
    tcase_add_test(t, canonical_json_differs_when_values_differ);
    suite_add_tcase(s, t);
    t = tcase_create("compression");
    tcase_set_timeout(t, 120);
    tcase_add_loop_test(t, roundtrip_oneshot, 0, N_CODECS * N_INPUTS);
    tcase_add_loop_test(t, roundtrip_streaming_small_pieces, 0, N_CODECS * N_INPUTS);
    tcase_add_loop_test(t, corrupted_input_is_an_error, 0, N_CODECS - 1);
    tcase_add_loop_test(t, zstd_bomb_is_refused_within_the_cap, 0, 2);
    tcase_add_test(t, codec_names);
    suite_add_tcase(s, t);
    t = tcase_create("policy_and_blobs");
    tcase_add_test(t, policy_follows_the_design);
    tcase_add_test(t, blob_roundtrip_and_verification);
    tcase_add_test(t, blob_keeps_raw_bytes_when_compression_does_not_pay);
    tcase_add_test(t, blob_framed_in_place_equals_an_encoded_one);
    tcase_add_test(t, blob_from_precompressed_bytes);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(codec_suite());
}
