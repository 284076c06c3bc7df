/* TLS over real HTTPS: certificates made at test time with the openssl
 * tool (a CA, two server certificates, client certificates from the CA
 * and from a stranger), libcurl as the client. Core requests over HTTPS,
 * client certificates required with --tls-client-ca, no HTTP for a
 * plaintext client, certificate reloads on SIGHUP under load, and clear
 * start-up errors for bad files. */
#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/harness.h"

static char dir[128];       /* the certificates, made once per run */
static char cert_path[200]; /* the server's --tls-cert, replaced by reload tests */
static char key_path[200];  /* and its --tls-key */
static char ca_path[200];   /* the test CA: clients trust it, servers take client certs from it */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    int rc = system(cmd);
    ck_assert_msg(rc == 0, "command failed (%d): %s", rc, cmd);
}

/* A key and a certificate NAME signed by CA with serial SERIAL and
 * extensions EXT. */
static void make_cert(const char *ca, const char *name, const char *cn, const char *serial,
                      const char *ext)
{
    sh("cd '%s' && printf '%s' > %s.ext && "
       "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout %s.key "
       "-out %s.csr -subj '/CN=%s' 2>/dev/null && "
       "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -set_serial %s -days 2 "
       "-extfile %s.ext -out %s.pem 2>/dev/null",
       dir, ext, name, name, name, cn, name, ca, ca, serial, name, name);
}

static void make_ca(const char *name, const char *cn)
{
    sh("cd '%s' && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
       "-keyout %s.key -out %s.pem -days 2 -subj '/CN=%s' 2>/dev/null",
       dir, name, name, cn);
}

#define SERVER_EXT "subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n"
#define CLIENT_EXT "extendedKeyUsage=clientAuth\\n"

static void make_certificates(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/strata-tls-XXXXXX", tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    make_ca("ca", "Strata Test CA");
    make_ca("rogue-ca", "Stranger CA");
    make_cert("ca", "server-a", "strata-tls-a", "0x5101", SERVER_EXT);
    make_cert("ca", "server-b", "strata-tls-b", "0x5202", SERVER_EXT);
    make_cert("ca", "client", "client-ok", "0x6101", CLIENT_EXT);
    make_cert("rogue-ca", "rogue-client", "client-rogue", "0x6202", CLIENT_EXT);
    sh("cd '%s' && printf 'not a certificate\\n' > garbage.pem", dir);
    snprintf(cert_path, sizeof cert_path, "%s/live-cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/live-key.pem", dir);
    snprintf(ca_path, sizeof ca_path, "%s/ca.pem", dir);
}

static void remove_certificates(void)
{
    sh("rm -rf '%s'", dir);
}

/* Puts certificate NAME in place as the server's files, each by rename so
 * that a reload never reads half a file. */
static void install(const char *name)
{
    sh("cd '%s' && cp %s.pem live-cert.pem.tmp && cp %s.key live-key.pem.tmp && "
       "mv live-cert.pem.tmp live-cert.pem && mv live-key.pem.tmp live-key.pem",
       dir, name, name);
}

static void start_tls(test_server *s, bool client_ca)
{
    const char *args[] = {
        "--tls-cert", cert_path, "--tls-key", key_path, client_ca ? "--tls-client-ca" : NULL,
        ca_path,      NULL};
    ck_assert_int_eq(server_start(s, args), 0);
}

static void stop(test_server *s)
{
    ck_assert_int_eq(server_stop(s, 20), 0);
    server_cleanup(s);
}

/* ---- an HTTPS client ------------------------------------------------------ */

typedef struct tls_resp {
    CURLcode rc;
    long status;
    char body[65536];
    size_t body_len;
    char subject[256]; /* of the server certificate, on a new connection */
    char serial[64];
} tls_resp;

typedef struct tls_opts {
    const char *cert, *key; /* a client certificate, or NULL */
    bool no_ca;             /* do not trust the test CA */
    CURL *handle;           /* reuse (keep-alive), or NULL for a one-off */
} tls_opts;

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    tls_resp *r = ud;
    size_t len = size * n, room = sizeof r->body - 1 - r->body_len;
    size_t take = len < room ? len : room;
    memcpy(r->body + r->body_len, p, take);
    r->body_len += take;
    r->body[r->body_len] = '\0';
    return len;
}

