/* Liveness, readiness, metrics and the OpenAPI document. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/common/log.h"
#include "../src/store/store_sqlite.h"
#include "app.h"
#include "openapi_spec.h"
#include "request.h"
#include "routes.h"

/* The L2's state for /health and /ready: "ok", "none", or "down: cause".
 * A cache that is down degrades a node (reads go to the store, saves
 * that must fence answer 503) without making it unready. */
static void l2_state(const app *a, char *out, size_t cap)
{
    strata_error err;
    if (a->l2 == NULL)
        snprintf(out, cap, "none");
    else if (a->l2->ops->health == NULL || a->l2->ops->health(a->l2, &err) == 0)
        snprintf(out, cap, "ok");
    else
        snprintf(out, cap, "down: %s", err.detail);
}

/* The blob store's state for /ready: "ok" or "down: cause", where the cause shown
 * is the backend's own error ("SignatureDoesNotMatch: ...") or a plain
 * "unreachable" (a connection error may name hosts: that is logged). */
static bool blobs_state(const app *a, char *out, size_t cap)
{
    strata_error err;
    blob_store *b = a->blobs;
    if (b == NULL || b->ops->health == NULL || b->ops->health(b, &err) == 0) {
        snprintf(out, cap, "ok");
        return true;
    }
    slog_warn("the blob store does not answer: %s", err.detail);
    const char *p = err.detail;
    bool coded = *p >= 'A' && *p <= 'Z';
    while ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
        p++;
    coded = coded && p[0] == ':' && p[1] == ' ';
    snprintf(out, cap, "down: %.300s", coded ? err.detail : "unreachable");
    return false;
}

/* Liveness: no round trip to the blob store (a store that is slow or
 * down must not make a live node look dead; /ready says so). */
static void get_health(request *req, reply *rep)
{
    char l2[320];
    l2_state(req->app, l2, sizeof l2);
    reply_json(rep, 200, json_pack("{s:s,s:s}", "status", "ok", "l2", l2));
}

static void get_ready(request *req, reply *rep)
{
    if (!atomic_load(&req->app->ready)) {
        reply_problem(rep, 503, "not-ready", "the server is starting or shutting down");
        return;
    }
    /* ready means the store answers: a node that cannot reach it takes
     * no traffic (the cache is optional, the store is not) */
    strata_error err;
    if (req->app->store->ops->ping(req->app->store, &err) != 0) {
        slog_warn("not ready: the store does not answer: %s", err.detail);
        reply_problem(rep, 503, "not-ready", "the store is not reachable");
        return;
    }
    /* and the blob store: content of record lives there */
    char l2[320], blobs[320];
    if (!blobs_state(req->app, blobs, sizeof blobs)) {
        reply_problem_shown(rep, 503, "not-ready", "the blob store is %s", blobs);
        return;
    }
    l2_state(req->app, l2, sizeof l2);
    reply_json(rep, 200, json_pack("{s:s,s:s,s:s}", "status", "ready", "l2", l2, "blobs", blobs));
}

/* The embedded store's group commit: how many commits (one WAL fsync
 * each) and how many writes shared them. Other stores commit in their
 * servers and count nothing here. */
static int store_metrics(store *st, strata_buf *out, strata_error *err)
{
    if (st == NULL || strcmp(st->ops->name, "sqlite") != 0)
        return 0;
    uint64_t commits, writes;
    store_sqlite_commit_stats(st, &commits, &writes);
    char text[512];
    int n = snprintf(text, sizeof text,
                     "# HELP strata_store_commits_total Commits of the SQLite store, one WAL fsync "
                     "each.\n# TYPE strata_store_commits_total counter\n"
                     "strata_store_commits_total %llu\n"
                     "# HELP strata_store_commit_writes_total Writes that those commits made "
                     "durable (per commit: the mean commit group).\n"
                     "# TYPE strata_store_commit_writes_total counter\n"
                     "strata_store_commit_writes_total %llu\n",
                     (unsigned long long)commits, (unsigned long long)writes);
    if (n < 0 || (size_t)n >= sizeof text)
        return serr_set(err, SERR_INTERNAL, "metrics formatting failed");
    return sbuf_append(out, text, (size_t)n, err);
}

static void get_metrics(request *req, reply *rep)
{
    strata_buf out;
    strata_error err;
    sbuf_init(&out, 0);
    app *a = req->app;
    if (metrics_render(a->metrics, &out, &err) != 0 || store_metrics(a->store, &out, &err) != 0 ||
        (a->cache && cache_metrics(a->cache, &out, &err) != 0) ||
        (a->auth && auth_metrics_render(a->auth, &out, &err) != 0) ||
        (a->tls && tls_metrics_render(a->tls, &out, &err) != 0)) {
        sbuf_free(&out);
        reply_error(rep, &err);
        return;
    }
    size_t len;
    unsigned char *data = sbuf_take(&out, &len);
    reply_bytes(rep, 200, "text/plain; version=0.0.4; charset=utf-8", data, len);
}

static void get_openapi(request *req, reply *rep)
{
    (void)req;
    reply_static(rep, 200, "application/yaml", strata_openapi_yaml, strata_openapi_yaml_len);
}

int routes_system_register(router *r)
{
    int rc = 0;
    rc |= router_add(r, HTTP_GET, "/health", get_health);
    rc |= router_add(r, HTTP_GET, "/ready", get_ready);
    rc |= router_add(r, HTTP_GET, "/metrics", get_metrics);
    rc |= router_add(r, HTTP_GET, "/openapi.yaml", get_openapi);
    return rc ? -1 : 0;
}

int routes_register_all(router *r)
{
    /* /cache before /{type}: literal segments win anyway, but keep it readable */
    return routes_system_register(r) | routes_cache_register(r) | routes_trees_register(r) |
           routes_admin_register(r) | routes_resources_register(r) | routes_content_register(r);
}
