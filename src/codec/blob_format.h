/* The self-describing stored-blob format: a fixed 96-byte header followed
 * by the payload (raw or compressed bytes). The header names the codec,
 * the raw and stored sizes, the SHA-256 of the raw content (its address)
 * and of the payload, and a CRC of itself, so any blob can be verified
 * and decoded on its own, with nothing from the store.
 *
 *   0  magic "STRB"      4  version (1)   5  codec   6  reserved (2)
 *   8  raw size (u64 LE)                 16  payload size (u64 LE)
 *  24  SHA-256 of raw content            56  SHA-256 of payload
 *  88  CRC-32 of bytes 0..87 (LE)        92  reserved (4)
 */
#ifndef STRATA_BLOB_FORMAT_H
#define STRATA_BLOB_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/error.h"
#include "compress.h"
#include "sha256.h"

#define BLOB_HEADER_SIZE    96
#define BLOB_FORMAT_VERSION 1

typedef struct blob_header {
    enum scodec codec;
    uint64_t raw_size;
    uint64_t payload_size;
    unsigned char raw_sha256[SHA256_LEN];
    unsigned char payload_sha256[SHA256_LEN];
} blob_header;

void blob_header_encode(const blob_header *h, unsigned char out[BLOB_HEADER_SIZE]);
/* Checks magic, version, codec and CRC. */
int blob_header_decode(const unsigned char *in, size_t len, blob_header *h, strata_error *err);

/* Builds header + payload from raw bytes, compressing with `codec` unless
 * compression does not pay (then the payload is the raw bytes). */
int blob_encode(const void *raw, size_t raw_len, enum scodec codec, strata_buf *out, blob_header *h,
                strata_error *err);
/* blob_encode for a caller that hashed the raw bytes already (as they
 * arrived): raw_sha256 is trusted to be theirs, so they are read once, by
 * the compressor. Errors and outputs as for blob_encode. */
int blob_encode_hashed(const void *raw, size_t raw_len, const unsigned char raw_sha256[SHA256_LEN],
                       enum scodec codec, strata_buf *out, blob_header *h, strata_error *err);

/* Frames raw bytes as a blob where they lie: writes the header of an
 * uncompressed blob of raw_len bytes hashing to raw_sha256 (trusted) into
 * head, the BLOB_HEADER_SIZE bytes right before them, so that the blob is
 * head[0, BLOB_HEADER_SIZE + raw_len) with no copy of the bytes. Fills h.
 * Cannot fail. */
void blob_frame_raw_in_place(unsigned char head[BLOB_HEADER_SIZE], uint64_t raw_len,
                             const unsigned char raw_sha256[SHA256_LEN], blob_header *h);

/* Builds header + payload from bytes a client already compressed; the
 * caller has decoded them once to learn raw_size and raw_sha256. */
int blob_encode_precompressed(enum scodec codec, const void *payload, size_t payload_len,
                              uint64_t raw_size, const unsigned char raw_sha256[SHA256_LEN],
                              strata_buf *out, blob_header *h, strata_error *err);

/* Checks the payload against the header's size and payload hash (cheap:
 * no decompression). SERR_CORRUPT on mismatch. */
int blob_verify_payload(const blob_header *h, const void *payload, size_t len, strata_error *err);

/* Full check and decode of a whole stored blob: header, payload hash,
 * decompression (bounded by max_raw) and the raw hash. */
int blob_decode(const void *blob, size_t len, size_t max_raw, strata_buf *raw, blob_header *h,
                strata_error *err);

#endif
