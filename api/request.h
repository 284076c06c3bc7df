/* One HTTP request as the handlers see it: method, matched route and its
 * decoded path parameters, headers, query arguments, body, and the app. */
#ifndef STRATA_REQUEST_H
#define STRATA_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "body.h"
#include "reply.h"
#include "router.h"

struct MHD_Connection;
struct app;

#define REQUEST_ID_MAX 64

typedef struct tracked_str {
    struct tracked_str *next;
    char s[];
} tracked_str;

typedef struct request {
    struct MHD_Connection *conn;
    struct app *app;
    int method;
    const char *method_name;
    char *path; /* raw path; owns the allocation that also holds path_scratch */
    char *path_scratch;
    char request_id[REQUEST_ID_MAX + 1];
    uint64_t start_ns;
    uint64_t received; /* body bytes seen on the wire, kept or not */
    route_match match;
    http_body body;
    reply rep;
    bool responded; /* a response was queued */
    bool failed;    /* rep holds an error found while receiving */
    tracked_str *strings;
    void *route_state; /* a route's own state across calls (a streamed upload) */
    void (*route_state_free)(void *state);
} request;

const char *req_param(const request *req, const char *name);
const char *req_header(const request *req, const char *name);
/* Query access. Names are compared after percent-decoding (so
 * d%72y_run is dry_run). Each call fails with SERR_INVALID, naming the
 * parameter, when it is given more than once, and with "a query parameter
 * name is not validly percent-encoded" when any name in the query is. */

/* The percent-decoded value ('+' is a space; a bare ?name or name= is "").
 * Returns 0 with *out NULL when absent, 0 with *out set when present (owned
 * by req until the request ends). Returns -1 with *out NULL and err set:
 * SERR_INVALID "query parameter 'NAME' is not validly percent-encoded" (a
 * bad escape or %00), "... is given more than once", or SERR_NOMEM. */
int req_query_str(request *req, const char *name, const char **out, strata_error *err);

/* A boolean: absent is dflt; "" (a bare ?name), "true" and "1" are true;
 * "false" and "0" are false (case matters). Anything else is -1 with
 * SERR_INVALID "query parameter 'NAME' must be true or false (or 1 or 0)".
 * *out is dflt on failure. */
int req_query_bool(request *req, const char *name, bool dflt, bool *out, strata_error *err);

/* An unsigned integer: 1-19 ASCII digits, nothing else (no sign, spaces,
 * "0x" or exponent), within [min, max]. Absent: 0 with *present false and
 * *out unchanged (so a caller presets the default). Otherwise -1 with
 * SERR_INVALID "query parameter 'NAME' must be an integer from MIN to MAX"
 * (or an error of req_query_str), *present false and *out unchanged.
 * present may be NULL. */
int req_query_uint(request *req, const char *name, uint64_t min, uint64_t max, bool *present,
                   uint64_t *out, strata_error *err);

/* The same rules applied to a value already in hand (a query value read by
 * other means); the messages name NAME as a query parameter. Both leave
 * *out unchanged on failure. */
int req_text_bool(const char *name, const char *text, bool *out, strata_error *err);
int req_text_uint(const char *name, const char *text, uint64_t min, uint64_t max, uint64_t *out,
                  strata_error *err);
/* The body as JSON, its Content-Encoding undone and its depth bounded;
 * NULL with err set (a missing body is bad input). */
json_t *req_body_json(request *req, strata_error *err);

#endif
