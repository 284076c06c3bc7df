/* Configuration: defaults, precedence (file < env < flags), validation. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/config/config.h"
#include "../support/harness.h"

static const char *fake_env[16][2];

static const char *env_lookup(const char *name)
{
    for (int i = 0; i < 16 && fake_env[i][0]; i++)
        if (strcmp(fake_env[i][0], name) == 0)
            return fake_env[i][1];
    return NULL;
}

static void set_env(int i, const char *name, const char *value)
{
    fake_env[i][0] = name;
    fake_env[i][1] = value;
}

static int load(strata_config *cfg, strata_error *err, const char **args)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"strata";
    for (int i = 0; args && args[i]; i++)
        argv[argc++] = (char *)args[i];
    argv[argc] = NULL;
    return config_load(cfg, argc, argv, env_lookup, err);
}

static void setup(void)
{
    memset(fake_env, 0, sizeof fake_env);
}

START_TEST(defaults_need_no_option)
{
    strata_config cfg;
    strata_error err;
    ck_assert_int_eq(load(&cfg, &err, NULL), CONFIG_OK);
    ck_assert_str_eq(cfg.listen_host, "127.0.0.1");
    ck_assert_int_eq(cfg.listen_port, 8080);
    ck_assert_str_eq(cfg.data_dir, "./data");
    ck_assert_str_eq(cfg.store_url, "sqlite:./data/strata.db");
    ck_assert_str_eq(cfg.blobs_url, "file:./data/blobs");
    ck_assert_str_eq(cfg.cache_l2_url, "file:./data/cache");
    ck_assert_uint_eq(cfg.max_body, 64u << 20);
    ck_assert_uint_eq(cfg.connection_memory, 64u << 10);
    ck_assert_uint_ge(cfg.threads, 1);
    ck_assert_uint_eq(cfg.write_threads, 32);
}
END_TEST

START_TEST(flags_override_env_override_file)
{
    char path[] = "/tmp/strata-cfg-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    const char *text = "# comment\nlisten = 0.0.0.0:9000\nthreads = 3\nmax-body = 1M\n"
                       "data-dir = /srv/strata\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    set_env(0, "STRATA_CONFIG", path);
    set_env(1, "STRATA_THREADS", "5");
    set_env(2, "STRATA_MAX_BODY", "2M");
    strata_config cfg;
    strata_error err;
    const char *args[] = {"--max-body=3M", NULL};
    ck_assert_msg(load(&cfg, &err, args) == CONFIG_OK, "%s", err.detail);
    unlink(path);
    ck_assert_str_eq(cfg.listen_host, "0.0.0.0"); /* file */
    ck_assert_int_eq(cfg.listen_port, 9000);
    ck_assert_uint_eq(cfg.threads, 5);         /* env beats file */
    ck_assert_uint_eq(cfg.max_body, 3u << 20); /* flag beats env */
    ck_assert_str_eq(cfg.store_url, "sqlite:/srv/strata/strata.db");
}
END_TEST

START_TEST(explicit_backend_urls_are_kept)
{
    strata_config cfg;
    strata_error err;
    const char *args[] = {
        "--store",    "mongodb://127.0.0.1:27017/strata", "--blobs", "s3://bucket/prefix",
        "--cache-l2", "redis://127.0.0.1:6379/0",         NULL};
    ck_assert_int_eq(load(&cfg, &err, args), CONFIG_OK);
    ck_assert_str_eq(cfg.store_url, "mongodb://127.0.0.1:27017/strata");
    ck_assert_str_eq(cfg.blobs_url, "s3://bucket/prefix");
    ck_assert_str_eq(cfg.cache_l2_url, "redis://127.0.0.1:6379/0");
}
END_TEST

/* Each invalid value is refused with a message naming the option. */
static const char *const BAD[][3] = {
    {"--threads", "0", "threads"},
    {"--threads", "many", "threads"},
    {"--threads", "300", "threads"},
    {"--write-threads", "1025", "write-threads"},
    {"--write-threads", "-1", "write-threads"},
    {"--listen", "8080", "listen"},
    {"--listen", "127.0.0.1:70000", "listen"},
    {"--max-body", "12Q", "max-body"},
    {"--max-body", "10", "max-body"},
    {"--connection-memory", "4K", "connection-memory"},
    {"--connection-memory", "2M", "connection-memory"},
    {"--store", "postgres://x", "store"},
    {"--blobs", "/tmp/blobs", "blobs"},
    {"--cache-l2", "memcached://x", "cache-l2"},
    {"--log-level", "loud", "log-level"},
    {"--no-such-option", "1", "no-such-option"},
};

