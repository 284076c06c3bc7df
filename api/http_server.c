#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "../src/common/clock.h"
#include "../src/common/log.h"
#include "listener.h"
#include "request.h"
#include "work_pool.h"

/* One open connection, so that the drain can close the idle ones: MHD
 * 0.9.75 has no call for that. The list links, busy and closing are
 * guarded by http_server.conns_lock; creds and client_verified belong to
 * the connection's own thread. */
typedef struct conn_entry {
    struct conn_entry *prev, *next;
    MHD_socket fd;
    bool busy;            /* a request began and is not complete */
    bool closing;         /* shut down by the drain: no request may begin on it */
    bool client_verified; /* its TLS client certificate passed the check */
    tls_creds *creds;     /* the TLS credentials its session uses (a reference) */
} conn_entry;

/* A request as the server keeps it: what handlers see, and who asked. */
typedef struct server_request {
    request req;                       /* first: a request * is a server_request * */
    char principal[AUTH_NAME_MAX + 1]; /* the token's name for the access log, "" none */
    work_item work;                    /* its place in the writers' queue */
    bool offloaded;                    /* its handler ran (or runs) on a writer thread */
} server_request;

struct http_server {
    struct MHD_Daemon *daemon;
    listener *listener; /* the socket and its accept thread */
    app *app;
    uint64_t max_body;
    uint64_t max_decoded;
    atomic_uint_fast64_t next_id; /* the first of the next block of request ids */
    uint32_t id_prefix;
    atomic_bool stopping; /* quiesced: every answer closes its connection */
    pthread_mutex_t conns_lock;
    conn_entry *conns;
    long nconns;
    work_pool *writers; /* runs writes' handlers; NULL: the HTTP threads do */
};

/* Keep the path percent-encoded: the router decodes segment by segment,
 * and query arguments are decoded on lookup. */
static size_t keep_escaped(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    return strlen(s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    slog_warn("libmicrohttpd: %s", line);
}

/* "%08x%012llx" of prefix and n, by hand: it runs for every request. */
static void generated_id(char out[REQUEST_ID_MAX + 1], uint32_t prefix, uint64_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t at = 0;
    for (int shift = 28; shift >= 0; shift -= 4)
        out[at++] = hex[(prefix >> shift) & 15];
    int top = 44; /* at least 12 digits */
    while (top < 60 && (n >> (top + 4)) != 0)
        top += 4;
    for (int shift = top; shift >= 0; shift -= 4)
        out[at++] = hex[(n >> shift) & 15];
    out[at] = '\0';
}

/* Request numbers are taken from s->next_id a block at a time, and each
 * thread numbers its requests from a block of its own: one write of the
 * shared counter every ID_BLOCK requests instead of every request. Unique
 * within the server; a number's order no longer says which came first. */
#define ID_BLOCK 1024

static uint64_t next_request_number(http_server *s)
{
    /* (a server started later at the same address has another prefix) */
    static _Thread_local const http_server *owner;
    static _Thread_local uint32_t owner_prefix;
    static _Thread_local uint64_t next, end;
    if (owner != s || owner_prefix != s->id_prefix || next == end) {
        owner = s;
        owner_prefix = s->id_prefix;
        next = atomic_fetch_add_explicit(&s->next_id, ID_BLOCK, memory_order_relaxed);
        end = next + ID_BLOCK;
    }
    return next++;
}

static int valid_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        char c = s[n];
        if (n >= REQUEST_ID_MAX || !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                                     (c >= 'A' && c <= 'Z') || c == '-' || c == '_' || c == '.'))
            return 0;
    }
    return n > 0;
}

static void request_free(request *req)
{
    if (req->route_state != NULL && req->route_state_free != NULL)
        req->route_state_free(req->route_state);
    body_free(&req->body);
    reply_free(&req->rep);
    while (req->strings) {
        tracked_str *t = req->strings;
        req->strings = t->next;
        free(t);
    }
    free(req->path);
    free((server_request *)req);
}

