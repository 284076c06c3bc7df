/* The libmicrohttpd server: epoll with a thread pool, request bodies
 * streamed into the request, the response queued only once the request
 * is complete (so keep-alive connections stay open), access log and
 * metrics per request, and a graceful stop. */
#ifndef STRATA_HTTP_SERVER_H
#define STRATA_HTTP_SERVER_H

#include <stdint.h>

#include "../src/common/error.h"
#include "app.h"

typedef struct http_server http_server;

http_server *http_server_start(app *a, strata_error *err);
uint16_t http_server_port(const http_server *s);
/* Stops accepting new connections; requests in flight go on. */
void http_server_quiesce(http_server *s);
/* Waits until no request is in flight; -1 if the timeout passed first. */
int http_server_drain(http_server *s, unsigned timeout_seconds);
/* Closes every connection and frees the server. */
void http_server_stop(http_server *s);

#endif
