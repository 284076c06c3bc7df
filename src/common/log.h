/* Logging to stderr: one write(2) per line so lines from the thread pool
 * never interleave. */
#ifndef STRATA_LOG_H
#define STRATA_LOG_H

enum slog_level { SLOG_DEBUG = 0, SLOG_INFO, SLOG_WARN, SLOG_ERROR };

void slog_set_level(enum slog_level level);
enum slog_level slog_get_level(void);
/* Returns 0 and sets *out for "debug", "info", "warn", "error"; -1 otherwise. */
int slog_parse_level(const char *s, enum slog_level *out);

/* Where access-log lines go: a file descriptor, or -1 to drop them. */
void slog_set_access_fd(int fd);
int slog_access_fd(void);

void slog(enum slog_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Writes one preformatted line (without newline) to the access log. */
void slog_access_line(const char *line, int len);

#define slog_debug(...) slog(SLOG_DEBUG, __VA_ARGS__)
#define slog_info(...)  slog(SLOG_INFO, __VA_ARGS__)
#define slog_warn(...)  slog(SLOG_WARN, __VA_ARGS__)
#define slog_error(...) slog(SLOG_ERROR, __VA_ARGS__)

#endif
