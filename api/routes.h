/* One registration function per REST resource family. */
#ifndef STRATA_ROUTES_H
#define STRATA_ROUTES_H

#include "router.h"

/* /health, /ready, /metrics, /openapi.yaml */
int routes_system_register(router *r);

/* /{type}, /{type}/{id}, /{type}/{id}/versions/... */
int routes_resources_register(router *r);
int routes_content_register(router *r);

/* /cache, /cache/{ns}, /cache/{ns}/{key} */
int routes_cache_register(router *r);

/* /trees, /trees/{master}/... */
int routes_trees_register(router *r);

/* /admin/cleanup, /admin/gc, /batch, /{type}/{id}/cleanup */
int routes_admin_register(router *r);

/* All families; -1 when a pattern is invalid. */
int routes_register_all(router *r);

#endif