static enum MHD_Result queue_reply(http_server *s, request *req)
{
    reply *rep = &req->rep;
    struct MHD_Response *resp = rep->response;
    if (resp == NULL) {
        if (rep->body_static)
            resp =
                MHD_create_response_from_buffer(rep->body_len, rep->body, MHD_RESPMEM_PERSISTENT);
        else
            resp =
                MHD_create_response_from_buffer_with_free_callback(rep->body_len, rep->body, free);
        if (resp == NULL)
            return MHD_NO;
        if (!rep->body_static)
            rep->body = NULL; /* the response owns it now */
    } else {
        rep->response = NULL;
    }
    if (rep->content_type)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rep->content_type);
    MHD_add_response_header(resp, "X-Request-Id", req->request_id);
    for (int i = 0; i < rep->nheaders; i++)
        MHD_add_response_header(resp, rep->headers[i].name, rep->headers[i].value);
    /* MHD closes the connection after a response that says so */
    if (rep->close_connection || atomic_load(&s->stopping))
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result r = MHD_queue_response(req->conn, (unsigned)rep->status, resp);
    MHD_destroy_response(resp);
    req->responded = r == MHD_YES;
    return r;
}

static void fail(request *req, const strata_error *err)
{
    reply_error(&req->rep, err);
    req->failed = true;
}

static void run_handler(request *req)
{
    req->match.route->handler(req, &req->rep);
    if (!req->rep.set)
        reply_problem(&req->rep, 500, "internal", "the handler gave no answer");
}

/* A writer thread: the handler, then the connection back to its HTTP
 * thread, which queues the answer (on_access). */
static void run_offloaded(work_item *item, void *ctx)
{
    (void)ctx;
    server_request *sr = (server_request *)((char *)item - offsetof(server_request, work));
    run_handler(&sr->req);
    MHD_resume_connection(sr->req.conn);
}

/* Writes (which may wait for a shared commit or a backend) run on the
 * writers, with the connection suspended meanwhile, so that an HTTP
 * thread never waits for them and concurrent saves can share a commit.
 * Returns false when the request is the HTTP thread's to answer. */
static bool offload(http_server *s, server_request *sr)
{
    if (s->writers == NULL ||
        (sr->req.method & (HTTP_POST | HTTP_PUT | HTTP_DELETE | HTTP_PATCH)) == 0)
        return false;
    sr->offloaded = true;
    MHD_suspend_connection(sr->req.conn);
    if (!work_pool_submit(s->writers, &sr->work))
        run_offloaded(&sr->work, s); /* stopping: answered here, the same way */
    return true;
}

static int parse_content_length(const char *v, uint64_t *out)
{
    if (v == NULL)
        return -1;
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0')
        return -1;
    *out = n;
    return 0;
}

static conn_entry *conn_entry_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci != NULL ? ci->socket_context : NULL;
}

/* Marks the connection busy, or refuses the request (-1) when the drain
 * already shut the connection down. */
static int conn_begin_request(http_server *s, struct MHD_Connection *conn)
{
    conn_entry *e = conn_entry_of(conn);
    if (e == NULL)
        return 0;
    pthread_mutex_lock(&s->conns_lock);
    bool closing = e->closing;
    if (!closing)
        e->busy = true;
    pthread_mutex_unlock(&s->conns_lock);
    return closing ? -1 : 0;
}

static void conn_end_request(http_server *s, struct MHD_Connection *conn)
{
    conn_entry *e = conn_entry_of(conn);
    if (e == NULL)
        return;
    pthread_mutex_lock(&s->conns_lock);
    e->busy = false;
    pthread_mutex_unlock(&s->conns_lock);
}

typedef struct framing {
    int content_length;    /* Content-Length headers */
    int transfer_encoding; /* Transfer-Encoding headers */
    bool length_invalid;   /* a Content-Length that is not one decimal number */
    bool chunked;          /* the Transfer-Encoding is exactly "chunked" */
    char coding[48];       /* the Transfer-Encoding, printable ASCII only */
} framing;

