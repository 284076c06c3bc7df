#include "semver.h"

#include <stdio.h>
#include <string.h>

#define PART(key, n) ((unsigned)(((key) >> (40 - 20 * (n))) & SEMVER_MAX_PART))
#define KEY(a, b, c) (((uint64_t)(a) << 40) | ((uint64_t)(b) << 20) | (uint64_t)(c))

int semver_parse(const char *s, uint64_t *key)
{
    unsigned parts[3];
    for (int i = 0; i < 3; i++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (*s == '0' && s[1] >= '0' && s[1] <= '9')
            return -1; /* no leading zeros */
        unsigned long v = 0;
        while (*s >= '0' && *s <= '9') {
            v = v * 10 + (unsigned long)(*s++ - '0');
            if (v > SEMVER_MAX_PART)
                return -1;
        }
        parts[i] = (unsigned)v;
        if (i < 2 && *s++ != '.')
            return -1;
    }
    if (*s != '\0')
        return -1;
    *key = KEY(parts[0], parts[1], parts[2]);
    return 0;
}

void semver_format(uint64_t key, char *out)
{
    snprintf(out, SEMVER_STR_MAX, "%u.%u.%u", PART(key, 0), PART(key, 1), PART(key, 2));
}

uint64_t semver_next(uint64_t key, enum semver_bump bump)
{
    if (key == 0)
        return KEY(1, 0, 0);
    unsigned a = PART(key, 0), b = PART(key, 1), c = PART(key, 2);
    switch (bump) {
    case BUMP_MAJOR:
        return a < SEMVER_MAX_PART ? KEY(a + 1, 0, 0) : 0;
    case BUMP_MINOR:
        return b < SEMVER_MAX_PART ? KEY(a, b + 1, 0) : 0;
    case BUMP_PATCH:
        break;
    }
    return c < SEMVER_MAX_PART ? KEY(a, b, c + 1) : 0;
}

int semver_parse_bump(const char *s, enum semver_bump *out)
{
    static const char *names[] = {"patch", "minor", "major"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum semver_bump)i;
            return 0;
        }
    return -1;
}
