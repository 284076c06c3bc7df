/* The reference for scripts/bench/health and scripts/bench/records: the
 * least a libmicrohttpd server can do for a GET with the same threading as
 * strata (epoll, internal thread pool) and the same respond-when-complete
 * pattern. Usage: minimal_mhd PORT THREADS [BYTES]: every GET answers the
 * /health JSON, or BYTES bytes of 'v' (application/octet-stream, at most
 * 1 MiB); stops on SIGTERM/SIGINT. */
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char HEALTH[] = "{\"status\":\"ok\"}";
static const char *body = HEALTH;
static size_t body_len = sizeof HEALTH - 1;
static const char *body_type = "application/json";

static enum MHD_Result on_access(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *data,
                                 size_t *size, void **state)
{
    (void)cls;
    (void)url;
    (void)method;
    (void)version;
    (void)data;
    static int first_call_marker;
    if (*state == NULL) {
        *state = &first_call_marker;
        return MHD_YES;
    }
    if (*size > 0) {
        *size = 0;
        return MHD_YES;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(body_len, (void *)body, MHD_RESPMEM_PERSISTENT);
    if (r == NULL)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, body_type);
    enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv)
{
    if (argc != 3 && argc != 4) {
        fprintf(stderr, "usage: %s PORT THREADS [BYTES]\n", argv[0]);
        return 2;
    }
    if (argc == 4) {
        long n = atol(argv[3]);
        char *b = n > 0 && n <= (1L << 20) ? malloc((size_t)n) : NULL;
        if (b == NULL) {
            fprintf(stderr, "minimal_mhd: BYTES must be 1 to 1048576\n");
            return 2;
        }
        memset(b, 'v', (size_t)n);
        body = b;
        body_len = (size_t)n;
        body_type = "application/octet-stream";
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_USE_ITC, (uint16_t)atoi(argv[1]), NULL, NULL, on_access,
        NULL, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)atoi(argv[2]), MHD_OPTION_CONNECTION_TIMEOUT,
        60u, MHD_OPTION_LISTEN_BACKLOG_SIZE, 1024u, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "minimal_mhd: cannot start\n");
        return 1;
    }
    printf("minimal_mhd listening on %s\n", argv[1]);
    fflush(stdout);
    int sig;
    sigwait(&set, &sig);
    MHD_stop_daemon(d);
    return 0;
}