static void https_do(int port, const char *method, const char *path, const char *body,
                     const tls_opts *o, tls_resp *out)
{
    memset(out, 0, sizeof *out);
    CURL *h = o && o->handle ? o->handle : curl_easy_init();
    ck_assert_ptr_nonnull(h);
    char url[512];
    snprintf(url, sizeof url, "https://127.0.0.1:%d%s", port, path);
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    if (!(o && o->no_ca))
        curl_easy_setopt(h, CURLOPT_CAINFO, ca_path);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_CERTINFO, 1L);
    if (o && o->cert) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, o->cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, o->key);
    }
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    if (body != NULL) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    }
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
    out->rc = curl_easy_perform(h);
    curl_slist_free_all(hdr);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out->status);
    struct curl_certinfo *ci = NULL;
    if (out->rc == CURLE_OK && curl_easy_getinfo(h, CURLINFO_CERTINFO, &ci) == CURLE_OK && ci &&
        ci->num_of_certs > 0) {
        for (struct curl_slist *l = ci->certinfo[0]; l; l = l->next) {
            if (strncmp(l->data, "Subject:", 8) == 0)
                snprintf(out->subject, sizeof out->subject, "%s", l->data + 8);
            else if (strncmp(l->data, "Serial Number:", 14) == 0)
                snprintf(out->serial, sizeof out->serial, "%s", l->data + 14);
        }
    }
    if (!(o && o->handle))
        curl_easy_cleanup(h);
}

/* The serial of a certificate as curl prints it, without separators. */
static void plain_serial(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; *s && n + 1 < cap; s++)
        if (*s != ':' && *s != ' ')
            out[n++] = (char)((*s >= 'A' && *s <= 'F') ? *s + 32 : *s);
    out[n] = '\0';
    /* "0x5101" or "5101" */
    if (strncmp(out, "0x", 2) == 0)
        memmove(out, out + 2, strlen(out + 2) + 1);
}

static bool serves(int port, const char *cn, const char *serial)
{
    tls_resp r;
    https_do(port, "GET", "/health", NULL, NULL, &r);
    char s[64];
    plain_serial(r.serial, s, sizeof s);
    return r.rc == CURLE_OK && r.status == 200 && strstr(r.subject, cn) != NULL &&
           strcmp(s, serial) == 0;
}

/* ---- tests ---------------------------------------------------------------- */

START_TEST(core_requests_over_https)
{
    install("server-a");
    test_server s;
    start_tls(&s, false);
    tls_resp r;
    https_do(s.port, "GET", "/health", NULL, NULL, &r);
    ck_assert_msg(r.rc == CURLE_OK, "%s", curl_easy_strerror(r.rc));
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"status\":\"ok\""));
    ck_assert_ptr_nonnull(strstr(r.subject, "strata-tls-a"));
    char serial[64];
    plain_serial(r.serial, serial, sizeof serial);
    ck_assert_str_eq(serial, "5101");
    https_do(s.port, "POST", "/dictionary/apple/versions",
             "{\"content\": {\"senses\": [\"a fruit\"]}, \"word\": \"apple\", \"provider\": \"t\"}",
             NULL, &r);
    ck_assert_int_eq(r.rc, CURLE_OK);
    ck_assert_msg(r.status == 201, "%ld %s", r.status, r.body);
    https_do(s.port, "GET", "/dictionary/apple", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "\"version\":\"1.0.0\""));
    https_do(s.port, "GET", "/dictionary/apple/versions/latest/content", NULL, NULL, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_str_eq(r.body, "{\"senses\":[\"a fruit\"]}");
    /* keep-alive works over TLS */
    CURL *h = curl_easy_init();
    tls_opts keep = {.handle = h};
    for (int i = 0; i < 5; i++) {
        https_do(s.port, "GET", "/health", NULL, &keep, &r);
        ck_assert_int_eq(r.status, 200);
    }
    long conns = 0;
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &conns);
    ck_assert_int_eq(conns, 0); /* the last request reused the connection */
    curl_easy_cleanup(h);
    /* a client that does not trust the test CA refuses the server */
    tls_opts untrusting = {.no_ca = true};
    https_do(s.port, "GET", "/health", NULL, &untrusting, &r);
    ck_assert_int_ne(r.rc, CURLE_OK);
    /* the start-up log says what is served */
    char cmd[512];
    snprintf(cmd, sizeof cmd, "grep -q 'TLS: subject CN=strata-tls-a, serial 5101' '%s'",
             s.log_path);
    ck_assert_int_eq(system(cmd), 0);
    stop(&s);
}
END_TEST

