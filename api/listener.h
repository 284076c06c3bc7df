/* The listening socket and the thread that accepts on it, handing each
 * connection to a callback (libmicrohttpd's MHD_add_connection).
 *
 * Why not let libmicrohttpd listen: stopping it from accepting needs
 * MHD_quiesce_daemon, which in 0.9.75 races with its own epoll workers
 * (both remove the listen socket from the epoll set; the loser aborts the
 * process with "Failed to remove listen FD from epoll set"). Owning the
 * socket makes "stop accepting" a close: new connections are refused from
 * then on, and connections already handed over are untouched.
 *
 * Thread safety: listener_start and listener_stop from one thread (the
 * main one); the callback runs on the accept thread. */
#ifndef STRATA_LISTENER_H
#define STRATA_LISTENER_H

#include <stdint.h>
#include <sys/socket.h>

#include "../src/common/error.h"

typedef struct listener listener;

/* Takes ownership of fd (the callback must close it or hand it on).
 * Returns non-zero when the connection could not be taken (it is closed
 * by then). */
typedef int (*listener_accept_fn)(void *ctx, int fd, const struct sockaddr *addr,
                                  socklen_t addrlen);

/* Binds addr (SO_REUSEADDR; IPv6 only for an IPv6 address), listens with
 * backlog, and starts the accept thread. NULL with err set
 * (SERR_UNAVAILABLE: the address is in use or not local). */
listener *listener_start(const struct sockaddr *addr, socklen_t addrlen, int backlog,
                         listener_accept_fn fn, void *ctx, strata_error *err);
/* The bound port (useful after binding port 0). */
uint16_t listener_port(const listener *l);
/* Stops accepting and closes the socket: connection attempts are refused
 * from now on. Waits for the accept thread; idempotent. */
void listener_close(listener *l);
/* listener_close, then frees. NULL is a no-op. */
void listener_free(listener *l);

#endif
