/* Filesystem helpers for crash-safe writes: temp file, fsync, rename,
 * directory fsync. */
#ifndef STRATA_FSUTIL_H
#define STRATA_FSUTIL_H

#include <stddef.h>

#include "buf.h"
#include "error.h"

/* Creates a directory and its parents (mode 0755); existing is fine. */
int fs_mkdir_p(const char *path, strata_error *err);
/* Data of at least FS_DIRECT_MIN bytes at an FS_DIRECT_ALIGN-aligned
 * address (sbuf_reserve_aligned) is written by fs_write_atomic around the
 * page cache (O_DIRECT), where the file system allows it. */
#define FS_DIRECT_ALIGN 4096u
#define FS_DIRECT_MIN   (256u << 10)

/* Writes `data` to `path` atomically: a reader sees the old file or the
 * whole new one, and after return the new one survives a crash. The temp
 * file is created beside the target (same filesystem), named path
 * FS_STAGED_INFIX and six random characters; a crash can leave it. */
#define FS_STAGED_INFIX ".tmp."
int fs_write_atomic(const char *path, const void *data, size_t len, strata_error *err);
/* As fs_write_atomic, but an existing path is left as it is (and is
 * success): of several processes writing one path at once, the first
 * wins. On a file system without hard links, the last wins instead. */
int fs_write_once(const char *path, const void *data, size_t len, strata_error *err);
/* Reads a whole file, refusing files larger than max_len. SERR_NOT_FOUND
 * when it does not exist. */
int fs_read_file(const char *path, size_t max_len, strata_buf *out, strata_error *err);
/* Writes all of data, retrying short writes and EINTR; -1 with errno set. */
int fs_write_all(int fd, const void *data, size_t len);
/* The error kind for a failed write: a full disk or quota is
 * SERR_UNAVAILABLE (503: retry once space is freed), anything else SERR_IO. */
enum strata_err_kind fs_errno_kind(int e);
/* fsyncs a directory so that a rename or unlink in it is durable. */
int fs_sync_dir(const char *dir, strata_error *err);

#endif