START_TEST(a_plaintext_client_gets_no_http)
{
    install("server-a");
    test_server s;
    start_tls(&s, false);
    int fd = raw_connect(s.port);
    ck_assert_int_ge(fd, 0);
    const char req[] = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    ck_assert_int_eq(raw_send(fd, req, sizeof req - 1), 0);
    char buf[4096];
    ssize_t n = raw_recv(fd, buf, sizeof buf - 1, 2000);
    ck_assert_int_ge(n, 0);
    buf[n] = '\0';
    ck_assert_ptr_null(memmem(buf, (size_t)n, "HTTP/1.", 7));
    ck_assert_ptr_null(memmem(buf, (size_t)n, "status", 6));
    close(fd);
    /* and the server still serves TLS clients */
    ck_assert(serves(s.port, "strata-tls-a", "5101"));
    stop(&s);
}
END_TEST

START_TEST(client_certificates_are_required_with_a_client_ca)
{
    install("server-a");
    test_server s;
    start_tls(&s, true);
    char cli_cert[256], cli_key[256], rogue_cert[256], rogue_key[256], srv_cert[256], srv_key[256];
    snprintf(cli_cert, sizeof cli_cert, "%s/client.pem", dir);
    snprintf(cli_key, sizeof cli_key, "%s/client.key", dir);
    snprintf(rogue_cert, sizeof rogue_cert, "%s/rogue-client.pem", dir);
    snprintf(rogue_key, sizeof rogue_key, "%s/rogue-client.key", dir);
    snprintf(srv_cert, sizeof srv_cert, "%s/server-b.pem", dir);
    snprintf(srv_key, sizeof srv_key, "%s/server-b.key", dir);
    const struct {
        const char *label, *cert, *key;
    } refused[] = {
        {"no certificate", NULL, NULL},
        {"a certificate from another CA", rogue_cert, rogue_key},
        {"a certificate not meant for clients", srv_cert, srv_key},
    };
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        tls_opts o = {.cert = refused[i].cert, .key = refused[i].key};
        tls_resp r;
        https_do(s.port, "GET", "/health", NULL, &o, &r);
        /* refused in the handshake, or (never served) with a 403 */
        ck_assert_msg(r.rc != CURLE_OK || r.status == 403, "%s: rc %d status %ld", refused[i].label,
                      r.rc, r.status);
        https_do(s.port, "PUT", "/cache/default/k", "{\"x\": 1}", &o, &r);
        ck_assert_msg(r.rc != CURLE_OK || r.status == 403, "%s: %ld", refused[i].label, r.status);
    }
    tls_opts ok = {.cert = cli_cert, .key = cli_key};
    tls_resp r;
    https_do(s.port, "GET", "/cache/default/k", NULL, &ok, &r);
    ck_assert_int_eq(r.status, 404); /* no refused PUT was stored */
    https_do(s.port, "GET", "/health", NULL, &ok, &r);
    ck_assert_msg(r.rc == CURLE_OK && r.status == 200, "%s %ld", curl_easy_strerror(r.rc),
                  r.status);
    https_do(s.port, "PUT", "/cache/default/k", "{\"x\": 1}", &ok, &r);
    ck_assert_int_eq(r.status, 201);
    https_do(s.port, "GET", "/metrics", NULL, &ok, &r);
    ck_assert_int_eq(r.status, 200);
    ck_assert_ptr_nonnull(strstr(r.body, "strata_tls_client_refused_total "));
    ck_assert_ptr_null(strstr(r.body, "strata_tls_client_refused_total 0\n"));
    stop(&s);
}
END_TEST

typedef struct hammer {
    pthread_t thread;
    int port;
    bool fresh; /* a new connection (and handshake) per request */
    atomic_bool *stop;
    long ok, failed;
    char first_failure[256];
} hammer;

