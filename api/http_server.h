/* The libmicrohttpd server: epoll with a thread pool, request bodies
 * streamed into the request, the response queued only once the request
 * is complete (so keep-alive connections stay open) except for errors
 * that close the connection anyway (ambiguous framing, a body over the
 * limit), access log and metrics per request, and a graceful stop. */
#ifndef STRATA_HTTP_SERVER_H
#define STRATA_HTTP_SERVER_H

#include <stdint.h>

#include "../src/common/error.h"
#include "app.h"

typedef struct http_server http_server;

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
