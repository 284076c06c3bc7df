/* Inside the S3 client (s3_client.h): the checks that s3_config_from_url
 * (s3_config.c) applies to a configuration and s3_client_new applies again
 * to one a caller filled itself. Pure functions; safe from any thread. */
#ifndef STRATA_S3_CONFIG_H
#define STRATA_S3_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/error.h"

#define S3_KEY_TOTAL_MAX 1024 /* S3's bound on a key, prefix included */

/* Whether b is a bucket name this client accepts: 1-63 bytes of
 * [A-Za-z0-9._-]. */
bool s3_bucket_valid(const char *b);

/* Checks that ep is "http(s)://HOST[:PORT]", dropping trailing '/'s from
 * ep in place, and copies its authority into host (host_cap bytes) when
 * host is not NULL. SERR_INVALID naming the endpoint when it is not, or
 * when the authority does not fit host; host is then unspecified. */
int s3_endpoint_check(char *ep, char *host, size_t host_cap, strata_error *err);

#endif
