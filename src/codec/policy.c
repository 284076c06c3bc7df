#include "policy.h"

#include <string.h>

enum scodec policy_codec_for(const char *profile, size_t raw_size)
{
    if (raw_size < POLICY_MIN_COMPRESS_BYTES)
        return SCODEC_NONE;
    if (profile != NULL) {
        if (strcmp(profile, "semantic") == 0)
            return SCODEC_NONE;
        if (strcmp(profile, "realtime") == 0 || strcmp(profile, "search") == 0)
            return SCODEC_LZ4;
    }
    return SCODEC_ZSTD;
}

bool policy_compression_pays(size_t raw_size, size_t compressed_size)
{
    /* compressed < 0.95 * raw, in integers: 20 * c < 19 * r */
    if (raw_size == 0)
        return false;
    unsigned long long c = compressed_size, r = raw_size;
    return 20 * c < 19 * r;
}
