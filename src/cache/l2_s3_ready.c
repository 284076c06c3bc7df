/* Whether the S3 L2 can serve (l2_s3.h): its format record, and a
 * breaker that makes every call fail at once for a second after one met
 * an unreachable server (or refused credentials), so that a down L2
 * costs callers a miss, not a wait each. */
#include <stdio.h>
#include <string.h>

#include "../common/clock.h"
#include "l2_s3_int.h"

#define DOWN_MS  1000
#define DOWN_TAG "S3 L2 down"

static int check_format(l2s3 *c, strata_error *err)
{
    const size_t n = sizeof L2S3_FORMAT_REC - 1;
    for (int attempt = 0; attempt < 3; attempt++) {
        strata_buf b;
        sbuf_init(&b, 0);
        int rc = s3_get(c->s3, L2S3_FORMAT, 0, 0, 256, &b, NULL, err);
        bool ours = rc == 0 && b.len == n && memcmp(b.data, L2S3_FORMAT_REC, n) == 0;
        sbuf_free(&b);
        if (ours)
            return 0;
        if (rc == 0 || err->kind == SERR_TOO_LARGE)
            return serr_set(err, SERR_CORRUPT,
                            "S3 L2: '%s%s' is not a Strata S3 L2 format record (remove it "
                            "while no node uses this prefix, or use another prefix)",
                            s3_client_config(c->s3)->prefix, L2S3_FORMAT);
        if (err->kind != SERR_NOT_FOUND)
            return -1;
        /* the first node makes it; racing ones meet a 412 (or S3's 409)
         * and read the winner's */
        const s3_put_opts o = {.if_none_match = true, .content_type = "text/plain"};
        if (s3_put(c->s3, L2S3_FORMAT, L2S3_FORMAT_REC, n, &o, NULL, err) == 0)
            return 0;
        if (err->kind != SERR_PRECONDITION && err->kind != SERR_IO)
            return -1;
    }
    return serr_set(err, SERR_RETRY, "S3 L2: the format record keeps changing");
}

static int format_ready(l2s3 *c, strata_error *err)
{
    if (atomic_load(&c->ready))
        return 0;
    pthread_mutex_lock(&c->ready_mu);
    int rc = atomic_load(&c->ready) ? 0 : check_format(c, err);
    if (rc == 0)
        atomic_store(&c->ready, true);
    pthread_mutex_unlock(&c->ready_mu);
    return rc;
}

int l2s3_guard(l2s3 *c, int rc, strata_error *err)
{
    if (rc == 0 || err->kind != SERR_UNAVAILABLE ||
        strncmp(err->detail, DOWN_TAG, sizeof DOWN_TAG - 1) == 0)
        return rc;
    pthread_mutex_lock(&c->down_mu);
    snprintf(c->down_why, sizeof c->down_why, "%s", err->detail);
    atomic_store(&c->down_until, clock_mono_ms() + DOWN_MS);
    pthread_mutex_unlock(&c->down_mu);
    return rc;
}

int l2s3_ready(l2s3 *c, strata_error *err)
{
    uint64_t until = atomic_load(&c->down_until);
    if (until != 0 && clock_mono_ms() < until) {
        pthread_mutex_lock(&c->down_mu);
        serr_set(err, SERR_UNAVAILABLE, DOWN_TAG " (asked again within a second): %s", c->down_why);
        pthread_mutex_unlock(&c->down_mu);
        return -1;
    }
    return format_ready(c, err);
}

int l2s3_health(l2s3 *c, strata_error *err)
{
    int rc = format_ready(c, err);
    if (rc == 0)
        rc = s3_check(c->s3, err);
    if (rc == 0) {
        atomic_store(&c->down_until, 0);
        return 0;
    }
    if (err->kind != SERR_UNAVAILABLE) {
        char d[STRATA_ERR_DETAIL_MAX];
        snprintf(d, sizeof d, "%s", err->detail);
        serr_set(err, SERR_UNAVAILABLE, "S3 L2: %s", d);
    }
    return l2s3_guard(c, -1, err);
}
