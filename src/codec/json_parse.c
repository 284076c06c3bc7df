#include "json_parse.h"

/* Depth of [ and { outside strings; stops early once past max_depth. */
static size_t max_nesting(const unsigned char *p, size_t len, size_t limit)
{
    size_t depth = 0, deepest = 0;
    int in_string = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = 0;
            continue;
        }
        if (c == '"') {
            in_string = 1;
        } else if (c == '[' || c == '{') {
            if (++depth > deepest && (deepest = depth) > limit)
                return deepest;
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return deepest;
}

json_t *json_parse_bounded(const void *data, size_t len, size_t max_depth, const char *what,
                           strata_error *err)
{
    if (len == 0) {
        serr_set(err, SERR_INVALID, "%s is empty; expected JSON", what);
        return NULL;
    }
    if (max_nesting(data, len, max_depth) > max_depth) {
        serr_set(err, SERR_INVALID, "%s nests deeper than %zu levels", what, max_depth);
        return NULL;
    }
    json_error_t je;
    json_t *v = json_loadb(data, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &je);
    if (v == NULL)
        serr_set(err, SERR_INVALID, "%s is not valid JSON: %s (line %d, column %d)", what, je.text,
                 je.line, je.column);
    return v;
}

bool json_whole_number(const json_t *v, long long *out)
{
    if (json_is_integer(v)) {
        *out = (long long)json_integer_value(v);
        return true;
    }
    if (!json_is_real(v))
        return false;
    double d = json_real_value(v);
    const double limit = 9007199254740992.0; /* 2^53: every whole double up to it is exact */
    if (!(d >= -limit && d <= limit) || d != (double)(long long)d)
        return false;
    *out = (long long)d;
    return true;
}
