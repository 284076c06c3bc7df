#include "harness.h"

#include "../../src/blobs/blobs_gridfs.h"
#include "../../src/blobs/s3_client.h"
#include "../../src/codec/blob_format.h"
#include "../../src/codec/compress.h"
#include "../../src/common/mongo_conn.h"

#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <dirent.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int spawn(test_server *s, const char *const *extra_args)
{
    const char *bin = getenv("STRATA_BIN");
    if (bin == NULL) {
        fprintf(stderr, "harness: STRATA_BIN is not set\n");
        return -1;
    }
    int out[2];
    if (pipe(out) != 0)
        return -1;
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    argv[n++] = "--listen";
    argv[n++] = "127.0.0.1:0";
    argv[n++] = "--data-dir";
    argv[n++] = s->data_dir;
    argv[n++] = "--threads";
    argv[n++] = "2";
    for (int i = 0; extra_args && extra_args[i] && n < 62; i++)
        argv[n++] = extra_args[i];
    n = strata_env_args_ex(argv, n, 64, s->data_dir, extra_args, s->l2_url, sizeof s->l2_url,
                           s->blobs_url, sizeof s->blobs_url, s->store_url, sizeof s->store_url,
                           &s->env_added);
    if (n < 0)
        return -1;
    s->blobs_added = (s->env_added & STRATA_ENV_BLOBS) != 0;
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        dup2(out[1], 1);
        int logfd = open(s->log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (logfd >= 0)
            dup2(logfd, 2);
        close(out[0]);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    s->pid = pid;
    /* Wait for "strata listening on http://127.0.0.1:PORT". */
    char line[256];
    size_t len = 0;
    int waited = 0;
    fcntl(out[0], F_SETFL, O_NONBLOCK);
    while (waited < 30000) {
        ssize_t r = read(out[0], line + len, sizeof line - 1 - len);
        if (r > 0) {
            len += (size_t)r;
            line[len] = '\0';
            char *nl = strchr(line, '\n');
            const char *colon = strrchr(line, ':');
            if (nl && colon) {
                s->port = atoi(colon + 1);
                close(out[0]);
                return s->port > 0 ? 0 : -1;
            }
            continue;
        }
        if (r == 0)
            break; /* exited */
        sleep_ms(10);
        waited += 10;
    }
    close(out[0]);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    s->pid = 0;
    return -1;
}

int server_start(test_server *s, const char *const *extra_args)
{
    memset(s, 0, sizeof *s);
    const char *tmp = getenv("TMPDIR");
    snprintf(s->data_dir, sizeof s->data_dir, "%s/strata-test-XXXXXX", tmp ? tmp : "/tmp");
    if (mkdtemp(s->data_dir) == NULL)
        return -1;
    snprintf(s->log_path, sizeof s->log_path, "%s.log", s->data_dir);
    return spawn(s, extra_args);
}

int server_restart(test_server *s, const char *const *extra_args)
{
    return spawn(s, extra_args);
}

/* A server that failed leaves its last log lines in the test's output. */
static void report_failure(const test_server *s, int code)
{
    if (code == 0)
        return;
    fprintf(stderr, "harness: server exited with %d; the end of its log:\n", code);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "tail -n 60 '%s' >&2", s->log_path);
    if (system(cmd) != 0)
        fprintf(stderr, "harness: (no log at %s)\n", s->log_path);
}

int server_stop(test_server *s, int timeout_s)
{
    if (s->pid <= 0)
        return -1;
    kill(s->pid, SIGTERM);
    int status = 0;
    for (int i = 0; i < timeout_s * 100; i++) {
        pid_t r = waitpid(s->pid, &status, WNOHANG);
        if (r == s->pid) {
            s->pid = 0;
            int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            report_failure(s, code);
            return code;
        }
        sleep_ms(10);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
    return -1;
}

void server_cleanup(test_server *s)
{
    if (s->pid > 0)
        server_stop(s, 10);
    if (s->data_dir[0] != '\0') {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->data_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "harness: could not remove %s\n", s->data_dir);
        /* keep the log only when asked to, for debugging */
        if (getenv("STRATA_KEEP_LOGS") == NULL)
            unlink(s->log_path);
    }
    /* blobs the environment put on S3 are this server's data too */
    if (s->blobs_added && strncmp(s->blobs_url, "s3://", 5) == 0 && s3_url_wipe(s->blobs_url) != 0)
        fprintf(stderr, "harness: the blobs at %s stay\n", s->blobs_url);
    /* so are the MongoDB databases the environment gave it */
    if ((s->env_added & STRATA_ENV_BLOBS) && strncmp(s->blobs_url, "gridfs://", 9) == 0 &&
        mongo_url_drop(s->blobs_url) != 0)
        fprintf(stderr, "harness: the blobs at %s stay\n", s->blobs_url);
    if ((s->env_added & STRATA_ENV_STORE) && mongo_url_drop(s->store_url) != 0)
        fprintf(stderr, "harness: the store at %s stays\n", s->store_url);
    if ((s->env_added & STRATA_ENV_L2) && strncmp(s->l2_url, "mongodb://", 10) == 0 &&
        mongo_url_drop(s->l2_url) != 0)
        fprintf(stderr, "harness: the L2 at %s stays\n", s->l2_url);
    s->blobs_added = 0;
    s->env_added = 0;
}

long server_peak_rss_kib(const test_server *s)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0)
            kib = atol(line + 6);
    fclose(f);
    return kib;
}

/* ---- libcurl ---------------------------------------------------------- */

struct growbuf {
    char *data;
    size_t len;
    size_t cap;
};

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    struct growbuf *g = ud;
    size_t n = size * nmemb;
    if (g->len + n + 1 > g->cap) {
        size_t cap = g->cap ? g->cap : 4096;
        while (cap < g->len + n + 1)
            cap *= 2; /* geometric: a large body is not copied again per chunk */
        char *p = realloc(g->data, cap);
        if (p == NULL)
            return 0;
        g->data = p;
        g->cap = cap;
    }
    memcpy(g->data + g->len, ptr, n);
    g->len += n;
    g->data[g->len] = '\0';
    return n;
}

