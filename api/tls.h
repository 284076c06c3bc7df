/* TLS for the HTTP server, on libmicrohttpd's GnuTLS support.
 *
 * The certificate chain, its key and (optionally) the CAs that client
 * certificates must chain to are read from PEM files into one immutable,
 * reference-counted credentials set. libmicrohttpd 0.9.75 cannot change a
 * running daemon's credentials, so the server attaches the current set to
 * every new TLS session itself (when the connection starts, before the
 * handshake) and holds a reference until the connection is gone. A reload
 * (SIGHUP) reads the files into a new set and swaps it in: new connections
 * get the new certificate, open ones keep the one they shook hands with.
 * A reload that fails (a missing file, a key that does not match) keeps
 * the old set.
 *
 * With client CAs, a session asks for a client certificate and the
 * handshake fails unless one is presented that verifies (it chains to one
 * of the CAs, is within its dates, and allows TLS WWW client use when it
 * names purposes). The server checks again before serving a connection's
 * first request and refuses with 403 and closes if the check fails there
 * (a session the credentials could not be attached to).
 *
 * Sessions are passed as void * (a gnutls_session_t) so that users need
 * not include GnuTLS. */
#ifndef STRATA_TLS_H
#define STRATA_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "../src/common/buf.h"
#include "../src/common/error.h"

typedef struct tls_ctx tls_ctx;
typedef struct tls_creds tls_creds;

/* Whether this libmicrohttpd was built with TLS. */
bool tls_supported(void);

/* Reads the files (client_ca may be NULL or ""). NULL with err set, its
 * detail naming the option and the file: SERR_INVALID when a file cannot
 * be read, holds no PEM certificate or key, the key is encrypted or does
 * not match the certificate, or libmicrohttpd lacks TLS; SERR_NOMEM. */
tls_ctx *tls_open(const char *cert_path, const char *key_path, const char *client_ca_path,
                  strata_error *err);
/* Only once no connection uses it (after the daemon stopped). */
void tls_close(tls_ctx *t);

/* Re-reads the same files and swaps the new set in; -1 with err set (as
 * tls_open) leaves the current set. Thread-safe. */
int tls_reload(tls_ctx *t, strata_error *err);

/* The PEM text the daemon starts with (libmicrohttpd needs a certificate
 * and key of its own); valid until tls_close. */
const char *tls_start_cert_pem(const tls_ctx *t);
const char *tls_start_key_pem(const tls_ctx *t);
/* The GnuTLS priority string the daemon uses (TLS 1.2 and 1.3 only). */
const char *tls_priorities(void);
bool tls_requires_client_cert(const tls_ctx *t);

/* "subject ..., serial ..., valid until ..." of the current certificate. */
void tls_describe(tls_ctx *t, char *out, size_t cap);

/* A reference to the current set; never NULL. Thread-safe. */
tls_creds *tls_acquire(tls_ctx *t);
/* Drops a reference (NULL is a no-op); the last one frees the set. */
void tls_release(tls_creds *c);

/* Makes a new server session (not yet handshaking) use c: its certificate,
 * and with client CAs, a requested client certificate checked in the
 * handshake. The
 * caller keeps its reference to c until the session is gone. -1 with err
 * set if GnuTLS refuses (out of memory): the session keeps the daemon's
 * start-up certificate and asks for no client certificate. */
int tls_attach(tls_creds *c, void *session, strata_error *err);

/* Verifies the client certificate of an established session against the
 * CAs of the credentials it uses. 0 when valid; -1 with a reason in detail
 * (no certificate, an unknown issuer, expired, wrong purpose). Counts
 * refusals. Thread-safe. */
int tls_verify_client(tls_ctx *t, void *session, char *detail, size_t cap);

/* Appends strata_tls_reloads_total{result}, strata_tls_cert_not_after_seconds
 * and strata_tls_client_refused_total. -1 with err set when the buffer
 * cannot grow. Thread-safe. */
int tls_metrics_render(tls_ctx *t, strata_buf *out, strata_error *err);

#endif
