/* A save's envelope into a plan; a corpus's vocabulary normalised; the
 * dependency checks. */
#include "version_plan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../codec/json_canon.h"
#include "../codec/json_parse.h"
#include "../common/strset.h"
#include "vocabulary.h"

#define MAX_TAGS         100
#define MAX_TAG_LEN      128
#define MAX_DEPENDENCIES 1000

/* ---- the envelope ---------------------------------------------------------- */

void plan_free(save_plan *p)
{
    json_decref(p->fields);
    json_decref(p->metadata);
    json_decref(p->tags);
    json_decref(p->deps_json);
    json_decref(p->ttl);
    free(p->deps);
}

static int parse_tags(save_plan *p, const json_t *v, strata_error *err)
{
    if (!json_is_array(v) || json_array_size(v) > MAX_TAGS)
        return serr_set(err, SERR_INVALID, "'tags' must be an array of at most %d strings",
                        MAX_TAGS);
    size_t i;
    const json_t *t;
    json_array_foreach(v, i, t)
    {
        if (!json_is_string(t) || json_string_length(t) == 0 || json_string_length(t) > MAX_TAG_LEN)
            return serr_set(err, SERR_INVALID, "tags[%zu] must be a string of 1-%d characters", i,
                            MAX_TAG_LEN);
    }
    p->tags = json_deep_copy(v);
    return 0;
}

static int parse_dependencies(save_plan *p, const json_t *v, strata_error *err)
{
    if (!json_is_array(v) || json_array_size(v) > MAX_DEPENDENCIES)
        return serr_set(err, SERR_INVALID, "'dependencies' must be an array of at most %d objects",
                        MAX_DEPENDENCIES);
    size_t n = json_array_size(v);
    p->deps = calloc(n ? n : 1, sizeof *p->deps);
    p->deps_json = json_array();
    if (p->deps == NULL || p->deps_json == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    size_t i;
    const json_t *d;
    json_array_foreach(v, i, d)
    {
        const char *type = json_string_value(json_object_get(d, "type"));
        const char *id = json_string_value(json_object_get(d, "id"));
        const json_t *ver = json_object_get(d, "version");
        char what[64];
        snprintf(what, sizeof what, "dependencies[%zu].id", i);
        if (!json_is_object(d) || type == NULL || id == NULL)
            return serr_set(err, SERR_INVALID,
                            "dependencies[%zu] must be an object with 'type' and 'id'", i);
        if (resource_type_find(type) == NULL)
            return serr_set(err, SERR_INVALID, "dependencies[%zu].type '%.32s' is not one of: %s",
                            i, type, resource_type_names());
        if (resource_id_check(what, id, STORE_ID_MAX, err) != 0)
            return -1;
        for (size_t k = 0; k < p->ndeps; k++)
            if (strcmp(p->deps[k].type, type) == 0 && strcmp(p->deps[k].id, id) == 0)
                return serr_set(err, SERR_INVALID,
                                "dependencies[%zu] names %s/%s again (dependencies[%zu]); a "
                                "version depends on one version of a resource",
                                i, type, id, k);
        store_dep *sd = &p->deps[p->ndeps++];
        snprintf(sd->type, sizeof sd->type, "%s", type);
        snprintf(sd->id, sizeof sd->id, "%s", id);
        if (ver != NULL && !json_is_null(ver) &&
            (!json_is_string(ver) || strcmp(json_string_value(ver), "latest") != 0)) {
            if (!json_is_string(ver) || semver_parse(json_string_value(ver), &sd->vkey) != 0)
                return serr_set(err, SERR_INVALID,
                                "dependencies[%zu].version must be MAJOR.MINOR.PATCH or 'latest'",
                                i);
            if (sd->vkey == 0)
                return serr_set(err, SERR_INVALID,
                                "dependencies[%zu]: %s/%s has no version 0.0.0 (versions start at "
                                "1.0.0)",
                                i, type, id);
        }
        char vs[SEMVER_STR_MAX];
        semver_format(sd->vkey, vs);
        json_array_append_new(p->deps_json, json_pack("{s:s, s:s, s:s?}", "type", type, "id", id,
                                                      "version", sd->vkey ? vs : NULL));
    }
    return 0;
}

/* Reads every envelope key into the plan; unknown keys are refused by
 * name so that a typo never silently drops data. */
int plan_from_envelope(save_plan *p, const json_t *env, bool json_save, strata_error *err)
{
    if (!json_is_object(env))
        return serr_set(err, SERR_INVALID, "the body must be a JSON object (the save envelope)");
    p->fields = json_object();
    snprintf(p->ns, sizeof p->ns, "default");
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)env, key, v)
    {
        if (strcmp(key, "content") == 0) {
            if (!json_save)
                return serr_set(err, SERR_INVALID, "'content' is the body of a byte save");
        } else if (strcmp(key, "metadata") == 0) {
            if (!json_is_object(v))
                return serr_set(err, SERR_INVALID, "'metadata' must be an object");
            p->metadata = json_deep_copy(v);
        } else if (strcmp(key, "tags") == 0) {
            if (parse_tags(p, v, err) != 0)
                return -1;
        } else if (strcmp(key, "dependencies") == 0) {
            if (parse_dependencies(p, v, err) != 0)
                return -1;
        } else if (strcmp(key, "ttl") == 0) {
            long long ttl = 0;
            if (!json_is_null(v) && (!json_whole_number(v, &ttl) || ttl < 0))
                return serr_set(err, SERR_INVALID,
                                "'ttl' must be a non-negative integer (seconds)");
            p->ttl = json_is_null(v) ? json_null() : json_integer(ttl);
        } else if (strcmp(key, "bump") == 0) {
            if (!json_is_string(v) || semver_parse_bump(json_string_value(v), &p->bump) != 0)
                return serr_set(err, SERR_INVALID, "'bump' must be patch, minor or major");
        } else if (strcmp(key, "fold_case") == 0 && strcmp(p->type->name, "corpus") == 0) {
            if (!json_is_boolean(v))
                return serr_set(err, SERR_INVALID, "'fold_case' must be true or false");
            p->fold_case = json_is_true(v);
        } else if (strcmp(key, "namespace") == 0) {
            if (!json_is_string(v) ||
                resource_id_check("namespace", json_string_value(v), STORE_NS_MAX, err) != 0)
                return json_is_string(v)
                           ? -1
                           : serr_set(err, SERR_INVALID, "'namespace' must be a string");
            snprintf(p->ns, sizeof p->ns, "%s", json_string_value(v));
        } else {
            const field_def *f = resource_type_field(p->type, key);
            if (f == NULL)
                return serr_set(err, SERR_INVALID,
                                "unknown field '%.64s' for %s (extra data goes in 'metadata')", key,
                                p->type->name);
            if (f->computed)
                continue; /* the service computes it */
            if (field_check(f, v, err) != 0)
                return -1;
            long long whole;
            if (f->kind == FIELD_INT && json_whole_number(v, &whole))
                json_object_set_new(p->fields, key, json_integer(whole)); /* 5.0 is stored as 5 */
            else
                json_object_set(p->fields, key, (json_t *)v);
        }
    }
    for (size_t i = 0; i < p->type->nfields; i++) {
        const field_def *f = &p->type->fields[i];
        if (f->required && json_object_get(p->fields, f->name) == NULL)
            return serr_set(err, SERR_INVALID, "missing required field '%s' for %s", f->name,
                            p->type->name);
    }
    if (json_save && json_object_get(env, "content") == NULL)
        return serr_set(err, SERR_INVALID, "missing 'content' in the save envelope");
    return 0;
}

