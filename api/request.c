#include "request.h"

#include "../src/codec/json_parse.h"

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

json_t *req_body_json(request *req, strata_error *err)
{
    if (!req->body.started) {
        serr_set(err, SERR_INVALID, "a JSON body is required");
        return NULL;
    }
    strata_buf scratch;
    sbuf_init(&scratch, 0);
    const unsigned char *data;
    size_t len;
    json_t *j = NULL;
    if (body_content(&req->body, &scratch, &data, &len, err) == 0)
        j = json_parse_bounded(data, len, JSON_MAX_DEPTH, "the body", err);
    sbuf_free(&scratch);
    return j;
}