struct http_client {
    CURL *curl;
};

static void curl_init_once(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

http_client *http_client_new(void)
{
    /* tests create clients from many threads at once */
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, curl_init_once);
    http_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->curl = curl_easy_init();
    if (c->curl == NULL) {
        free(c);
        return NULL;
    }
    return c;
}

void http_client_free(http_client *c)
{
    if (c == NULL)
        return;
    curl_easy_cleanup(c->curl);
    free(c);
}

int http_client_do(http_client *c, const test_server *s, const char *method, const char *path,
                   const char *const *headers, const void *body, size_t body_len, http_resp *out)
{
    memset(out, 0, sizeof *out);
    CURL *h = c->curl;
    char url[8300];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", s->port, path);
    struct growbuf b = {0}, hd = {0};
    struct curl_slist *list = NULL;
    for (int i = 0; headers && headers[i]; i++)
        list = curl_slist_append(list, headers[i]);
    list = curl_slist_append(list, "Expect:");
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (strcmp(method, "HEAD") == 0)
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        /* a large body goes with Expect: 100-continue: wait for the server's
         * verdict however slow it is (a sanitizer build), so that a body it
         * refuses up front (413, 401) is not sent into a closing socket */
        curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 60000L);
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_write);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &hd);
    /* 300 s: a tree of three 100,000-word lists built on FerretDB on a
     * loaded machine took over 120 s (a hung server still fails the test) */
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 300L);
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(list);
    if (rc != CURLE_OK) {
        fprintf(stderr, "harness: %s %.120s: %s\n", method, path, curl_easy_strerror(rc));
        free(b.data);
        free(hd.data);
        return -1;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &out->new_connections);
    out->body = b.data ? b.data : calloc(1, 1);
    out->body_len = b.len;
    out->headers = hd.data ? hd.data : calloc(1, 1);
    return 0;
}

int http_do(const test_server *s, const char *method, const char *path, const char *const *headers,
            const void *body, size_t body_len, http_resp *out)
{
    http_client *c = http_client_new();
    if (c == NULL)
        return -1;
    int rc = http_client_do(c, s, method, path, headers, body, body_len, out);
    http_client_free(c);
    return rc;
}

int http_header(const http_resp *r, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *p = r->headers; p && *p;) {
        const char *eol = strstr(p, "\r\n");
        size_t llen = eol ? (size_t)(eol - p) : strlen(p);
        if (llen > nlen && p[nlen] == ':' && strncasecmp(p, name, nlen) == 0) {
            const char *v = p + nlen + 1;
            while (*v == ' ')
                v++;
            size_t vlen = llen - (size_t)(v - p);
            if (vlen >= cap)
                vlen = cap - 1;
            memcpy(out, v, vlen);
            out[vlen] = '\0';
            return 0;
        }
        p = eol ? eol + 2 : p + llen;
    }
    return -1;
}

void http_resp_free(http_resp *r)
{
    free(r->body);
    free(r->headers);
    memset(r, 0, sizeof *r);
}

/* ---- raw sockets ------------------------------------------------------ */

int raw_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

int raw_send(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

ssize_t raw_recv(int fd, char *buf, size_t len, int timeout_ms)
{
    size_t got = 0;
    while (got < len) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, timeout_ms);
        if (r <= 0)
            break;
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return (ssize_t)got;
}

ssize_t raw_read_response(int fd, char *buf, size_t cap, int timeout_ms)
{
    size_t got = 0;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout_ms) <= 0 || got + 1 >= cap)
            return -1;
        ssize_t n = recv(fd, buf + got, cap - 1 - got, 0);
        if (n <= 0)
            return -1;
        got += (size_t)n;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end == NULL)
            continue;
        size_t head = (size_t)(end - buf) + 4;
        size_t clen = 0;
        for (char *h = buf; h < end; h++) {
            if (strncasecmp(h, "\r\nContent-Length:", 17) == 0) {
                clen = strtoul(h + 17, NULL, 10);
                break;
            }
        }
        if (got >= head + clen)
            return (ssize_t)got;
    }
}

int run_suite(struct Suite *suite)
{
    SRunner *sr = srunner_create(suite);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}

int buf_sink(void *ctx, const void *data, size_t len, strata_error *err)
{
    return sbuf_append(ctx, data, len, err);
}

void make_zstd_bomb(strata_buf *out, int pledged)
{
    static unsigned char zeros[1 << 20];
    sencoder *e = sencoder_new(SCODEC_ZSTD, 3, pledged ? (1ull << 30) : SCODEC_SIZE_UNKNOWN, NULL);
    ck_assert_ptr_nonnull(e);
    for (int i = 0; i < 1024; i++)
        ck_assert_int_eq(sencoder_feed(e, zeros, sizeof zeros, buf_sink, out, NULL), 0);
    ck_assert_int_eq(sencoder_finish(e, buf_sink, out, NULL), 0);
    sencoder_free(e);
}

/* ---- several servers on one data directory ---------------------------- */

int server_start_shared(test_server *s, const char *data_dir, const char *const *extra_args)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static int started;
    pthread_mutex_lock(&mu);
    int n = ++started;
    pthread_mutex_unlock(&mu);
    memset(s, 0, sizeof *s);
    if (strlen(data_dir) >= sizeof s->data_dir)
        return -1;
    snprintf(s->data_dir, sizeof s->data_dir, "%s", data_dir);
    snprintf(s->log_path, sizeof s->log_path, "%s.%d.log", data_dir, n);
    return spawn(s, extra_args);
}

int server_kill9(test_server *s)
{
    if (s->pid <= 0)
        return -1;
    int status = 0;
    kill(s->pid, SIGKILL);
    pid_t r = waitpid(s->pid, &status, 0);
    s->pid = 0;
    return r > 0 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? 0 : -1;
}

