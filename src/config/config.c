#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

typedef int (*opt_setter)(strata_config *cfg, const char *value, strata_error *err);

struct opt_def {
    const char *name; /* flag and config-file key */
    const char *env;  /* environment variable */
    const char *arg;  /* placeholder in --help, NULL for switches */
    const char *help;
    opt_setter set;
};

static int copy_str(char *dst, size_t cap, const char *name, const char *value, strata_error *err)
{
    size_t n = strlen(value);
    if (n == 0)
        return serr_set(err, SERR_INVALID, "--%s: value must not be empty", name);
    if (n >= cap)
        return serr_set(err, SERR_INVALID, "--%s: value longer than %zu characters", name, cap - 1);
    memcpy(dst, value, n + 1);
    return 0;
}

static int parse_uint(const char *s, unsigned long long lo, unsigned long long hi,
                      unsigned long long *out)
{
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int config_parse_size(const char *s, uint64_t *out)
{
    if (s == NULL || !isdigit((unsigned char)s[0]))
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    unsigned shift = 0;
    switch (tolower((unsigned char)*end)) {
    case '\0':
        break;
    case 'k':
        shift = 10;
        break;
    case 'm':
        shift = 20;
        break;
    case 'g':
        shift = 30;
        break;
    default:
        return -1;
    }
    if (*end != '\0') {
        end++;
        if (tolower((unsigned char)*end) == 'i')
            end++;
        if (tolower((unsigned char)*end) == 'b')
            end++;
        if (*end != '\0')
            return -1;
    }
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

static int set_listen(strata_config *cfg, const char *v, strata_error *err)
{
    const char *colon = strrchr(v, ':');
    if (colon == NULL || colon == v)
        return serr_set(err, SERR_INVALID, "--listen: expected HOST:PORT, got '%s'", v);
    size_t hlen = (size_t)(colon - v);
    if (hlen >= sizeof cfg->listen_host)
        return serr_set(err, SERR_INVALID, "--listen: host name too long");
    unsigned long long port;
    if (parse_uint(colon + 1, 0, 65535, &port) != 0)
        return serr_set(err, SERR_INVALID, "--listen: port must be 0-65535, got '%s'", colon + 1);
    memcpy(cfg->listen_host, v, hlen);
    cfg->listen_host[hlen] = '\0';
    cfg->listen_port = (uint16_t)port;
    return 0;
}

static int set_data_dir(strata_config *cfg, const char *v, strata_error *err)
{
    return copy_str(cfg->data_dir, sizeof cfg->data_dir, "data-dir", v, err);
}

static int check_scheme(const char *name, const char *v, const char *const *schemes,
                        strata_error *err)
{
    for (const char *const *s = schemes; *s; s++)
        if (strncmp(v, *s, strlen(*s)) == 0 && v[strlen(*s)] != '\0')
            return 0;
    char list[256] = "";
    for (const char *const *s = schemes; *s; s++) {
        strncat(list, *s, sizeof list - strlen(list) - 1);
        strncat(list, "... ", sizeof list - strlen(list) - 1);
    }
    return serr_set(err, SERR_INVALID, "--%s: '%s' is not a supported URL (expected one of: %s)",
                    name, v, list);
}

static int set_store(strata_config *cfg, const char *v, strata_error *err)
{
    static const char *const schemes[] = {"sqlite:", "mongodb://", NULL};
    if (check_scheme("store", v, schemes, err) != 0)
        return -1;
    return copy_str(cfg->store_url, sizeof cfg->store_url, "store", v, err);
}

static int set_blobs(strata_config *cfg, const char *v, strata_error *err)
{
    static const char *const schemes[] = {"file:", "s3://", "gridfs:", NULL};
    if (check_scheme("blobs", v, schemes, err) != 0)
        return -1;
    return copy_str(cfg->blobs_url, sizeof cfg->blobs_url, "blobs", v, err);
}

static int set_cache_l2(strata_config *cfg, const char *v, strata_error *err)
{
    static const char *const schemes[] = {"file:", "redis://",   "rediss://",
                                          "s3://", "mongodb://", NULL};
    if (strcmp(v, "none") != 0 && check_scheme("cache-l2", v, schemes, err) != 0)
        return -1;
    return copy_str(cfg->cache_l2_url, sizeof cfg->cache_l2_url, "cache-l2", v, err);
}

static int set_threads(strata_config *cfg, const char *v, strata_error *err)
{
    unsigned long long n;
    if (parse_uint(v, 1, 256, &n) != 0)
        return serr_set(err, SERR_INVALID, "--threads: expected 1-256, got '%s'", v);
    cfg->threads = (unsigned)n;
    return 0;
}

static int set_write_threads(strata_config *cfg, const char *v, strata_error *err)
{
    unsigned long long n;
    if (parse_uint(v, 0, 1024, &n) != 0)
        return serr_set(err, SERR_INVALID, "--write-threads: expected 0-1024, got '%s'", v);
    cfg->write_threads = (unsigned)n;
    return 0;
}

static int set_size(const char *name, uint64_t *dst, const char *v, strata_error *err)
{
    uint64_t n;
    if (config_parse_size(v, &n) != 0 || n < 1024 || n > (UINT64_C(1) << 40))
        return serr_set(err, SERR_INVALID,
                        "--%s: expected a size from 1K to 1T (e.g. 64M), got '%s'", name, v);
    *dst = n;
    return 0;
}

static int set_max_body(strata_config *cfg, const char *v, strata_error *err)
{
    return set_size("max-body", &cfg->max_body, v, err);
}

static int set_max_decoded(strata_config *cfg, const char *v, strata_error *err)
{
    return set_size("max-decoded-body", &cfg->max_decoded_body, v, err);
}

static int set_inline_threshold(strata_config *cfg, const char *v, strata_error *err)
{
    uint64_t n;
    if (config_parse_size(v, &n) != 0 || n > (UINT64_C(16) << 20))
        return serr_set(err, SERR_INVALID,
                        "--inline-threshold: expected a size from 0 to 16M, got '%s'", v);
    cfg->inline_threshold = n;
    return 0;
}

static int set_cache_l1_bytes(strata_config *cfg, const char *v, strata_error *err)
{
    return set_size("cache-l1-bytes", &cfg->cache_l1_bytes, v, err);
}

static int set_cache_l2_bytes(strata_config *cfg, const char *v, strata_error *err)
{
    return set_size("cache-l2-bytes", &cfg->cache_l2_bytes, v, err);
}

static int set_cache_namespaces(strata_config *cfg, const char *v, strata_error *err)
{
    return copy_str(cfg->cache_namespaces, sizeof cfg->cache_namespaces, "cache-namespaces", v,
                    err);
}

static int set_retention(strata_config *cfg, const char *v, strata_error *err)
{
    return copy_str(cfg->retention, sizeof cfg->retention, "retention", v, err);
}

static int set_seconds(const char *name, unsigned *dst, const char *v, strata_error *err)
{
    unsigned long long n;
    if (parse_uint(v, 0, 86400, &n) != 0)
        return serr_set(err, SERR_INVALID, "--%s: expected seconds 0-86400, got '%s'", name, v);
    *dst = (unsigned)n;
    return 0;
}

static int set_conn_timeout(strata_config *cfg, const char *v, strata_error *err)
{
    return set_seconds("connection-timeout", &cfg->connection_timeout, v, err);
}

static int set_conn_memory(strata_config *cfg, const char *v, strata_error *err)
{
    uint64_t n;
    if (config_parse_size(v, &n) != 0 || n < (UINT64_C(8) << 10) || n > (UINT64_C(1) << 20))
        return serr_set(err, SERR_INVALID,
                        "--connection-memory: expected a size from 8K to 1M, got '%s'", v);
    cfg->connection_memory = n;
    return 0;
}

static int set_shutdown_timeout(strata_config *cfg, const char *v, strata_error *err)
{
    return set_seconds("shutdown-timeout", &cfg->shutdown_timeout, v, err);
}

static int set_maintenance_interval(strata_config *cfg, const char *v, strata_error *err)
{
    return set_seconds("maintenance-interval", &cfg->maintenance_interval, v, err);
}

static int set_gc_grace(strata_config *cfg, const char *v, strata_error *err)
{
    unsigned s = 0;
    if (set_seconds("gc-grace", &s, v, err) != 0)
        return -1;
    cfg->gc_grace = s;
    return 0;
}

static int set_log_level(strata_config *cfg, const char *v, strata_error *err)
{
    if (slog_parse_level(v, &cfg->log_level) != 0)
        return serr_set(err, SERR_INVALID,
                        "--log-level: expected debug, info, warn or error, got '%s'", v);
    return 0;
}

static int set_access_log(strata_config *cfg, const char *v, strata_error *err)
{
    return copy_str(cfg->access_log, sizeof cfg->access_log, "access-log", v, err);
}

static int set_config_file(strata_config *cfg, const char *v, strata_error *err)
{
    return copy_str(cfg->config_file, sizeof cfg->config_file, "config", v, err);
}

static int set_auth_tokens(strata_config *cfg, const char *v, strata_error *err)
{
    return copy_str(cfg->auth_tokens, sizeof cfg->auth_tokens, "auth-tokens", v, err);
}

/* A switch: a flag passes "true"; the environment and the file spell it. */
static int set_switch(const char *name, bool *dst, const char *v, strata_error *err)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
        *dst = true;
    else if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
        *dst = false;
    else
        return serr_set(err, SERR_INVALID, "--%s: expected true, false, 1 or 0, got '%s'", name, v);
    return 0;
}

static int set_metrics_open(strata_config *cfg, const char *v, strata_error *err)
{
    return set_switch("metrics-open", &cfg->metrics_open, v, err);
}

static int set_tls_cert(strata_config *cfg, const char *v, strata_error *err)
{
    return copy_str(cfg->tls_cert, sizeof cfg->tls_cert, "tls-cert", v, err);
}

static int set_tls_key(strata_config *cfg, const char *v, strata_error *err)
{
    return copy_str(cfg->tls_key, sizeof cfg->tls_key, "tls-key", v, err);
}

static int set_tls_client_ca(strata_config *cfg, const char *v, strata_error *err)
{
    return copy_str(cfg->tls_client_ca, sizeof cfg->tls_client_ca, "tls-client-ca", v, err);
}

static const struct opt_def OPTIONS[] = {
    {"config", "STRATA_CONFIG", "FILE", "read options from FILE (lines of 'key = value')",
     set_config_file},
    {"listen", "STRATA_LISTEN", "HOST:PORT", "address to listen on [127.0.0.1:8080]", set_listen},
    {"data-dir", "STRATA_DATA_DIR", "DIR", "directory for embedded data [./data]", set_data_dir},
    {"store", "STRATA_STORE", "URL",
     "version store: sqlite:PATH or mongodb://... [sqlite:DIR/strata.db]", set_store},
    {"blobs", "STRATA_BLOBS", "URL", "blob store: file:DIR or s3://BUCKET/PREFIX [file:DIR/blobs]",
     set_blobs},
    {"cache-l2", "STRATA_CACHE_L2", "URL",
     "L2 cache: file:DIR, redis://..., s3://..., mongodb://... or none [file:DIR/cache]",
     set_cache_l2},
    {"threads", "STRATA_THREADS", "N", "HTTP worker threads, 1-256 [number of CPUs]", set_threads},
    {"write-threads", "STRATA_WRITE_THREADS", "N",
     "threads that run writes (POST, PUT, DELETE) so that concurrent saves share commits; 0 runs "
     "them on the HTTP threads [32]",
     set_write_threads},
    {"max-body", "STRATA_MAX_BODY", "SIZE", "largest request body on the wire [64M]", set_max_body},
    {"max-decoded-body", "STRATA_MAX_DECODED_BODY", "SIZE",
     "largest request body after Content-Encoding is undone [256M]", set_max_decoded},
    {"inline-threshold", "STRATA_INLINE_THRESHOLD", "SIZE",
     "content up to this size is kept in the store, larger in blobs [64K]", set_inline_threshold},
    {"cache-l1-bytes", "STRATA_CACHE_L1_BYTES", "SIZE",
     "memory for the L1 cache, shared by all namespaces [1G]", set_cache_l1_bytes},
    {"cache-l2-bytes", "STRATA_CACHE_L2_BYTES", "SIZE", "size limit of the disk L2 cache [4G]",
     set_cache_l2_bytes},
    {"cache-namespaces", "STRATA_CACHE_NAMESPACES", "SPEC",
     "namespace overrides: 'corpus:l1_items=200,l1_bytes=512M,l1_ttl=S,l2_ttl=S,codec=zstd;...'",
     set_cache_namespaces},
    {"retention", "STRATA_RETENTION", "SPEC",
     "versions kept per type: 'dictionary:keep=5,max_age=SECONDS;...' [the design's]",
     set_retention},
    {"maintenance-interval", "STRATA_MAINTENANCE_INTERVAL", "SECONDS",
     "run retention and blob collection every SECONDS, 0 never [0]", set_maintenance_interval},
    {"gc-grace", "STRATA_GC_GRACE", "SECONDS",
     "an unreferenced blob is collected only once older than this [3600]", set_gc_grace},
    {"connection-timeout", "STRATA_CONNECTION_TIMEOUT", "SECONDS",
     "close idle connections after this long, 0 never [60]", set_conn_timeout},
    {"connection-memory", "STRATA_CONNECTION_MEMORY", "SIZE",
     "memory per connection, 8K-1M: the request head must fit in it [64K]", set_conn_memory},
    {"shutdown-timeout", "STRATA_SHUTDOWN_TIMEOUT", "SECONDS",
     "on SIGTERM, how long in-flight requests may take to finish [30]", set_shutdown_timeout},
    {"log-level", "STRATA_LOG_LEVEL", "LEVEL", "debug, info, warn or error [info]", set_log_level},
    {"access-log", "STRATA_ACCESS_LOG", "DEST", "'-' for stderr, 'off', or a file path [-]",
     set_access_log},
    {"auth-tokens", "STRATA_AUTH_TOKENS", "FILE",
     "bearer tokens ('sha256:HEX SCOPES NAME' lines), reloaded on SIGHUP [none: open]",
     set_auth_tokens},
    {"metrics-open", "STRATA_METRICS_OPEN", NULL,
     "serve /metrics without a token even with --auth-tokens [off: needs 'read']",
     set_metrics_open},
    {"tls-cert", "STRATA_TLS_CERT", "FILE",
     "serve HTTPS with this PEM certificate chain, reloaded on SIGHUP [none: HTTP]", set_tls_cert},
    {"tls-key", "STRATA_TLS_KEY", "FILE", "the PEM private key of --tls-cert, unencrypted",
     set_tls_key},
    {"tls-client-ca", "STRATA_TLS_CLIENT_CA", "FILE",
     "require client certificates issued by these PEM CAs [none]", set_tls_client_ca},
};
#define N_OPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

static const struct opt_def *find_option(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (strcmp(OPTIONS[i].name, name) == 0)
            return &OPTIONS[i];
    return NULL;
}

void config_print_help(FILE *out, const char *argv0)
{
    fprintf(out,
            "Usage: %s [OPTION]...\n"
            "Strata: a versioned data store and two-tier cache served over HTTP.\n\n"
            "Every option can also be given as the environment variable shown, or as\n"
            "'name = value' in the config file. Flags win over the environment, which\n"
            "wins over the file. Sizes take K, M or G suffixes.\n\n",
            argv0);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        char flag[64];
        if (OPTIONS[i].arg)
            snprintf(flag, sizeof flag, "--%s=%s", OPTIONS[i].name, OPTIONS[i].arg);
        else
            snprintf(flag, sizeof flag, "--%s", OPTIONS[i].name);
        fprintf(out, "  %-30s %s\n  %-30s   (env %s)\n", flag, OPTIONS[i].help, "", OPTIONS[i].env);
    }
    fprintf(out, "  %-30s %s\n  %-30s %s\n", "-h, --help", "show this help and exit", "--version",
            "print the version and exit");
    fprintf(out, "  %-30s %s\n  %-30s   %s\n", "--hash-token",
            "read a token on stdin, print its 'sha256:HEX' for --auth-tokens, exit", "",
            "(the SHA-256 of the token's bytes, one trailing newline dropped)");
}

