/* SigV4 signing against AWS's published examples (the S3 documentation's
 * "Examples: Signature Calculations" for examplebucket on 20130524, the
 * IAM guide's signing-key derivation, the SigV4 test suite's query order
 * case), and the canonical forms: path and query encoding, query sorting,
 * header trimming. Also the S3 client's configuration from a URL and the
 * environment (no server needed; the client itself: test_s3_client). */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/blobs/s3_client.h"
#include "../../src/blobs/s3_sigv4.h"
#include "../support/harness.h"

static const s3_sigv4_creds S3_DOCS = {
    .access_key = "AKIAIOSFODNN7EXAMPLE",
    .secret_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    .region = "us-east-1",
    .service = "s3",
};
#define HOST "examplebucket.s3.amazonaws.com"
#define DATE "20130524T000000Z"

static void sign(const s3_sigv4_request *rq, const s3_sigv4_creds *cr, char *auth, char *sig)
{
    strata_error err = {0};
    int rc = s3_sigv4_authorization(rq, cr, auth, S3_SIGV4_AUTH_MAX, sig, &err);
    ck_assert_msg(rc == 0, "signing failed: %s", err.detail);
}

/* The canonical request of rq as a C string (static storage). */
static const char *canonical(const s3_sigv4_request *rq, char *signed_headers)
{
    static char text[4096];
    strata_buf b;
    strata_error err = {0};
    sbuf_init(&b, 0);
    ck_assert_int_eq(s3_sigv4_canonical_request(rq, &b, signed_headers, 512, &err), 0);
    ck_assert_uint_lt(b.len, sizeof text);
    memcpy(text, b.data, b.len);
    text[b.len] = '\0';
    sbuf_free(&b);
    return text;
}

