/* Blobs as files: DIR/ab/<key> (DIR/ab/cd/<key> in stores written before
 * DIR/layout existed; see blobs_fs.c), written through a temp file, fsync,
 * rename and directory fsync. */
#ifndef STRATA_BLOBS_FS_H
#define STRATA_BLOBS_FS_H

#include "blobs.h"

/* Opens the blob directory DIR, making it when missing. A new store is
 * given DIR/layout and its 256 fan-out directories; a store written before
 * layouts keeps its two levels. NULL with err set (SERR_INVALID for a bad
 * DIR or a layout this build does not know, SERR_IO or SERR_UNAVAILABLE
 * when the directory cannot be read or written). Safe to call from several
 * processes at once on one DIR: they settle on one layout. A build from
 * before DIR/layout does not read it: processes sharing DIR are upgraded
 * together. */
blob_store *blobs_fs_open(const char *dir, strata_error *err);

#endif
