/* What every handler can reach: configuration, routing, metrics, access
 * control, TLS, and the services. Owned by main. */
#ifndef STRATA_APP_H
#define STRATA_APP_H

#include <stdatomic.h>

#include "../src/blobs/blobs.h"
#include "../src/config/config.h"
#include "../src/cache/l2.h"
#include "../src/service/cache_manager.h"
#include "../src/service/cascade.h"
#include "../src/service/maintenance.h"
#include "../src/service/retention.h"
#include "../src/service/trees.h"
#include "../src/service/versions.h"
#include "../src/store/store.h"
#include "auth.h"
#include "metrics.h"
#include "router.h"
#include "tls.h"

typedef struct app {
    const strata_config *cfg;
    router *router;
    http_metrics *metrics;
    store *store;
    blob_store *blobs;
    l2_cache *l2;
    cache_manager *cache;
    versions_svc *versions;
    trees_svc *trees;
    cascade *cascade;
    retention_config *retention;
    maintenance *maintenance;
    auth *auth;        /* access control; never NULL once the server starts (may be disabled) */
    tls_ctx *tls;      /* NULL: plain HTTP */
    atomic_bool ready; /* false while starting and once shutdown began */
} app;

#endif