START_TEST(invalid_values_are_refused)
{
    strata_config cfg;
    strata_error err;
    const char *args[] = {BAD[_i][0], BAD[_i][1], NULL};
    ck_assert_int_eq(load(&cfg, &err, args), -1);
    ck_assert_msg(strstr(err.detail, BAD[_i][2]) != NULL, "message '%s' does not name %s",
                  err.detail, BAD[_i][2]);
}
END_TEST

START_TEST(invalid_env_and_file_are_refused)
{
    strata_config cfg;
    strata_error err;
    set_env(0, "STRATA_THREADS", "-1");
    ck_assert_int_eq(load(&cfg, &err, NULL), -1);
    ck_assert_ptr_nonnull(strstr(err.detail, "STRATA_THREADS"));
    setup();
    char path[] = "/tmp/strata-cfg-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "threads = 2\nbogus = 1\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    const char *args[] = {"--config", path, NULL};
    ck_assert_int_eq(load(&cfg, &err, args), -1);
    unlink(path);
    ck_assert_msg(strstr(err.detail, ":2:") && strstr(err.detail, "bogus"), "%s", err.detail);
    const char *missing[] = {"--config", "/nonexistent/strata.conf", NULL};
    ck_assert_int_eq(load(&cfg, &err, missing), -1);
}
END_TEST

