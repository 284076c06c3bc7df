#include "cascade.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../common/log.h"

#define CLOSURE_MAX 10000 /* resources one cascade may reach */

struct cascade {
    versions_svc *vs;
    trees_svc *trees;
    store *st;
};

typedef struct node {
    char type[STORE_TYPE_MAX];
    char id[STORE_ID_MAX + 1];
} node;

/* The resources reachable from a root through "depends on", as a graph. */
typedef struct graph {
    node *nodes;
    size_t n, cap;
    size_t (*edges)[2];
    size_t nedges, edges_cap;
} graph;

static void graph_free(graph *g)
{
    free(g->nodes);
    free(g->edges);
}

static long graph_find(const graph *g, const char *type, const char *id)
{
    for (size_t i = 0; i < g->n; i++)
        if (strcmp(g->nodes[i].id, id) == 0 && strcmp(g->nodes[i].type, type) == 0)
            return (long)i;
    return -1;
}

static long graph_add(graph *g, const char *type, const char *id, strata_error *err)
{
    long at = graph_find(g, type, id);
    if (at >= 0)
        return at;
    if (g->n == CLOSURE_MAX) {
        serr_set(err, SERR_CONFLICT, "more than %d resources depend on this one", CLOSURE_MAX);
        return -1;
    }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 32;
        node *nn = realloc(g->nodes, cap * sizeof *nn);
        if (nn == NULL) {
            serr_set(err, SERR_NOMEM, "out of memory");
            return -1;
        }
        g->nodes = nn;
        g->cap = cap;
    }
    snprintf(g->nodes[g->n].type, sizeof g->nodes[0].type, "%s", type);
    snprintf(g->nodes[g->n].id, sizeof g->nodes[0].id, "%s", id);
    return (long)g->n++;
}

static int graph_edge(graph *g, size_t from, size_t to, strata_error *err)
{
    if (g->nedges == g->edges_cap) {
        size_t cap = g->edges_cap ? g->edges_cap * 2 : 64;
        size_t(*ne)[2] = realloc(g->edges, cap * sizeof *ne);
        if (ne == NULL)
            return serr_set(err, SERR_NOMEM, "out of memory");
        g->edges = ne;
        g->edges_cap = cap;
    }
    g->edges[g->nedges][0] = from;
    g->edges[g->nedges][1] = to;
    g->nedges++;
    return 0;
}

/* Is D the master that aggregates X? Then the trees service moves it. */
static bool is_tree_parent(cascade *c, const node *x, const store_version *d)
{
    char parent[STORE_ID_MAX + 1];
    return strcmp(x->type, "corpus") == 0 && strcmp(d->type, "corpus") == 0 &&
           trees_parent_of(c->trees, x->id, parent, sizeof parent) && strcmp(parent, d->id) == 0;
}

/* Breadth-first over dependents from the root. skip_tree_parents: leave
 * out masters aggregating a node (they move by themselves). */
static int build_closure(cascade *c, const char *type, const char *id, bool skip_tree_parents,
                         graph *g, strata_error *err)
{
    memset(g, 0, sizeof *g);
    if (graph_add(g, type, id, err) < 0)
        return -1;
    for (size_t at = 0; at < g->n; at++) {
        node x = g->nodes[at];
        /* every page of dependents: a cascade is complete or fails */
        store_list_opts o = {.limit = STORE_LIST_MAX, .stale = -1};
        char *cursor = NULL;
        int rc = 0;
        do {
            store_page page;
            o.cursor = cursor;
            rc = c->st->ops->dependents(c->st, x.type, x.id, &o, &page, err);
            free(cursor);
            cursor = NULL;
            if (rc != 0)
                break;
            for (size_t i = 0; rc == 0 && i < page.count; i++) {
                const store_version *d = page.items[i];
                if (skip_tree_parents && is_tree_parent(c, &x, d))
                    continue;
                long to = graph_add(g, d->type, d->id, err);
                rc = to < 0 ? -1 : graph_edge(g, at, (size_t)to, err);
            }
            cursor = page.next;
            page.next = NULL;
            store_page_free(&page);
        } while (rc == 0 && cursor != NULL);
        free(cursor);
        if (rc != 0)
            return -1;
    }
    return 0;
}

