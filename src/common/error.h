/* Error values: every fallible core function returns -1 and fills a
 * strata_error, which the HTTP layer maps to a problem+json status. */
#ifndef STRATA_ERROR_H
#define STRATA_ERROR_H

enum strata_err_kind {
    SERR_OK = 0,
    SERR_INVALID,      /* 400: the input is malformed or names something wrong */
    SERR_NOT_FOUND,    /* 404 */
    SERR_CONFLICT,     /* 409 */
    SERR_GONE,         /* 410 */
    SERR_PRECONDITION, /* 412 */
    SERR_TOO_LARGE,    /* 413: a size bound was exceeded */
    SERR_UNSUPPORTED,  /* 415: media type or encoding not accepted */
    SERR_CORRUPT,      /* 500: stored bytes failed verification */
    SERR_IO,           /* 500: the filesystem or a backend failed */
    SERR_NOMEM,        /* 503: allocation failed */
    SERR_UNAVAILABLE,  /* 503: a dependency is not reachable */
    SERR_INTERNAL,     /* 500: a bug */
    SERR_RETRY,        /* 503: writers met (a lost compare-and-swap, a blob being collected,
                        * a busy store); the operation may be run again as a whole, and
                        * store transact() does so itself before giving up */
};

#define STRATA_ERR_DETAIL_MAX 256

typedef struct strata_error {
    enum strata_err_kind kind;
    char detail[STRATA_ERR_DETAIL_MAX];
} strata_error;

/* Sets kind and a printf-formatted detail; always returns -1 so that
 * callers can write `return serr_set(err, ...)`. err may be NULL. */
int serr_set(strata_error *err, enum strata_err_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

void serr_clear(strata_error *err);

/* HTTP status for an error kind. */
int serr_http_status(enum strata_err_kind kind);

/* Short stable slug naming the kind ("invalid", "too-large", ...). */
const char *serr_slug(enum strata_err_kind kind);

#endif