static enum MHD_Result count_framing(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    framing *f = cls;
    if (key == NULL)
        return MHD_YES;
    if (value == NULL)
        value = "";
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0) {
        f->content_length++;
        size_t n = strlen(value);
        if (n == 0 || strspn(value, "0123456789") != n)
            f->length_invalid = true;
    } else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        f->transfer_encoding++;
        f->chunked = strcasecmp(value, "chunked") == 0;
        /* echoed in the detail: keep the JSON valid whatever the bytes */
        size_t i = 0;
        for (; value[i] != '\0' && i + 1 < sizeof f->coding; i++)
            f->coding[i] = value[i] >= 0x20 && value[i] < 0x7f ? value[i] : '?';
        f->coding[i] = '\0';
    }
    return MHD_YES;
}

/* Refuses a body whose length could be read two ways (request smuggling)
 * or not at all. MHD would take the first Content-Length, prefer
 * Transfer-Encoding over it, and read an unknown coding until the peer
 * closes. Returns 0, or -1 with the reason in detail. */
static int check_framing(struct MHD_Connection *conn, char *detail, size_t cap)
{
    framing f = {0};
    MHD_get_connection_values(conn, MHD_HEADER_KIND, count_framing, &f);
    if (f.content_length > 1)
        snprintf(detail, cap, "the request has %d Content-Length headers", f.content_length);
    else if (f.length_invalid)
        snprintf(detail, cap, "the Content-Length is not a single decimal number");
    else if (f.content_length > 0 && f.transfer_encoding > 0)
        snprintf(detail, cap, "the request has both Content-Length and Transfer-Encoding");
    else if (f.transfer_encoding > 1)
        snprintf(detail, cap, "the request has %d Transfer-Encoding headers", f.transfer_encoding);
    else if (f.transfer_encoding == 1 && !f.chunked)
        snprintf(detail, cap, "Transfer-Encoding '%s' is not supported, only 'chunked'", f.coding);
    else
        return 0;
    return -1;
}

typedef struct authz_headers {
    int count;
    const char *first;
} authz_headers;

static enum MHD_Result count_authz(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    authz_headers *h = cls;
    if (key != NULL && strcasecmp(key, MHD_HTTP_HEADER_AUTHORIZATION) == 0 && h->count++ == 0)
        h->first = value != NULL ? value : "";
    return MHD_YES;
}

/* Whether body bytes may follow the headers: a Transfer-Encoding, or a
 * Content-Length that is not plainly 0. */
static bool body_pending(struct MHD_Connection *conn)
{
    if (MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING))
        return true;
    uint64_t n = 0;
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return cl != NULL && (parse_content_length(cl, &n) != 0 || n > 0);
}

/* Answers now, before any body byte is read, and closes the connection
 * after the answer: what follows on it cannot be trusted to start a
 * request (libmicrohttpd closes after any answer queued this early). */
static enum MHD_Result refuse_now(http_server *s, request *req)
{
    req->failed = true;
    req->rep.close_connection = true;
    return queue_reply(s, req);
}

/* With client CAs: the connection's certificate is checked once, before
 * its first request is served. 0 to go on; -1 with the refusal set. */
static int check_client_cert(http_server *s, request *req, conn_entry *e)
{
    tls_ctx *tls = s->app->tls;
    if (tls == NULL || !tls_requires_client_cert(tls) || (e != NULL && e->client_verified))
        return 0;
    char detail[160] = "no TLS session";
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci != NULL && ci->tls_session != NULL &&
        tls_verify_client(tls, ci->tls_session, detail, sizeof detail) == 0) {
        if (e != NULL)
            e->client_verified = true;
        return 0;
    }
    reply_problem(&req->rep, 403, "client-certificate", "%s", detail);
    return -1;
}

