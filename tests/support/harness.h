/* Integration-test support: start the real strata binary on a free
 * loopback port with a fresh data directory, talk to it with libcurl or
 * raw sockets, stop it with SIGTERM and collect its exit status. */
#ifndef STRATA_TEST_HARNESS_H
#define STRATA_TEST_HARNESS_H

#include <limits.h>
#include <stddef.h>
#include <sys/types.h>

#include "../../src/common/buf.h"

typedef struct test_server {
    pid_t pid;
    int port;
    /* (the fields added last come first: a string field's size bound, as
     * -Wformat-truncation sees it, runs to the end of the struct) */
    char store_url[512]; /* its version store (see strata_env_args_ex; "": strata's default) */
    int env_added;       /* STRATA_ENV_* bits: what the environment gave it */
    char data_dir[256];
    char log_path[300];
    char l2_url[512];    /* the L2 it was started with (see strata_env_args) */
    char blobs_url[512]; /* its blob store, likewise */
    int blobs_added;     /* 1: blobs_url came from STRATA_TEST_BLOBS */
} test_server;

/* extra_args is NULL-terminated (may be NULL). Returns 0 once the server
 * printed its listening line. The binary is $STRATA_BIN. */
int server_start(test_server *s, const char *const *extra_args);
/* Restarts on the same data directory. */
int server_restart(test_server *s, const char *const *extra_args);
/* SIGTERM, then waits up to timeout_s; returns the exit status, 128+signal,
 * or -1 when it had to be killed. */
int server_stop(test_server *s, int timeout_s);
/* Removes the data directory, and the blob objects under the server's
 * prefix when STRATA_TEST_BLOBS put its blobs on S3, and the MongoDB
 * databases the environment gave it (STRATA_TEST_STORE, STRATA_TEST_L2,
 * STRATA_TEST_BLOBS on mongodb:// or gridfs://) are dropped (a failure
 * there is printed, not returned). */
void server_cleanup(test_server *s);
/* Empties the L2 the server was started with (stop it first): its disk
 * directory, its keys on a redis-server, the objects under its S3 prefix,
 * or its MongoDB database (dropped). Returns 0 when done. */
int server_l2_wipe(const test_server *s);

/* ---- what the environment adds to every strata process --------------- */

/* Every strata process the tests start goes through this, also those a
 * test runs by hand. With STRATA_TEST_L2 set to a base URL, the process
 * gets "--cache-l2 URL", unless its own arguments name --cache-l2:
 *   redis://HOST:PORT[/DB]          ->  the base with "?prefix=P"
 *   file:DIR                        ->  file:DIR/P
 *   s3://BUCKET[/X][?QUERY]         ->  s3://BUCKET[/X]/P[?QUERY]
 *   mongodb://HOSTS/BASE[?QUERY]    ->  mongodb://HOSTS/BASE_H[?QUERY]
 *   anything else                   ->  the base as it is
 * With STRATA_TEST_BLOBS set to a base URL (s3://BUCKET[/X][?QUERY] or
 * file:DIR), it gets "--blobs BASE/P" likewise (P inserted before any
 * query), or for gridfs://HOSTS/BASE[?QUERY] "--blobs
 * gridfs://HOSTS/BASE_H[?QUERY]", unless its own arguments name --blobs.
 * With STRATA_TEST_STORE set to mongodb://HOSTS/BASE[?QUERY], it gets
 * "--store mongodb://HOSTS/BASE_H[?QUERY]" unless its own arguments name
 * --store. P ([A-Za-z0-9._-], at most 64; see strata_l2_prefix) and H (12
 * hex digits of P's hash: a database name stays [A-Za-z0-9_-], at most 63,
 * so BASE has at most 50 characters) are derived from the data directory
 * alone: processes sharing a data directory (server_restart,
 * server_start_shared) share an L2, a blob store and a store, and distinct
 * directories (distinct tests) never meet in one. The L2 and blob
 * variables must not name the same S3 base (an L2 wipe would take the
 * blobs with it): s3://B/l2 and s3://B/blobs, or two buckets; on MongoDB
 * each role keeps collections of its own, so one BASE may serve all three.
 *
 * argv holds n arguments and has room for cap entries in all (one of them
 * kept for the terminating NULL, which the caller writes); data_dir is the
 * process's --data-dir (NULL: strata's default, ./data) and args its own
 * arguments (NULL-terminated, may be NULL). The effective URLs are written
 * into l2 and blobs (what strata will use: the added one, the process's
 * own, or the default file:DATA_DIR/cache and file:DATA_DIR/blobs); argv
 * points into them, so they must outlive its use. *blobs_added (may be
 * NULL) is set to 1 when --blobs was added. Returns the new n, or -1
 * (nothing fits, or a variable is unusable: a message says why). */
