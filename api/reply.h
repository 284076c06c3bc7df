/* What a handler answers: status, headers and a body, turned into an
 * MHD response by the server once the request is complete. Errors are
 * always application/problem+json (RFC 9457); a 5xx tells the client only
 * a generic detail and its request id, the real detail goes to the log. */
#ifndef STRATA_REPLY_H
#define STRATA_REPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "../src/common/buf.h"
#include "../src/common/error.h"

#define REPLY_MAX_HEADERS      16
#define REPLY_HEADER_BYTES     256  /* one block holds the header values that fit */
#define REPLY_HEADER_VALUE_MAX 1023 /* longer values are cut here */

struct MHD_Response;

typedef struct reply_header {
    const char *name; /* static storage (a string literal) */
    char *value;      /* in the reply's hbuf, or malloc'd on its own */
} reply_header;

typedef struct reply {
    int status;
    bool set;
    const char *content_type; /* static string */
    unsigned char *body;      /* owned, unless body_static */
    bool body_static;
    size_t body_len;
    struct MHD_Response *response; /* a prepared response (streams, files); owned */
    reply_header headers[REPLY_MAX_HEADERS];
    int nheaders;
    const char *instance; /* request path, for problem details */
    const char *request_id;
    const char *method;    /* for the server log of a 5xx; may be NULL */
    bool close_connection; /* answer with Connection: close */
    char *hbuf;            /* REPLY_HEADER_BYTES for header values, or NULL */
    size_t hused;          /* bytes of hbuf in use */
} reply;

/* instance and request_id must outlive the reply; method starts NULL. */
void reply_init(reply *rep, const char *instance, const char *request_id);
void reply_free(reply *rep);

/* Takes ownership of `value` (decref'd); on serialisation failure a 500 problem is set. */
void reply_json(reply *rep, int status, json_t *value);
/* JSON written into b: when rc is 0, takes b's bytes as the body (b is
 * left empty); otherwise frees them and answers err as reply_error does. */
void reply_json_written(reply *rep, int status, strata_buf *b, int rc, const strata_error *err);
/* A problem+json answer. For status >= 500 the formatted detail is logged
 * (with method, path and request id) and the client gets a generic detail
 * naming the request id, so paths and backend messages never leak. */
void reply_problem(reply *rep, int status, const char *slug, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* reply_problem whose detail the client sees even for a 5xx: only for
 * causes that are safe to show (a backend's own error code and message,
 * as /ready names them), never paths or internals. Not logged. */
void reply_problem_shown(reply *rep, int status, const char *slug, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* reply_problem with the status and slug of err->kind and its detail. */
void reply_error(reply *rep, const strata_error *err);
/* Takes ownership of `data` (malloc'd). */
void reply_bytes(reply *rep, int status, const char *content_type, unsigned char *data, size_t len);
void reply_text(reply *rep, int status, const char *content_type, const char *text);
void reply_empty(reply *rep, int status);
/* A body that outlives the response (a string literal, the built-in spec). */
void reply_static(reply *rep, int status, const char *content_type, const void *data, size_t len);
/* Adds a header. name must have static storage (a string literal); the
 * value is copied (values past REPLY_HEADER_VALUE_MAX bytes are cut there).
 * Returns -1, adding nothing, when the reply has REPLY_MAX_HEADERS already
 * or memory runs out. Values share one block while they fit: most answers
 * allocate once for all their headers. */
int reply_header_set(reply *rep, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* reply_header_set with the value as it is (no formatting). */
int reply_header_add(reply *rep, const char *name, const char *value);

#endif
