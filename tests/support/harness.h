/* Integration-test support: start the real strata binary on a free
 * loopback port with a fresh data directory, talk to it with libcurl or
 * raw sockets, stop it with SIGTERM and collect its exit status. */
#ifndef STRATA_TEST_HARNESS_H
#define STRATA_TEST_HARNESS_H

#include <stddef.h>
#include <sys/types.h>

#include "../../src/common/buf.h"

typedef struct test_server {
    pid_t pid;
    int port;
    char data_dir[256];
    char log_path[300];
    char l2_url[512]; /* the L2 it was started with (see strata_env_args) */
} test_server;

/* extra_args is NULL-terminated (may be NULL). Returns 0 once the server
 * printed its listening line. The binary is $STRATA_BIN. */
int server_start(test_server *s, const char *const *extra_args);
/* Restarts on the same data directory. */
int server_restart(test_server *s, const char *const *extra_args);
/* SIGTERM, then waits up to timeout_s; returns the exit status, 128+signal,
 * or -1 when it had to be killed. */
int server_stop(test_server *s, int timeout_s);
/* Removes the data directory. */
void server_cleanup(test_server *s);
/* Empties the L2 the server was started with (stop it first): its disk
 * directory, or its keys on a redis-server. Returns 0 when done. */
int server_l2_wipe(const test_server *s);

/* ---- what the environment adds to every strata process --------------- */

/* Every strata process the tests start goes through this, also those a
 * test runs by hand: with STRATA_TEST_L2 set to a base URL, the process
 * gets "--cache-l2 URL" last, unless its own arguments name --cache-l2:
 *   redis://HOST:PORT[/DB]  ->  the base with "?prefix=P"
 *   file:DIR                ->  file:DIR/P
 *   anything else           ->  the base as it is
 * where P ([A-Za-z0-9._-], at most 64) is derived from the data directory
 * alone: processes sharing a data directory (server_restart,
 * server_start_shared) share an L2, and distinct directories (distinct
 * tests) never meet in one.
 *
 * argv holds n arguments and has room for cap entries in all (one of them
 * kept for the terminating NULL, which the caller writes); data_dir is the
 * process's --data-dir (NULL: strata's default, ./data) and args its own
 * arguments (NULL-terminated, may be NULL). The effective L2 URL is written
 * into l2 (what strata will use: the added one, the process's own, or the
 * default file:DATA_DIR/cache). Returns the new n, or -1 (nothing fits, or
 * STRATA_TEST_L2 is unusable: a message says why). */
int strata_env_args(const char **argv, int n, int cap, const char *data_dir,
                    const char *const *args, char *l2, size_t l2_cap);
/* The L2 prefix the tests give a process on data_dir (see above); out has
 * room for 65 bytes. */
void strata_l2_prefix(const char *data_dir, char out[65]);
/* Peak resident memory of the server in KiB (VmHWM), or -1. */
long server_peak_rss_kib(const test_server *s);

typedef struct http_resp {
    long status;
    char *body;
    size_t body_len;
    char *headers; /* raw header block, NUL-terminated */
    long new_connections;
} http_resp;

/* One request; `headers` is a NULL-terminated list of "Name: value". */
int http_do(const test_server *s, const char *method, const char *path, const char *const *headers,
            const void *body, size_t body_len, http_resp *out);
/* The value of a response header (case-insensitive), copied into out. */
int http_header(const http_resp *r, const char *name, char *out, size_t cap);
void http_resp_free(http_resp *r);

/* A reusable libcurl handle so that requests share one connection. */
typedef struct http_client http_client;
http_client *http_client_new(void);
int http_client_do(http_client *c, const test_server *s, const char *method, const char *path,
                   const char *const *headers, const void *body, size_t body_len, http_resp *out);
void http_client_free(http_client *c);

int raw_connect(int port);
int raw_send(int fd, const void *data, size_t len);
/* Reads until `len` bytes or the peer closes or timeout_ms passes. */
ssize_t raw_recv(int fd, char *buf, size_t len, int timeout_ms);

/* Reads one whole HTTP/1.1 response (headers and a Content-Length body)
 * into buf; returns its length, or -1 on timeout or close before the end. */
ssize_t raw_read_response(int fd, char *buf, size_t cap, int timeout_ms);

/* A codec sink that appends to the strata_buf given as ctx. */
int buf_sink(void *ctx, const void *data, size_t len, strata_error *err);
/* 1 GiB of zeros compressed with zstd (about 32 KiB); with pledged, the
 * frame header declares the size, as the zstd tool writes it. */
void make_zstd_bomb(strata_buf *out, int pledged);

/* Runs a Check suite and returns the process exit status. */
struct Suite;
int run_suite(struct Suite *suite);

/* ---- several servers on one data directory --------------------------- */

/* Starts a server on the data directory of another (data_dir must exist);
 * its log is data_dir.N.log, N counting the servers started this way. The
 * directory belongs to the server that made it: clean up this one with
 * server_forget_log, never server_cleanup. */
int server_start_shared(test_server *s, const char *data_dir, const char *const *extra_args);
/* kill -9 and reap; returns 0 when SIGKILL ended it, -1 otherwise. */
int server_kill9(test_server *s);
/* Without waiting: when the server has exited, reaps it and returns its
 * exit status or 128+signal (pid becomes 0); -1 while it runs. */
int server_reap(test_server *s);
/* Removes the server's log unless STRATA_KEEP_LOGS is set; keeps the data
 * directory. */
void server_forget_log(test_server *s);

#endif
