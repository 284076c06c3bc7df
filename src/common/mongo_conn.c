/* Connections to a MongoDB deployment: see mongo_conn.h. */
#include "mongo_conn.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct mongo_conn {
    mongoc_uri_t *uri;
    mongoc_client_pool_t *pool;
    int pool_size;
    char db[MONGO_DB_MAX + 1];
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void init_driver(void)
{
    mongoc_init();
}

static bool valid_db(const char *db)
{
    size_t n = db ? strlen(db) : 0;
    if (n == 0 || n > MONGO_DB_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = db[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

/* Sets an int32 option unless the URL set it. */
static bool default_option(mongoc_uri_t *uri, const char *name, int32_t value)
{
    if (mongoc_uri_has_option(uri, name))
        return true;
    return mongoc_uri_set_option_as_int32(uri, name, value);
}

mongo_conn *mongo_conn_open(const char *url, const char *appname, strata_error *err)
{
    pthread_once(&init_once, init_driver);
    if (url == NULL || strncmp(url, "mongodb://", 10) != 0) {
        serr_set(err, SERR_INVALID, "a MongoDB URL starts with mongodb://");
        return NULL;
    }
    bson_error_t be;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(url, &be);
    if (uri == NULL) {
        /* libmongoc's message may quote the URL, password and all */
        serr_set(err, SERR_INVALID, "not a valid MongoDB URL");
        return NULL;
    }
    const char *db = mongoc_uri_get_database(uri);
    if (!valid_db(db)) {
        mongoc_uri_destroy(uri);
        serr_set(err, SERR_INVALID,
                 "a MongoDB URL names its database: mongodb://HOST/DB, DB of 1 to %d "
                 "characters [A-Za-z0-9_-]",
                 MONGO_DB_MAX);
        return NULL;
    }
    if (mongoc_uri_has_option(uri, MONGOC_URI_WAITQUEUETIMEOUTMS)) {
        /* a pop that may return NULL would be an error path at every use */
        mongoc_uri_destroy(uri);
        serr_set(err, SERR_INVALID, "the MongoDB URL option waitQueueTimeoutMS is not supported");
        return NULL;
    }
    if (!default_option(uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000) ||
        !default_option(uri, MONGOC_URI_CONNECTTIMEOUTMS, 2000) ||
        !default_option(uri, MONGOC_URI_SOCKETTIMEOUTMS, 30000) ||
        !default_option(uri, MONGOC_URI_MAXPOOLSIZE, 1024)) {
        mongoc_uri_destroy(uri);
        serr_set(err, SERR_INVALID, "the MongoDB URL's timeouts could not be set");
        return NULL;
    }
    mongo_conn *c = calloc(1, sizeof *c);
    if (c == NULL) {
        mongoc_uri_destroy(uri);
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    snprintf(c->db, sizeof c->db, "%s", db);
    c->uri = uri;
    c->pool_size = mongoc_uri_get_option_as_int32(uri, MONGOC_URI_MAXPOOLSIZE, 1024);
    if (c->pool_size < 1)
        c->pool_size = 1;
    c->pool = mongoc_client_pool_new(uri);
    if (c->pool == NULL) {
        mongoc_uri_destroy(uri);
        free(c);
        serr_set(err, SERR_INVALID, "the MongoDB URL's options were refused");
        return NULL;
    }
    mongoc_client_pool_set_error_api(c->pool, MONGOC_ERROR_API_VERSION_2);
    if (appname != NULL)
        mongoc_client_pool_set_appname(c->pool, appname);
    return c;
}

void mongo_conn_close(mongo_conn *c)
{
    if (c == NULL)
        return;
    mongoc_client_pool_destroy(c->pool);
    mongoc_uri_destroy(c->uri);
    free(c);
}

int mongo_conn_pool_size(const mongo_conn *c)
{
    return c->pool_size;
}

const char *mongo_conn_db(const mongo_conn *c)
{
    return c->db;
}

mongoc_client_t *mongo_conn_pop(mongo_conn *c)
{
    return mongoc_client_pool_pop(c->pool);
}

void mongo_conn_push(mongo_conn *c, mongoc_client_t *cl)
{
    if (cl != NULL)
        mongoc_client_pool_push(c->pool, cl);
}

mongoc_collection_t *mongo_conn_collection(mongo_conn *c, mongoc_client_t *cl, const char *name)
{
    return mongoc_client_get_collection(cl, c->db, name);
}

bool mongo_conn_is_duplicate(const bson_error_t *e)
{
    return e->code == MONGOC_ERROR_DUPLICATE_KEY;
}

int mongo_conn_error(const bson_error_t *e, const char *what, strata_error *err)
{
    if (mongo_conn_is_duplicate(e))
        return serr_set(err, SERR_CONFLICT, "%s: duplicate key", what);
    if (e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM)
        return serr_set(err, SERR_UNAVAILABLE, "%s: MongoDB not reachable: %s", what, e->message);
    return serr_set(err, SERR_IO, "%s: MongoDB: %s (%u.%u)", what, e->message, e->domain, e->code);
}

int mongo_conn_server_ms(mongoc_client_t *cl, int64_t *out, strata_error *err)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t be;
    BSON_APPEND_INT32(&cmd, "hello", 1);
    bool ok = mongoc_client_command_simple(cl, "admin", &cmd, NULL, &reply, &be);
    bson_destroy(&cmd);
    if (!ok) {
        bson_destroy(&reply);
        return mongo_conn_error(&be, "asking the server's time", err);
    }
    bson_iter_t it;
    int rc = 0;
    if (bson_iter_init_find(&it, &reply, "localTime") && BSON_ITER_HOLDS_DATE_TIME(&it))
        *out = bson_iter_date_time(&it);
    else
        rc = serr_set(err, SERR_IO, "the MongoDB server gives no localTime in hello");
    bson_destroy(&reply);
    return rc;
}

int mongo_conn_ping(mongo_conn *c, strata_error *err)
{
    mongoc_client_t *cl = mongo_conn_pop(c);
    bson_t cmd = BSON_INITIALIZER;
    bson_error_t be;
    BSON_APPEND_INT32(&cmd, "ping", 1);
    bool ok = mongoc_client_command_simple(cl, "admin", &cmd, NULL, NULL, &be);
    bson_destroy(&cmd);
    mongo_conn_push(c, cl);
    if (ok)
        return 0;
    return serr_set(err, SERR_UNAVAILABLE, "MongoDB does not answer: %s", be.message);
}
