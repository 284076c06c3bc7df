#include "router.h"

#include "../src/common/hex.h"

#include <stdlib.h>
#include <string.h>

#define ROUTER_MAX_ROUTES 128

struct router {
    route routes[ROUTER_MAX_ROUTES];
    int n;
};

static const struct {
    int bit;
    const char *name;
} METHOD_NAMES[] = {{HTTP_GET, "GET"},        {HTTP_HEAD, "HEAD"},     {HTTP_POST, "POST"},
                    {HTTP_PUT, "PUT"},        {HTTP_DELETE, "DELETE"}, {HTTP_PATCH, "PATCH"},
                    {HTTP_OPTIONS, "OPTIONS"}};

int http_method_parse(const char *s)
{
    for (size_t i = 0; i < sizeof METHOD_NAMES / sizeof METHOD_NAMES[0]; i++)
        if (strcmp(s, METHOD_NAMES[i].name) == 0)
            return METHOD_NAMES[i].bit;
    return 0;
}

void http_methods_format(int methods, char *out, size_t cap)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof METHOD_NAMES / sizeof METHOD_NAMES[0]; i++) {
        if (!(methods & METHOD_NAMES[i].bit))
            continue;
        size_t n = strlen(METHOD_NAMES[i].name) + (len ? 2 : 0);
        if (len + n + 1 > cap)
            break;
        if (len) {
            memcpy(out + len, ", ", 2);
            len += 2;
            n -= 2;
        }
        memcpy(out + len, METHOD_NAMES[i].name, n + 1);
        len += n;
    }
}

router *router_new(void)
{
    return calloc(1, sizeof(router));
}

void router_free(router *r)
{
    if (r == NULL)
        return;
    for (int i = 0; i < r->n; i++)
        for (int s = 0; s < r->routes[i].nseg; s++)
            free(r->routes[i].segs[s]);
    free(r);
}

int router_count(const router *r)
{
    return r->n;
}

const route *router_at(const router *r, int i)
{
    return i >= 0 && i < r->n ? &r->routes[i] : NULL;
}

int router_add(router *r, int methods, const char *pattern, route_handler handler)
{
    if (r->n >= ROUTER_MAX_ROUTES || pattern[0] != '/' || handler == NULL || methods == 0)
        return -1;
    route *rt = &r->routes[r->n];
    memset(rt, 0, sizeof *rt);
    /* GET routes answer HEAD too; the server sends headers only */
    rt->methods = methods & HTTP_GET ? methods | HTTP_HEAD : methods;
    rt->pattern = pattern;
    rt->handler = handler;
    rt->index = r->n;
    const char *p = pattern + 1;
    int nparams = 0;
    while (*p != '\0') {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 || rt->nseg >= ROUTE_MAX_SEGMENTS)
            goto fail;
        int is_param = p[0] == '{' && p[len - 1] == '}';
        if (is_param && ++nparams > ROUTE_MAX_PARAMS)
            goto fail;
        char *seg = is_param ? strndup(p + 1, len - 2) : strndup(p, len);
        if (seg == NULL)
            goto fail;
        rt->segs[rt->nseg] = seg;
        if (!is_param)
            rt->literal_mask |= 1u << (ROUTE_MAX_SEGMENTS - 1 - rt->nseg);
        rt->nseg++;
        p = end ? end + 1 : p + len;
    }
    r->n++;
    return 0;
fail:
    for (int s = 0; s < rt->nseg; s++)
        free(rt->segs[s]);
    memset(rt, 0, sizeof *rt);
    return -1;
}

int url_decode(const char *in, size_t len, char *out, size_t *out_len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= len)
                return -1;
            int hi = hex_digit(in[i + 1]), lo = hex_digit(in[i + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi << 4 | lo);
            if (c == '\0')
                return -1;
            i += 2;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    *out_len = o;
    return 0;
}