/* Access control, decided once the route is known. 0 to go on; -1 with
 * the refusal set. The token's name is kept for the access log. */
static int check_access(http_server *s, server_request *sr)
{
    request *req = &sr->req;
    bool metrics_open = s->app->cfg->metrics_open;
    enum auth_need need = auth_need_for(req->match.status == ROUTE_FOUND ? req->match.route : NULL,
                                        req->method, metrics_open);
    authz_headers h = {0, NULL};
    if (auth_enabled(s->app->auth) && need != AUTH_NEED_NONE)
        MHD_get_connection_values(req->conn, MHD_HEADER_KIND, count_authz, &h);
    auth_result r;
    auth_check(s->app->auth, need, h.first, h.count, &r);
    snprintf(sr->principal, sizeof sr->principal, "%s", r.name);
    if (r.status == 0)
        return 0;
    reply_problem(&req->rep, r.status, r.slug, "%s", r.detail);
    if (r.status == 401)
        reply_header_set(&req->rep, "WWW-Authenticate", "Bearer realm=\"strata\"");
    else if (r.status == 403)
        reply_header_set(&req->rep, "WWW-Authenticate",
                         "Bearer realm=\"strata\", error=\"insufficient_scope\", scope=\"%s\"",
                         auth_need_name(need));
    return -1;
}