START_TEST(help_and_version)
{
    strata_config cfg;
    strata_error err;
    const char *h[] = {"--help", NULL};
    ck_assert_int_eq(load(&cfg, &err, h), CONFIG_EXIT_HELP);
    const char *v[] = {"--version", NULL};
    ck_assert_int_eq(load(&cfg, &err, v), CONFIG_EXIT_VERSION);
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_print_help(f, "strata");
    fclose(f);
    const char *names[] = {"--listen",        "--data-dir",         "--store",
                           "--blobs",         "--cache-l2",         "--threads",
                           "--max-body",      "--max-decoded-body", "--config",
                           "STRATA_LISTEN",   "--auth-tokens=FILE", "--metrics-open ",
                           "--tls-cert=FILE", "--tls-key=FILE",     "--tls-client-ca=FILE",
                           "--hash-token",    "STRATA_AUTH_TOKENS"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        ck_assert_msg(strstr(text, names[i]) != NULL, "help lacks %s", names[i]);
    free(text);
}
END_TEST

START_TEST(access_control_and_tls_options)
{
    strata_config cfg;
    strata_error err;
    ck_assert_int_eq(load(&cfg, &err, NULL), CONFIG_OK);
    ck_assert_str_eq(cfg.auth_tokens, "");
    ck_assert(!cfg.metrics_open);
    ck_assert_str_eq(cfg.tls_cert, "");
    const char *args[] = {"--auth-tokens",  "/etc/strata/tokens",
                          "--metrics-open", "--tls-cert",
                          "/c.pem",         "--tls-key",
                          "/k.pem",         "--tls-client-ca",
                          "/ca.pem",        NULL};
    ck_assert_msg(load(&cfg, &err, args) == CONFIG_OK, "%s", err.detail);
    ck_assert_str_eq(cfg.auth_tokens, "/etc/strata/tokens");
    ck_assert(cfg.metrics_open);
    ck_assert_str_eq(cfg.tls_cert, "/c.pem");
    ck_assert_str_eq(cfg.tls_key, "/k.pem");
    ck_assert_str_eq(cfg.tls_client_ca, "/ca.pem");
    /* the environment spells switches as booleans */
    set_env(0, "STRATA_METRICS_OPEN", "true");
    set_env(1, "STRATA_AUTH_TOKENS", "/env/tokens");
    set_env(2, "STRATA_TLS_CERT", "/env/c.pem");
    set_env(3, "STRATA_TLS_KEY", "/env/k.pem");
    ck_assert_msg(load(&cfg, &err, NULL) == CONFIG_OK, "%s", err.detail);
    ck_assert(cfg.metrics_open);
    ck_assert_str_eq(cfg.auth_tokens, "/env/tokens");
    ck_assert_str_eq(cfg.tls_cert, "/env/c.pem");
    set_env(0, "STRATA_METRICS_OPEN", "0");
    ck_assert_int_eq(load(&cfg, &err, NULL), CONFIG_OK);
    ck_assert(!cfg.metrics_open);
    set_env(0, "STRATA_METRICS_OPEN", "yes");
    ck_assert_int_eq(load(&cfg, &err, NULL), -1);
    ck_assert_msg(strstr(err.detail, "STRATA_METRICS_OPEN") && strstr(err.detail, "metrics-open"),
                  "%s", err.detail);
    setup();
    /* and so does the config file */
    char path[] = "/tmp/strata-cfg-XXXXXX";
    int fd = mkstemp(path);
    const char *text = "metrics-open = 1\nauth-tokens = /file/tokens\n";
    ck_assert_int_eq(write(fd, text, strlen(text)), (int)strlen(text));
    close(fd);
    const char *fargs[] = {"--config", path, NULL};
    ck_assert_msg(load(&cfg, &err, fargs) == CONFIG_OK, "%s", err.detail);
    unlink(path);
    ck_assert(cfg.metrics_open);
    ck_assert_str_eq(cfg.auth_tokens, "/file/tokens");
    /* a switch takes no value as a flag */
    const char *valued[] = {"--metrics-open=1", NULL};
    ck_assert_int_eq(load(&cfg, &err, valued), -1);
    ck_assert_msg(strstr(err.detail, "--metrics-open") && strstr(err.detail, "no value"), "%s",
                  err.detail);
    const char *hash[] = {"--hash-token", NULL};
    ck_assert_int_eq(load(&cfg, &err, hash), CONFIG_EXIT_HASH_TOKEN);
}
END_TEST

/* The TLS files go together: each missing partner is named. */
static const char *const TLS_BAD[][5] = {
    {"--tls-cert", "/c.pem", NULL, NULL, "--tls-key"},
    {"--tls-key", "/k.pem", NULL, NULL, "--tls-cert"},
    {"--tls-client-ca", "/ca.pem", NULL, NULL, "--tls-cert"},
    {"--tls-client-ca", "/ca.pem", "--tls-key", "/k.pem", "--tls-cert"},
    {"--auth-tokens", "", NULL, NULL, "auth-tokens"},
};

START_TEST(tls_options_go_together)
{
    strata_config cfg;
    strata_error err;
    const char *args[] = {TLS_BAD[_i][0], TLS_BAD[_i][1], TLS_BAD[_i][2], TLS_BAD[_i][3], NULL};
    ck_assert_int_eq(load(&cfg, &err, args), -1);
    ck_assert_msg(strstr(err.detail, TLS_BAD[_i][4]) != NULL, "'%s' does not name %s", err.detail,
                  TLS_BAD[_i][4]);
}
END_TEST

START_TEST(size_parsing)
{
    uint64_t n;
    ck_assert_int_eq(config_parse_size("64M", &n), 0);
    ck_assert_uint_eq(n, 64u << 20);
    ck_assert_int_eq(config_parse_size("1gib", &n), 0);
    ck_assert_uint_eq(n, 1u << 30);
    ck_assert_int_eq(config_parse_size("512k", &n), 0);
    ck_assert_uint_eq(n, 512u << 10);
    ck_assert_int_eq(config_parse_size("-1", &n), -1);
    ck_assert_int_eq(config_parse_size("99999999999999999999G", &n), -1);
}
END_TEST

static Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *t = tcase_create("config");
    tcase_add_checked_fixture(t, setup, NULL);
    tcase_add_test(t, defaults_need_no_option);
    tcase_add_test(t, flags_override_env_override_file);
    tcase_add_test(t, explicit_backend_urls_are_kept);
    tcase_add_loop_test(t, invalid_values_are_refused, 0, sizeof BAD / sizeof BAD[0]);
    tcase_add_test(t, invalid_env_and_file_are_refused);
    tcase_add_test(t, help_and_version);
    tcase_add_test(t, access_control_and_tls_options);
    tcase_add_loop_test(t, tls_options_go_together, 0, sizeof TLS_BAD / sizeof TLS_BAD[0]);
    tcase_add_test(t, size_parsing);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(config_suite());
}