int normalize_corpus(save_plan *p, const json_t *json_content, const unsigned char *bytes,
                     size_t len, char **canon, size_t *canon_len, strata_error *err)
{
    vocabulary v;
    int rc = json_content ? vocabulary_from_json(json_content, p->fold_case, &v, err)
                          : vocabulary_from_text(bytes, len, p->fold_case, &v, err);
    if (rc != 0)
        return -1;
    json_t *j = vocabulary_to_json(&v);
    char hash[SHA256_HEX_LEN + 1];
    vocabulary_hash(&v, hash);
    json_object_set_new(p->fields, "vocabulary_size", json_integer((json_int_t)v.n));
    json_object_set_new(p->fields, "vocabulary_hash", json_string(hash));
    vocabulary_free(&v);
    *canon = j ? json_canon_dump(j, canon_len, err) : NULL;
    json_decref(j);
    if (*canon == NULL)
        return j ? -1 : serr_set(err, SERR_NOMEM, "out of memory");
    return 0;
}

/* Would these dependencies make the saved resource depend on itself? A
 * breadth-first walk over the latest versions' dependencies, complete or
 * refused: a graph past CYCLE_CHECK_MAX nodes, or a store error, fails the
 * save rather than passing it unchecked. Names the path of a cycle. */
#define CYCLE_CHECK_MAX 100000

