/* Retention, blob collection and atomic batches: POST /admin/cleanup,
 * POST /admin/gc, POST /{type}/{id}/cleanup, POST /batch. */
#include "../src/service/batch.h"
#include "../src/service/gc.h"
#include "../src/service/retention.h"
#include "app.h"
#include "request.h"
#include "routes.h"

#define KEEP_MAX 1000000

static void post_resource_cleanup(request *req, reply *rep)
{
    strata_error err;
    bool dry, has_keep;
    uint64_t keep = 0;
    json_t *report = NULL;
    /* strict, and read before anything runs: a dry_run that does not read
     * cleanly is a 400, never "absent" and so a real deletion */
    if (req_query_uint(req, "keep", 1, KEEP_MAX, &has_keep, &keep, &err) != 0 ||
        req_query_bool(req, "dry_run", false, &dry, &err) != 0 ||
        retention_cleanup(req->app->versions, req->app->retention, req_param(req, "type"),
                          req_param(req, "id"), has_keep ? (int)keep : -1, dry, &report,
                          &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_json(rep, 200, report);
}

static void post_admin_cleanup(request *req, reply *rep)
{
    strata_error err;
    bool dry;
    json_t *report = NULL;
    if (req_query_bool(req, "dry_run", false, &dry, &err) != 0 ||
        retention_cleanup_all(req->app->versions, req->app->retention, dry, &report, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_json(rep, 200, report);
}

static void post_admin_gc(request *req, reply *rep)
{
    strata_error err;
    bool dry;
    json_t *report = NULL;
    if (req_query_bool(req, "dry_run", false, &dry, &err) != 0 ||
        gc_run(req->app->versions, req->app->cfg->gc_grace, dry, &report, &err) != 0) {
        reply_error(rep, &err);
        return;
    }
    reply_json(rep, 200, report);
}

static void post_batch(request *req, reply *rep)
{
    strata_error err;
    json_t *results = NULL, *body = req_body_json(req, &err);
    if (body == NULL || batch_run(req->app->versions, body, &results, &err) != 0)
        reply_error(rep, &err);
    else
        reply_json(rep, 200, results);
    json_decref(body);
}

int routes_admin_register(router *r)
{
    int rc = 0;
    rc |= router_add(r, HTTP_POST, "/admin/cleanup", post_admin_cleanup);
    rc |= router_add(r, HTTP_POST, "/admin/gc", post_admin_gc);
    rc |= router_add(r, HTTP_POST, "/batch", post_batch);
    rc |= router_add(r, HTTP_POST, "/{type}/{id}/cleanup", post_resource_cleanup);
    return rc ? -1 : 0;
}
