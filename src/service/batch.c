#include "batch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct done_op {
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
    bool created;
    uint64_t prev;
    store_version v;
} done_op;

/* Prefixes the error with the operation it came from. */
static int fail_at(strata_error *err, size_t i)
{
    char inner[STRATA_ERR_DETAIL_MAX];
    memcpy(inner, err->detail, sizeof inner);
    return serr_set(err, err->kind, "operations[%zu]: %s", i, inner);
}

static int run_op(versions_svc *vs, store_txn *txn, const json_t *op, done_op *d, json_t **result,
                  strata_error *err)
{
    store *st = versions_store(vs);
    const char *kind = json_string_value(json_object_get(op, "op"));
    const char *type = json_string_value(json_object_get(op, "type"));
    const char *id = json_string_value(json_object_get(op, "id"));
    if (!json_is_object(op) || kind == NULL || type == NULL || id == NULL)
        return serr_set(err, SERR_INVALID, "an operation needs \"op\", \"type\" and \"id\"");
    if (versions_check_resource(type, id, err) != 0) {
        if (err->kind == SERR_NOT_FOUND)
            err->kind = SERR_INVALID; /* in a body, an unknown type is bad input */
        return -1;
    }
    snprintf(d->type, sizeof d->type, "%s", type);
    snprintf(d->id, sizeof d->id, "%s", id);
    if (strcmp(kind, "delete") == 0) {
        const char *version = json_string_value(json_object_get(op, "version"));
        if (version == NULL)
            return serr_set(err, SERR_INVALID, "a delete needs \"version\"");
        if (versions_delete(vs, type, id, version, txn, "batch", err) != 0)
            return -1;
        *result = json_pack("{s:s, s:s, s:s, s:s, s:i}", "op", "delete", "type", type, "id", id,
                            "version", version, "status", 204);
        return 0;
    }
    if (strcmp(kind, "save") != 0)
        return serr_set(err, SERR_INVALID, "\"op\" must be save or delete");
    json_t *env = json_deep_copy(op);
    json_object_del(env, "op");
    json_object_del(env, "type");
    json_object_del(env, "id");
    store_head h;
    int rc = st->ops->get_head(st, txn, type, id, &h, err);
    if (rc == 0) {
        d->prev = h.latest_vkey;
        save_request rq = {.type = type, .id = id, .envelope = env, .txn = txn};
        rc = versions_save(vs, &rq, &d->v, &d->created, err);
    }
    json_decref(env);
    if (rc != 0)
        return -1;
    char ver[SEMVER_STR_MAX];
    semver_format(d->v.vkey, ver);
    *result =
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:s}", "op", "save", "type", type, "id", id, "version",
                  ver, "status", d->created ? 201 : 200, "data_hash", d->v.data_hash);
    return 0;
}

/* One attempt at the whole batch, inside the store's transaction (which
 * transact() may run again: everything is reset on entry). */
struct batch_job {
    versions_svc *vs;
    const json_t *ops;
    size_t n;
    done_op *done;
    json_t *out;
    size_t fenced, fenced_max; /* resources fenced in the cache (this run, any run) */
};

static int batch_in(store_txn *txn, void *ctx, strata_error *err)
{
    struct batch_job *b = ctx;
    for (size_t i = 0; i < b->n; i++)
        store_version_clear(&b->done[i].v);
    memset(b->done, 0, b->n * sizeof *b->done);
    json_array_clear(b->out);
    b->fenced = 0;
    for (size_t i = 0; i < b->n; i++) {
        json_t *result = NULL;
        if (run_op(b->vs, txn, json_array_get(b->ops, i), &b->done[i], &result, err) != 0)
            return fail_at(err, i);
        json_object_set_new(result, "index", json_integer((json_int_t)i));
        json_array_append_new(b->out, result);
    }
    /* invariant 6: every resource the batch changes is fenced in the cache
     * before the commit makes the change visible */
    while (b->fenced < b->n) {
        const done_op *d = &b->done[b->fenced];
        if (versions_fence_latest(b->vs, d->type, d->id, err) != 0)
            return -1;
        if (++b->fenced > b->fenced_max)
            b->fenced_max = b->fenced;
    }
    return 0;
}

int batch_run(versions_svc *vs, const json_t *body, json_t **results, strata_error *err)
{
    const json_t *ops = json_object_get(body, "operations");
    if (!json_is_object(body) || !json_is_array(ops) || json_array_size(ops) == 0)
        return serr_set(err, SERR_INVALID, "a batch is {\"operations\": [...]} with at least one");
    size_t n = json_array_size(ops);
    if (n > BATCH_MAX_OPERATIONS)
        return serr_set(err, SERR_TOO_LARGE, "a batch holds at most %d operations",
                        BATCH_MAX_OPERATIONS);
    store *st = versions_store(vs);
    if (!(st->ops->caps & STORE_CAP_TRANSACTIONS)) /* (both stores have them today) */
        return serr_set(err, SERR_UNAVAILABLE,
                        "batches need a store with transactions; the %s store has none",
                        st->ops->name);
    struct batch_job b = {.vs = vs, .ops = ops, .n = n};
    b.done = calloc(n, sizeof *b.done);
    b.out = json_array();
    if (b.done == NULL || b.out == NULL) {
        free(b.done);
        json_decref(b.out);
        return serr_set(err, SERR_NOMEM, "out of memory");
    }
    int rc = st->ops->transact(st, batch_in, &b, err);
    bool unconfirmed = false;
    for (size_t i = 0; i < n; i++) {
        strata_error ierr;
        if (rc == 0 && b.done[i].created) /* now visible: cascade for new versions */
            unconfirmed |= versions_notify_created(vs, &b.done[i].v, b.done[i].prev, &ierr) != 0;
        else if (i < b.fenced_max && b.done[i].type[0])
            unconfirmed |=
                versions_invalidate_latest(vs, b.done[i].type, b.done[i].id, &ierr) != 0 && rc == 0;
        store_version_clear(&b.done[i].v);
    }
    if (rc == 0 && unconfirmed)
        rc = versions_unconfirmed(err, "the batch");
    free(b.done);
    if (rc != 0) {
        json_decref(b.out);
        return -1;
    }
    *results = json_pack("{s:o}", "results", b.out);
    return 0;
}
