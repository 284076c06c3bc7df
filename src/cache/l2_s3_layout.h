/* The object layout of the S3 L2 (see l2_s3.h): object names, the state
 * object's body header and its x-amz-meta fields. Pure functions of
 * their arguments, safe from any thread; nothing here makes a request.
 *
 * Body of a state object v/NS/KEY:
 *   blank: "SL2B" g(8, big-endian) klen(2, big-endian) key
 *   value: "SL2V" g(8) klen(2) key codec(1) data
 * so a blank is L2S3_BLANK_HDR + klen bytes and a value at least one
 * more: a listing (sizes only) tells them apart once the key's length is
 * known from the name. g in the body makes every state's ETag its own.
 *
 * Metadata: "g" the generation (16 hex digits, also in the body); on a
 * value "m" = "WID RAW EXPIRES EXPIRE_AT" (write id in hex; raw size,
 * the caller's expires_ms and the expiry instant in wall ms, 0 for none,
 * in decimal) and "t" the content type in hex. */
#ifndef STRATA_L2_S3_LAYOUT_H
#define STRATA_L2_S3_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../blobs/s3_client.h"
#include "l2.h"

#define L2S3_ENC_MAX    200 /* longest written form of a key before it is hashed */
#define L2S3_NS_ENC_MAX (3 * L2_NS_MAX)
#define L2S3_NAME_MAX   512 /* longest object name made here (S3_KEY_MAX is 900) */
#define L2S3_BLANK_HDR  14
#define L2S3_VALUE_HDR  15
#define L2S3_FORMAT     "format"
#define L2S3_FORMAT_REC "strata-l2-s3 1\n"

/* The written form of a namespace (%XX for bytes outside [A-Za-z0-9_-])
 * into out (L2S3_NS_ENC_MAX + 1). 0, or -1 for a namespace longer than
 * L2_NS_MAX or empty. */
int l2s3_ns_part(const char *ns, char *out);

/* The name part of a key into out (L2S3_ENC_MAX + 1): its written form,
 * or "~LEN-SHA256" when that would pass L2S3_ENC_MAX bytes. 0, or -1 for
 * a key longer than L2_KEY_MAX. */
int l2s3_key_part(const char *key, char *out);

/* Names, into out (L2S3_NAME_MAX). kind: 'v' the state object, 'a' its
 * access marker. 0, or -1 (SERR_INVALID in err) for a namespace or key
 * too long. */
int l2s3_state_name(const char *ns, const char *key, char kind, char *out, strata_error *err);
int l2s3_epoch_name(const char *ns, char *out, strata_error *err);
/* The fences' directory of a key ("f/NS/KEY/"), and one fence's name. */
int l2s3_fence_dir(const char *ns, const char *key, char *out, strata_error *err);
void l2s3_fence_name(const char *dir, uint64_t id, char *out);
/* The id of a fence object named name under dir; false for anything else. */
bool l2s3_fence_id(const char *dir, const char *name, uint64_t *id);

/* What a listed name under v/ says. */
typedef struct l2s3_listed {
    char ns[L2_NS_MAX + 1];
    char key[L2_KEY_MAX + 1]; /* empty for a hashed name: only the body holds it */
    size_t klen;              /* the key's length (hashed names carry it) */
    bool hashed;
    bool marker; /* KEY!a */
} l2s3_listed;

/* Parses a name "v/NS/KEYPART[!a]" (relative to the client's prefix).
 * -1 for a name of no such form (not made here). */
int l2s3_parse_name(const char *name, l2s3_listed *out);

/* A listed state object of size bytes with a key of klen bytes: 1 a
 * value (its data length in *data_len), 0 a blank, -1 neither. */
int l2s3_sized(uint64_t size, size_t klen, uint64_t *data_len);

/* Writes the body header of a state object into out (L2S3_VALUE_HDR +
 * L2_KEY_MAX bytes); kind 'B' or 'V' (codec used only for 'V'). Returns
 * its length. */
size_t l2s3_header(unsigned char *out, char kind, uint64_t g, const char *key, uint8_t codec);

/* Parses the header of body[0, len): 0 with *kind, *g, the key (not
 * NUL-terminated) and, for a value, *codec and *hdr_len (where the data
 * starts); -1 when it is not one. */
typedef struct l2s3_header_view {
    char kind;
    uint64_t g;
    const char *key;
    size_t klen;
    uint8_t codec;
    size_t hdr_len;
} l2s3_header_view;
int l2s3_parse_header(const unsigned char *body, size_t len, l2s3_header_view *out);

/* The metadata value named name in info, or NULL. */
const char *l2s3_meta(const s3_object_info *info, const char *name);
/* 16 hex digits <-> a 64-bit value; parse is -1 on anything else. */
void l2s3_hex64(uint64_t v, char out[17]);
int l2s3_parse_hex64(const char *s, uint64_t *out);

/* A random 64-bit value, never 0. -1 (SERR_IO) when the kernel gives
 * none. */
int l2s3_random(uint64_t *out, strata_error *err);

#endif