int server_reap(test_server *s)
{
    if (s->pid <= 0)
        return -1;
    int status = 0;
    if (waitpid(s->pid, &status, WNOHANG) != s->pid)
        return -1;
    s->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

void server_forget_log(test_server *s)
{
    if (s->log_path[0] != '\0' && getenv("STRATA_KEEP_LOGS") == NULL)
        unlink(s->log_path);
}

/* ---- what the environment adds to every strata process ---------------- */

void strata_l2_prefix(const char *data_dir, char out[65])
{
    const char *path = data_dir ? data_dir : "./data";
    /* FNV-1a over the whole path: distinct directories, distinct prefixes */
    uint64_t h = 0xcbf29ce484222325u;
    for (const char *p = path; *p; p++)
        h = (h ^ (unsigned char)*p) * 0x100000001b3u;
    /* the base name, for a reader of the server's keys */
    size_t end = strlen(path);
    while (end > 1 && path[end - 1] == '/')
        end--;
    size_t start = end;
    while (start > 0 && path[start - 1] != '/')
        start--;
    size_t n = 0;
    for (size_t i = start; i < end && n < 40; i++) {
        char c = path[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        out[n++] = ok ? c : '_';
    }
    snprintf(out + n, 65 - n, "%s%016llx", n ? "-" : "", (unsigned long long)h);
}

/* Whether args name option (as "--opt V" or "--opt=V"); its value in *value. */
static bool names_option(const char *const *args, const char *option, const char **value)
{
    size_t len = strlen(option);
    for (int i = 0; args && args[i]; i++) {
        if (strcmp(args[i], option) == 0) {
            *value = args[i + 1] ? args[i + 1] : "";
            return true;
        }
        if (strncmp(args[i], option, len) == 0 && args[i][len] == '=') {
            *value = args[i] + len + 1;
            return true;
        }
    }
    return false;
}

/* base with "/prefix" added to its path: before the query of an s3:// URL
 * (which must name a bucket), at the end of a file: one. */
static int with_prefix(const char *var, const char *base, const char *prefix, char *out, size_t cap)
{
    size_t path_len = strlen(base);
    const char *query = "";
    size_t scheme = 5; /* "s3://" and "file:" alike */
    if (strncmp(base, "s3://", 5) == 0) {
        const char *q = strchr(base, '?');
        if (q != NULL) {
            path_len = (size_t)(q - base);
            query = q;
        }
    }
    while (path_len > scheme && base[path_len - 1] == '/')
        path_len--;
    if (path_len <= scheme) {
        fprintf(stderr, "harness: %s (%s) names no %s\n", var, base,
                base[0] == 's' ? "bucket" : "directory");
        return -1;
    }
    int w = snprintf(out, cap, "%.*s/%s%s", (int)path_len, base, prefix, query);
    if (w < 0 || (size_t)w >= cap) {
        fprintf(stderr, "harness: %s is too long\n", var);
        return -1;
    }
    return 0;
}

/* base (SCHEME://HOSTS/BASE[?QUERY]) with its database name BASE made
 * BASE_H, H the first 12 hex digits of prefix's hash (its last 16
 * characters, see strata_l2_prefix). */
static int with_db_suffix(const char *var, const char *base, const char *prefix, char *out,
                          size_t cap)
{
    const char *hosts = strstr(base, "://");
    if (hosts == NULL) {
        fprintf(stderr, "harness: %s (%s) is not a URL\n", var, base);
        return -1;
    }
    hosts += 3;
    const char *end = hosts + strcspn(hosts, "?");
    const char *slash = memchr(hosts, '/', (size_t)(end - hosts));
    if (slash == NULL || slash + 1 == end) {
        fprintf(stderr, "harness: %s (%s) names no database\n", var, base);
        return -1;
    }
    const char *db = slash + 1;
    size_t db_len = (size_t)(end - db);
    for (const char *c = db; c < end; c++) {
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '_' || *c == '-')) {
            fprintf(stderr, "harness: %s (%s): the database name may hold only [A-Za-z0-9_-]\n",
                    var, base);
            return -1;
        }
    }
    if (db_len + 13 > MONGO_DB_MAX) {
        fprintf(stderr,
                "harness: %s (%s): the database name is longer than %d characters "
                "(13 are added)\n",
                var, base, MONGO_DB_MAX - 13);
        return -1;
    }
    size_t plen = strlen(prefix);
    const char *hash = plen >= 16 ? prefix + plen - 16 : prefix;
    int w = snprintf(out, cap, "%.*s_%.12s%s", (int)(end - base), base, hash, end);
    if (w < 0 || (size_t)w >= cap) {
        fprintf(stderr, "harness: %s is too long\n", var);
        return -1;
    }
    return 0;
}

/* The L2 URL STRATA_TEST_L2 (base) gives a process whose prefix is P. */
static int l2_from_base(const char *base, const char *prefix, char *l2, size_t l2_cap)
{
    int w;
    if (strncmp(base, "redis://", 8) == 0) {
        if (strstr(base, "prefix=") != NULL) {
            fprintf(stderr,
                    "harness: STRATA_TEST_L2 (%s) must not name a prefix: each "
                    "server gets its own\n",
                    base);
            return -1;
        }
        w = snprintf(l2, l2_cap, "%s%cprefix=%s", base, strchr(base, '?') ? '&' : '?', prefix);
    } else if (strncmp(base, "file:", 5) == 0 || strncmp(base, "s3://", 5) == 0) {
        return with_prefix("STRATA_TEST_L2", base, prefix, l2, l2_cap);
    } else if (strncmp(base, "mongodb://", 10) == 0) {
        return with_db_suffix("STRATA_TEST_L2", base, prefix, l2, l2_cap);
    } else {
        w = snprintf(l2, l2_cap, "%s", base);
    }
    if (w < 0 || (size_t)w >= l2_cap) {
        fprintf(stderr, "harness: STRATA_TEST_L2 is too long\n");
        return -1;
    }
    return 0;
}

int strata_env_args(const char **argv, int n, int cap, const char *data_dir,
                    const char *const *args, char *l2, size_t l2_cap, char *blobs, size_t blobs_cap,
                    int *blobs_added)
{
    static _Thread_local char store[512];
    int added = 0;
    n = strata_env_args_ex(argv, n, cap, data_dir, args, l2, l2_cap, blobs, blobs_cap, store,
                           sizeof store, &added);
    if (blobs_added != NULL)
        *blobs_added = (added & STRATA_ENV_BLOBS) != 0;
    return n;
}