static void set_defaults(strata_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    strcpy(cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    strcpy(cfg->data_dir, "./data");
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->threads = n > 0 && n <= 256 ? (unsigned)n : 2;
    cfg->write_threads = CONFIG_WRITE_THREADS_DEFAULT;
    cfg->max_body = UINT64_C(64) << 20;
    cfg->max_decoded_body = UINT64_C(256) << 20;
    cfg->inline_threshold = UINT64_C(64) << 10;
    cfg->cache_l1_bytes = UINT64_C(1) << 30;
    cfg->cache_l2_bytes = UINT64_C(4) << 30;
    cfg->gc_grace = 3600;
    cfg->connection_timeout = 60;
    cfg->connection_memory = CONFIG_CONNECTION_MEMORY_DEFAULT;
    cfg->shutdown_timeout = 30;
    cfg->log_level = SLOG_INFO;
    strcpy(cfg->access_log, "-");
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1]))
        *--e = '\0';
    return s;
}

static int load_file(strata_config *cfg, const char *path, strata_error *err)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return serr_set(err, SERR_INVALID, "config file %s: %s", path, strerror(errno));
    char line[2048];
    int lineno = 0, rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        if (strchr(line, '\n') == NULL && !feof(f)) {
            rc = serr_set(err, SERR_INVALID, "%s:%d: line too long", path, lineno);
            break;
        }
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            rc = serr_set(err, SERR_INVALID, "%s:%d: expected 'key = value'", path, lineno);
            break;
        }
        *eq = '\0';
        char *key = trim(s), *value = trim(eq + 1);
        const struct opt_def *o = find_option(key);
        if (o == NULL || o->set == set_config_file) {
            rc = serr_set(err, SERR_INVALID, "%s:%d: unknown option '%s'", path, lineno, key);
            break;
        }
        strata_error inner;
        if (o->set(cfg, value, &inner) != 0)
            rc = serr_set(err, SERR_INVALID, "%s:%d: %s", path, lineno, inner.detail);
    }
    fclose(f);
    return rc;
}

