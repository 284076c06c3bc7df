#include "log.h"

#include "clock.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = SLOG_INFO;
static atomic_int access_fd = -1;

void slog_set_level(enum slog_level level)
{
    atomic_store(&log_level, (int)level);
}

enum slog_level slog_get_level(void)
{
    return (enum slog_level)atomic_load(&log_level);
}

int slog_parse_level(const char *s, enum slog_level *out)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, names[i]) == 0) {
            *out = (enum slog_level)i;
            return 0;
        }
    }
    return -1;
}

int slog_access_fd(void)
{
    return atomic_load(&access_fd);
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return; /* logging never fails the caller */
        p += w;
        n -= (size_t)w;
    }
}

void slog(enum slog_level level, const char *fmt, ...)
{
    static const char *tags[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if ((int)level < atomic_load(&log_level))
        return;
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, tags[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2)
        len = sizeof line - 2;
    line[len++] = '\n';
    write_all(2, line, len);
}

#define ACCESS_BUF_SIZE (64 * 1024)
#define ACCESS_FLUSH_MS 100

static pthread_mutex_t access_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t access_cv = PTHREAD_COND_INITIALIZER;
static char access_buf[ACCESS_BUF_SIZE];
static size_t access_len;
static bool access_running;
static pthread_t access_thread;

static void *access_flusher(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&access_mu);
    while (access_running) {
        struct timespec ts = clock_deadline_ms(ACCESS_FLUSH_MS);
        pthread_cond_timedwait(&access_cv, &access_mu, &ts);
        if (access_len > 0) {
            write_all(atomic_load(&access_fd), access_buf, access_len);
            access_len = 0;
        }
    }
    pthread_mutex_unlock(&access_mu);
    return NULL;
}

int slog_access_open(int fd)
{
    atomic_store(&access_fd, fd);
    if (fd < 0)
        return 0;
    access_running = true;
    if (pthread_create(&access_thread, NULL, access_flusher, NULL) != 0) {
        access_running = false;
        atomic_store(&access_fd, -1);
        return -1;
    }
    return 0;
}

void slog_access_close(void)
{
    pthread_mutex_lock(&access_mu);
    bool was_running = access_running;
    access_running = false;
    pthread_cond_signal(&access_cv);
    pthread_mutex_unlock(&access_mu);
    if (was_running)
        pthread_join(access_thread, NULL);
    pthread_mutex_lock(&access_mu);
    if (access_len > 0 && atomic_load(&access_fd) >= 0)
        write_all(atomic_load(&access_fd), access_buf, access_len);
    access_len = 0;
    atomic_store(&access_fd, -1);
    pthread_mutex_unlock(&access_mu);
}

void slog_access_line(const char *line, int len)
{
    if (len <= 0 || atomic_load(&access_fd) < 0)
        return;
    size_t n = (size_t)len < ACCESS_BUF_SIZE - 1 ? (size_t)len : ACCESS_BUF_SIZE - 1;
    pthread_mutex_lock(&access_mu);
    if (access_len + n + 1 > ACCESS_BUF_SIZE) {
        write_all(atomic_load(&access_fd), access_buf, access_len);
        access_len = 0;
    }
    memcpy(access_buf + access_len, line, n);
    access_len += n;
    access_buf[access_len++] = '\n';
    pthread_mutex_unlock(&access_mu);
}