int strata_env_args_ex(const char **argv, int n, int cap, const char *data_dir,
                       const char *const *args, char *l2, size_t l2_cap, char *blobs,
                       size_t blobs_cap, char *store, size_t store_cap, int *added)
{
    const char *dir = data_dir ? data_dir : "./data";
    const char *l2_base = getenv("STRATA_TEST_L2");
    const char *blobs_base = getenv("STRATA_TEST_BLOBS");
    const char *store_base = getenv("STRATA_TEST_STORE");
    const char *own = NULL;
    char prefix[65];
    strata_l2_prefix(data_dir, prefix);
    bool add_l2 = false, add_blobs = false, add_store = false;
    int w;
    if (added != NULL)
        *added = 0;

    if (names_option(args, "--cache-l2", &own)) {
        w = snprintf(l2, l2_cap, "%s", own);
    } else if (l2_base == NULL || l2_base[0] == '\0') {
        w = snprintf(l2, l2_cap, "file:%s/cache", dir);
    } else {
        if (l2_from_base(l2_base, prefix, l2, l2_cap) != 0)
            return -1;
        w = 0;
        add_l2 = true;
    }
    if (w < 0 || (size_t)w >= l2_cap)
        return -1;

    if (names_option(args, "--blobs", &own)) {
        w = snprintf(blobs, blobs_cap, "%s", own);
    } else if (blobs_base == NULL || blobs_base[0] == '\0') {
        w = snprintf(blobs, blobs_cap, "file:%s/blobs", dir);
    } else {
        if (strncmp(blobs_base, "gridfs://", 9) == 0) {
            if (with_db_suffix("STRATA_TEST_BLOBS", blobs_base, prefix, blobs, blobs_cap) != 0)
                return -1;
        } else if (strncmp(blobs_base, "s3://", 5) == 0 || strncmp(blobs_base, "file:", 5) == 0) {
            if (with_prefix("STRATA_TEST_BLOBS", blobs_base, prefix, blobs, blobs_cap) != 0)
                return -1;
        } else {
            fprintf(stderr,
                    "harness: STRATA_TEST_BLOBS (%s) is neither s3://, gridfs:// nor file:\n",
                    blobs_base);
            return -1;
        }
        w = 0;
        add_blobs = true;
    }
    if (w < 0 || (size_t)w >= blobs_cap)
        return -1;
    if (strncmp(l2, "s3://", 5) == 0 && strcmp(l2, blobs) == 0) {
        fprintf(stderr, "harness: the L2 and the blobs are both at %s: give them distinct bases\n",
                l2);
        return -1;
    }

    if (names_option(args, "--store", &own)) {
        w = snprintf(store, store_cap, "%s", own);
    } else if (store_base == NULL || store_base[0] == '\0') {
        w = snprintf(store, store_cap, "%s", ""); /* strata's default, in the data directory */
    } else {
        if (strncmp(store_base, "mongodb://", 10) != 0) {
            fprintf(stderr, "harness: STRATA_TEST_STORE (%s) is not mongodb://\n", store_base);
            return -1;
        }
        if (with_db_suffix("STRATA_TEST_STORE", store_base, prefix, store, store_cap) != 0)
            return -1;
        w = 0;
        add_store = true;
    }
    if (w < 0 || (size_t)w >= store_cap)
        return -1;

    if (n + 2 * (add_l2 + add_blobs + add_store) >= cap) {
        fprintf(stderr, "harness: too many arguments for strata\n");
        return -1;
    }
    if (add_l2) {
        argv[n++] = "--cache-l2";
        argv[n++] = l2;
    }
    if (add_blobs) {
        argv[n++] = "--blobs";
        argv[n++] = blobs;
    }
    if (add_store) {
        argv[n++] = "--store";
        argv[n++] = store;
    }
    if (added != NULL)
        *added = (add_l2 ? STRATA_ENV_L2 : 0) | (add_blobs ? STRATA_ENV_BLOBS : 0) |
                 (add_store ? STRATA_ENV_STORE : 0);
    return n;
}

int mongo_url_drop(const char *url)
{
    char murl[600];
    /* gridfs://HOSTS/DB is the same deployment and database */
    const char *rest = strncmp(url, "gridfs://", 9) == 0 ? url + 9 : NULL;
    int w = rest ? snprintf(murl, sizeof murl, "mongodb://%s", rest)
                 : snprintf(murl, sizeof murl, "%s", url);
    if (w < 0 || (size_t)w >= sizeof murl || strncmp(murl, "mongodb://", 10) != 0) {
        fprintf(stderr, "harness: cannot drop the database of '%s'\n", url);
        return -1;
    }
    strata_error err = {0};
    mongo_conn *c = mongo_conn_open(murl, "strata-tests", &err);
    if (c == NULL) {
        fprintf(stderr, "harness: cannot reach %s: %s\n", url, err.detail);
        return -1;
    }
    mongoc_client_t *cl = mongo_conn_pop(c);
    mongoc_database_t *db = mongoc_client_get_database(cl, mongo_conn_db(c));
    bson_error_t e;
    int rc = 0;
    if (!mongoc_database_drop(db, &e)) {
        fprintf(stderr, "harness: cannot drop the database of %s: %s\n", url, e.message);
        rc = -1;
    }
    mongoc_database_destroy(db);
    mongo_conn_push(c, cl);
    mongo_conn_close(c);
    return rc;
}

/* ---- S3, through Strata's own client ------------------------------------ */

static s3_client *s3_open_url(const char *url)
{
    strata_error err = {0};
    s3_config cfg;
    s3_client *c = NULL;
    if (s3_config_from_url(url, &cfg, &err) == 0)
        c = s3_client_new(&cfg, &err);
    if (c == NULL)
        fprintf(stderr, "harness: cannot reach %s: %s\n", url, err.detail);
    return c;
}

/* Names collected from a listing: NUL-separated in one buffer. */
typedef struct name_list {
    strata_buf names;
    int count;
    int failed;
} name_list;