/* Splits the raw path into segments; returns the count or -1. */
static int split_path(const char *path, const char *starts[], size_t lens[])
{
    if (path[0] != '/')
        return -1;
    int n = 0;
    const char *p = path + 1;
    if (*p == '\0')
        return 0;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (n >= ROUTE_MAX_SEGMENTS)
            return -2; /* deeper than any route: not found */
        starts[n] = p;
        lens[n] = len;
        n++;
        if (end == NULL)
            break;
        p = end + 1;
    }
    return n;
}

void router_match(const router *r, int method, const char *raw_path, route_match *m, char *scratch,
                  size_t scratch_cap)
{
    m->status = ROUTE_NOT_FOUND;
    m->route = NULL;
    m->allow = 0;
    m->nparams = 0;
    size_t plen = strlen(raw_path);
    if (plen >= ROUTE_MAX_PATH || plen + 1 > scratch_cap) {
        m->status = ROUTE_BAD_PATH;
        return;
    }
    const char *starts[ROUTE_MAX_SEGMENTS];
    size_t lens[ROUTE_MAX_SEGMENTS];
    int nseg = split_path(raw_path, starts, lens);
    if (nseg == -2)
        return;
    if (nseg < 0) {
        m->status = ROUTE_BAD_PATH;
        return;
    }
    /* Decode every segment once into scratch, each NUL-terminated. */
    const char *decoded[ROUTE_MAX_SEGMENTS];
    size_t dlens[ROUTE_MAX_SEGMENTS];
    char *w = scratch;
    for (int i = 0; i < nseg; i++) {
        if (lens[i] == 0 && i != nseg - 1) {
            m->status = ROUTE_NOT_FOUND; /* "//" never names anything */
            return;
        }
        if (url_decode(starts[i], lens[i], w, &dlens[i]) != 0) {
            m->status = ROUTE_BAD_PATH;
            return;
        }
        decoded[i] = w;
        w += dlens[i] + 1;
    }
    /* A trailing slash ("/health/") is not a route. */
    if (nseg > 0 && dlens[nseg - 1] == 0 && lens[nseg - 1] == 0)
        return;

    const route *best = NULL;
    unsigned best_mask = 0;
    int allow = 0, any = 0;
    for (int i = 0; i < r->n; i++) {
        const route *rt = &r->routes[i];
        if (rt->nseg != nseg)
            continue;
        int ok = 1;
        for (int s = 0; s < nseg && ok; s++) {
            if (rt->literal_mask & (1u << (ROUTE_MAX_SEGMENTS - 1 - s)))
                ok = dlens[s] == strlen(rt->segs[s]) &&
                     memcmp(decoded[s], rt->segs[s], dlens[s]) == 0;
            else
                ok = dlens[s] > 0;
        }
        if (!ok)
            continue;
        if (!any || rt->literal_mask > best_mask) {
            any = 1;
            best_mask = rt->literal_mask;
            allow = 0;
            best = NULL;
        } else if (rt->literal_mask < best_mask) {
            continue;
        }
        allow |= rt->methods;
        if (best == NULL && (rt->methods & method))
            best = rt;
    }
    m->allow = allow;
    if (!any)
        return;
    if (best == NULL) {
        m->status = ROUTE_METHOD_NOT_ALLOWED;
        return;
    }
    m->status = ROUTE_FOUND;
    m->route = best;
    for (int s = 0; s < nseg; s++) {
        if (best->literal_mask & (1u << (ROUTE_MAX_SEGMENTS - 1 - s)))
            continue;
        m->names[m->nparams] = best->segs[s];
        m->values[m->nparams] = decoded[s];
        m->nparams++;
    }
}

const char *route_param(const route_match *m, const char *name)
{
    for (int i = 0; i < m->nparams; i++)
        if (strcmp(m->names[i], name) == 0)
            return m->values[i];
    return NULL;
}

int router_set_body_hook(router *r, const char *pattern, route_body_hook hook)
{
    for (int i = r->n - 1; i >= 0; i--)
        if (strcmp(r->routes[i].pattern, pattern) == 0) {
            r->routes[i].on_body = hook;
            return 0;
        }
    return -1;
}
