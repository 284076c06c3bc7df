/* Retention, blob collection and atomic batches: POST /admin/cleanup,
 * POST /admin/gc, POST /{type}/{id}/cleanup, POST /batch. */
#include <stdlib.h>
#include <string.h>

#include "../src/service/batch.h"
#include "../src/service/gc.h"
#include "../src/service/retention.h"
#include "app.h"
#include "request.h"
#include "routes.h"

/* ?dry_run, ?dry_run=true or =1: true; =false or =0: false. */
static int dry_run_of(request *req, bool *dry, strata_error *err)
{
    const char *v = req_query(req, "dry_run");
    *dry = false;
    if (v == NULL)
        return 0;
    if (v[0] == '\0' || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *dry = true;
    else if (strcmp(v, "false") != 0 && strcmp(v, "0") != 0)
        return serr_set(err, SERR_INVALID, "dry_run must be true or false");
    return 0;
}

static void post_resource_cleanup(request *req, reply *rep)
{
    strata_error err;
    bool dry;
    int keep = -1;
    const char *k = req_query(req, "keep");
    if (k != NULL) {
        char *end = NULL;
        long n = strtol(k, &end, 10);
        if (end == k || *end != '\0' || n < 1 || n > 1000000) {
            reply_problem(rep, 400, "invalid-input",
                          "keep must be 1-1000000 (the latest version always stays)");
            return;
        }
        keep = (int)n;
    }
    json_t *report = NULL;
    if (dry_run_of(req, &dry, &err) != 0 ||
        retention_cleanup(req->app->versions, req->app->retention, req_param(req, "type"),
                          req_param(req, "id"), keep, dry, &report, &err) != 0) {
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
    if (dry_run_of(req, &dry, &err) != 0 ||
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
    if (dry_run_of(req, &dry, &err) != 0 ||
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