static int collect_name(name_list *l, const char *name)
{
    strata_error err;
    if (sbuf_append(&l->names, name, strlen(name) + 1, &err) != 0) {
        l->failed = 1;
        return 1;
    }
    l->count++;
    return 0;
}

static int on_object_name(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    (void)size;
    (void)mtime_ms;
    return collect_name(ctx, key);
}

static int on_upload(void *ctx, const char *key, const char *upload_id, int64_t initiated_ms)
{
    (void)initiated_ms;
    name_list *l = ctx;
    /* key and upload id, one after the other */
    return collect_name(l, key) || collect_name(l, upload_id);
}

int s3_url_wipe(const char *url)
{
    s3_client *c = s3_open_url(url);
    if (c == NULL)
        return -1;
    int rc = -1;
    strata_error err = {0};
    name_list objects = {0}, uploads = {0};
    sbuf_init(&objects.names, 256u << 20);
    sbuf_init(&uploads.names, 64u << 20);
    if (s3_client_config(c)->prefix[0] == '\0') {
        fprintf(stderr, "harness: %s names no prefix: not emptying a whole bucket\n", url);
        goto done;
    }
    /* listed first, deleted after: no deletion under a listing's pages */
    if (s3_list(c, "", on_object_name, &objects, &err) != 0 ||
        s3_mpu_list(c, "", on_upload, &uploads, &err) != 0)
        goto failed;
    if (objects.failed || uploads.failed) {
        fprintf(stderr, "harness: too many objects under %s\n", url);
        goto done;
    }
    const char *p = (const char *)objects.names.data;
    for (int i = 0; i < objects.count; i++, p += strlen(p) + 1)
        if (s3_delete(c, p, &err) != 0)
            goto failed;
    p = (const char *)uploads.names.data;
    for (int i = 0; i + 1 < uploads.count; i += 2) {
        const char *id = p + strlen(p) + 1;
        if (s3_mpu_abort(c, p, id, &err) != 0 && err.kind != SERR_NOT_FOUND)
            goto failed;
        p = id + strlen(id) + 1;
    }
    rc = 0;
    goto done;
failed:
    fprintf(stderr, "harness: cannot empty %s: %s\n", url, err.detail);
done:
    sbuf_free(&objects.names);
    sbuf_free(&uploads.names);
    s3_client_free(c);
    return rc;
}

int server_l2_wipe(const test_server *s)
{
    const char *u = s->l2_url;
    char cmd[1500];
    if (strncmp(u, "s3://", 5) == 0)
        return s3_url_wipe(u);
    if (strchr(u, '\'') != NULL)
        return -1; /* not to be quoted for the shell */
    if (strncmp(u, "file:", 5) == 0) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", u + 5);
    } else if (strncmp(u, "redis://", 8) == 0) {
        /* every key of a deployment starts with "PREFIX:" */
        const char *q = strchr(u, '?');
        size_t base_len = q ? (size_t)(q - u) : strlen(u);
        char prefix[65] = "strata";
        const char *p = q ? strstr(q, "prefix=") : NULL;
        if (p != NULL) {
            p += 7;
            size_t len = strcspn(p, "&");
            if (len == 0 || len >= sizeof prefix)
                return -1;
            memcpy(prefix, p, len);
            prefix[len] = '\0';
        }
        snprintf(cmd, sizeof cmd,
                 "redis-cli -u '%.*s' --scan --pattern '%s:*' | "
                 "xargs -r -n 500 redis-cli -u '%.*s' unlink >/dev/null",
                 (int)base_len, u, prefix, (int)base_len, u);
    } else if (strcmp(u, "none") == 0) {
        return 0;
    } else if (strncmp(u, "mongodb://", 10) == 0) {
        return mongo_url_drop(u);
    } else {
        fprintf(stderr, "harness: cannot empty the L2 at %s\n", u);
        return -1;
    }
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- the server's blobs, seen the backend's way -------------------------- */

static bool hex_name(const char *name, size_t len)
{
    if (strlen(name) != len)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    return true;
}

/* The store's kind: 'f' with its directory in dir, 's' for S3, 0 (with a
 * message) for anything else. */
static char blob_backend(const test_server *s, char *dir, size_t cap)
{
    const char *u = s->blobs_url;
    if (strncmp(u, "file:", 5) == 0 && strlen(u + 5) < cap) {
        snprintf(dir, cap, "%s", u + 5);
        return 'f';
    }
    if (strncmp(u, "s3://", 5) == 0)
        return 's';
    if (strncmp(u, "gridfs://", 9) == 0)
        return 'g';
    fprintf(stderr, "harness: cannot look at the blobs at '%s'\n", u);
    return 0;
}

/* The blob's file or object name: DIR/ab/KEY (DIR/ab/cd/KEY in a file
 * store of the layout before DIR/layout, when that file exists) or
 * blobs/ab/cd/KEY. */
static int blob_name(const test_server *s, const char *key, char *kind, char *out, size_t cap)
{
    char dir[512];
    if (!hex_name(key, 64)) {
        fprintf(stderr, "harness: '%s' is not a blob key\n", key);
        return -1;
    }
    *kind = blob_backend(s, dir, sizeof dir);
    if (*kind == 0)
        return -1;
    int w;
    struct stat st;
    if (*kind != 'f')
        w = snprintf(out, cap, "blobs/%.2s/%.2s/%s", key, key + 2, key);
    else if ((w = snprintf(out, cap, "%s/%.2s/%.2s/%s", dir, key, key + 2, key)) < 0 ||
             (size_t)w >= cap || stat(out, &st) != 0)
        w = snprintf(out, cap, "%s/%.2s/%s", dir, key, key);
    return w < 0 || (size_t)w >= cap ? -1 : 0;
}

/* Calls fn for every regular file under dir (depth-bounded), with its path
 * relative to root. */
typedef int (*file_fn)(void *ctx, const char *rel, const struct stat *st);
static int walk_files(const char *root, const char *rel, int depth, file_fn fn, void *ctx)
{
    char path[1024];
    snprintf(path, sizeof path, "%s%s%s", root, rel[0] ? "/" : "", rel);
    DIR *d = opendir(path);
    if (d == NULL)
        return errno == ENOENT && depth == 0 ? 0 : -1;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char sub[1024], full[2100];
        snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat st;
        if (lstat(full, &st) != 0)
            continue; /* gone meanwhile (a rename into place) */
        if (S_ISDIR(st.st_mode))
            rc = depth < 8 ? walk_files(root, sub, depth + 1, fn, ctx) : 0;
        else if (S_ISREG(st.st_mode))
            rc = fn(ctx, sub, &st);
    }
    closedir(d);
    return rc;
}