static void mark_stale(cascade *c, const node *d, json_t *reason)
{
    strata_error err;
    /* fenced like any change of the latest record: a crash between the
     * commit and the invalidation must not leave the unflagged copy served */
    if (versions_fence_latest(c->vs, d->type, d->id, &err) != 0) {
        slog_warn("could not mark %s/%s stale (cache fence): %s", d->type, d->id, err.detail);
        return;
    }
    if (c->st->ops->set_stale(c->st, NULL, d->type, d->id, true, reason, &err) != 0)
        slog_warn("could not mark %s/%s stale: %s", d->type, d->id, err.detail);
    /* the record shows the flag (if this fails, the fence expires) */
    versions_invalidate_latest(c->vs, d->type, d->id, &err);
}

/* After a new version of (type, id): every dependent, at any distance, is
 * stale, naming the dependency that moved and the version that moved it. */
static void mark_dependents_stale(cascade *c, const char *type, const char *id, uint64_t vkey)
{
    graph g;
    strata_error err;
    if (build_closure(c, type, id, true, &g, &err) != 0) {
        slog_warn("cascade from %s/%s stopped: %s", type, id, err.detail);
        graph_free(&g);
        return;
    }
    char version[SEMVER_STR_MAX];
    semver_format(vkey, version);
    /* each dependent once, naming the first dependency that reached it */
    for (size_t e = 0; e < g.nedges; e++) {
        size_t from = g.edges[e][0], to = g.edges[e][1];
        bool first = true;
        for (size_t k = 0; k < e && first; k++)
            first = g.edges[k][1] != to;
        if (to == 0 || !first)
            continue; /* the root just moved; a node reached twice is marked once */
        json_t *reason =
            json_pack("{s:{s:s, s:s}, s:{s:s, s:s, s:s}}", "dependency", "type", g.nodes[from].type,
                      "id", g.nodes[from].id, "cause", "type", type, "id", id, "version", version);
        mark_stale(c, &g.nodes[to], reason);
        json_decref(reason);
    }
    graph_free(&g);
}

static void on_new_version(void *ctx, const store_version *created, uint64_t prev,
                           const save_request *rq)
{
    cascade *c = ctx;
    if (strcmp(created->type, "corpus") == 0 && rq->computed == NULL) {
        /* a client's new version of a corpus: the masters above it follow */
        strata_error err;
        if (trees_child_changed(c->trees, created->id, prev, created->vkey, &err) != 0)
            slog_error("masters of %s did not follow its version: %s", created->id, err.detail);
    }
    if (!created->no_dependents) /* the store saw none as it wrote the version */
        mark_dependents_stale(c, created->type, created->id, created->vkey);
}

static void on_master_saved(void *ctx, const char *master, uint64_t vkey)
{
    mark_dependents_stale(ctx, "corpus", master, vkey);
}

