#include "error.h"

#include <stdarg.h>
#include <stdio.h>

int serr_set(strata_error *err, enum strata_err_kind kind, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    err->kind = kind;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->detail, sizeof err->detail, fmt, ap);
    va_end(ap);
    return -1;
}

void serr_clear(strata_error *err)
{
    if (err != NULL) {
        err->kind = SERR_OK;
        err->detail[0] = '\0';
    }
}

int serr_http_status(enum strata_err_kind kind)
{
    switch (kind) {
    case SERR_OK:
        return 200;
    case SERR_INVALID:
        return 400;
    case SERR_NOT_FOUND:
        return 404;
    case SERR_CONFLICT:
        return 409;
    case SERR_GONE:
        return 410;
    case SERR_PRECONDITION:
        return 412;
    case SERR_TOO_LARGE:
        return 413;
    case SERR_UNSUPPORTED:
        return 415;
    case SERR_NOMEM:
    case SERR_UNAVAILABLE:
    case SERR_RETRY:
        return 503;
    case SERR_CORRUPT:
    case SERR_IO:
    case SERR_INTERNAL:
        return 500;
    }
    return 500;
}

const char *serr_slug(enum strata_err_kind kind)
{
    switch (kind) {
    case SERR_OK:
        return "ok";
    case SERR_INVALID:
        return "invalid-input";
    case SERR_NOT_FOUND:
        return "not-found";
    case SERR_CONFLICT:
        return "conflict";
    case SERR_GONE:
        return "gone";
    case SERR_PRECONDITION:
        return "precondition-failed";
    case SERR_TOO_LARGE:
        return "too-large";
    case SERR_UNSUPPORTED:
        return "unsupported-media";
    case SERR_CORRUPT:
        return "corrupt-content";
    case SERR_IO:
        return "io-error";
    case SERR_NOMEM:
        return "out-of-memory";
    case SERR_UNAVAILABLE:
        return "unavailable";
    case SERR_INTERNAL:
        return "internal";
    case SERR_RETRY:
        return "busy-retry";
    }
    return "internal";
}
