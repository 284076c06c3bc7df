#include "retention.h"
#include "../common/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "resource_types.h"

static const char *const TYPES[] = {"dictionary", "corpus", "semantic",
                                    "literature", "trie",   "search"};
#define NTYPES          (sizeof TYPES / sizeof TYPES[0])
#define REPORT_LIST_MAX 1000 /* removed versions listed in an all-resources report */

void retention_defaults(retention_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < NTYPES; i++) {
        snprintf(cfg->rules[i].type, sizeof cfg->rules[i].type, "%s", TYPES[i]);
        cfg->rules[i].keep = resource_type_find(TYPES[i])->keep_versions;
    }
    cfg->n = (int)NTYPES;
}

static retention_rule *rule_for(retention_config *cfg, const char *type)
{
    for (int i = 0; i < cfg->n; i++)
        if (strcmp(cfg->rules[i].type, type) == 0)
            return &cfg->rules[i];
    return NULL;
}

int retention_config_apply(retention_config *cfg, const char *spec, strata_error *err)
{
    char *copy = strdup(spec), *save1 = NULL;
    if (copy == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    int rc = 0;
    for (char *part = strtok_r(copy, ";", &save1); part && rc == 0;
         part = strtok_r(NULL, ";", &save1)) {
        char *colon = strchr(part, ':');
        if (colon == NULL) {
            rc = serr_set(err, SERR_INVALID, "retention: expected TYPE:keep=N,max_age=SECONDS");
            break;
        }
        *colon = '\0';
        retention_rule *r = rule_for(cfg, part);
        if (r == NULL) {
            rc = serr_set(err, SERR_INVALID, "retention: unknown type '%s'", part);
            break;
        }
        char *save2 = NULL;
        for (char *kv = strtok_r(colon + 1, ",", &save2); kv && rc == 0;
             kv = strtok_r(NULL, ",", &save2)) {
            char *eq = strchr(kv, '='), *end = NULL;
            if (eq == NULL) {
                rc = serr_set(err, SERR_INVALID, "retention %s: expected key=value", r->type);
                break;
            }
            *eq = '\0';
            unsigned long long v = strtoull(eq + 1, &end, 10);
            if (end == eq + 1 || *end != '\0')
                rc = serr_set(err, SERR_INVALID, "retention %s: %s must be a number", r->type, kv);
            else if (strcmp(kv, "keep") == 0 && v >= 1 && v <= 1000000)
                r->keep = (int)v;
            else if (strcmp(kv, "max_age") == 0)
                r->max_age_s = v;
            else
                rc = serr_set(err, SERR_INVALID, "retention %s: unknown or out-of-range '%s'",
                              r->type, kv);
        }
    }
    free(copy);
    return rc;
}

typedef struct counts {
    size_t removed, protected_, kept;
} counts;

static void note_protected(json_t *protected_, counts *c, const char *type, const char *id,
                           const char *ver, const char *by)
{
    c->protected_++;
    c->kept++;
    if (json_array_size(protected_) < REPORT_LIST_MAX)
        json_array_append_new(protected_, json_pack("{s:s, s:s, s:s, s:s}", "type", type, "id", id,
                                                    "version", ver, "depended_on_by", by));
}

/* Takes a version listed as removed back off the report (it was kept). */
static void drop_removed(json_t *removed, const char *type, const char *id, const char *ver)
{
    size_t i;
    json_t *e;
    json_array_foreach(removed, i, e)
    {
        if (strcmp(json_string_value(json_object_get(e, "version")), ver) == 0 &&
            strcmp(json_string_value(json_object_get(e, "id")), id) == 0 &&
            strcmp(json_string_value(json_object_get(e, "type")), type) == 0) {
            json_array_remove(removed, i);
            return;
        }
    }
}

/* Decides (and unless dry_run, removes) the versions of one resource. */
static int cleanup_one(versions_svc *vs, const retention_rule *r, const char *type, const char *id,
                       int keep, bool dry_run, json_t *removed, json_t *protected_, counts *c,
                       strata_error *err)
{
    store *st = versions_store(vs);
    store_list_opts o = {.limit = STORE_LIST_MAX, .stale = -1};
    char *cursor = NULL;
    size_t index = 0;
    char reason[96];
    int rc = 0;
    int64_t now = clock_wall_ms();
    /* walk newest first; collect what goes, then remove (the walk does not
     * see its own deletions) */
    size_t cap = 64, n = 0;
    uint64_t *victims = malloc(cap * sizeof *victims);
    if (victims == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    do {
        store_page page;
        o.cursor = cursor;
        rc = st->ops->list_versions(st, type, id, &o, &page, err);
        free(cursor);
        cursor = NULL;
        if (rc != 0 && err->kind == SERR_NOT_FOUND) {
            rc = 0; /* its versions went while we walked: nothing left to do */
            break;
        }
        if (rc != 0)
            break;
        for (size_t i = 0; i < page.count && rc == 0; i++, index++) {
            const store_version *v = page.items[i];
            bool too_many = index >= (size_t)keep;
            bool too_old =
                r && r->max_age_s && now - v->created_at_ms > (int64_t)r->max_age_s * 1000;
            if (v->is_latest || !(too_many || too_old)) {
                c->kept++;
                continue;
            }
            char ver[SEMVER_STR_MAX];
            semver_format(v->vkey, ver);
            if (dry_run) { /* a real run decides this again, atomically, as it deletes */
                char by[STORE_ID_MAX + STORE_TYPE_MAX + 2] = "";
                bool pinned = false;
                rc = st->ops->version_pinned(st, type, id, v->vkey, &pinned, by, sizeof by, err);
                if (rc == 0 && pinned) {
                    note_protected(protected_, c, type, id, ver, by);
                    continue;
                }
            }
            if (rc == 0 && n == cap) {
                uint64_t *nv = realloc(victims, 2 * cap * sizeof *victims);
                if (nv == NULL) {
                    rc = serr_set(err, SERR_NOMEM, "out of memory");
                    break;
                }
                victims = nv;
                cap *= 2;
            }
            if (rc == 0) {
                victims[n++] = v->vkey;
                if (json_array_size(removed) < REPORT_LIST_MAX)
                    json_array_append_new(removed, json_pack("{s:s, s:s, s:s}", "type", type, "id",
                                                             id, "version", ver));
            }
        }
        if (rc == 0 && page.next)
            cursor = strdup(page.next);
        store_page_free(&page);
    } while (rc == 0 && cursor);
    free(cursor);
    snprintf(reason, sizeof reason, "retention (keep newest %d%s)", keep,
             r && r->max_age_s ? ", or younger than max_age" : "");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char ver[SEMVER_STR_MAX];
        semver_format(victims[i], ver);
        if (dry_run) {
            c->removed++;
            continue;
        }
        /* pinned or not is decided with the delete, in one transaction */
        bool pinned = false;
        char by[STORE_ID_MAX + STORE_TYPE_MAX + 2] = "";
        if (versions_delete_unpinned(vs, type, id, victims[i], reason, &pinned, by, sizeof by,
                                     err) != 0) {
            if (err->kind == SERR_NOT_FOUND || err->kind == SERR_GONE ||
                err->kind == SERR_CONFLICT) {
                drop_removed(removed, type, id, ver); /* removed meanwhile, or held by a tree */
                continue;
            }
            rc = -1;
        } else if (pinned) {
            note_protected(protected_, c, type, id, ver, by);
            drop_removed(removed, type, id, ver);
        } else {
            c->removed++;
        }
    }
    free(victims);
    return rc;
}

int retention_cleanup(versions_svc *vs, const retention_config *cfg, const char *type,
                      const char *id, int keep, bool dry_run, json_t **report, strata_error *err)
{
    if (versions_require(vs, type, id, err) != 0) /* 404 or 410, never an empty report */
        return -1;
    const retention_rule *r = rule_for((retention_config *)cfg, type);
    if (keep < 0)
        keep = r ? r->keep : 1;
    if (keep < 1)
        return serr_set(err, SERR_INVALID, "keep must be at least 1 (the latest always stays)");
    json_t *removed = json_array(), *prot = json_array();
    counts c = {0};
    if (cleanup_one(vs, r, type, id, keep, dry_run, removed, prot, &c, err) != 0) {
        json_decref(removed);
        json_decref(prot);
        return -1;
    }
    *report = json_pack("{s:{s:s, s:s}, s:i, s:b, s:o, s:o, s:I}", "resource", "type", type, "id",
                        id, "keep", keep, "dry_run", dry_run, "removed", removed, "protected", prot,
                        "kept", (json_int_t)c.kept);
    return 0;
}

int retention_cleanup_all(versions_svc *vs, const retention_config *cfg, bool dry_run,
                          json_t **report, strata_error *err)
{
    store *st = versions_store(vs);
    json_t *types = json_object(), *removed = json_array(), *prot = json_array();
    size_t total = 0;
    int rc = 0;
    for (int t = 0; rc == 0 && t < cfg->n; t++) {
        const retention_rule *r = &cfg->rules[t];
        counts c = {0};
        size_t resources = 0;
        store_list_opts o = {.limit = STORE_LIST_MAX, .stale = -1};
        char *cursor = NULL;
        do {
            store_page page;
            o.cursor = cursor;
            rc = st->ops->list_resources(st, r->type, &o, &page, err);
            free(cursor);
            cursor = NULL;
            for (size_t i = 0; rc == 0 && i < page.count; i++, resources++) {
                rc = cleanup_one(vs, r, r->type, page.items[i]->id, r->keep, dry_run, removed, prot,
                                 &c, err);
                if (rc != 0 && (err->kind == SERR_NOT_FOUND || err->kind == SERR_GONE))
                    rc = 0; /* removed by someone else meanwhile */
            }
            if (rc == 0 && page.next)
                cursor = strdup(page.next);
            if (rc == 0)
                store_page_free(&page);
        } while (rc == 0 && cursor);
        free(cursor);
        total += c.removed;
        json_object_set_new(types, r->type,
                            json_pack("{s:i, s:I, s:I, s:I, s:I}", "keep", r->keep, "resources",
                                      (json_int_t)resources, "removed", (json_int_t)c.removed,
                                      "protected", (json_int_t)c.protected_, "max_age_seconds",
                                      (json_int_t)r->max_age_s));
    }
    if (rc != 0) {
        json_decref(types);
        json_decref(removed);
        json_decref(prot);
        return -1;
    }
    *report = json_pack("{s:b, s:I, s:o, s:o, s:o}", "dry_run", dry_run, "removed_total",
                        (json_int_t)total, "types", types, "removed", removed, "protected", prot);
    return 0;
}