cascade *cascade_new(versions_svc *vs, trees_svc *trees, strata_error *err)
{
    cascade *c = calloc(1, sizeof *c);
    if (c == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    c->vs = vs;
    c->trees = trees;
    c->st = versions_store(vs);
    versions_set_hook(vs, on_new_version, c);
    trees_set_saved_hook(trees, on_master_saved, c);
    return c;
}

void cascade_free(cascade *c)
{
    free(c);
}

int cascade_dependents(cascade *c, const char *type, const char *id, const store_list_opts *o,
                       store_page *out, strata_error *err)
{
    if (versions_check_resource(type, id, err) != 0)
        return -1;
    if (o->limit < 1 || o->limit > STORE_LIST_MAX)
        return serr_set(err, SERR_INVALID, "limit must be 1-%d", STORE_LIST_MAX);
    /* a resource that never existed has no dependents to list: 404 (410
     * when it was removed) */
    if (versions_require(c->vs, type, id, err) != 0)
        return -1;
    return c->st->ops->dependents(c->st, type, id, o, out, err);
}

/* Finds a cycle among the nodes Kahn's walk could not order, and names it. */
static void name_cycle(const graph *g, const size_t *indeg, strata_error *err)
{
    /* every unordered node has an unordered predecessor: walk backwards
     * until a node repeats; the repeat closes the cycle */
    size_t start = 0;
    while (start < g->n && indeg[start] == 0)
        start++;
    size_t *seen_at = calloc(g->n, sizeof *seen_at), path[64], len = 0, at = start;
    while (seen_at && len < 64 && seen_at[at] == 0) {
        seen_at[at] = len + 1;
        path[len++] = at;
        for (size_t e = 0; e < g->nedges; e++)
            if (g->edges[e][1] == at && indeg[g->edges[e][0]] > 0) {
                at = g->edges[e][0];
                break;
            }
    }
    char text[1024];
    int n = 0;
    size_t first = seen_at && seen_at[at] ? seen_at[at] - 1 : 0;
    /* the walk went against the edges: print it forwards */
    for (size_t i = len; i > first && n >= 0 && (size_t)n < sizeof text; i--)
        n += snprintf(text + n, sizeof text - (size_t)n, "%s%s/%s", i == len ? "" : " -> ",
                      g->nodes[path[i - 1]].type, g->nodes[path[i - 1]].id);
    if (n >= 0 && (size_t)n < sizeof text)
        snprintf(text + n, sizeof text - (size_t)n, " -> %s/%s", g->nodes[at].type,
                 g->nodes[at].id);
    free(seen_at);
    serr_set(err, SERR_CONFLICT, "dependency cycle: %s", text);
}

int cascade_rebuild(cascade *c, const char *type, const char *id, json_t **report,
                    strata_error *err)
{
    store_version root;
    if (versions_get(c->vs, type, id, "latest", &root, err) != 0)
        return -1;
    store_version_clear(&root);
    graph g;
    if (build_closure(c, type, id, false, &g, err) != 0) {
        graph_free(&g);
        return -1;
    }
    /* Kahn: a dependent comes after everything it depends on, each once */
    size_t *indeg = calloc(g.n, sizeof *indeg), *order = calloc(g.n, sizeof *order);
    if (indeg == NULL || order == NULL) {
        free(indeg);
        free(order);
        graph_free(&g);
        return serr_set(err, SERR_NOMEM, "out of memory");
    }
    for (size_t e = 0; e < g.nedges; e++)
        indeg[g.edges[e][1]]++;
    size_t n = 0, done = 0;
    for (size_t i = 0; i < g.n; i++)
        if (indeg[i] == 0)
            order[n++] = i;
    while (done < n) {
        size_t at = order[done++];
        for (size_t e = 0; e < g.nedges; e++)
            if (g.edges[e][0] == at && --indeg[g.edges[e][1]] == 0)
                order[n++] = g.edges[e][1];
    }
    int rc = 0;
    if (n < g.n) {
        name_cycle(&g, indeg, err);
        rc = -1;
    }
    json_t *steps = json_array(), *reag = json_array(), *stale = json_array();
    json_t *reason = json_pack("{s:{s:s, s:s}}", "rebuild_of", "type", type, "id", id);
    for (size_t k = 0; rc == 0 && k < n; k++) {
        const node *d = &g.nodes[order[k]];
        if (order[k] == 0)
            continue; /* the root itself */
        const char *action;
        if (strcmp(d->type, "corpus") == 0 && trees_is_master(c->trees, d->id)) {
            if (trees_reaggregate(c->trees, d->id, err) != 0) {
                rc = -1;
                break;
            }
            action = "reaggregated";
            json_array_append_new(reag, json_pack("{s:s, s:s}", "type", d->type, "id", d->id));
        } else {
            mark_stale(c, d, reason);
            action = "marked_stale";
            json_array_append_new(stale, json_pack("{s:s, s:s}", "type", d->type, "id", d->id));
        }
        json_array_append_new(
            steps, json_pack("{s:s, s:s, s:s}", "type", d->type, "id", d->id, "action", action));
    }
    json_decref(reason);
    if (rc == 0)
        *report = json_pack("{s:{s:s, s:s}, s:o, s:o, s:o}", "resource", "type", type, "id", id,
                            "order", steps, "reaggregated", reag, "marked_stale", stale);
    else {
        json_decref(steps);
        json_decref(reag);
        json_decref(stale);
    }
    free(indeg);
    free(order);
    graph_free(&g);
    return rc;
}