static void *hammer_run(void *arg)
{
    hammer *h = arg;
    CURL *c = curl_easy_init();
    tls_opts o = {.handle = h->fresh ? NULL : c};
    while (!atomic_load(h->stop)) {
        tls_resp r;
        https_do(h->port, "GET", "/health", NULL, &o, &r);
        if (r.rc == CURLE_OK && r.status == 200) {
            h->ok++;
        } else if (h->failed++ == 0) {
            snprintf(h->first_failure, sizeof h->first_failure, "%s, status %ld",
                     curl_easy_strerror(r.rc), r.status);
        }
    }
    curl_easy_cleanup(c);
    return NULL;
}

START_TEST(the_certificate_reloads_on_sighup_under_load)
{
    install("server-a");
    test_server s;
    start_tls(&s, false);
    ck_assert(serves(s.port, "strata-tls-a", "5101"));
    atomic_bool stop_flag;
    atomic_init(&stop_flag, false);
    hammer hs[4];
    memset(hs, 0, sizeof hs);
    for (int i = 0; i < 4; i++) {
        hs[i] = (hammer){.port = s.port, .fresh = i < 2, .stop = &stop_flag};
        ck_assert_int_eq(pthread_create(&hs[i].thread, NULL, hammer_run, &hs[i]), 0);
    }
    sleep_ms(200);
    static const char *const NAMES[] = {"server-b", "server-a", "server-b", "server-a", "server-b"};
    for (int round = 0; round < 5; round++) {
        bool b = strcmp(NAMES[round], "server-b") == 0;
        install(NAMES[round]);
        ck_assert_int_eq(kill(s.pid, SIGHUP), 0);
        bool seen = false;
        for (int waited = 0; waited < 5000 && !seen; waited += 20) {
            seen = serves(s.port, b ? "strata-tls-b" : "strata-tls-a", b ? "5202" : "5101");
            if (!seen)
                sleep_ms(20);
        }
        ck_assert_msg(seen, "round %d: new connections never saw %s", round, NAMES[round]);
        sleep_ms(150);
    }
    /* a reload that fails keeps the certificate in use */
    sh("cd '%s' && cp garbage.pem live-cert.pem.tmp && mv live-cert.pem.tmp live-cert.pem", dir);
    ck_assert_int_eq(kill(s.pid, SIGHUP), 0);
    sleep_ms(300);
    ck_assert(serves(s.port, "strata-tls-b", "5202"));
    /* a key that does not match the new certificate: the same */
    sh("cd '%s' && cp server-a.pem live-cert.pem.tmp && mv live-cert.pem.tmp live-cert.pem && "
       "cp server-b.key live-key.pem.tmp && mv live-key.pem.tmp live-key.pem",
       dir);
    ck_assert_int_eq(kill(s.pid, SIGHUP), 0);
    sleep_ms(300);
    ck_assert(serves(s.port, "strata-tls-b", "5202"));
    atomic_store(&stop_flag, true);
    long ok = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(hs[i].thread, NULL);
        ck_assert_msg(hs[i].failed == 0, "thread %d (%s): %ld failed, first: %s", i,
                      hs[i].fresh ? "new connections" : "keep-alive", hs[i].failed,
                      hs[i].first_failure);
        ck_assert_int_gt(hs[i].ok, 10);
        ok += hs[i].ok;
    }
    ck_assert_int_gt(ok, 200);
    tls_resp r;
    https_do(s.port, "GET", "/metrics", NULL, NULL, &r);
    ck_assert_ptr_nonnull(strstr(r.body, "\nstrata_tls_reloads_total{result=\"ok\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(r.body, "\nstrata_tls_reloads_total{result=\"failed\"} 2\n"));
    char cmd[512];
    snprintf(cmd, sizeof cmd, "grep -q 'does not match the certificate' '%s'", s.log_path);
    ck_assert_int_eq(system(cmd), 0);
    stop(&s);
}
END_TEST