typedef struct dep_node {
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
    long from; /* the node that led here, -1 for a direct dependency */
} dep_node;

typedef struct dep_walk {
    dep_node *q;
    size_t n, cap;
    strset seen; /* "type/id" (ids hold no '/') */
} dep_walk;

/* Queues a node unless it was seen; -1 with err past the bound. */
static int walk_push(dep_walk *w, const char *type, const char *id, long from, strata_error *err)
{
    char key[STORE_TYPE_MAX + STORE_ID_MAX + 2];
    snprintf(key, sizeof key, "%s/%s", type, id);
    if (strset_has(&w->seen, key))
        return 0;
    if (w->n == CYCLE_CHECK_MAX)
        return serr_set(err, SERR_CONFLICT,
                        "the dependencies reach more than %d resources: too many to check for "
                        "cycles",
                        CYCLE_CHECK_MAX);
    if (w->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 64;
        dep_node *q = realloc(w->q, cap * sizeof *q);
        if (q == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory");
        w->q = q;
        w->cap = cap;
    }
    if (!strset_add(&w->seen, key) && w->seen.failed)
        return serr_set(err, SERR_NOMEM, "out of memory");
    dep_node *d = &w->q[w->n++];
    snprintf(d->type, sizeof d->type, "%s", type);
    snprintf(d->id, sizeof d->id, "%s", id);
    d->from = from;
    return 0;
}

static int cycle_error(const dep_walk *w, size_t at, const char *type, const char *id,
                       strata_error *err)
{
    char path[900];
    int len = snprintf(path, sizeof path, "%s/%s", type, id);
    long chain[64];
    int depth = 0;
    for (long i = (long)at; i >= 0 && depth < 64; i = w->q[i].from)
        chain[depth++] = i;
    for (int k = depth - 1; k >= 0 && len > 0 && (size_t)len < sizeof path; k--)
        len += snprintf(path + len, sizeof path - (size_t)len, " -> %s/%s", w->q[chain[k]].type,
                        w->q[chain[k]].id);
    return serr_set(err, SERR_CONFLICT, "dependency cycle: %s", path);
}

int check_dependency_cycle(versions_svc *svc, store_txn *txn, const char *type, const char *id,
                           const store_dep *deps, size_t ndeps, strata_error *err)
{
    dep_walk w = {0};
    strset_init(&w.seen);
    int rc = 0;
    for (size_t i = 0; i < ndeps && rc == 0; i++)
        rc = walk_push(&w, deps[i].type, deps[i].id, -1, err);
    for (size_t head = 0; head < w.n && rc == 0; head++) {
        if (strcmp(w.q[head].type, type) == 0 && strcmp(w.q[head].id, id) == 0) {
            rc = cycle_error(&w, head, type, id, err);
            break;
        }
        store_version v;
        if (svc->st->ops->get_version(svc->st, txn, w.q[head].type, w.q[head].id, 0, &v, err) !=
            0) {
            if (err->kind != SERR_NOT_FOUND)
                rc = -1;
            continue; /* removed: nothing to follow */
        }
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(v.doc, "dependencies"), i, d)
        {
            const char *dt = json_string_value(json_object_get(d, "type"));
            const char *di = json_string_value(json_object_get(d, "id"));
            if (rc == 0 && dt != NULL && di != NULL)
                rc = walk_push(&w, dt, di, (long)head, err);
        }
        store_version_clear(&v);
    }
    free(w.q);
    strset_free(&w.seen);
    return rc;
}

/* Every dependency names a resource that exists, and a version of it that
 * exists when it names one (400 naming the dependency otherwise). */
int check_dependencies_exist(versions_svc *svc, store_txn *txn, const store_dep *deps, size_t ndeps,
                             strata_error *err)
{
    for (size_t i = 0; i < ndeps; i++) {
        store_version v;
        if (svc->st->ops->get_version(svc->st, txn, deps[i].type, deps[i].id, deps[i].vkey, &v,
                                      err) == 0) {
            store_version_clear(&v);
            continue;
        }
        if (err->kind != SERR_NOT_FOUND)
            return -1;
        if (deps[i].vkey == 0)
            return serr_set(err, SERR_INVALID, "dependencies[%zu]: there is no resource %s/%s", i,
                            deps[i].type, deps[i].id);
        char vs[SEMVER_STR_MAX];
        semver_format(deps[i].vkey, vs);
        return serr_set(err, SERR_INVALID, "dependencies[%zu]: %s/%s has no version %s", i,
                        deps[i].type, deps[i].id, vs);
    }
    return 0;
}
