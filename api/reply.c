#include "reply.h"

#include "../src/codec/json_write.h"
#include "../src/common/utf8.h"

#include <microhttpd.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/common/log.h"

void reply_init(reply *rep, const char *instance, const char *request_id)
{
    memset(rep, 0, sizeof *rep);
    rep->status = 500;
    rep->instance = instance;
    rep->request_id = request_id;
}

static void drop_body(reply *rep)
{
    if (!rep->body_static)
        free(rep->body);
    rep->body_static = false;
    rep->body = NULL;
    rep->body_len = 0;
    if (rep->response) {
        MHD_destroy_response(rep->response);
        rep->response = NULL;
    }
}

static bool in_hbuf(const reply *rep, const char *p)
{
    /* as addresses: p may belong to another allocation */
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)rep->hbuf;
    return rep->hbuf != NULL && a >= lo && a < lo + REPLY_HEADER_BYTES;
}

void reply_free(reply *rep)
{
    drop_body(rep);
    for (int i = 0; i < rep->nheaders; i++)
        if (!in_hbuf(rep, rep->headers[i].value))
            free(rep->headers[i].value);
    rep->nheaders = 0;
    free(rep->hbuf);
    rep->hbuf = NULL;
    rep->hused = 0;
}

void reply_bytes(reply *rep, int status, const char *content_type, unsigned char *data, size_t len)
{
    drop_body(rep);
    rep->status = status;
    rep->content_type = content_type;
    rep->body = data;
    rep->body_len = len;
    rep->set = true;
}

void reply_text(reply *rep, int status, const char *content_type, const char *text)
{
    size_t len = strlen(text);
    unsigned char *copy = malloc(len + 1);
    if (copy == NULL) {
        reply_problem(rep, 503, "out-of-memory", "out of memory copying a response body");
        return;
    }
    memcpy(copy, text, len + 1);
    reply_bytes(rep, status, content_type, copy, len);
}

void reply_static(reply *rep, int status, const char *content_type, const void *data, size_t len)
{
    drop_body(rep);
    rep->status = status;
    rep->content_type = content_type;
    rep->body = (unsigned char *)(uintptr_t)data;
    rep->body_len = len;
    rep->body_static = true;
    rep->set = true;
}

void reply_empty(reply *rep, int status)
{
    reply_bytes(rep, status, NULL, NULL, 0);
}

void reply_json(reply *rep, int status, json_t *value)
{
    size_t len = 0;
    char *s = value ? json_write_text(value, 0, &len, NULL) : NULL;
    json_decref(value);
    if (s == NULL) {
        reply_problem(rep, 500, "internal", "could not serialise the response");
        return;
    }
    reply_bytes(rep, status, "application/json", (unsigned char *)s, len);
}

void reply_json_written(reply *rep, int status, strata_buf *b, int rc, const strata_error *err)
{
    if (rc != 0) {
        sbuf_free(b);
        reply_error(rep, err);
        return;
    }
    size_t len = 0;
    unsigned char *body = sbuf_take(b, &len);
    reply_bytes(rep, status, "application/json", body, len);
}

/* What a 5xx tells the client: the kind (in type and title) and where to
 * look, never the detail, which can name server paths or backend text. */
static void generic_detail(const reply *rep, int status, char *out, size_t cap)
{
    const char *rid = rep->request_id ? rep->request_id : "-";
    if (status == 503)
        snprintf(out, cap, "the service is temporarily unavailable (request id %s); retry later",
                 rid);
    else
        snprintf(out, cap,
                 "the server could not complete the request (request id %s); see the server log",
                 rid);
}

static void problem(reply *rep, int status, const char *slug, bool shown, const char *fmt,
                    va_list ap) __attribute__((format(printf, 5, 0)));

static void problem(reply *rep, int status, const char *slug, bool shown, const char *fmt,
                    va_list ap)
{
    char detail[STRATA_ERR_DETAIL_MAX * 2];
    vsnprintf(detail, sizeof detail, fmt, ap);
    /* a detail may quote client bytes: JSON needs valid UTF-8 */
    utf8_scrub(detail);
    if (status >= 500 && !shown) {
        /* 503 is expected while starting, stopping or overloaded: a warning */
        slog(status == 503 ? SLOG_WARN : SLOG_ERROR, "%s %s: %d %s: %s (request id %s)",
             rep->method ? rep->method : "-", rep->instance ? rep->instance : "-", status, slug,
             detail, rep->request_id ? rep->request_id : "-");
        generic_detail(rep, status, detail, sizeof detail);
    }
    char type[128];
    snprintf(type, sizeof type, "urn:strata:problem:%s", slug);
    const char *title = MHD_get_reason_phrase_for((unsigned)status);
    json_t *p = json_pack("{s:s, s:s, s:i, s:s}", "type", type, "title",
                          title && *title ? title : "Error", "status", status, "detail", detail);
    if (p && rep->instance) {
        char instance[1024];
        snprintf(instance, sizeof instance, "%s", rep->instance);
        utf8_scrub(instance);
        json_object_set_new(p, "instance", json_string(instance));
    }
    if (p && rep->request_id)
        json_object_set_new(p, "request_id", json_string(rep->request_id));
    size_t len = 0;
    char *s = p ? json_write_text(p, 0, &len, NULL) : NULL;
    json_decref(p);
    if (s == NULL) {
        /* out of memory: a bare status still tells the client something */
        reply_bytes(rep, status, NULL, NULL, 0);
        return;
    }
    reply_bytes(rep, status, "application/problem+json", (unsigned char *)s, len);
}

void reply_problem(reply *rep, int status, const char *slug, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem(rep, status, slug, false, fmt, ap);
    va_end(ap);
}

void reply_problem_shown(reply *rep, int status, const char *slug, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    problem(rep, status, slug, true, fmt, ap);
    va_end(ap);
}

void reply_error(reply *rep, const strata_error *err)
{
    reply_problem(rep, serr_http_status(err->kind), serr_slug(err->kind), "%s", err->detail);
}

/* A place for a value of len bytes (and its NUL): in hbuf while it fits,
 * else malloc'd on its own (reply_free tells them apart by address). NULL
 * when memory runs out. */
static char *value_space(reply *rep, size_t len)
{
    if (rep->hbuf == NULL)
        rep->hbuf = malloc(REPLY_HEADER_BYTES);
    if (rep->hbuf != NULL && len < REPLY_HEADER_BYTES - rep->hused) {
        char *at = rep->hbuf + rep->hused;
        rep->hused += len + 1;
        return at;
    }
    return malloc(len + 1);
}

int reply_header_add(reply *rep, const char *name, const char *value)
{
    if (rep->nheaders >= REPLY_MAX_HEADERS)
        return -1;
    size_t len = strlen(value);
    if (len > REPLY_HEADER_VALUE_MAX)
        len = REPLY_HEADER_VALUE_MAX;
    char *v = value_space(rep, len);
    if (v == NULL)
        return -1;
    memcpy(v, value, len);
    v[len] = '\0';
    rep->headers[rep->nheaders].name = name;
    rep->headers[rep->nheaders].value = v;
    rep->nheaders++;
    return 0;
}

int reply_header_set(reply *rep, const char *name, const char *fmt, ...)
{
    if (rep->nheaders >= REPLY_MAX_HEADERS)
        return -1;
    char value[REPLY_HEADER_VALUE_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    return reply_header_add(rep, name, value);
}
