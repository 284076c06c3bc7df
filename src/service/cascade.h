/* What a new version means for what depends on it. After a new version
 * of R: masters that aggregate R follow it (the trees service), and every
 * other resource whose latest version depends on R, directly or through
 * others, is marked stale with the reason. A rebuild of R walks the same
 * dependents in topological order, each once: masters re-aggregate from
 * scratch, the rest are marked stale; a cycle is refused, named. */
#ifndef STRATA_CASCADE_H
#define STRATA_CASCADE_H

#include <jansson.h>

#include "trees.h"
#include "versions.h"

typedef struct cascade cascade;

/* Installs itself as the versions hook and the trees' saved hook. */
cascade *cascade_new(versions_svc *vs, trees_svc *trees, strata_error *err);
void cascade_free(cascade *c);

/* {"resource", "order": [{"type", "id", "action"}], "reaggregated", "marked_stale"} */
int cascade_rebuild(cascade *c, const char *type, const char *id, json_t **report,
                    strata_error *err);
/* Latest records of the resources whose latest version depends on (type, id). */
int cascade_dependents(cascade *c, const char *type, const char *id, const store_list_opts *o,
                       store_page *out, strata_error *err);

#endif
