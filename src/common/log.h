/* Logging to stderr: one write(2) per line so lines from the thread pool
 * never interleave. */
#ifndef STRATA_LOG_H
#define STRATA_LOG_H

enum slog_level { SLOG_DEBUG = 0, SLOG_INFO, SLOG_WARN, SLOG_ERROR };

void slog_set_level(enum slog_level level);
enum slog_level slog_get_level(void);
/* Returns 0 and sets *out for "debug", "info", "warn", "error"; -1 otherwise. */
int slog_parse_level(const char *s, enum slog_level *out);

/* The access log: lines gather in a 64 KiB buffer written when it fills,
 * every 100 ms by a flusher thread, and at close, so a busy server makes
 * one write(2) per few hundred requests instead of one each. fd -1 drops
 * lines. Returns -1 if the flusher thread cannot start. */
int slog_access_open(int fd);
/* Writes what is buffered and stops the flusher (the fd stays open). */
void slog_access_close(void);
int slog_access_fd(void);

void slog(enum slog_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Adds one preformatted line (without newline) to the access log. */
void slog_access_line(const char *line, int len);

#define slog_debug(...) slog(SLOG_DEBUG, __VA_ARGS__)
#define slog_info(...)  slog(SLOG_INFO, __VA_ARGS__)
#define slog_warn(...)  slog(SLOG_WARN, __VA_ARGS__)
#define slog_error(...) slog(SLOG_ERROR, __VA_ARGS__)

#endif