/* Runs strata to its exit (it must not start); its stderr into err. */
static int run_failing(const char *const *args, char *err, size_t cap)
{
    const char *bin = getenv("STRATA_BIN");
    ck_assert_ptr_nonnull(bin);
    char errp[300], data[300];
    snprintf(errp, sizeof errp, "%s/run.err", dir);
    snprintf(data, sizeof data, "%s/run-data", dir);
    const char *argv[32] = {bin, "--listen", "127.0.0.1:0", "--data-dir", data};
    int n = 5;
    for (int i = 0; args[i]; i++)
        argv[n++] = args[i];
    char l2[512], blobs[512];
    n = strata_env_args(argv, n, 32, data, args, l2, sizeof l2, blobs, sizeof blobs, NULL);
    ck_assert_int_ge(n, 0);
    argv[n] = NULL;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        int e = open(errp, O_WRONLY | O_CREAT | O_TRUNC, 0600), o = open("/dev/null", O_WRONLY);
        dup2(e, 2);
        dup2(o, 1);
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    int status = 0, code = -1;
    for (int i = 0; i < 1000 && code < 0; i++) {
        if (waitpid(pid, &status, WNOHANG) == pid)
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        else
            sleep_ms(10);
    }
    if (code < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    FILE *f = fopen(errp, "r");
    size_t len = f ? fread(err, 1, cap - 1, f) : 0;
    err[len] = '\0';
    if (f)
        fclose(f);
    return code;
}

START_TEST(bad_files_stop_the_start_naming_the_option_and_file)
{
    char a_pem[256], a_key[256], b_key[256], garbage[256];
    snprintf(a_pem, sizeof a_pem, "%s/server-a.pem", dir);
    snprintf(a_key, sizeof a_key, "%s/server-a.key", dir);
    snprintf(b_key, sizeof b_key, "%s/server-b.key", dir);
    snprintf(garbage, sizeof garbage, "%s/garbage.pem", dir);
    const struct {
        const char *args[8];
        const char *want1, *want2;
    } cases[] = {
        {{"--tls-cert", "/nonexistent/cert.pem", "--tls-key", a_key, NULL},
         "--tls-cert /nonexistent/cert.pem",
         "No such file"},
        {{"--tls-cert", a_pem, "--tls-key", "/nonexistent/key.pem", NULL},
         "--tls-key /nonexistent/key.pem",
         "No such file"},
        {{"--tls-cert", garbage, "--tls-key", a_key, NULL}, "--tls-cert", garbage},
        {{"--tls-cert", a_pem, "--tls-key", garbage, NULL}, "--tls-key", garbage},
        {{"--tls-cert", a_pem, "--tls-key", b_key, NULL}, "does not match", b_key},
        {{"--tls-cert", a_pem, "--tls-key", a_key, "--tls-client-ca", garbage, NULL},
         "--tls-client-ca",
         garbage},
        {{"--tls-cert", a_pem, "--tls-key", a_key, "--tls-client-ca", "/nonexistent/ca.pem", NULL},
         "--tls-client-ca /nonexistent/ca.pem",
         "No such file"},
        {{"--tls-cert", a_pem, "--tls-key", dir, NULL}, "--tls-key", dir},
        {{"--tls-cert", a_pem, NULL}, "--tls-cert", "--tls-key"},
        {{"--tls-client-ca", a_pem, NULL}, "--tls-client-ca", "--tls-cert"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[2048];
        int code = run_failing(cases[i].args, err, sizeof err);
        ck_assert_msg(code == 2, "case %zu: exit %d: %s", i, code, err);
        ck_assert_msg(strstr(err, cases[i].want1) && strstr(err, cases[i].want2),
                      "case %zu: '%s' lacks '%s' or '%s'", i, err, cases[i].want1, cases[i].want2);
    }
}
END_TEST

static Suite *tls_suite(void)
{
    Suite *s = suite_create("tls");
    TCase *t = tcase_create("tls");
    tcase_set_timeout(t, 300);
    tcase_add_unchecked_fixture(t, make_certificates, remove_certificates);
    tcase_add_test(t, core_requests_over_https);
    tcase_add_test(t, a_plaintext_client_gets_no_http);
    tcase_add_test(t, client_certificates_are_required_with_a_client_ca);
    tcase_add_test(t, the_certificate_reloads_on_sighup_under_load);
    tcase_add_test(t, bad_files_stop_the_start_naming_the_option_and_file);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = run_suite(tls_suite());
    curl_global_cleanup();
    return rc;
}
