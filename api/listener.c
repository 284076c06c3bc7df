#include "listener.h"

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../src/common/log.h"

struct listener {
    int fd;
    int wake; /* eventfd: tells the accept thread to stop */
    uint16_t port;
    listener_accept_fn fn;
    void *ctx;
    pthread_t thread;
    bool running;
};

static void *accept_loop(void *arg)
{
    listener *l = arg;
    struct pollfd p[2] = {{.fd = l->fd, .events = POLLIN}, {.fd = l->wake, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            slog_error("listener: poll failed: %s", strerror(errno));
            return NULL;
        }
        if (p[1].revents != 0)
            return NULL;
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        int c = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
        if (c >= 0) {
            l->fn(l->ctx, c, (struct sockaddr *)&ss, len);
            continue;
        }
        if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED)
            continue;
        /* out of descriptors or memory: let some go before trying again */
        slog_warn("listener: accept failed: %s", strerror(errno));
        struct timespec pause = {0, 20 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

listener *listener_start(const struct sockaddr *addr, socklen_t addrlen, int backlog,
                         listener_accept_fn fn, void *ctx, strata_error *err)
{
    listener *l = calloc(1, sizeof *l);
    if (l == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    l->fn = fn;
    l->ctx = ctx;
    l->wake = -1;
    l->fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (l->fd < 0 || setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        (addr->sa_family == AF_INET6 &&
         setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) != 0) ||
        bind(l->fd, addr, addrlen) != 0 || listen(l->fd, backlog) != 0) {
        serr_set(err, SERR_UNAVAILABLE, "cannot listen: %s", strerror(errno));
        goto fail;
    }
    struct sockaddr_storage bound;
    socklen_t blen = sizeof bound;
    if (getsockname(l->fd, (struct sockaddr *)&bound, &blen) == 0)
        l->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    l->wake = eventfd(0, EFD_CLOEXEC);
    if (l->wake < 0) {
        serr_set(err, SERR_UNAVAILABLE, "cannot make an eventfd: %s", strerror(errno));
        goto fail;
    }
    if (pthread_create(&l->thread, NULL, accept_loop, l) != 0) {
        serr_set(err, SERR_UNAVAILABLE, "cannot start the accept thread");
        goto fail;
    }
    l->running = true;
    return l;
fail:
    listener_free(l);
    return NULL;
}

uint16_t listener_port(const listener *l)
{
    return l->port;
}

void listener_close(listener *l)
{
    if (l->running) {
        uint64_t one = 1;
        if (write(l->wake, &one, sizeof one) != sizeof one)
            slog_error("listener: cannot wake the accept thread: %s", strerror(errno));
        pthread_join(l->thread, NULL);
        l->running = false;
    }
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
}

void listener_free(listener *l)
{
    if (l == NULL)
        return;
    listener_close(l);
    if (l->wake >= 0)
        close(l->wake);
    free(l);
}
