#include "node_id.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static char id[NODE_ID_MAX];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void make_id(void)
{
    char host[64] = "host";
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "host");
    host[sizeof host - 1] = '\0';
    uint64_t r = 0;
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, &r, sizeof r) != (ssize_t)sizeof r) {
        /* no urandom: time and address still tell two lives apart */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&r;
    }
    if (fd >= 0)
        close(fd);
    snprintf(id, sizeof id, "%s:%ld:%016llx", host, (long)getpid(), (unsigned long long)r);
}

const char *node_id(void)
{
    pthread_once(&once, make_id);
    return id;
}
