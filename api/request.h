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
} request;

const char *req_param(const request *req, const char *name);
const char *req_header(const request *req, const char *name);
/* A query argument, percent-decoded ('+' is a space); NULL when absent,
 * "" for a bare flag (?dry_run). Invalid escapes read as absent. */
const char *req_query(request *req, const char *name);
/* The body as JSON, its Content-Encoding undone and its depth bounded;
 * NULL with err set (a missing body is bad input). */
json_t *req_body_json(request *req, strata_error *err);

#endif
