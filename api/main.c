/* strata: parse configuration, start the HTTP server, wait for signals:
 * SIGHUP reloads the token file and the TLS certificate (a file that fails
 * keeps what was loaded, and says why in the log); SIGTERM or SIGINT stop
 * gracefully: stop accepting, let requests in flight finish (bounded by
 * --shutdown-timeout), close everything, exit 0.
 * `strata --hash-token` prints the hash of a token read on stdin. */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../src/common/log.h"
#include "app.h"
#include "http_server.h"
#include "routes.h"

#define STRATA_VERSION "0.1.0"

/* --hash-token: one token on stdin (one trailing newline dropped), its
 * "sha256:HEX" on stdout. 0, or 2 with a message. */
static int hash_token_main(void)
{
    char buf[AUTH_TOKEN_MAX + 4];
    size_t len = fread(buf, 1, sizeof buf, stdin);
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    char line[80];
    strata_error err;
    if (len > AUTH_TOKEN_MAX || auth_hash_token(buf, len, line, sizeof line, &err) != 0) {
        fprintf(stderr, "strata: --hash-token: %s\n",
                len > AUTH_TOKEN_MAX ? "the token is longer than 1024 characters" : err.detail);
        return 2;
    }
    if (len < 16)
        fprintf(stderr,
                "strata: warning: a token of %zu characters is easy to guess; use 32 "
                "random bytes (openssl rand -hex 32)\n",
                len);
    printf("%s\n", line);
    return 0;
}

/* SIGHUP: the token file and the certificate, each kept on failure. */
static void reload(app *a)
{
    strata_error err;
    if (auth_enabled(a->auth)) {
        if (auth_reload(a->auth, &err) == 0)
            slog_info("SIGHUP: access control reloaded: %zu tokens from %s",
                      auth_token_count(a->auth), a->cfg->auth_tokens);
        else
            slog_error("SIGHUP: the token file was not reloaded, the previous tokens stay: %s",
                       err.detail);
    }
    if (a->tls != NULL) {
        char desc[400];
        if (tls_reload(a->tls, &err) == 0) {
            tls_describe(a->tls, desc, sizeof desc);
            slog_info("SIGHUP: TLS certificate reloaded for new connections: %s", desc);
        } else {
            slog_error("SIGHUP: the TLS certificate was not reloaded, the previous one stays: %s",
                       err.detail);
        }
    }
    if (!auth_enabled(a->auth) && a->tls == NULL)
        slog_info("SIGHUP: nothing to reload (no --auth-tokens, no --tls-cert)");
}

static void log_access_control(const app *a)
{
    const strata_config *cfg = a->cfg;
    if (!auth_enabled(a->auth)) {
        slog_warn("access control is off (no --auth-tokens): every route is open to anyone "
                  "who can connect");
        return;
    }
    slog_info("access control: %zu tokens from %s (scopes read, write, admin, none implied); "
              "open: /health, /ready, /openapi.yaml%s",
              auth_token_count(a->auth), cfg->auth_tokens,
              cfg->metrics_open ? ", /metrics" : " (/metrics needs read)");
}

static void log_tls(const app *a)
{
    if (a->tls == NULL) {
        slog_info("TLS is off (no --tls-cert): plain HTTP");
        return;
    }
    char desc[400];
    tls_describe(a->tls, desc, sizeof desc);
    slog_info("TLS: %s%s%s", desc,
              tls_requires_client_cert(a->tls) ? "; client certificates required, CAs from "
                                               : "; no client certificates asked for",
              tls_requires_client_cert(a->tls) ? a->cfg->tls_client_ca : "");
}

static int open_access_log(const char *dest)
{
    if (strcmp(dest, "-") == 0)
        return 2;
    if (strcmp(dest, "off") == 0)
        return -1;
    int fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "strata: cannot open access log %s: %s\n", dest, strerror(errno));
        return -2;
    }
    return fd;
}

/* Allocations past this are mapped on their own (see main). */
#define MALLOC_MMAP_AT (4 << 20)

