/* strata: parse configuration, start the HTTP server, wait for SIGTERM or
 * SIGINT, then stop gracefully: stop accepting, let requests in flight
 * finish (bounded by --shutdown-timeout), close everything, exit 0. */
#include <errno.h>
#include <fcntl.h>
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
    if (rc < 0) {
        fprintf(stderr, "strata: %s\n", err.detail);
        return 2;
    }
    slog_set_level(cfg.log_level);
    int access_fd = open_access_log(cfg.access_log);
    if (access_fd == -2)
        return 2;
    if (slog_access_open(access_fd) != 0) {
        fprintf(stderr, "strata: cannot start the access log writer\n");
        return 1;
    }

    /* Block the stop signals before any thread starts so that only
     * sigwait below sees them; the pool threads inherit the mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    int exit_code = 1;
    app a = {.cfg = &cfg};
    atomic_init(&a.ready, false);
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
    a.maintenance =
        maintenance_start(a.versions, a.retention, cfg.maintenance_interval, cfg.gc_grace, &err);
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
    printf("strata listening on http://%s:%u\n", cfg.listen_host, http_server_port(srv));
    fflush(stdout);
    slog_info("strata %s: %u threads, store %s, blobs %s, cache L2 %s", STRATA_VERSION, cfg.threads,
              cfg.store_url, cfg.blobs_url, cfg.cache_l2_url);

    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0)
        ;
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
    if (access_fd > 2)
        close(access_fd);
    return exit_code;
}
