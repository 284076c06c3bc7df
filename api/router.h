/* Routing from method + path pattern to a handler. Patterns are literal
 * segments and {param} segments ("/{type}/{id}/versions"). Path segments
 * are percent-decoded one by one after splitting, so an encoded "/"
 * (%2F) stays inside its segment and is judged by the handler. When two
 * patterns match, the one with literals further left wins ("/cache/{ns}"
 * beats "/{type}/{id}"); if it does not allow the method, the answer is
 * 405 with its methods, never a fall-through to a looser pattern. */
#ifndef STRATA_ROUTER_H
#define STRATA_ROUTER_H

#include <stddef.h>

#include "../src/common/error.h"

enum http_method {
    HTTP_GET = 1 << 0,
    HTTP_HEAD = 1 << 1,
    HTTP_POST = 1 << 2,
    HTTP_PUT = 1 << 3,
    HTTP_DELETE = 1 << 4,
    HTTP_PATCH = 1 << 5,
    HTTP_OPTIONS = 1 << 6,
};

#define ROUTE_MAX_SEGMENTS 12
#define ROUTE_MAX_PARAMS   8
#define ROUTE_MAX_PATH     8192

struct request;
struct reply;
typedef void (*route_handler)(struct request *req, struct reply *rep);
/* Called when a request's body starts (after body_begin), so that the
 * route may send a large body somewhere other than memory
 * (body_spill_to). An error answers the request with it. */
typedef int (*route_body_hook)(struct request *req, strata_error *err);

typedef struct route {
    int methods;
    const char *pattern;
    route_handler handler;
    route_body_hook on_body; /* may be NULL */
    int index;               /* position in the router, used as the metrics label id */
    int nseg;
    unsigned literal_mask; /* bit (ROUTE_MAX_SEGMENTS-1-i) set when segment i is literal */
    char *segs[ROUTE_MAX_SEGMENTS];
} route;

typedef struct router router;

enum route_status { ROUTE_FOUND, ROUTE_NOT_FOUND, ROUTE_METHOD_NOT_ALLOWED, ROUTE_BAD_PATH };

typedef struct route_match {
    enum route_status status;
    const route *route;
    int allow; /* methods of the best pattern, for 405 */
    int nparams;
    const char *names[ROUTE_MAX_PARAMS];
    const char *values[ROUTE_MAX_PARAMS];
} route_match;

router *router_new(void);
void router_free(router *r);
/* Returns 0, or -1 for an invalid pattern or out of memory. */
int router_add(router *r, int methods, const char *pattern, route_handler handler);
/* Sets the body hook of the route added last with this pattern; -1 if none. */
int router_set_body_hook(router *r, const char *pattern, route_body_hook hook);
int router_count(const router *r);
const route *router_at(const router *r, int i);

/* Matches a raw (still percent-encoded) path. Decoded segments are written
 * to scratch, which needs strlen(raw_path) + 1 bytes; the match points
 * into it. */
void router_match(const router *r, int method, const char *raw_path, route_match *m, char *scratch,
                  size_t scratch_cap);
const char *route_param(const route_match *m, const char *name);

int http_method_parse(const char *s);
/* Writes "GET, HEAD, POST" for a method set. */
void http_methods_format(int methods, char *out, size_t cap);

/* Decodes %XX escapes (and nothing else); -1 on a bad escape or on %00. */
int url_decode(const char *in, size_t len, char *out, size_t *out_len);

#endif
