/* Configuration: defaults < config file < STRATA_* environment < flags.
 * One option table drives all four and the --help text. */
#ifndef STRATA_CONFIG_H
#define STRATA_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "../common/error.h"
#include "../common/log.h"

#define CONFIG_STR_MAX 1024

/* libmicrohttpd's memory pool per connection, which holds the request
 * line and headers, the response head and the read buffer. libmicrohttpd
 * 0.9.75 zeroes the whole pool after each request, so the pool is also
 * what an idle keep-alive connection costs (plus about 0.5 KiB). The
 * default takes the longest request lines the API contract allows: query
 * fields of up to 4096 bytes of UTF-8 each, percent-encoded, reach 50 KB
 * (Schemathesis sends such lines). 15K would keep an idle connection
 * under 16 KiB, but answers 414/431 to lines past about 15,000 bytes. */
#define CONFIG_CONNECTION_MEMORY_DEFAULT (UINT64_C(64) << 10)
/* Threads for writes: a save waits for its shared commit on one of them,
 * so this many saves at once can share a commit. */
#define CONFIG_WRITE_THREADS_DEFAULT 32u

typedef struct strata_config {
    char listen_host[256];
    uint16_t listen_port; /* 0 picks a free port (tests) */
    char data_dir[CONFIG_STR_MAX];
    char store_url[CONFIG_STR_MAX];
    char blobs_url[CONFIG_STR_MAX];
    char cache_l2_url[CONFIG_STR_MAX];
    unsigned threads;
    unsigned write_threads;                /* 0: writes run on the HTTP threads */
    uint64_t max_body;                     /* bytes on the wire */
    uint64_t max_decoded_body;             /* bytes after Content-Encoding is undone */
    uint64_t inline_threshold;             /* content up to this size is kept in the store */
    uint64_t cache_l1_bytes;               /* the L1 budget shared by every namespace */
    uint64_t cache_l2_bytes;               /* the disk L2's size limit */
    char cache_namespaces[CONFIG_STR_MAX]; /* overrides, see cache_config_apply */
    char retention[CONFIG_STR_MAX];        /* overrides, see retention_config_apply */
    unsigned maintenance_interval;         /* seconds between scheduled cleanups; 0 off */
    uint64_t gc_grace;                     /* seconds an unreferenced blob is kept */
    unsigned connection_timeout;
    uint64_t connection_memory; /* per connection: request head and I/O buffers */
    unsigned shutdown_timeout;
    enum slog_level log_level;
    char access_log[CONFIG_STR_MAX]; /* "-" stderr, "off", or a file path */
    char config_file[CONFIG_STR_MAX];
    char auth_tokens[CONFIG_STR_MAX];   /* token file; "" leaves every route open */
    bool metrics_open;                  /* /metrics needs no token even with a token file */
    char tls_cert[CONFIG_STR_MAX];      /* PEM certificate chain; "" serves plain HTTP */
    char tls_key[CONFIG_STR_MAX];       /* PEM private key of tls_cert */
    char tls_client_ca[CONFIG_STR_MAX]; /* PEM CAs client certificates must chain to; "" none */
} strata_config;

/* Returns the value of an environment variable or NULL (tests inject one). */
typedef const char *(*config_getenv_fn)(const char *name);

enum config_result {
    CONFIG_OK = 0,
    CONFIG_EXIT_HELP = 1,
    CONFIG_EXIT_VERSION = 2,
    CONFIG_EXIT_HASH_TOKEN = 3, /* --hash-token: print a token's hash and exit */
};

/* Fills cfg from all sources. Returns a config_result, or -1 with err set
 * (the caller prints err->detail and exits with status 2). Switches
 * (--metrics-open) take no value as flags and a boolean (true, false, 1,
 * 0) in the environment or the file. --tls-cert and --tls-key go
 * together, and --tls-client-ca needs them: -1 naming the option
 * otherwise. Files named by options are only read later, by their users.
 * Not thread-safe (getopt). */
int config_load(strata_config *cfg, int argc, char **argv, config_getenv_fn getenv_fn,
                strata_error *err);

void config_print_help(FILE *out, const char *argv0);

/* Parses "64M", "1g", "512k", "1000" (binary units). */
int config_parse_size(const char *s, uint64_t *out);

#endif