int strata_env_args(const char **argv, int n, int cap, const char *data_dir,
                    const char *const *args, char *l2, size_t l2_cap, char *blobs, size_t blobs_cap,
                    int *blobs_added);
/* What the environment added (see strata_env_args_ex). */
#define STRATA_ENV_L2    1
#define STRATA_ENV_BLOBS 2
#define STRATA_ENV_STORE 4
/* strata_env_args with the store as well: the effective store URL
 * (added, the process's own --store, or "" for strata's default) is
 * written into store, and *added (may be NULL) gets the STRATA_ENV_* bits
 * of what was added. strata_env_args keeps an added store URL in a
 * buffer of the calling thread, valid until that thread's next call. */
int strata_env_args_ex(const char **argv, int n, int cap, const char *data_dir,
                       const char *const *args, char *l2, size_t l2_cap, char *blobs,
                       size_t blobs_cap, char *store, size_t store_cap, int *added);
/* Drops the database a mongodb:// or gridfs:// URL names. Returns 0 when
 * done, -1 with a message on stderr. */
int mongo_url_drop(const char *url);
/* The L2 prefix the tests give a process on data_dir (see above); out has
 * room for 65 bytes. */
void strata_l2_prefix(const char *data_dir, char out[65]);
/* Deletes every object under the prefix an s3:// URL names (and aborts
 * its unfinished multipart uploads), with AWS_* from the environment. A
 * URL without a prefix is refused (it would empty the whole bucket).
 * Returns 0 when done, -1 with a message on stderr. */
int s3_url_wipe(const char *url);
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

/* A new directory /tmp/PREFIX-XXXXXX, its path into dir (cap bytes); and
 * the removal of a directory with everything under it. Both fail the
 * running test when they cannot. */
void test_tmpdir(const char *prefix, char *dir, size_t cap);
void test_rmtree(const char *dir);
/* Runs sql (statements, no parameters) on the SQLite file at path with a
 * connection of its own; fails the running test, with SQLite's message,
 * on an error. */
void test_sqlite_exec(const char *path, const char *sql);

/* ---- the server's blobs, seen the backend's way ----------------------- */

/* These look at the server's blob store (s->blobs_url) directly, not
 * through Strata's blob code: for file:DIR the files DIR/ab/KEY and
 * the streamed writes' DIR/.w-*; for s3://BUCKET/PREFIX the objects
 * PREFIX/blobs/ab/cd/KEY, their touch markers KEY.touched and the staged
 * writes under PREFIX/staging/ (see src/blobs/blobs_s3.h), with AWS_*
 * from the environment; for gridfs://HOSTS/DB the files documents of
 * BUCKET.files (named by a key, or staged: "~stage-...") and their chunks
 * (see src/blobs/blobs_gridfs.h). Each returns -1 with a message on
 * stderr on failure; none aborts. */

/* The number of blobs stored (files or objects named by a key). */
int server_blob_count(const test_server *s);
/* The path of blob key's file in a file blob store, in the store's own
 * layout, into out; -1 for S3 and GridFS stores, or when cap is too small. */
int server_blob_path(const test_server *s, const char *key, char *out, size_t cap);
/* The number of streamed writes staged: .w- files, or objects and
 * unfinished multipart uploads under staging/. */
int server_blob_staged(const test_server *s);
/* Every file or object of the store, one sorted line each, "NAME SIZE
 * MTIME" (MTIME in ms), appended to out (then NUL-terminated). */
int server_blob_listing(const test_server *s, strata_buf *out);
/* The stored bytes of blob key (header and payload) appended to out;
 * -1 also when it is missing. */
int server_blob_read(const test_server *s, const char *key, strata_buf *out);
/* Overwrites blob key's stored bytes with data, as damage on the medium
 * would: the file rewritten in place, or the object PUT again. */
int server_blob_write(const test_server *s, const char *key, const void *data, size_t len);
/* Flips one bit of the byte at offset (from the end when negative; the
 * middle of the payload for SERVER_BLOB_MIDDLE) of blob key's stored
 * bytes, or with truncate drops its last byte. */
#define SERVER_BLOB_MIDDLE LONG_MIN
int server_blob_damage(const test_server *s, const char *key, long offset, int truncate);

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
