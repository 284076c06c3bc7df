#include "l2.h"

#include <string.h>

#include "l2_fs.h"
#include "l2_mongo.h"
#include "l2_redis.h"
#include "l2_s3.h"

l2_cache *l2_open(const char *url, const l2_config *cfg, strata_error *err)
{
    serr_clear(err);
    if (strcmp(url, "none") == 0)
        return NULL;
    if (strncmp(url, "file:", 5) == 0)
        return l2_fs_open(url + 5, cfg, err);
    if (strncmp(url, "redis://", 8) == 0 || strncmp(url, "rediss://", 9) == 0)
        return l2_redis_open(url, cfg, err);
    if (strncmp(url, "s3://", 5) == 0)
        return l2_s3_open(url, cfg, err);
    if (strncmp(url, "mongodb://", 10) == 0)
        return l2_mongo_open(url, cfg, err);
    serr_set(err, SERR_INVALID, "unsupported L2 cache URL '%s'", url);
    return NULL;
}

void l2_close(l2_cache *c)
{
    if (c != NULL)
        c->ops->close(c);
}