static int derive_urls(strata_config *cfg, strata_error *err)
{
    struct {
        char *dst;
        const char *fmt;
    } d[] = {{cfg->store_url, "sqlite:%s/strata.db"},
             {cfg->blobs_url, "file:%s/blobs"},
             {cfg->cache_l2_url, "file:%s/cache"}};
    for (size_t i = 0; i < 3; i++) {
        if (d[i].dst[0] != '\0')
            continue;
        int n = snprintf(d[i].dst, CONFIG_STR_MAX, d[i].fmt, cfg->data_dir);
        if (n < 0 || n >= CONFIG_STR_MAX)
            return serr_set(err, SERR_INVALID, "--data-dir: path too long");
    }
    return 0;
}

/* The TLS options only make sense together. */
static int check_tls(const strata_config *cfg, strata_error *err)
{
    if (cfg->tls_cert[0] && !cfg->tls_key[0])
        return serr_set(err, SERR_INVALID, "--tls-cert needs --tls-key (the certificate's key)");
    if (cfg->tls_key[0] && !cfg->tls_cert[0])
        return serr_set(err, SERR_INVALID, "--tls-key needs --tls-cert");
    if (cfg->tls_client_ca[0] && !cfg->tls_cert[0])
        return serr_set(err, SERR_INVALID,
                        "--tls-client-ca needs --tls-cert and --tls-key (client certificates "
                        "are only asked for over TLS)");
    return 0;
}

