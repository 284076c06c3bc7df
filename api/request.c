#include "request.h"

#include "../src/codec/json_parse.h"
#include "../src/common/hex.h"

#include <inttypes.h>
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

/* Compares a still-encoded query name with name: 1 equal, 0 not, -1 when
 * the raw name has a bad escape or %00 (checked to the end either way). */
static int raw_name_is(const char *raw, size_t raw_len, const char *name, size_t name_len)
{
    bool eq = true;
    size_t j = 0;
    for (size_t i = 0; i < raw_len; i++, j++) {
        char c = raw[i];
        if (c == '%') {
            if (i + 2 >= raw_len)
                return -1;
            int hi = hex_digit(raw[i + 1]), lo = hex_digit(raw[i + 2]);
            if (hi < 0 || lo < 0 || (hi | lo) == 0)
                return -1;
            c = (char)(hi << 4 | lo);
            i += 2;
        }
        if (j >= name_len || name[j] != c)
            eq = false;
    }
    return eq && j == name_len;
}

typedef struct query_scan {
    const char *name;
    size_t name_len;
    const char *value; /* raw; NULL for a bare flag */
    size_t value_len;
    unsigned count;
    bool bad_name;
} query_scan;

static enum MHD_Result scan_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    query_scan *q = cls;
    int m = raw_name_is(key, key_size, q->name, q->name_len);
    if (m < 0)
        q->bad_name = true;
    else if (m == 1 && q->count++ == 0) {
        q->value = value;
        q->value_len = value ? value_size : 0;
    }
    return MHD_YES;
}

int req_query_str(request *req, const char *name, const char **out, strata_error *err)
{
    *out = NULL;
    /* every argument is looked at, so that a repeated name or an encoded
     * spelling of it (d%72y_run) cannot slip past a lookup by raw name */
    query_scan q = {.name = name, .name_len = strlen(name)};
    MHD_get_connection_values_n(req->conn, MHD_GET_ARGUMENT_KIND, scan_one, &q);
    if (q.bad_name)
        return serr_set(err, SERR_INVALID, "a query parameter name is not validly percent-encoded");
    if (q.count == 0)
        return 0;
    if (q.count > 1)
        return serr_set(err, SERR_INVALID, "query parameter '%.64s' is given more than once", name);
    tracked_str *t = malloc(sizeof *t + q.value_len + 1);
    if (t == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    size_t out_len;
    /* MHD has already turned '+' into a space */
    if (url_decode(q.value ? q.value : "", q.value_len, t->s, &out_len) != 0) {
        free(t);
        return serr_set(err, SERR_INVALID, "query parameter '%.64s' is not validly percent-encoded",
                        name);
    }
    t->next = req->strings;
    req->strings = t;
    *out = t->s;
    return 0;
}

int req_text_bool(const char *name, const char *text, bool *out, strata_error *err)
{
    if (text[0] == '\0' || strcmp(text, "true") == 0 || strcmp(text, "1") == 0)
        *out = true;
    else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0)
        *out = false;
    else
        return serr_set(err, SERR_INVALID,
                        "query parameter '%.64s' must be true or false (or 1 or 0)", name);
    return 0;
}

int req_text_uint(const char *name, const char *text, uint64_t min, uint64_t max, uint64_t *out,
                  strata_error *err)
{
    /* 19 digits cannot overflow 64 bits; strtoul would also take spaces,
     * signs and wrap negatives around */
    uint64_t n = 0;
    size_t i = 0;
    for (; i < 19 && text[i] >= '0' && text[i] <= '9'; i++)
        n = n * 10 + (uint64_t)(text[i] - '0');
    if (i == 0 || text[i] != '\0' || n < min || n > max)
        return serr_set(err, SERR_INVALID,
                        "query parameter '%.64s' must be an integer from %" PRIu64 " to %" PRIu64,
                        name, min, max);
    *out = n;
    return 0;
}

int req_query_bool(request *req, const char *name, bool dflt, bool *out, strata_error *err)
{
    const char *v;
    *out = dflt;
    if (req_query_str(req, name, &v, err) != 0)
        return -1;
    return v == NULL ? 0 : req_text_bool(name, v, out, err);
}

int req_query_uint(request *req, const char *name, uint64_t min, uint64_t max, bool *present,
                   uint64_t *out, strata_error *err)
{
    const char *v;
    if (present != NULL)
        *present = false;
    if (req_query_str(req, name, &v, err) != 0)
        return -1;
    if (v == NULL)
        return 0;
    if (req_text_uint(name, v, min, max, out, err) != 0)
        return -1;
    if (present != NULL)
        *present = true;
    return 0;
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
