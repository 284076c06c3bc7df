/* Which codec a blob is stored with (the design documents' policy):
 * under 1 KiB none; semantic never (dense vectors do not compress);
 * realtime and search lz4 (decode speed first); everything else zstd.
 * After compressing, keep the raw bytes unless compression pays. */
#ifndef STRATA_POLICY_H
#define STRATA_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "compress.h"

#define POLICY_MIN_COMPRESS_BYTES 1024

/* `profile` is a resource type or cache namespace name ("semantic",
 * "search", "realtime", "corpus", ...); NULL means the default. */
enum scodec policy_codec_for(const char *profile, size_t raw_size);

/* True when compressed output is worth keeping: below 95% of raw. */
bool policy_compression_pays(size_t raw_size, size_t compressed_size);

#endif
