/* A save's envelope, checked and parsed into a plan (internal to the
 * versions service): the type's fields, metadata, tags, dependencies,
 * the version bump and namespace; a corpus's normalised vocabulary; and
 * the dependency checks (all exist, no cycle). */
#ifndef STRATA_VERSION_PLAN_H
#define STRATA_VERSION_PLAN_H

#include "resource_types.h"
#include "versions_internal.h"

typedef struct save_plan {
    const resource_type_def *type;
    json_t *fields; /* the type's own fields */
    json_t *metadata;
    json_t *tags;
    json_t *deps_json;
    store_dep *deps;
    size_t ndeps;
    json_t *ttl;
    enum semver_bump bump;
    bool fold_case;
    char ns[STORE_NS_MAX + 1];
} save_plan;

void plan_free(save_plan *p);
/* Fills p from the envelope (json_save: "content" is in it). */
int plan_from_envelope(save_plan *p, const json_t *env, bool json_save, strata_error *err);
/* A corpus's content as its canonical normalised vocabulary (*canon). */
int normalize_corpus(save_plan *p, const json_t *json_content, const unsigned char *bytes,
                     size_t len, char **canon, size_t *canon_len, strata_error *err);
/* Every dependency names an existing resource (and version): 400 naming it. */
int check_dependencies_exist(versions_svc *svc, store_txn *txn, const store_dep *deps, size_t n,
                             strata_error *err);
/* Saving type/id with deps closes no cycle (409 naming it). */
int check_dependency_cycle(versions_svc *svc, store_txn *txn, const char *type, const char *id,
                           const store_dep *deps, size_t n, strata_error *err);

#endif