/* First call for a request: headers are complete, no body yet. */
static enum MHD_Result request_begin(http_server *s, struct MHD_Connection *conn, const char *url,
                                     const char *method, void **con_cls)
{
    /* nothing ran yet, so a request the drain cut off is simply not served */
    if (conn_begin_request(s, conn) != 0)
        return MHD_NO;
    server_request *sr = calloc(1, sizeof *sr);
    if (sr == NULL)
        return MHD_NO;
    request *req = &sr->req;
    req->conn = conn;
    req->app = s->app;
    req->start_ns = clock_mono_ns();
    req->method = http_method_parse(method);
    req->method_name = method;
    size_t plen = strlen(url);
    req->path = malloc(2 * (plen + 1));
    if (req->path == NULL) {
        free(sr);
        return MHD_NO;
    }
    memcpy(req->path, url, plen + 1);
    req->path_scratch = req->path + plen + 1;
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid != NULL && valid_request_id(rid))
        snprintf(req->request_id, sizeof req->request_id, "%s", rid);
    else
        generated_id(req->request_id, s->id_prefix, next_request_number(s));
    reply_init(&req->rep, req->path, req->request_id);
    req->rep.method = method;
    metrics_request_started(s->app->metrics);
    *con_cls = req;

    /* Who may ask comes first: a refused request with a body pending is
     * answered now, before any body byte is read, so nothing it sent is
     * read or stored; one without a body is answered when complete, so
     * the connection stays open. A refused client certificate closes it. */
    router_match(s->app->router, req->method, url, &req->match, req->path_scratch, plen + 1);
    if (check_client_cert(s, req, conn_entry_of(conn)) != 0)
        return refuse_now(s, req);
    if (check_access(s, sr) != 0) {
        if (body_pending(conn))
            return refuse_now(s, req);
        req->failed = true; /* answered when complete, keeping the connection */
        return MHD_YES;
    }

    /* Errors that leave the body unread are answered now and close the
     * connection. */
    char detail[STRATA_ERR_DETAIL_MAX];
    if (check_framing(conn, detail, sizeof detail) != 0) {
        reply_problem(&req->rep, 400, "bad-framing", "%s", detail);
        return refuse_now(s, req);
    }
    strata_error err;
    uint64_t clen = 0;
    if (parse_content_length(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length"),
                             &clen) == 0 &&
        clen > s->max_body) {
        serr_set(&err, SERR_TOO_LARGE,
                 "request body of %" PRIu64 " bytes exceeds the limit of %" PRIu64 " bytes", clen,
                 s->max_body);
        reply_error(&req->rep, &err);
        return refuse_now(s, req);
    }

    switch (req->match.status) {
    case ROUTE_FOUND:
        break;
    case ROUTE_BAD_PATH:
        reply_problem(&req->rep, 400, "invalid-path",
                      "the path is not valid: a bad percent-escape, an encoded NUL, or too long");
        req->failed = true;
        return MHD_YES;
    case ROUTE_NOT_FOUND:
        reply_problem(&req->rep, 404, "not-found", "no resource at %s", url);
        req->failed = true;
        return MHD_YES;
    case ROUTE_METHOD_NOT_ALLOWED: {
        char allow[128];
        http_methods_format(req->match.allow, allow, sizeof allow);
        reply_problem(&req->rep, 405, "method-not-allowed", "%s is not allowed on %s (allowed: %s)",
                      method, url, allow);
        reply_header_set(&req->rep, "Allow", "%s", allow);
        req->failed = true;
        return MHD_YES;
    }
    }
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)version;
    http_server *s = cls;
    request *req = *con_cls;
    if (req == NULL)
        return request_begin(s, conn, url, method, con_cls);
    if (req->responded) {
        *upload_data_size = 0; /* answered already; nothing more is read */
        return MHD_YES;
    }

    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        strata_error err;
        req->received += n;
        if (req->received > s->max_body) {
            /* libmicrohttpd will not queue an answer mid-upload, so a chunked
             * body past the limit is discarded and answered 413 at its end;
             * past twice the limit the connection is dropped. */
            if (req->received - n <= s->max_body) {
                serr_set(&err, SERR_TOO_LARGE,
                         "request body exceeds the limit of %" PRIu64 " bytes", s->max_body);
                fail(req, &err);
            }
            return req->received > 2 * s->max_body ? MHD_NO : MHD_YES;
        }
        if (req->failed)
            return MHD_YES; /* discard the rest; the error answers at the end */
        /* the body reader starts with the first byte: bodiless requests
         * skip it; the route may then send a large body elsewhere */
        if (!req->body.started &&
            (body_begin(&req->body,
                        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Encoding"),
                        s->max_body, s->max_decoded, &err) != 0 ||
             (req->match.route->on_body != NULL && req->match.route->on_body(req, &err) != 0))) {
            fail(req, &err);
            return MHD_YES;
        }
        if (body_feed(&req->body, upload_data, n, &err) != 0)
            fail(req, &err); /* the rest is discarded, the error answers at the end */
        return MHD_YES;
    }

    /* The request is complete: answer it. */
    server_request *sr = (server_request *)req;
    if (sr->offloaded) /* resumed: a writer ran its handler */
        return queue_reply(s, req);
    if (!req->failed) {
        strata_error err;
        if (req->body.started && body_finish(&req->body, &err) != 0)
            fail(req, &err);
        else if (offload(s, sr))
            return MHD_YES; /* suspended until a writer has the answer */
        else
            run_handler(req);
    }
    return queue_reply(s, req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)toe;
    http_server *s = cls;
    conn_end_request(s, conn);
    request *req = *con_cls;
    if (req == NULL)
        return;
    *con_cls = NULL;
    uint64_t micros = (clock_mono_ns() - req->start_ns) / 1000;
    int status = req->responded ? req->rep.status : 0;
    int route_index = req->match.route != NULL ? req->match.route->index : -1;
    metrics_request_finished(s->app->metrics, route_index, status, micros);
    if (slog_access_fd() >= 0) {
        const char *who = ((server_request *)req)->principal;
        char line[1024];
        int n = snprintf(line, sizeof line, "%s %.512s %d %zu %" PRIu64 "us %s %s",
                         req->method_name, req->path, status, req->rep.body_len, micros,
                         req->request_id, who[0] ? who : "-");
        slog_access_line(line, n < (int)sizeof line ? n : (int)sizeof line - 1);
    }
    request_free(req);
}

