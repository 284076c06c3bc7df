/* The ceiling for ingesting text content: what one thread of this process
 * can do to it at best, the SHA-256 of the raw bytes and zstd at the
 * stored level (codec/sha256.h and codec/compress.h, as the server uses
 * them), with no HTTP, no copies and no disk.
 *   bench_ingest_ref gen FILE MIB      writes MIB MiB of English text
 *   bench_ingest_ref ceiling FILE SECS -> prints MB/s (hash + compress) by
 *                                         the clock, then by CPU time */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../src/codec/compress.h"
#include "../../src/codec/sha256.h"
#include "../../src/common/buf.h"

static double now_s(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Words of the system dictionary in a fixed pseudo-random order, in lines
 * of about 70 characters: text that compresses as prose does (~3x). */
static int gen(const char *path, long mib)
{
    FILE *dict = fopen("/usr/share/dict/words", "r");
    if (dict == NULL) {
        fprintf(stderr, "no /usr/share/dict/words\n");
        return 1;
    }
    size_t n = 0, cap = 1 << 17;
    char **words = malloc(cap * sizeof *words);
    char line[256];
    while (words != NULL && n < cap && fgets(line, sizeof line, dict) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] != '\0' && (words[n] = strdup(line)) != NULL)
            n++;
    }
    fclose(dict);
    FILE *out = fopen(path, "w");
    if (words == NULL || n == 0 || out == NULL) {
        fprintf(stderr, "cannot generate %s\n", path);
        return 1;
    }
    long total = mib << 20, col = 0, done = 0;
    unsigned long long x = 88172645463325252ULL;
    while (done < total) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        /* common words more often: the square favours the low indexes */
        double u = (double)(x % 100000) / 100000.0;
        size_t i = (size_t)(u * u * (double)n);
        const char *w = words[i < n ? i : n - 1];
        long len = (long)strlen(w);
        if (done + len + 1 > total)
            break;
        fputs(w, out);
        col += len + 1;
        done += len + 1;
        fputc(col > 70 ? '\n' : ' ', out);
        if (col > 70)
            col = 0;
    }
    while (done++ < total)
        fputc('\n', out);
    return fclose(out) == 0 ? 0 : 1;
}

static int ceiling(const char *path, double secs)
{
    strata_buf in, out;
    strata_error err;
    sbuf_init(&in, 0);
    sbuf_init(&out, 0);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 1;
    char chunk[65536];
    size_t r;
    while ((r = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (sbuf_append(&in, chunk, r, &err) != 0)
            return 1;
    fclose(f);
    unsigned char digest[SHA256_LEN];
    double start = now_s(CLOCK_MONOTONIC), cpu = now_s(CLOCK_PROCESS_CPUTIME_ID), bytes = 0;
    do {
        out.len = 0;
        if (sha256_oneshot(in.data, in.len, digest, &err) != 0 ||
            scodec_compress(SCODEC_ZSTD, SCODEC_DEFAULT_LEVEL, in.data, in.len, &out, &err) != 0) {
            fprintf(stderr, "%s\n", err.detail);
            return 1;
        }
        bytes += (double)in.len;
    } while (now_s(CLOCK_MONOTONIC) - start < secs);
    printf("%.0f %.0f\n", bytes / (now_s(CLOCK_MONOTONIC) - start) / 1e6,
           bytes / (now_s(CLOCK_PROCESS_CPUTIME_ID) - cpu) / 1e6);
    fprintf(stderr, "(compressed %zu -> %zu bytes)\n", in.len, out.len);
    sbuf_free(&in);
    sbuf_free(&out);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "gen") == 0)
        return gen(argv[2], atol(argv[3]));
    if (argc == 4 && strcmp(argv[1], "ceiling") == 0)
        return ceiling(argv[2], atof(argv[3]));
    fprintf(stderr, "usage: %s gen FILE MIB | ceiling FILE SECONDS\n", argv[0]);
    return 2;
}
