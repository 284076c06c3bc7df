#include "harness.h"

#include "../../src/codec/compress.h"

#include <arpa/inet.h>
#include <check.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
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
    n = strata_env_args(argv, n, 64, s->data_dir, extra_args, s->l2_url, sizeof s->l2_url);
    if (n < 0)
        return -1;
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
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 120L);
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

static bool names_cache_l2(const char *const *args, const char **value)
{
    for (int i = 0; args && args[i]; i++) {
        if (strcmp(args[i], "--cache-l2") == 0) {
            *value = args[i + 1] ? args[i + 1] : "";
            return true;
        }
        if (strncmp(args[i], "--cache-l2=", 11) == 0) {
            *value = args[i] + 11;
            return true;
        }
    }
    return false;
}

int strata_env_args(const char **argv, int n, int cap, const char *data_dir,
                    const char *const *args, char *l2, size_t l2_cap)
{
    const char *own = NULL;
    const char *base = getenv("STRATA_TEST_L2");
    int w;
    if (names_cache_l2(args, &own)) {
        w = snprintf(l2, l2_cap, "%s", own);
        return w < 0 || (size_t)w >= l2_cap ? -1 : n;
    }
    if (base == NULL || base[0] == '\0') {
        w = snprintf(l2, l2_cap, "file:%s/cache", data_dir ? data_dir : "./data");
        return w < 0 || (size_t)w >= l2_cap ? -1 : n;
    }
    char prefix[65];
    strata_l2_prefix(data_dir, prefix);
    if (strncmp(base, "redis://", 8) == 0) {
        if (strstr(base, "prefix=") != NULL) {
            fprintf(stderr,
                    "harness: STRATA_TEST_L2 (%s) must not name a prefix: each "
                    "server gets its own\n",
                    base);
            return -1;
        }
        w = snprintf(l2, l2_cap, "%s%cprefix=%s", base, strchr(base, '?') ? '&' : '?', prefix);
    } else if (strncmp(base, "file:", 5) == 0) {
        size_t len = strlen(base);
        while (len > 6 && base[len - 1] == '/')
            len--;
        w = snprintf(l2, l2_cap, "%.*s/%s", (int)len, base, prefix);
    } else {
        w = snprintf(l2, l2_cap, "%s", base);
    }
    if (w < 0 || (size_t)w >= l2_cap) {
        fprintf(stderr, "harness: STRATA_TEST_L2 is too long\n");
        return -1;
    }
    if (n + 2 >= cap) {
        fprintf(stderr, "harness: too many arguments for strata\n");
        return -1;
    }
    argv[n++] = "--cache-l2";
    argv[n++] = l2;
    return n;
}

int server_l2_wipe(const test_server *s)
{
    const char *u = s->l2_url;
    char cmd[1500];
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
    } else {
        fprintf(stderr, "harness: cannot empty the L2 at %s\n", u);
        return -1;
    }
    return system(cmd) == 0 ? 0 : -1;
}
