/* Atomic batches: several saves and deletes that all land or none do
 * (one store transaction; blobs written for a batch that fails are left to
 * the collector). After the commit, caches are invalidated and the
 * cascade runs for each new version, as for single saves. */
#ifndef STRATA_BATCH_H
#define STRATA_BATCH_H

#include <jansson.h>

#include "versions.h"

#define BATCH_MAX_OPERATIONS 1000

/* {"operations": [{"op": "save", "type", "id", ...envelope...},
 *                 {"op": "delete", "type", "id", "version"}]}
 * On failure nothing changed, and err names the operation. */
int batch_run(versions_svc *vs, const json_t *body, json_t **results, strata_error *err);

#endif
