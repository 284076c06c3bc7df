/* 1 MiB content PUT and GET through Strata on an S3 blob store, against
 * the same requests sent straight to the S3 server, by one program so
 * that both sides pay the same client costs (libcurl, keep-alive, one
 * handle per thread; the direct side signs with Strata's SigV4 code).
 *
 *   bench_s3_blobs MODE STRATA_URL S3_URL THREADS SECONDS
 *
 * MODE: strata-put   POST /dictionary/ID/versions of distinct 1 MiB bytes
 *       strata-get   GET  /dictionary/ID/versions/latest/content, ID from
 *                    a set of 64 saved first (rotating)
 *       s3-put       PUT of distinct 1 MiB objects
 *       s3-get       GET of 64 objects put first (rotating)
 * S3_URL is s3://BUCKET/PREFIX?endpoint=... with AWS_* credentials in the
 * environment (scripts/s3-test-server's env file). Prints one line:
 * "MODE N requests in S s: R req/s, F failed". */
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/blobs/s3_client.h"

#define SIZE (1u << 20)
#define HOT  64

static const char *mode, *strata_url;
static s3_client *s3;
static int seconds;
static atomic_ullong done_ok, done_failed;
static atomic_uint next_id;
static unsigned run_tag;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void fill(unsigned char *buf, unsigned id)
{
    unsigned x = id * 2654435761u + run_tag;
    for (size_t i = 0; i < SIZE; i += 4) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        memcpy(buf + i, &x, 4);
    }
}

static size_t discard(char *p, size_t size, size_t n, void *ctx)
{
    (void)p;
    *(size_t *)ctx += size * n;
    return size * n;
}

/* One request to Strata; 0 when it answered 2xx with the expected size. */
static int strata_request(CURL *c, bool put, unsigned id, const unsigned char *body)
{
    char url[512];
    size_t got = 0;
    curl_easy_reset(c);
    if (put) {
        snprintf(url, sizeof url, "%s/dictionary/b%x-%u/versions?word=w&provider=p", strata_url,
                 run_tag, id);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)SIZE);
    } else {
        snprintf(url, sizeof url, "%s/dictionary/hot%x-%u/versions/latest/content", strata_url,
                 run_tag, id % HOT);
    }
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/octet-stream");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    return rc == CURLE_OK && status / 100 == 2 && (put || got == SIZE) ? 0 : -1;
}

static int s3_request(bool put, unsigned id, const unsigned char *body, strata_buf *out)
{
    char key[128];
    strata_error err;
    if (put) {
        snprintf(key, sizeof key, "bench/%x/put-%u", run_tag, id);
        return s3_put(s3, key, body, SIZE, NULL, NULL, &err);
    }
    snprintf(key, sizeof key, "bench/%x/hot-%u", run_tag, id % HOT);
    out->len = 0;
    if (s3_get(s3, key, 0, 0, SIZE, out, NULL, &err) != 0)
        return -1;
    return out->len == SIZE ? 0 : -1;
}

static void *worker(void *arg)
{
    (void)arg;
    bool put = strstr(mode, "put") != NULL, via_strata = strncmp(mode, "strata", 6) == 0;
    unsigned char *body = malloc(SIZE);
    CURL *c = via_strata ? curl_easy_init() : NULL;
    strata_buf out;
    sbuf_init(&out, 0);
    double end = now_s() + seconds;
    while (now_s() < end) {
        unsigned id = atomic_fetch_add(&next_id, 1);
        if (put)
            fill(body, id);
        int rc = via_strata ? strata_request(c, put, id, body) : s3_request(put, id, body, &out);
        atomic_fetch_add(rc == 0 ? &done_ok : &done_failed, 1);
    }
    sbuf_free(&out);
    if (c)
        curl_easy_cleanup(c);
    free(body);
    return NULL;
}

/* The hot set for the GET modes: 64 contents saved/put once. */
static int prepare(void)
{
    unsigned char *body = malloc(SIZE);
    CURL *c = curl_easy_init();
    int rc = 0;
    for (unsigned i = 0; i < HOT && rc == 0; i++) {
        fill(body, 1000000 + i);
        if (strcmp(mode, "strata-get") == 0) {
            char url[512];
            snprintf(url, sizeof url, "%s/dictionary/hot%x-%u/versions?word=w&provider=p",
                     strata_url, run_tag, i);
            curl_easy_reset(c);
            struct curl_slist *h =
                curl_slist_append(NULL, "Content-Type: application/octet-stream");
            size_t got = 0;
            curl_easy_setopt(c, CURLOPT_URL, url);
            curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
            curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
            curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)SIZE);
            curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
            curl_easy_setopt(c, CURLOPT_WRITEDATA, &got);
            long status = 0;
            rc = curl_easy_perform(c) == CURLE_OK ? 0 : -1;
            curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
            curl_slist_free_all(h);
            if (status / 100 != 2)
                rc = -1;
        } else if (strcmp(mode, "s3-get") == 0) {
            char key[128];
            strata_error err;
            snprintf(key, sizeof key, "bench/%x/hot-%u", run_tag, i);
            rc = s3_put(s3, key, body, SIZE, NULL, NULL, &err);
            if (rc != 0)
                fprintf(stderr, "put %s: %s\n", key, err.detail);
        }
    }
    curl_easy_cleanup(c);
    free(body);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODE STRATA_URL S3_URL THREADS SECONDS\n", argv[0]);
        return 2;
    }
    mode = argv[1];
    strata_url = argv[2];
    int threads = atoi(argv[4]);
    seconds = atoi(argv[5]);
    run_tag = (unsigned)time(NULL) ^ (unsigned)clock();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    s3_config cfg;
    strata_error err;
    if (s3_config_from_url(argv[3], &cfg, &err) != 0 || (s3 = s3_client_new(&cfg, &err)) == NULL) {
        fprintf(stderr, "S3: %s\n", err.detail);
        return 1;
    }
    if (threads < 1 || threads > 64 || seconds < 1 || prepare() != 0) {
        fprintf(stderr, "bad arguments, or the hot set could not be written\n");
        return 1;
    }
    pthread_t t[64];
    double t0 = now_s();
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(t[i], NULL);
    double dt = now_s() - t0;
    unsigned long long ok = atomic_load(&done_ok), failed = atomic_load(&done_failed);
    printf("%s %llu requests in %.1f s: %.1f req/s, %llu failed\n", mode, ok, dt, (double)ok / dt,
           failed);
    s3_client_free(s3);
    curl_global_cleanup();
    return failed > 0 ? 1 : 0;
}
