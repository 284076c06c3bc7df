#include "tls.h"

#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../src/common/log.h"

#define PEM_FILE_MAX (1u << 20)

struct tls_creds {
    atomic_long refs;
    gnutls_certificate_credentials_t cred;
    bool client_ca;
    long long not_after; /* of the leaf certificate, Unix seconds */
    char desc[400];
};

struct tls_ctx {
    char cert_path[1024];
    char key_path[1024];
    char ca_path[1024];
    char *start_cert; /* PEM the daemon starts with */
    char *start_key;
    pthread_mutex_t lock; /* guards `current` and taking a reference to it */
    tls_creds *current;
    atomic_ullong reloads_ok;
    atomic_ullong reloads_failed;
    atomic_ullong client_refused;
};

bool tls_supported(void)
{
    return MHD_is_feature_supported(MHD_FEATURE_TLS) == MHD_YES;
}

const char *tls_priorities(void)
{
    return "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2";
}

static void wipe_free(char *s)
{
    if (s == NULL)
        return;
    gnutls_memset(s, 0, strlen(s));
    free(s);
}

/* Reads a whole PEM file, NUL-terminated. */
static char *read_pem(const char *opt, const char *path, size_t *len, strata_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        serr_set(err, SERR_INVALID, "--%s %s: %s", opt, path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(PEM_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(f);
        serr_set(err, SERR_NOMEM, "out of memory reading %s", path);
        return NULL;
    }
    size_t n = fread(buf, 1, PEM_FILE_MAX + 1, f);
    int bad = ferror(f);
    fclose(f);
    const char *why = bad                            ? "read error (is it a directory?)"
                      : n > PEM_FILE_MAX             ? "larger than 1 MiB"
                      : n == 0                       ? "empty"
                      : memchr(buf, '\0', n) != NULL ? "not PEM text (it holds NUL bytes)"
                                                     : NULL;
    if (why != NULL) {
        serr_set(err, SERR_INVALID, "--%s %s: %s", opt, path, why);
        gnutls_memset(buf, 0, n);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void describe_cert(gnutls_x509_crt_t crt, tls_creds *c)
{
    gnutls_datum_t dn = {NULL, 0};
    unsigned char serial[64];
    size_t slen = sizeof serial;
    char hex[2 * sizeof serial + 1] = "?";
    if (gnutls_x509_crt_get_serial(crt, serial, &slen) == 0) {
        for (size_t i = 0; i < slen; i++)
            snprintf(hex + 2 * i, 3, "%02x", serial[i]);
    }
    time_t until = gnutls_x509_crt_get_expiration_time(crt);
    c->not_after = (long long)until;
    struct tm tm;
    char when[32] = "?";
    if (until != (time_t)-1 && gmtime_r(&until, &tm) != NULL)
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int rc = gnutls_x509_crt_get_dn3(crt, &dn, 0);
    snprintf(c->desc, sizeof c->desc, "subject %.200s, serial %.64s, valid until %.31s",
             rc == 0 && dn.data ? (const char *)dn.data : "?", hex, when);
    gnutls_free(dn.data);
}

/* Client certificates refused during handshakes. GnuTLS's verify
 * callback has no user pointer, so this count is per process (a process
 * runs one server). */
static atomic_ullong handshake_refused;

/* The handshake's check of a client certificate (with client CAs only):
 * a certificate that does not verify, or none, ends the handshake. */
static int verify_during_handshake(gnutls_session_t session)
{
    char detail[160];
    if (tls_verify_client(NULL, session, detail, sizeof detail) != 0) {
        atomic_fetch_add(&handshake_refused, 1);
        slog_info("TLS: client certificate refused in the handshake: %s", detail);
        return -1;
    }
    return 0;
}

static void creds_free(tls_creds *c)
{
    if (c == NULL)
        return;
    if (c->cred)
        gnutls_certificate_free_credentials(c->cred);
    free(c);
}

static tls_creds *creds_load(const tls_ctx *t, char **cert_out, char **key_out, strata_error *err)
{
    size_t clen = 0, klen = 0, alen = 0;
    char *cert = NULL, *key = NULL, *ca = NULL;
    gnutls_x509_crt_t *chain = NULL;
    unsigned nchain = 0;
    gnutls_x509_privkey_t pk = NULL;
    tls_creds *c = calloc(1, sizeof *c);
    if (c == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    atomic_init(&c->refs, 1);
    if ((cert = read_pem("tls-cert", t->cert_path, &clen, err)) == NULL ||
        (key = read_pem("tls-key", t->key_path, &klen, err)) == NULL ||
        (t->ca_path[0] && (ca = read_pem("tls-client-ca", t->ca_path, &alen, err)) == NULL))
        goto fail;

    gnutls_datum_t d = {(unsigned char *)cert, (unsigned)clen};
    int rc = gnutls_x509_crt_list_import2(&chain, &nchain, &d, GNUTLS_X509_FMT_PEM,
                                          GNUTLS_X509_CRT_LIST_FAIL_IF_UNSORTED);
    if (rc < 0 || nchain == 0) {
        serr_set(err, SERR_INVALID,
                 "--tls-cert %s: not a PEM certificate chain, leaf first (GnuTLS: %s)",
                 t->cert_path, rc < 0 ? gnutls_strerror(rc) : "no certificate");
        goto fail;
    }
    describe_cert(chain[0], c);
    d = (gnutls_datum_t){(unsigned char *)key, (unsigned)klen};
    if ((rc = gnutls_x509_privkey_init(&pk)) < 0 ||
        (rc = gnutls_x509_privkey_import(pk, &d, GNUTLS_X509_FMT_PEM)) < 0) {
        serr_set(err, SERR_INVALID, "--tls-key %s: not an unencrypted PEM private key (GnuTLS: %s)",
                 t->key_path, gnutls_strerror(rc));
        goto fail;
    }
    if ((rc = gnutls_certificate_allocate_credentials(&c->cred)) < 0) {
        serr_set(err, SERR_NOMEM, "cannot allocate TLS credentials: %s", gnutls_strerror(rc));
        goto fail;
    }
    rc = gnutls_certificate_set_x509_key(c->cred, chain, nchain, pk);
    if (rc < 0) {
        if (rc == GNUTLS_E_CERTIFICATE_KEY_MISMATCH)
            serr_set(err, SERR_INVALID,
                     "--tls-key %s does not match the certificate in --tls-cert %s", t->key_path,
                     t->cert_path);
        else
            serr_set(err, SERR_INVALID, "--tls-key %s with --tls-cert %s: %s", t->key_path,
                     t->cert_path, gnutls_strerror(rc));
        goto fail;
    }
    if (ca != NULL) {
        d = (gnutls_datum_t){(unsigned char *)ca, (unsigned)alen};
        rc = gnutls_certificate_set_x509_trust_mem(c->cred, &d, GNUTLS_X509_FMT_PEM);
        if (rc <= 0) {
            serr_set(err, SERR_INVALID, "--tls-client-ca %s: no PEM CA certificate in it%s%s",
                     t->ca_path, rc < 0 ? " (GnuTLS: " : "", rc < 0 ? gnutls_strerror(rc) : "");
            if (rc < 0)
                strncat(err->detail, ")", sizeof err->detail - strlen(err->detail) - 1);
            goto fail;
        }
        gnutls_certificate_set_verify_function(c->cred, verify_during_handshake);
        c->client_ca = true;
    }
    for (unsigned i = 0; i < nchain; i++)
        gnutls_x509_crt_deinit(chain[i]);
    gnutls_free(chain);
    gnutls_x509_privkey_deinit(pk);
    free(ca);
    if (cert_out != NULL && key_out != NULL) {
        *cert_out = cert;
        *key_out = key;
    } else {
        free(cert);
        wipe_free(key);
    }
    return c;
fail:
    for (unsigned i = 0; i < nchain; i++)
        gnutls_x509_crt_deinit(chain[i]);
    gnutls_free(chain);
    if (pk)
        gnutls_x509_privkey_deinit(pk);
    free(cert);
    wipe_free(key);
    free(ca);
    creds_free(c);
    return NULL;
}

static int copy_path(char *dst, size_t cap, const char *opt, const char *path, strata_error *err)
{
    if (path == NULL)
        path = "";
    if (strlen(path) >= cap)
        return serr_set(err, SERR_INVALID, "--%s: path too long", opt);
    snprintf(dst, cap, "%s", path);
    return 0;
}

tls_ctx *tls_open(const char *cert_path, const char *key_path, const char *client_ca_path,
                  strata_error *err)
{
    if (!tls_supported()) {
        serr_set(err, SERR_INVALID,
                 "--tls-cert: this libmicrohttpd was built without TLS (GnuTLS) support");
        return NULL;
    }
    tls_ctx *t = calloc(1, sizeof *t);
    if (t == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    if (copy_path(t->cert_path, sizeof t->cert_path, "tls-cert", cert_path, err) != 0 ||
        copy_path(t->key_path, sizeof t->key_path, "tls-key", key_path, err) != 0 ||
        copy_path(t->ca_path, sizeof t->ca_path, "tls-client-ca", client_ca_path, err) != 0) {
        free(t);
        return NULL;
    }
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        serr_set(err, SERR_NOMEM, "cannot create a mutex");
        free(t);
        return NULL;
    }
    t->current = creds_load(t, &t->start_cert, &t->start_key, err);
    if (t->current == NULL) {
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    return t;
}

void tls_close(tls_ctx *t)
{
    if (t == NULL)
        return;
    tls_release(t->current);
    free(t->start_cert);
    wipe_free(t->start_key);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

int tls_reload(tls_ctx *t, strata_error *err)
{
    tls_creds *c = creds_load(t, NULL, NULL, err);
    if (c == NULL) {
        atomic_fetch_add(&t->reloads_failed, 1);
        return -1;
    }
    pthread_mutex_lock(&t->lock);
    tls_creds *old = t->current;
    t->current = c;
    pthread_mutex_unlock(&t->lock);
    tls_release(old);
    atomic_fetch_add(&t->reloads_ok, 1);
    return 0;
}

const char *tls_start_cert_pem(const tls_ctx *t)
{
    return t->start_cert;
}

const char *tls_start_key_pem(const tls_ctx *t)
{
    return t->start_key;
}

bool tls_requires_client_cert(const tls_ctx *t)
{
    return t != NULL && t->ca_path[0] != '\0';
}

tls_creds *tls_acquire(tls_ctx *t)
{
    pthread_mutex_lock(&t->lock);
    tls_creds *c = t->current;
    atomic_fetch_add(&c->refs, 1);
    pthread_mutex_unlock(&t->lock);
    return c;
}

void tls_release(tls_creds *c)
{
    if (c != NULL && atomic_fetch_sub(&c->refs, 1) == 1)
        creds_free(c);
}

void tls_describe(tls_ctx *t, char *out, size_t cap)
{
    tls_creds *c = tls_acquire(t);
    snprintf(out, cap, "%s", c->desc);
    tls_release(c);
}

int tls_attach(tls_creds *c, void *session, strata_error *err)
{
    gnutls_session_t s = session;
    int rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c->cred);
    if (rc < 0)
        return serr_set(err, SERR_NOMEM, "cannot set TLS credentials: %s", gnutls_strerror(rc));
    if (c->client_ca)
        gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUEST);
    return 0;
}

int tls_verify_client(tls_ctx *t, void *session, char *detail, size_t cap)
{
    gnutls_session_t s = session;
    unsigned n = 0;
    const char *why = NULL;
    char buf[160];
    if (gnutls_certificate_type_get(s) != GNUTLS_CRT_X509 ||
        gnutls_certificate_get_peers(s, &n) == NULL || n == 0) {
        why = "no client certificate was presented";
    } else {
        gnutls_typed_vdata_st purpose = {
            .type = GNUTLS_DT_KEY_PURPOSE_OID, .data = (void *)GNUTLS_KP_TLS_WWW_CLIENT, .size = 0};
        unsigned status = 0;
        int rc = gnutls_certificate_verify_peers(s, &purpose, 1, &status);
        if (rc < 0) {
            snprintf(buf, sizeof buf, "the client certificate cannot be verified: %s",
                     gnutls_strerror(rc));
            why = buf;
        } else if (status != 0) {
            gnutls_datum_t text = {NULL, 0};
            if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) ==
                    0 &&
                text.data != NULL)
                snprintf(buf, sizeof buf, "the client certificate is not accepted: %s",
                         (const char *)text.data);
            else
                snprintf(buf, sizeof buf, "the client certificate is not accepted");
            gnutls_free(text.data);
            why = buf;
        }
    }
    if (why == NULL)
        return 0;
    if (detail != NULL && cap > 0) {
        snprintf(detail, cap, "%s", why);
        size_t end = strlen(detail);
        while (end > 0 && (detail[end - 1] == ' ' || detail[end - 1] == '\n'))
            detail[--end] = '\0';
    }
    if (t != NULL)
        atomic_fetch_add(&t->client_refused, 1);
    return -1;
}

int tls_metrics_render(tls_ctx *t, strata_buf *out, strata_error *err)
{
    tls_creds *c = tls_acquire(t);
    long long not_after = c->not_after;
    tls_release(c);
    char text[1024];
    int n = snprintf(
        text, sizeof text,
        "# HELP strata_tls_reloads_total Certificate reloads (SIGHUP) by result.\n"
        "# TYPE strata_tls_reloads_total counter\n"
        "strata_tls_reloads_total{result=\"ok\"} %llu\n"
        "strata_tls_reloads_total{result=\"failed\"} %llu\n"
        "# HELP strata_tls_cert_not_after_seconds When the served certificate expires (Unix "
        "time).\n"
        "# TYPE strata_tls_cert_not_after_seconds gauge\n"
        "strata_tls_cert_not_after_seconds %lld\n"
        "# HELP strata_tls_client_refused_total Connections refused for a missing or invalid "
        "client certificate (in the handshake, or before their first request).\n"
        "# TYPE strata_tls_client_refused_total counter\n"
        "strata_tls_client_refused_total %llu\n",
        (unsigned long long)atomic_load(&t->reloads_ok),
        (unsigned long long)atomic_load(&t->reloads_failed), not_after,
        (unsigned long long)(atomic_load(&t->client_refused) + atomic_load(&handshake_refused)));
    if (n < 0 || (size_t)n >= sizeof text)
        return serr_set(err, SERR_INTERNAL, "TLS metrics formatting failed");
    return sbuf_append(out, text, (size_t)n, err);
}