/* A new connection's TLS session (made, not yet shaking hands) takes the
 * current credentials: a reloaded certificate reaches new connections
 * without restarting the daemon. Without it (out of memory) the session
 * keeps the daemon's start-up certificate and no client certificate is
 * asked for, so with client CAs its requests are refused. */
static void attach_tls(http_server *s, struct MHD_Connection *conn, conn_entry *e)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    if (ci == NULL || ci->tls_session == NULL)
        return;
    strata_error err;
    e->creds = tls_acquire(s->app->tls);
    if (tls_attach(e->creds, ci->tls_session, &err) != 0) {
        slog_warn("TLS: %s", err.detail);
        tls_release(e->creds);
        e->creds = NULL;
    }
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
    http_server *s = cls;
    conn_entry *e = *socket_context;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        /* untracked on failure: the drain waits for it less, the stop closes it */
        e = ci != NULL ? calloc(1, sizeof *e) : NULL;
        *socket_context = e;
        if (e == NULL)
            return;
        e->fd = ci->connect_fd;
        if (s->app->tls != NULL)
            attach_tls(s, conn, e);
        pthread_mutex_lock(&s->conns_lock);
        e->next = s->conns;
        if (s->conns)
            s->conns->prev = e;
        s->conns = e;
        s->nconns++;
        pthread_mutex_unlock(&s->conns_lock);
        return;
    }
    if (e == NULL)
        return;
    /* MHD closes the socket only after this, so the drain never touches a reused fd */
    pthread_mutex_lock(&s->conns_lock);
    if (e->prev)
        e->prev->next = e->next;
    else
        s->conns = e->next;
    if (e->next)
        e->next->prev = e->prev;
    s->nconns--;
    pthread_mutex_unlock(&s->conns_lock);
    tls_release(e->creds); /* MHD already ended the TLS session */
    free(e);
    *socket_context = NULL;
}

