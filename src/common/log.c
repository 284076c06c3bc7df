#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = SLOG_INFO;
static atomic_int access_fd = 2;

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

void slog_set_access_fd(int fd)
{
    atomic_store(&access_fd, fd);
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

void slog_access_line(const char *line, int len)
{
    int fd = atomic_load(&access_fd);
    if (fd < 0 || len <= 0)
        return;
    char out[2048];
    size_t n = (size_t)len < sizeof out - 1 ? (size_t)len : sizeof out - 1;
    memcpy(out, line, n);
    out[n++] = '\n';
    write_all(fd, out, n);
}