START_TEST(docs_get_object_with_range)
{
    s3_sigv4_header hs[] = {
        {"Host", HOST},
        {"Range", "bytes=0-9"},
        {"x-amz-content-sha256", S3_SIGV4_EMPTY_HASH},
        {"x-amz-date", DATE},
    };
    s3_sigv4_request rq = {.method = "GET",
                           .path = "/test.txt",
                           .headers = hs,
                           .n_headers = 4,
                           .payload_hash = S3_SIGV4_EMPTY_HASH};
    char signed_headers[512];
    ck_assert_str_eq(canonical(&rq, signed_headers),
                     "GET\n/test.txt\n\n"
                     "host:examplebucket.s3.amazonaws.com\n"
                     "range:bytes=0-9\n"
                     "x-amz-content-sha256:" S3_SIGV4_EMPTY_HASH "\n"
                     "x-amz-date:20130524T000000Z\n\n"
                     "host;range;x-amz-content-sha256;x-amz-date\n" S3_SIGV4_EMPTY_HASH);
    ck_assert_str_eq(signed_headers, "host;range;x-amz-content-sha256;x-amz-date");

    /* the string to sign, as the documentation prints it */
    const char *canon = canonical(&rq, signed_headers);
    strata_buf sts;
    sbuf_init(&sts, 0);
    ck_assert_int_eq(
        s3_sigv4_string_to_sign(DATE, "us-east-1", "s3", canon, strlen(canon), &sts, NULL), 0);
    ck_assert_int_eq(sbuf_append(&sts, "", 1, NULL), 0);
    ck_assert_str_eq((char *)sts.data,
                     "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                     "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972");
    sbuf_free(&sts);

    char auth[S3_SIGV4_AUTH_MAX], sig[65];
    sign(&rq, &S3_DOCS, auth, sig);
    ck_assert_str_eq(sig, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
    ck_assert_str_eq(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/"
                           "s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;"
                           "x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd"
                           "91039c6036bdb41");
}
END_TEST

START_TEST(docs_put_object)
{
    const char *body = "Welcome to Amazon S3.";
    char hash[65];
    ck_assert_int_eq(s3_sigv4_sha256_hex(body, strlen(body), hash, NULL), 0);
    ck_assert_str_eq(hash, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    /* headers in no particular order and case: the signer sorts them */
    s3_sigv4_header hs[] = {
        {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
        {"Date", "Fri, 24 May 2013 00:00:00 GMT"},
        {"x-amz-date", DATE},
        {"x-amz-content-sha256", hash},
        {"Host", HOST},
    };
    /* the key is "test$file.text": the '$' is encoded in the canonical URI */
    s3_sigv4_request rq = {.method = "PUT",
                           .path = "/test$file.text",
                           .headers = hs,
                           .n_headers = 5,
                           .payload_hash = hash};
    char signed_headers[512];
    const char *canon = canonical(&rq, signed_headers);
    ck_assert_ptr_nonnull(strstr(canon, "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013"));
    ck_assert_str_eq(signed_headers,
                     "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class");
    char auth[S3_SIGV4_AUTH_MAX], sig[65];
    sign(&rq, &S3_DOCS, auth, sig);
    ck_assert_str_eq(sig, "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}
END_TEST

START_TEST(docs_get_bucket_lifecycle)
{
    s3_sigv4_header hs[] = {
        {"host", HOST},
        {"x-amz-content-sha256", S3_SIGV4_EMPTY_HASH},
        {"x-amz-date", DATE},
    };
    /* "?lifecycle": a parameter without '=' is signed as "lifecycle=" */
    s3_sigv4_request rq = {.method = "GET",
                           .path = "/",
                           .query = "lifecycle",
                           .headers = hs,
                           .n_headers = 3,
                           .payload_hash = S3_SIGV4_EMPTY_HASH};
    char signed_headers[512];
    ck_assert_ptr_nonnull(strstr(canonical(&rq, signed_headers), "GET\n/\nlifecycle=\nhost:"));
    char auth[S3_SIGV4_AUTH_MAX], sig[65];
    sign(&rq, &S3_DOCS, auth, sig);
    ck_assert_str_eq(sig, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    rq.query = "lifecycle=";
    sign(&rq, &S3_DOCS, auth, sig);
    ck_assert_str_eq(sig, "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}
END_TEST

START_TEST(docs_list_objects)
{
    s3_sigv4_header hs[] = {
        {"host", HOST},
        {"x-amz-content-sha256", S3_SIGV4_EMPTY_HASH},
        {"x-amz-date", DATE},
    };
    s3_sigv4_request rq = {.method = "GET",
                           .path = "/",
                           .query = "max-keys=2&prefix=J",
                           .headers = hs,
                           .n_headers = 3,
                           .payload_hash = S3_SIGV4_EMPTY_HASH};
    char auth[S3_SIGV4_AUTH_MAX], sig[65];
    sign(&rq, &S3_DOCS, auth, sig);
    ck_assert_str_eq(sig, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    /* the same query unsorted signs the same (curl 7.88 gets this wrong) */
    rq.query = "prefix=J&max-keys=2";
    sign(&rq, &S3_DOCS, auth, sig);
    ck_assert_str_eq(sig, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
    /* and a different one does not */
    rq.query = "max-keys=3&prefix=J";
    sign(&rq, &S3_DOCS, auth, sig);
    ck_assert_str_ne(sig, "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}
END_TEST

START_TEST(signing_key_and_query_order_suite)
{
    /* IAM user guide, "derive a signing key" */
    unsigned char key[32];
    char hex[65];
    ck_assert_int_eq(s3_sigv4_signing_key("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20120215",
                                          "us-east-1", "iam", key, NULL),
                     0);
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[key[i] >> 4];
        hex[2 * i + 1] = digits[key[i] & 15];
    }
    hex[64] = '\0';
    ck_assert_str_eq(hex, "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");

    /* SigV4 test suite: get-vanilla-query-order-key-case */
    s3_sigv4_header hs[] = {{"Host", "example.amazonaws.com"}, {"X-Amz-Date", "20150830T123600Z"}};
    s3_sigv4_request rq = {.method = "GET",
                           .path = "/",
                           .query = "Param2=value2&Param1=value1",
                           .headers = hs,
                           .n_headers = 2,
                           .payload_hash = S3_SIGV4_EMPTY_HASH};
    s3_sigv4_creds cr = {.access_key = "AKIDEXAMPLE",
                         .secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                         .region = "us-east-1",
                         .service = "service"};
    char auth[S3_SIGV4_AUTH_MAX], sig[65];
    sign(&rq, &cr, auth, sig);
    ck_assert_str_eq(sig, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500");
}
END_TEST

static const char *cq(const char *query)
{
    static char out[1024];
    strata_error err = {0};
    int rc = s3_sigv4_canonical_query(query, out, sizeof out, &err);
    ck_assert_msg(rc == 0, "canonical_query(%s): %s", query ? query : "NULL", err.detail);
    return out;
}

START_TEST(query_sorting_and_encoding)
{
    ck_assert_str_eq(cq(NULL), "");
    ck_assert_str_eq(cq(""), "");
    ck_assert_str_eq(cq("uploads"), "uploads=");
    ck_assert_str_eq(cq("uploads&prefix=a"), "prefix=a&uploads=");
    ck_assert_str_eq(cq("z=1&a=2&a=1&m"), "a=1&a=2&m=&z=1");
    /* names compare before values, bytewise on the encoded forms */
    ck_assert_str_eq(cq("a-b=1&a=2&A=3"), "A=3&a=2&a-b=1");
    ck_assert_str_eq(cq("list-type=2&continuation-token=1%2Fx%3D%3D&max-keys=1000"),
                     "continuation-token=1%2Fx%3D%3D&list-type=2&max-keys=1000");
    /* decoded, then strictly re-encoded: '+' is a plus, hex upper case,
     * '/', ' ', '=' and UTF-8 all encoded, unreserved bytes left alone */
    ck_assert_str_eq(cq("prefix=a+b"), "prefix=a%2Bb");
    ck_assert_str_eq(cq("prefix=%c3%a9t%C3%A9"), "prefix=%C3%A9t%C3%A9");
    ck_assert_str_eq(cq("prefix=\xc3\xa9/a b"), "prefix=%C3%A9%2Fa%20b");
    ck_assert_str_eq(cq("k=a=b"), "k=a%3Db");
    ck_assert_str_eq(cq("k=-._~"), "k=-._~");
    ck_assert_str_eq(cq("&&a=1&&"), "a=1");
    /* already canonical: unchanged (what the client sends is what it signs) */
    ck_assert_str_eq(cq("partNumber=3&uploadId=abc%2B%2F"), "partNumber=3&uploadId=abc%2B%2F");

    char out[16];
    strata_error err = {0};
    ck_assert_int_eq(s3_sigv4_canonical_query("a=%zz", out, sizeof out, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    ck_assert_int_eq(s3_sigv4_canonical_query("a=%4", out, sizeof out, &err), -1);
    ck_assert_int_eq(
        s3_sigv4_canonical_query("prefix=aaaaaaaaaaaaaaaaaaaaaa", out, sizeof out, &err), -1);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
}
END_TEST

START_TEST(path_encoding)
{
    char out[256];
    const char *path = "/bucket/a b/c+d%e$f~g_h.i-j/\xc3\xa9/*(x)";
    ck_assert_int_ge(s3_sigv4_uri_encode(path, strlen(path), true, out, sizeof out), 0);
    ck_assert_str_eq(out, "/bucket/a%20b/c%2Bd%25e%24f~g_h.i-j/%C3%A9/%2A%28x%29");
    ck_assert_int_ge(s3_sigv4_uri_encode("a/b", 3, false, out, sizeof out), 0);
    ck_assert_str_eq(out, "a%2Fb");
    /* bytes past NUL, control bytes, DEL, high bytes */
    ck_assert_int_eq(s3_sigv4_uri_encode("\x01\x7f\xff", 3, true, out, sizeof out), 9);
    ck_assert_str_eq(out, "%01%7F%FF");
    /* no room: -1, never a cut encoding */
    ck_assert_int_eq(s3_sigv4_uri_encode("abc", 3, true, out, 3), -1);
    ck_assert_int_eq(s3_sigv4_uri_encode(" ", 1, true, out, 3), -1);
    ck_assert_int_eq(s3_sigv4_uri_encode(" ", 1, true, out, 4), 3);

    /* the signed path is the encoded one: an encoded and a raw space differ
     * from a plus */
    s3_sigv4_header hs[] = {{"host", HOST}, {"x-amz-date", DATE}};
    s3_sigv4_request rq = {.method = "GET",
                           .path = "/a b",
                           .headers = hs,
                           .n_headers = 2,
                           .payload_hash = S3_SIGV4_EMPTY_HASH};
    char signed_headers[512];
    ck_assert_ptr_nonnull(strstr(canonical(&rq, signed_headers), "GET\n/a%20b\n"));
    char a1[S3_SIGV4_AUTH_MAX], a2[S3_SIGV4_AUTH_MAX], s1[65], s2[65];
    sign(&rq, &S3_DOCS, a1, s1);
    rq.path = "/a+b";
    sign(&rq, &S3_DOCS, a2, s2);
    ck_assert_str_ne(s1, s2);
}
END_TEST

START_TEST(headers_trimmed_sorted_checked)
{
    s3_sigv4_header hs[] = {
        {"X-Amz-Meta-Note", "  two   spaces\tand a tab  "},
        {"x-amz-date", DATE},
        {"HOST", HOST},
        {"If-None-Match", "*"},
    };
    s3_sigv4_request rq = {.method = "PUT",
                           .path = "/k",
                           .headers = hs,
                           .n_headers = 4,
                           .payload_hash = S3_SIGV4_EMPTY_HASH};
    char signed_headers[512];
    const char *c = canonical(&rq, signed_headers);
    ck_assert_ptr_nonnull(strstr(c,
                                 "\nhost:" HOST "\nif-none-match:*\n"
                                 "x-amz-date:" DATE "\nx-amz-meta-note:two spaces and a tab\n\n"));
    ck_assert_str_eq(signed_headers, "host;if-none-match;x-amz-date;x-amz-meta-note");

    strata_error err = {0};
    strata_buf b;
    sbuf_init(&b, 0);
    s3_sigv4_header dup[] = {{"Host", "a"}, {"host", "b"}};
    rq.headers = dup;
    rq.n_headers = 2;
    ck_assert_int_eq(s3_sigv4_canonical_request(&rq, &b, signed_headers, 512, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    s3_sigv4_header crlf[] = {{"x-amz-meta-a", "a\r\nInjected: 1"}};
    rq.headers = crlf;
    rq.n_headers = 1;
    sbuf_reset(&b);
    ck_assert_int_eq(s3_sigv4_canonical_request(&rq, &b, signed_headers, 512, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    s3_sigv4_header ok[] = {{"host", "h"}};
    rq.headers = ok;
    rq.path = "no-slash";
    sbuf_reset(&b);
    ck_assert_int_eq(s3_sigv4_canonical_request(&rq, &b, signed_headers, 512, &err), -1);
    sbuf_free(&b);

    /* no x-amz-date: nothing to sign with */
    rq.path = "/k";
    char auth[S3_SIGV4_AUTH_MAX];
    ck_assert_int_eq(s3_sigv4_authorization(&rq, &S3_DOCS, auth, sizeof auth, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    /* too small an output */
    s3_sigv4_header hd[] = {{"host", "h"}, {"x-amz-date", DATE}};
    rq.headers = hd;
    rq.n_headers = 2;
    ck_assert_int_eq(s3_sigv4_authorization(&rq, &S3_DOCS, auth, 40, NULL, &err), -1);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
}
END_TEST

START_TEST(amz_date)
{
    char d[S3_SIGV4_DATE_LEN + 1];
    s3_sigv4_amz_date(1369353600, d); /* 2013-05-24 00:00:00 UTC */
    ck_assert_str_eq(d, DATE);
    s3_sigv4_amz_date(1700000000, d);
    ck_assert_str_eq(d, "20231114T221320Z");
}
END_TEST

/* Each Check test runs in a process of its own: the environment set here
 * stays in it. */
static void clear_env(void)
{
    static const char *const vars[] = {
        "AWS_ACCESS_KEY_ID",  "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION",
        "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3",   "AWS_ENDPOINT_URL",  "STRATA_S3_ENDPOINT",
    };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
    setenv("AWS_ACCESS_KEY_ID", "AKID", 1);
    setenv("AWS_SECRET_ACCESS_KEY", "SECRET", 1);
}

START_TEST(config_from_url_and_env)
{
    s3_config cfg;
    strata_error err = {0};
    clear_env();
    ck_assert_int_eq(s3_config_from_url("s3://bucket", &cfg, &err), 0);
    ck_assert_str_eq(cfg.bucket, "bucket");
    ck_assert_str_eq(cfg.prefix, "");
    ck_assert_str_eq(cfg.region, "us-east-1");
    ck_assert_str_eq(cfg.endpoint, "https://s3.us-east-1.amazonaws.com");
    ck_assert_str_eq(cfg.access_key, "AKID");
    ck_assert_str_eq(cfg.secret_key, "SECRET");
    ck_assert_str_eq(cfg.session_token, "");
    ck_assert_int_eq(cfg.timeout_ms, 30000);
    ck_assert_int_eq(cfg.max_retries, 4);

    /* the prefix gets one trailing '/', escapes decoded */
    ck_assert_int_eq(s3_config_from_url("s3://b/some/pre%20fix", &cfg, &err), 0);
    ck_assert_str_eq(cfg.prefix, "some/pre fix/");
    ck_assert_int_eq(s3_config_from_url("s3://b/p/", &cfg, &err), 0);
    ck_assert_str_eq(cfg.prefix, "p/");

    /* region: AWS_REGION over AWS_DEFAULT_REGION, the URL over both */
    setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
    ck_assert_int_eq(s3_config_from_url("s3://b", &cfg, &err), 0);
    ck_assert_str_eq(cfg.region, "eu-west-1");
    ck_assert_str_eq(cfg.endpoint, "https://s3.eu-west-1.amazonaws.com");
    setenv("AWS_REGION", "eu-north-1", 1);
    ck_assert_int_eq(s3_config_from_url("s3://b", &cfg, &err), 0);
    ck_assert_str_eq(cfg.region, "eu-north-1");
    ck_assert_int_eq(s3_config_from_url("s3://b?region=ap-south-2", &cfg, &err), 0);
    ck_assert_str_eq(cfg.region, "ap-south-2");

    /* endpoint: STRATA_S3_ENDPOINT > AWS_ENDPOINT_URL_S3 > AWS_ENDPOINT_URL,
     * the URL's endpoint= over all; a trailing '/' dropped */
    setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/", 1);
    ck_assert_int_eq(s3_config_from_url("s3://b", &cfg, &err), 0);
    ck_assert_str_eq(cfg.endpoint, "http://127.0.0.1:9000");
    setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9001", 1);
    ck_assert_int_eq(s3_config_from_url("s3://b", &cfg, &err), 0);
    ck_assert_str_eq(cfg.endpoint, "http://127.0.0.1:9001");
    setenv("STRATA_S3_ENDPOINT", "https://s3.example.net", 1);
    ck_assert_int_eq(s3_config_from_url("s3://b", &cfg, &err), 0);
    ck_assert_str_eq(cfg.endpoint, "https://s3.example.net");
    ck_assert_int_eq(
        s3_config_from_url(
            "s3://b/x?endpoint=http%3A%2F%2F127.0.0.1%3A7100&timeout_ms=2500&other=1", &cfg, &err),
        0);
    ck_assert_str_eq(cfg.endpoint, "http://127.0.0.1:7100");
    ck_assert_int_eq(cfg.timeout_ms, 2500);
    ck_assert_str_eq(cfg.prefix, "x/");

    setenv("AWS_SESSION_TOKEN", "TOKEN", 1);
    ck_assert_int_eq(s3_config_from_url("s3://b", &cfg, &err), 0);
    ck_assert_str_eq(cfg.session_token, "TOKEN");
}
END_TEST

START_TEST(config_refusals)
{
    s3_config cfg;
    strata_error err = {0};
    clear_env();
    static const char *const bad[] = {
        "http://bucket",
        "s3://",
        "s3:///prefix",
        "s3://bad bucket",
        "s3://b?endpoint=ftp://host",
        "s3://b?endpoint=http://host/path",
        "s3://b?endpoint=http://",
        "s3://b?timeout_ms=0",
        "s3://b?timeout_ms=12abc",
        "s3://b?region=",
        "s3://b?region=us%20east",
        "s3://b/%zz",
        "s3://b/"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.kind = SERR_OK;
        ck_assert_msg(s3_config_from_url(bad[i], &cfg, &err) == -1, "%s accepted", bad[i]);
        ck_assert_int_eq(err.kind, SERR_INVALID);
    }
    /* no credentials: refused, naming them */
    unsetenv("AWS_SECRET_ACCESS_KEY");
    ck_assert_int_eq(s3_config_from_url("s3://b", &cfg, &err), -1);
    ck_assert_int_eq(err.kind, SERR_INVALID);
    ck_assert_ptr_nonnull(strstr(err.detail, "AWS_SECRET_ACCESS_KEY"));
    /* a client needs a bucket and credentials */
    memset(&cfg, 0, sizeof cfg);
    ck_assert_ptr_null(s3_client_new(&cfg, &err));
    ck_assert_int_eq(err.kind, SERR_INVALID);
}
END_TEST

static Suite *sigv4_suite(void)
{
    Suite *s = suite_create("s3_sigv4");
    TCase *t = tcase_create("sigv4");
    tcase_add_test(t, docs_get_object_with_range);
    tcase_add_test(t, docs_put_object);
    tcase_add_test(t, docs_get_bucket_lifecycle);
    tcase_add_test(t, docs_list_objects);
    tcase_add_test(t, signing_key_and_query_order_suite);
    tcase_add_test(t, query_sorting_and_encoding);
    tcase_add_test(t, path_encoding);
    tcase_add_test(t, headers_trimmed_sorted_checked);
    tcase_add_test(t, amz_date);
    suite_add_tcase(s, t);
    TCase *c = tcase_create("config");
    tcase_add_test(c, config_from_url_and_env);
    tcase_add_test(c, config_refusals);
    suite_add_tcase(s, c);
    return s;
}

int main(void)
{
    return run_suite(sigv4_suite());
}
