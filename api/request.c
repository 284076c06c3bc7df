#include "request.h"

#include <microhttpd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *req_param(const request *req, const char *name)
{
    return route_param(&req->match, name);
}

const char *req_header(const request *req, const char *name)
{
    return MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, name);
}

const char *req_query(request *req, const char *name)
{
    const char *raw = NULL;
    size_t raw_len = 0;
    /* a bare flag (?dry_run) is present with no value: that reads as "" */
    if (MHD_lookup_connection_value_n(req->conn, MHD_GET_ARGUMENT_KIND, name, strlen(name), &raw,
                                      &raw_len) != MHD_YES)
        return NULL;
    if (raw == NULL)
        raw = "";
    size_t len = strlen(raw);
    tracked_str *t = malloc(sizeof *t + len + 1);
    if (t == NULL)
        return NULL;
    char *w = t->s;
    for (size_t i = 0; i < len; i++)
        *w++ = raw[i] == '+' ? ' ' : raw[i];
    *w = '\0';
    size_t out_len;
    if (url_decode(t->s, len, t->s, &out_len) != 0) {
        free(t);
        return NULL;
    }
    t->next = req->strings;
    req->strings = t;
    return t->s;
}

uint64_t monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