typedef struct blob_tally {
    int blobs, staged;
    strata_buf *lines;
    int failed;
} blob_tally;

static void tally_name(blob_tally *t, const char *name)
{
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (hex_name(base, 64))
        t->blobs++;
    else if (strncmp(name, ".w-", 3) == 0 || strncmp(name, "staging/", 8) == 0 ||
             strncmp(name, "~stage-", 7) == 0)
        t->staged++;
}

static void tally_line(blob_tally *t, const char *name, uint64_t size, int64_t mtime_ms)
{
    if (t->lines == NULL)
        return;
    char line[1200];
    int w = snprintf(line, sizeof line, "%s %llu %lld\n", name, (unsigned long long)size,
                     (long long)mtime_ms);
    strata_error err;
    if (w < 0 || (size_t)w >= sizeof line || sbuf_append(t->lines, line, (size_t)w, &err) != 0)
        t->failed = 1;
}

static int on_file(void *ctx, const char *rel, const struct stat *st)
{
    blob_tally *t = ctx;
    tally_name(t, rel);
    tally_line(t, rel, (uint64_t)st->st_size,
               (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000);
    return 0;
}

static int on_object(void *ctx, const char *key, uint64_t size, int64_t mtime_ms)
{
    blob_tally *t = ctx;
    tally_name(t, key);
    tally_line(t, key, size, mtime_ms);
    return 0;
}

static int on_staged_upload(void *ctx, const char *key, const char *upload_id, int64_t initiated_ms)
{
    (void)key;
    (void)upload_id;
    (void)initiated_ms;
    ((blob_tally *)ctx)->staged++;
    return 0;
}

/* ---- GridFS: NAME.files and NAME.chunks (see src/blobs/blobs_gridfs.h) -- */

typedef struct gfs_view {
    mongo_conn *conn;
    mongoc_client_t *cl;
    mongoc_collection_t *files, *chunks;
} gfs_view;

static void gfs_close(gfs_view *g)
{
    if (g->files != NULL)
        mongoc_collection_destroy(g->files);
    if (g->chunks != NULL)
        mongoc_collection_destroy(g->chunks);
    if (g->cl != NULL)
        mongo_conn_push(g->conn, g->cl);
    mongo_conn_close(g->conn);
    memset(g, 0, sizeof *g);
}

static int gfs_open(const test_server *s, gfs_view *g)
{
    char murl[600], bucket[BLOBS_GRIDFS_BUCKET_MAX + 1], name[64];
    strata_error err = {0};
    memset(g, 0, sizeof *g);
    if (blobs_gridfs_parse_url(s->blobs_url, murl, sizeof murl, bucket, &err) != 0 ||
        (g->conn = mongo_conn_open(murl, "strata-tests", &err)) == NULL) {
        fprintf(stderr, "harness: cannot reach %s: %s\n", s->blobs_url, err.detail);
        return -1;
    }
    g->cl = mongo_conn_pop(g->conn);
    snprintf(name, sizeof name, "%s.files", bucket);
    g->files = mongo_conn_collection(g->conn, g->cl, name);
    snprintf(name, sizeof name, "%s.chunks", bucket);
    g->chunks = mongo_conn_collection(g->conn, g->cl, name);
    return 0;
}

static int64_t gfs_ms(const bson_t *doc, const char *field)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_DATE_TIME(&it)
               ? bson_iter_date_time(&it)
               : -1;
}