static const char *process_getenv(const char *name)
{
    return getenv(name);
}

int config_load(strata_config *cfg, int argc, char **argv, config_getenv_fn getenv_fn,
                strata_error *err)
{
    set_defaults(cfg);
    if (getenv_fn == NULL)
        getenv_fn = process_getenv;

    struct option longopts[N_OPTIONS + 4];
    for (size_t i = 0; i < N_OPTIONS; i++)
        longopts[i] = (struct option){
            OPTIONS[i].name, OPTIONS[i].arg ? required_argument : no_argument, NULL, (int)i + 256};
    longopts[N_OPTIONS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[N_OPTIONS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[N_OPTIONS + 2] = (struct option){"hash-token", no_argument, NULL, 'T'};
    longopts[N_OPTIONS + 3] = (struct option){NULL, 0, NULL, 0};

    /* Pass 1: find --config, --help, --version and reject unknown flags. */
    const char *config_path = getenv_fn("STRATA_CONFIG");
    opterr = 0;
    optind = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h')
            return CONFIG_EXIT_HELP;
        if (c == 'V')
            return CONFIG_EXIT_VERSION;
        if (c == 'T')
            return CONFIG_EXIT_HASH_TOKEN;
        if (c == '?' && optopt >= 256 && (size_t)(optopt - 256) < N_OPTIONS)
            return serr_set(err, SERR_INVALID, "option '--%s' takes no value",
                            OPTIONS[optopt - 256].name);
        if (c == '?')
            return serr_set(err, SERR_INVALID, "unknown option '%s' (see --help)",
                            argv[optind - 1]);
        if (c == ':')
            return serr_set(err, SERR_INVALID, "option '%s' needs a value", argv[optind - 1]);
        if (c >= 256 && OPTIONS[c - 256].set == set_config_file)
            config_path = optarg;
    }
    if (optind < argc)
        return serr_set(err, SERR_INVALID, "unexpected argument '%s' (see --help)", argv[optind]);

    if (config_path != NULL) {
        if (set_config_file(cfg, config_path, err) != 0 || load_file(cfg, config_path, err) != 0)
            return -1;
    }
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const char *v = getenv_fn(OPTIONS[i].env);
        if (v == NULL || OPTIONS[i].set == set_config_file)
            continue;
        strata_error inner;
        if (OPTIONS[i].set(cfg, v, &inner) != 0)
            return serr_set(err, SERR_INVALID, "%s: %s", OPTIONS[i].env, inner.detail);
    }
    optind = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c >= 256 && OPTIONS[c - 256].set != set_config_file &&
            OPTIONS[c - 256].set(cfg, OPTIONS[c - 256].arg ? optarg : "true", err) != 0)
            return -1;
    }
    if (check_tls(cfg, err) != 0)
        return -1;
    return derive_urls(cfg, err);
}