static int resolve_listen(const strata_config *cfg, struct sockaddr_storage *ss, socklen_t *len,
                          strata_error *err)
{
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    char port[8];
    snprintf(port, sizeof port, "%u", cfg->listen_port);
    int rc = getaddrinfo(cfg->listen_host, port, &hints, &res);
    if (rc != 0)
        return serr_set(err, SERR_INVALID, "cannot resolve listen address %s: %s", cfg->listen_host,
                        gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* The accept thread's hand-over: the daemon owns the socket from here
 * (MHD_add_connection closes it when it cannot take it). */
static int hand_over(void *ctx, int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    http_server *s = ctx;
    if (MHD_add_connection(s->daemon, fd, addr, addrlen) == MHD_YES)
        return 0;
    slog_warn("a new connection was refused by the HTTP daemon: %s", strerror(errno));
    return -1;
}

http_server *http_server_start(app *a, strata_error *err)
{
    const strata_config *cfg = a->cfg;
    http_server *s = calloc(1, sizeof *s);
    if (s == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    s->app = a;
    s->max_body = cfg->max_body;
    s->max_decoded = cfg->max_decoded_body;
    atomic_init(&s->stopping, false);
    if (pthread_mutex_init(&s->conns_lock, NULL) != 0) {
        serr_set(err, SERR_NOMEM, "cannot create a mutex");
        free(s);
        return NULL;
    }
    if (getrandom(&s->id_prefix, sizeof s->id_prefix, 0) != sizeof s->id_prefix)
        s->id_prefix = (uint32_t)time(NULL) ^ (uint32_t)getpid();

    struct sockaddr_storage ss;
    socklen_t sslen = 0;
    if (resolve_listen(cfg, &ss, &sslen, err) != 0) {
        pthread_mutex_destroy(&s->conns_lock);
        free(s);
        return NULL;
    }
    /* Strata listens itself (listener.h says why) and hands connections to
     * the daemon, which needs ITC to see them at once. */
    unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG |
                     MHD_USE_NO_LISTEN_SOCKET | MHD_ALLOW_SUSPEND_RESUME;
    if (cfg->write_threads > 0) {
        s->writers = work_pool_start(cfg->write_threads, run_offloaded, NULL, err);
        if (s->writers == NULL) {
            pthread_mutex_destroy(&s->conns_lock);
            free(s);
            return NULL;
        }
    }
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    /* TLS: the daemon needs a certificate of its own to start; each
     * connection then gets the current one (attach_tls). */
    struct MHD_OptionItem tls_opts[4] = {{MHD_OPTION_END, 0, NULL}};
    if (a->tls != NULL) {
        flags |= MHD_USE_TLS;
        tls_opts[0] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
                                              (void *)(uintptr_t)tls_start_cert_pem(a->tls)};
        tls_opts[1] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0,
                                              (void *)(uintptr_t)tls_start_key_pem(a->tls)};
        tls_opts[2] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0,
                                              (void *)(uintptr_t)tls_priorities()};
        tls_opts[3] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};
    }
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_access, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)cfg->threads, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)cfg->connection_timeout, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, s, MHD_OPTION_UNESCAPE_CALLBACK, keep_escaped,
        NULL, MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)cfg->connection_memory,
        MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_ARRAY, tls_opts, MHD_OPTION_END);
    if (s->daemon == NULL) {
        serr_set(err, SERR_UNAVAILABLE, "cannot start the HTTP daemon");
        work_pool_free(s->writers);
        pthread_mutex_destroy(&s->conns_lock);
        free(s);
        return NULL;
    }
    strata_error lerr;
    s->listener = listener_start((struct sockaddr *)&ss, sslen, 1024, hand_over, s, &lerr);
    if (s->listener == NULL) {
        serr_set(err, SERR_UNAVAILABLE, "cannot listen on %s:%u (%s)", cfg->listen_host,
                 cfg->listen_port, lerr.detail);
        MHD_stop_daemon(s->daemon);
        work_pool_free(s->writers);
        pthread_mutex_destroy(&s->conns_lock);
        free(s);
        return NULL;
    }
    return s;
}

uint16_t http_server_port(const http_server *s)
{
    return listener_port(s->listener);
}

void http_server_quiesce(http_server *s)
{
    atomic_store(&s->stopping, true);
    listener_close(s->listener); /* connection attempts are refused from now on */
}

/* Shuts down every connection with no request under way and returns how
 * many connections are still open. A busy one is left to finish: its
 * answer says Connection: close, and if the client sends another request
 * before the next sweep, that one is answered the same way. */
static long close_idle_connections(http_server *s)
{
    pthread_mutex_lock(&s->conns_lock);
    for (conn_entry *e = s->conns; e != NULL; e = e->next) {
        if (e->busy || e->closing)
            continue;
        e->closing = true;
        /* MHD reads end-of-stream and closes it; a client that already sent
         * a request sees the connection close before any response byte */
        shutdown(e->fd, SHUT_RDWR);
    }
    long n = s->nconns;
    pthread_mutex_unlock(&s->conns_lock);
    return n;
}

int http_server_drain(http_server *s, unsigned timeout_seconds)
{
    uint64_t deadline = clock_mono_ns() + (uint64_t)timeout_seconds * 1000000000u;
    for (;;) {
        long open_conns = close_idle_connections(s);
        if (open_conns == 0 && metrics_in_flight(s->app->metrics) == 0)
            return 0;
        if (clock_mono_ns() >= deadline)
            return -1;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

void http_server_stop(http_server *s)
{
    if (s == NULL)
        return;
    listener_free(s->listener);
    /* every write queued or under way is answered and its connection
     * resumed first: libmicrohttpd must not stop with one suspended */
    work_pool_stop(s->writers);
    MHD_stop_daemon(s->daemon);
    work_pool_free(s->writers);
    pthread_mutex_destroy(&s->conns_lock);
    free(s);
}
