/* Blobs as files: DIR/ab/cd/<key>, written through a temp file, fsync,
 * rename and directory fsync. */
#ifndef STRATA_BLOBS_FS_H
#define STRATA_BLOBS_FS_H

#include "blobs.h"

blob_store *blobs_fs_open(const char *dir, strata_error *err);

#endif
