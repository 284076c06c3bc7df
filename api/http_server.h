/* The libmicrohttpd server: epoll with a thread pool, request bodies
 * streamed into the request, the response queued only once the request
 * is complete (so keep-alive connections stay open) except for errors
 * that close the connection anyway (ambiguous framing, a body over the
 * limit), access log and metrics per request, and a graceful stop.
 *
 * Access control (app->auth) and client certificates (app->tls with
 * client CAs) are decided in a request's first callback, once its route
 * is known and before any body byte is read: a refusal (401, 403) is
 * answered at once and closes the connection if a body was pending. The
 * access log line ends with the token's name ("-" without one). With
 * app->tls the server speaks only TLS; each new connection takes the
 * current certificate, so tls_reload reaches new connections. /metrics
 * answers also carry the access-control and TLS counters. */
#ifndef STRATA_HTTP_SERVER_H
#define STRATA_HTTP_SERVER_H

#include <stdint.h>

#include "../src/common/error.h"
#include "app.h"

typedef struct http_server http_server;

/* Listens on cfg's address. a->auth must be set (it may be disabled);
 * a->tls may be NULL (plain HTTP). NULL with err set (SERR_INVALID for an
 * address that does not resolve, SERR_UNAVAILABLE when the daemon cannot
 * start, SERR_NOMEM). a must outlive the server. */
http_server *http_server_start(app *a, strata_error *err);
uint16_t http_server_port(const http_server *s);
/* Stops accepting new connections; requests in flight go on, and from now
 * on every response carries Connection: close. */
void http_server_quiesce(http_server *s);
/* After quiesce: closes connections as they become idle (a request that
 * had not begun on one is never processed; the client sees the connection
 * close before any response byte) and waits until no connection is left.
 * Every request that began is answered. -1 if the timeout passed first. */
int http_server_drain(http_server *s, unsigned timeout_seconds);
/* Closes every connection and frees the server. */
void http_server_stop(http_server *s);

#endif