int main(int argc, char **argv)
{
    strata_config cfg;
    strata_error err;
    int rc = config_load(&cfg, argc, argv, NULL, &err);
    if (rc == CONFIG_EXIT_HELP) {
        config_print_help(stdout, argv[0]);
        return 0;
    }
    if (rc == CONFIG_EXIT_VERSION) {
        printf("strata %s\n", STRATA_VERSION);
        return 0;
    }
    if (rc == CONFIG_EXIT_HASH_TOKEN)
        return hash_token_main();
    if (rc < 0) {
        fprintf(stderr, "strata: %s\n", err.detail);
        return 2;
    }
    slog_set_level(cfg.log_level);
    /* Buffers of up to a few MiB (held bodies, blobs built for a save or
     * read for a GET) come and go with every large request. Left to
     * itself glibc maps each anew, and the kernel zeroes its pages, until
     * the free of a larger one happens to raise its threshold; fixed here,
     * they are reused from the heap, which keeps at most 2x as much free
     * memory per arena before giving it back. */
    mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_AT);
    mallopt(M_TRIM_THRESHOLD, 2 * MALLOC_MMAP_AT);

    /* Block the signals before any thread starts so that only sigwait
     * below sees them; every thread inherits the mask. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The token file and the certificate are checked before anything
     * else starts: a bad one is a configuration error. */
    app a = {.cfg = &cfg};
    atomic_init(&a.ready, false);
    if ((a.auth = auth_open(cfg.auth_tokens, &err)) == NULL) {
        fprintf(stderr, "strata: %s\n", err.detail);
        return err.kind == SERR_NOMEM ? 1 : 2;
    }
    if (cfg.tls_cert[0] &&
        (a.tls = tls_open(cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca, &err)) == NULL) {
        fprintf(stderr, "strata: %s\n", err.detail);
        auth_close(a.auth);
        return err.kind == SERR_NOMEM ? 1 : 2;
    }
    int access_fd = open_access_log(cfg.access_log);
    if (access_fd == -2 || slog_access_open(access_fd) != 0) {
        if (access_fd != -2)
            fprintf(stderr, "strata: cannot start the access log writer\n");
        tls_close(a.tls);
        auth_close(a.auth);
        if (access_fd > 2)
            close(access_fd);
        return access_fd == -2 ? 2 : 1;
    }

    int exit_code = 1;
    a.router = router_new();
    if (a.router == NULL || routes_register_all(a.router) != 0) {
        slog_error("cannot build the routing table");
        goto out;
    }
    a.metrics = metrics_new(a.router);
    if (a.metrics == NULL) {
        slog_error("out of memory");
        goto out;
    }
    if ((a.store = store_open(cfg.store_url, &err)) == NULL ||
        (a.blobs = blobs_open(cfg.blobs_url, &err)) == NULL) {
        slog_error("%s", err.detail);
        goto out;
    }
    cache_config ccfg;
    cache_config_defaults(&ccfg);
    ccfg.l1_global_bytes = cfg.cache_l1_bytes;
    if (cfg.cache_namespaces[0] && cache_config_apply(&ccfg, cfg.cache_namespaces, &err) != 0) {
        slog_error("--cache-namespaces: %s", err.detail);
        exit_code = 2;
        goto out;
    }
    l2_config l2cfg = {.max_bytes = cfg.cache_l2_bytes, .fence_ttl_ms = 60000};
    a.l2 = l2_open(cfg.cache_l2_url, &l2cfg, &err);
    if (a.l2 == NULL && err.kind != SERR_OK) {
        slog_error("%s", err.detail);
        goto out;
    }
    if ((a.cache = cache_new(&ccfg, a.l2, &err)) == NULL) {
        slog_error("%s", err.detail);
        goto out;
    }
    versions_config vcfg = {.inline_threshold = (size_t)cfg.inline_threshold,
                            .max_content = (size_t)cfg.max_decoded_body,
                            .access_flush_ms = 5000};
    /* file: blobs beside a disk L2: an L2 copy of a blob would be a second
     * copy on the same machine's disk, read no faster than the blob itself */
    vcfg.blobs_l1_only = a.l2 != NULL && strcmp(a.l2->ops->name, "file") == 0 &&
                         strcmp(a.blobs->ops->name, "file") == 0;
    if ((a.versions = versions_new(a.store, a.blobs, a.cache, &vcfg, &err)) == NULL ||
        (a.trees = trees_new(a.versions, &err)) == NULL ||
        (a.cascade = cascade_new(a.versions, a.trees, &err)) == NULL) {
        slog_error("%s", err.detail);
        goto out;
    }
    retention_config rcfg;
    retention_defaults(&rcfg);
    if (cfg.retention[0] && retention_config_apply(&rcfg, cfg.retention, &err) != 0) {
        slog_error("--retention: %s", err.detail);
        exit_code = 2;
        goto out;
    }
    a.retention = &rcfg;
    a.maintenance = maintenance_start(a.versions, a.trees, a.retention, cfg.maintenance_interval,
                                      cfg.gc_grace, &err);
    if (a.maintenance == NULL && err.kind != SERR_OK) {
        slog_error("%s", err.detail);
        goto out;
    }
    http_server *srv = http_server_start(&a, &err);
    if (srv == NULL) {
        slog_error("%s", err.detail);
        goto out;
    }
    atomic_store(&a.ready, true);
    printf("strata listening on %s://%s:%u\n", a.tls ? "https" : "http", cfg.listen_host,
           http_server_port(srv));
    fflush(stdout);
    slog_info("strata %s: %u threads, store %s, blobs %s, cache L2 %s", STRATA_VERSION, cfg.threads,
              cfg.store_url, cfg.blobs_url, cfg.cache_l2_url);
    log_access_control(&a);
    log_tls(&a);

    int sig = 0;
    for (;;) {
        if (sigwait(&signals, &sig) != 0)
            continue;
        if (sig != SIGHUP)
            break;
        reload(&a);
    }
    slog_info("received %s: draining requests in flight", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    atomic_store(&a.ready, false);
    http_server_quiesce(srv);
    if (http_server_drain(srv, cfg.shutdown_timeout) != 0)
        slog_warn("shutdown timeout: %ld requests still in flight are cut off",
                  metrics_in_flight(a.metrics));
    http_server_stop(srv);
    slog_info("stopped");
    exit_code = 0;
out:
    maintenance_stop(a.maintenance);
    cascade_free(a.cascade);
    trees_free(a.trees);
    versions_free(a.versions); /* flushes access counts into the store */
    cache_free(a.cache);
    l2_close(a.l2);
    blobs_close(a.blobs);
    store_close(a.store);
    slog_access_close();
    metrics_free(a.metrics);
    router_free(a.router);
    tls_close(a.tls);
    auth_close(a.auth);
    if (access_fd > 2)
        close(access_fd);
    return exit_code;
}
