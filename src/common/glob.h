/* The one glob dialect of cache invalidation, for L1 and every L2, so
 * that a pattern removes the same keys in every tier:
 *   *      any run of characters, the empty one included
 *   ?      exactly one character (a UTF-8 sequence counts as one)
 *   [abc]  one character of the set; ranges as [a-z]; a leading ! or ^
 *          negates the set; a ] right after [ (or [!) is a member
 * Everything else matches itself, byte for byte; there is no escape
 * character (patterns with a backslash are refused before they get
 * here). An unclosed [ matches itself. Matching is case-sensitive.
 * Pure functions, safe from any thread. */
#ifndef STRATA_GLOB_H
#define STRATA_GLOB_H

#include <stdbool.h>
#include <stddef.h>

bool glob_match(const char *pattern, const char *text);

/* The literal prefix every matching key starts with (the bytes before
 * the first *, ? or [), for index range scans; returns its length. */
size_t glob_literal_prefix(const char *pattern);

#endif