static int gfs_tally(const test_server *s, blob_tally *t)
{
    gfs_view g;
    if (gfs_open(s, &g) != 0)
        return -1;
    bson_t filter = BSON_INITIALIZER;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(g.files, &filter, NULL, NULL);
    const bson_t *doc;
    bson_iter_t it;
    while (mongoc_cursor_next(cur, &doc)) {
        if (!bson_iter_init_find(&it, doc, "filename") || !BSON_ITER_HOLDS_UTF8(&it))
            continue;
        const char *name = bson_iter_utf8(&it, NULL);
        int64_t len = bson_iter_init_find(&it, doc, "length") ? bson_iter_as_int64(&it) : 0;
        int64_t ms = gfs_ms(doc, "mtime");
        tally_name(t, name);
        tally_line(t, name, (uint64_t)len, ms >= 0 ? ms : gfs_ms(doc, "uploadDate"));
    }
    bson_error_t e;
    int rc = 0;
    if (mongoc_cursor_error(cur, &e)) {
        fprintf(stderr, "harness: cannot list %s: %s\n", s->blobs_url, e.message);
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(&filter);
    gfs_close(&g);
    return rc;
}

/* The files document of key (into doc, which the caller destroys) and the
 * files_id its chunks are under (its data field, else its _id). */
static int gfs_find(const test_server *s, gfs_view *g, const char *key, bson_t *doc,
                    bson_value_t *chunks_id)
{
    bson_t *filter = BCON_NEW("filename", BCON_UTF8(key));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(g->files, filter, NULL, NULL);
    const bson_t *found;
    bson_error_t e;
    int rc = -1;
    bson_iter_t it;
    if (mongoc_cursor_next(cur, &found)) {
        bson_copy_to(found, doc);
        if ((bson_iter_init_find(&it, doc, "data") && !BSON_ITER_HOLDS_NULL(&it)) ||
            bson_iter_init_find(&it, doc, "_id")) {
            bson_value_copy(bson_iter_value(&it), chunks_id);
            rc = 0;
        } else {
            bson_destroy(doc);
            fprintf(stderr, "harness: the files document of %s at %s has no _id\n", key,
                    s->blobs_url);
        }
    } else if (mongoc_cursor_error(cur, &e)) {
        fprintf(stderr, "harness: cannot look up %s at %s: %s\n", key, s->blobs_url, e.message);
    } else {
        fprintf(stderr, "harness: no blob %s at %s\n", key, s->blobs_url);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    return rc;
}

static int gfs_read(const test_server *s, const char *key, strata_buf *out)
{
    gfs_view g;
    if (gfs_open(s, &g) != 0)
        return -1;
    bson_t doc;
    bson_value_t id;
    int rc = -1;
    if (gfs_find(s, &g, key, &doc, &id) != 0)
        goto done;
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&filter, "files_id", &id);
    bson_t *opts = BCON_NEW("sort", "{", "n", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(g.chunks, &filter, opts, NULL);
    const bson_t *chunk;
    bson_iter_t it;
    bson_error_t e;
    int64_t want = 0;
    strata_error err;
    rc = 0;
    while (rc == 0 && mongoc_cursor_next(cur, &chunk)) {
        const uint8_t *data = NULL;
        uint32_t len = 0;
        bson_subtype_t sub;
        if (!bson_iter_init_find(&it, chunk, "n") || bson_iter_as_int64(&it) != want++ ||
            !bson_iter_init_find(&it, chunk, "data") || !BSON_ITER_HOLDS_BINARY(&it)) {
            fprintf(stderr, "harness: chunk %lld of %s at %s is missing or misshapen\n",
                    (long long)want - 1, key, s->blobs_url);
            rc = -1;
            break;
        }
        bson_iter_binary(&it, &sub, &len, &data);
        rc = sbuf_append(out, data, len, &err);
    }
    if (mongoc_cursor_error(cur, &e)) {
        fprintf(stderr, "harness: cannot read %s at %s: %s\n", key, s->blobs_url, e.message);
        rc = -1;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(&filter);
    bson_destroy(&doc);
    bson_value_destroy(&id);
done:
    gfs_close(&g);
    return rc;
}

/* Replaces key's chunks with data and sets its length: the files document
 * stays (damage on the medium, not a new version of the blob). */
static int gfs_write(const test_server *s, const char *key, const void *data, size_t len)
{
    gfs_view g;
    if (gfs_open(s, &g) != 0)
        return -1;
    bson_t doc;
    bson_value_t id;
    int rc = -1;
    if (gfs_find(s, &g, key, &doc, &id) != 0)
        goto done;
    bson_iter_t it;
    int64_t chunk = bson_iter_init_find(&it, &doc, "chunkSize") ? bson_iter_as_int64(&it) : 0;
    if (chunk <= 0 || chunk > (16 << 20))
        chunk = BLOBS_GRIDFS_CHUNK;
    bson_error_t e;
    bson_t filter = BSON_INITIALIZER;
    BSON_APPEND_VALUE(&filter, "files_id", &id);
    bool ok = mongoc_collection_delete_many(g.chunks, &filter, NULL, NULL, &e);
    for (size_t off = 0, n = 0; ok && (off < len || n == 0); off += (size_t)chunk, n++) {
        size_t part = len - off < (size_t)chunk ? len - off : (size_t)chunk;
        bson_t c = BSON_INITIALIZER;
        BSON_APPEND_VALUE(&c, "files_id", &id);
        BSON_APPEND_INT32(&c, "n", (int32_t)n);
        BSON_APPEND_BINARY(&c, "data", BSON_SUBTYPE_BINARY, (const uint8_t *)data + off,
                           (uint32_t)part);
        ok = mongoc_collection_insert_one(g.chunks, &c, NULL, NULL, &e);
        bson_destroy(&c);
        if (len == 0)
            break;
    }
    if (ok) {
        bson_t *sel = BCON_NEW("filename", BCON_UTF8(key));
        bson_t *upd = BCON_NEW("$set", "{", "length", BCON_INT64((int64_t)len), "}");
        ok = mongoc_collection_update_one(g.files, sel, upd, NULL, NULL, &e);
        bson_destroy(sel);
        bson_destroy(upd);
    }
    if (ok)
        rc = 0;
    else
        fprintf(stderr, "harness: cannot write %s at %s: %s\n", key, s->blobs_url, e.message);
    bson_destroy(&filter);
    bson_destroy(&doc);
    bson_value_destroy(&id);
done:
    gfs_close(&g);
    return rc;
}

/* Walks the whole store into t; 0, or -1 with a message. */
static int blob_tally_of(const test_server *s, blob_tally *t)
{
    char dir[512];
    char kind = blob_backend(s, dir, sizeof dir);
    if (kind == 'f') {
        if (walk_files(dir, "", 0, on_file, t) != 0) {
            fprintf(stderr, "harness: cannot walk %s: %s\n", dir, strerror(errno));
            return -1;
        }
    } else if (kind == 's') {
        s3_client *c = s3_open_url(s->blobs_url);
        if (c == NULL)
            return -1;
        strata_error err = {0};
        int rc = s3_list(c, "", on_object, t, &err);
        if (rc == 0)
            rc = s3_mpu_list(c, "staging/", on_staged_upload, t, &err);
        s3_client_free(c);
        if (rc != 0) {
            fprintf(stderr, "harness: cannot list %s: %s\n", s->blobs_url, err.detail);
            return -1;
        }
    } else if (kind == 'g') {
        if (gfs_tally(s, t) != 0)
            return -1;
    } else {
        return -1;
    }
    if (t->failed) {
        fprintf(stderr, "harness: the listing of %s is too long\n", s->blobs_url);
        return -1;
    }
    return 0;
}

int server_blob_count(const test_server *s)
{
    blob_tally t = {0};
    return blob_tally_of(s, &t) == 0 ? t.blobs : -1;
}

int server_blob_staged(const test_server *s)
{
    blob_tally t = {0};
    return blob_tally_of(s, &t) == 0 ? t.staged : -1;
}

static int cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int server_blob_listing(const test_server *s, strata_buf *out)
{
    strata_buf lines;
    sbuf_init(&lines, 256u << 20);
    blob_tally t = {.lines = &lines};
    strata_error err;
    int rc = -1;
    char **sorted = NULL;
    if (blob_tally_of(s, &t) != 0 || sbuf_append(&lines, "", 1, &err) != 0)
        goto done;
    size_t n = 0;
    for (size_t i = 0; i + 1 < lines.len; i++)
        n += lines.data[i] == '\n';
    sorted = calloc(n ? n : 1, sizeof *sorted);
    if (sorted == NULL)
        goto done;
    char *p = (char *)lines.data;
    for (size_t i = 0; i < n; i++) {
        sorted[i] = p;
        p = strchr(p, '\n') + 1;
        p[-1] = '\0';
    }
    qsort(sorted, n, sizeof *sorted, cmp_lines);
    for (size_t i = 0; i < n; i++)
        if (sbuf_append(out, sorted[i], strlen(sorted[i]), &err) != 0 ||
            sbuf_append(out, "\n", 1, &err) != 0)
            goto done;
    rc = sbuf_append(out, "", 1, &err) == 0 ? 0 : -1;
    if (rc == 0)
        out->len--; /* the NUL ends the text; it is not part of it */
done:
    if (rc != 0)
        fprintf(stderr, "harness: cannot list the blobs at %s\n", s->blobs_url);
    free(sorted);
    sbuf_free(&lines);
    return rc;
}

int server_blob_path(const test_server *s, const char *key, char *out, size_t cap)
{
    char kind, name[1024];
    if (blob_name(s, key, &kind, name, sizeof name) != 0)
        return -1;
    if (kind != 'f') {
        fprintf(stderr, "harness: blob %.12s is no file: the store is not a directory\n", key);
        return -1;
    }
    int w = snprintf(out, cap, "%s", name);
    return w < 0 || (size_t)w >= cap ? -1 : 0;
}

int server_blob_read(const test_server *s, const char *key, strata_buf *out)
{
    char kind, name[1024];
    if (blob_name(s, key, &kind, name, sizeof name) != 0)
        return -1;
    strata_error err = {0};
    if (kind == 'f') {
        FILE *f = fopen(name, "rb");
        if (f == NULL) {
            fprintf(stderr, "harness: no blob file %s: %s\n", name, strerror(errno));
            return -1;
        }
        char chunk[65536];
        size_t got;
        int rc = 0;
        while (rc == 0 && (got = fread(chunk, 1, sizeof chunk, f)) > 0)
            rc = sbuf_append(out, chunk, got, &err);
        rc = rc == 0 && !ferror(f) ? 0 : -1;
        fclose(f);
        if (rc != 0)
            fprintf(stderr, "harness: cannot read %s\n", name);
        return rc;
    }
    if (kind == 'g')
        return gfs_read(s, key, out);
    s3_client *c = s3_open_url(s->blobs_url);
    if (c == NULL)
        return -1;
    int rc = s3_get(c, name, 0, 0, 1u << 30, out, NULL, &err);
    s3_client_free(c);
    if (rc != 0)
        fprintf(stderr, "harness: cannot read the object %s at %s: %s\n", name, s->blobs_url,
                err.detail);
    return rc;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int server_blob_write(const test_server *s, const char *key, const void *data, size_t len)
{
    char kind, name[1024];
    if (blob_name(s, key, &kind, name, sizeof name) != 0)
        return -1;
    if (kind == 'f') {
        /* in place, as a bad disk would: no rename, the same inode */
        int fd = open(name, O_WRONLY | O_TRUNC);
        int rc = fd >= 0 && write_all(fd, data, len) == 0 ? 0 : -1;
        if (fd >= 0 && close(fd) != 0)
            rc = -1;
        if (rc != 0)
            fprintf(stderr, "harness: cannot write %s: %s\n", name, strerror(errno));
        return rc;
    }
    if (kind == 'g')
        return gfs_write(s, key, data, len);
    s3_client *c = s3_open_url(s->blobs_url);
    if (c == NULL)
        return -1;
    strata_error err = {0};
    int rc = s3_put(c, name, data, len, NULL, NULL, &err);
    s3_client_free(c);
    if (rc != 0)
        fprintf(stderr, "harness: cannot write the object %s at %s: %s\n", name, s->blobs_url,
                err.detail);
    return rc;
}

int server_blob_damage(const test_server *s, const char *key, long offset, int truncate)
{
    strata_buf b;
    sbuf_init(&b, 1u << 30);
    int rc = server_blob_read(s, key, &b);
    if (rc == 0 && b.len == 0) {
        fprintf(stderr, "harness: blob %s is empty: nothing to damage\n", key);
        rc = -1;
    }
    if (rc == 0) {
        if (truncate) {
            b.len--;
        } else {
            long at = offset == SERVER_BLOB_MIDDLE
                          ? (long)(BLOB_HEADER_SIZE + (b.len - BLOB_HEADER_SIZE) / 2)
                      : offset < 0 ? (long)b.len + offset
                                   : offset;
            if (offset == SERVER_BLOB_MIDDLE && b.len <= BLOB_HEADER_SIZE)
                at = -1;
            if (at < 0 || (size_t)at >= b.len) {
                fprintf(stderr, "harness: offset %ld is outside blob %s (%zu bytes)\n", offset, key,
                        b.len);
                rc = -1;
            } else {
                b.data[at] ^= 0x20;
            }
        }
    }
    if (rc == 0)
        rc = server_blob_write(s, key, b.data ? (void *)b.data : (void *)"", b.len);
    sbuf_free(&b);
    return rc;
}

void test_tmpdir(const char *prefix, char *dir, size_t cap)
{
    int n = snprintf(dir, cap, "/tmp/%s-XXXXXX", prefix);
    ck_assert(n > 0 && (size_t)n < cap);
    ck_assert_msg(mkdtemp(dir) != NULL, "mkdtemp %s: %s", dir, strerror(errno));
}

void test_rmtree(const char *dir)
{
    char cmd[PATH_MAX + 16];
    int n = snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert(n > 0 && (size_t)n < sizeof cmd && strchr(dir, '\'') == NULL);
    ck_assert_int_eq(system(cmd), 0);
}

void test_sqlite_exec(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    ck_assert_msg(rc == SQLITE_OK, "%s", msg ? msg : "?");
    sqlite3_free(msg);
    ck_assert_int_eq(sqlite3_close(db), SQLITE_OK);
}
