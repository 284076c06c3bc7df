#include "fsutil.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdir_p(const char *path, strata_error *err)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof tmp)
        return serr_set(err, SERR_INVALID, "bad directory path '%s'", path);
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return serr_set(err, SERR_IO, "cannot create %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return serr_set(err, SERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    return 0;
}

int fs_sync_dir(const char *dir, strata_error *err)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return serr_set(err, SERR_IO, "cannot open directory %s: %s", dir, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0)
        return serr_set(err, SERR_IO, "cannot sync directory %s: %s", dir, strerror(e));
    return 0;
}

enum strata_err_kind fs_errno_kind(int e)
{
    return e == ENOSPC || e == EDQUOT ? SERR_UNAVAILABLE : SERR_IO;
}

int fs_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Large page-aligned contents skip the page cache (O_DIRECT): copying
 * them into it is most of what a large write costs. The unaligned tail
 * goes through the page cache; so does everything where the file system
 * refuses O_DIRECT. The fsync that follows makes either durable. -1 with
 * errno set. */
static int write_contents(int fd, const unsigned char *data, size_t len)
{
    size_t done = 0;
    int fl;
    if (len >= FS_DIRECT_MIN && ((uintptr_t)data & (FS_DIRECT_ALIGN - 1)) == 0 &&
        (fl = fcntl(fd, F_GETFL)) >= 0 && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0) {
        size_t head = len & ~(size_t)(FS_DIRECT_ALIGN - 1);
        int e = 0;
        while (done < head) {
            ssize_t w = pwrite(fd, data + done, head - done, (off_t)done);
            if (w > 0) {
                done += (size_t)w;
            } else if (w < 0 && errno == EINTR) {
                continue;
            } else { /* EINVAL: a larger alignment needed; the rest is buffered */
                e = w < 0 && errno != EINVAL ? errno : 0;
                break;
            }
        }
        if (fcntl(fd, F_SETFL, fl) != 0)
            return -1;
        if (e != 0) {
            errno = e;
            return -1;
        }
        if (lseek(fd, (off_t)done, SEEK_SET) < 0)
            return -1;
    }
    return fs_write_all(fd, data + done, len - done);
}

/* Puts the staged file tmp at path: by rename when replacing; else by
 * link, where a path already there wins (and counts as placed), and where
 * the file system has no hard links by rename, replacing after all. False
 * with errno set. */
static bool place_staged(const char *tmp, const char *path, bool replace)
{
    if (replace)
        return rename(tmp, path) == 0;
    if (link(tmp, path) == 0 || errno == EEXIST)
        return true;
    return (errno == EPERM || errno == ENOTSUP || errno == ENOSYS) && rename(tmp, path) == 0;
}

/* path's directory, into dir (cap bytes). */
static void parent_dir(const char *path, char *dir, size_t cap)
{
    snprintf(dir, cap, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == NULL)
        snprintf(dir, cap, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
}

/* fs_write_atomic and fs_write_once: the new file is staged beside path,
 * synced, put in place (place_staged), and its directory synced. */
static int write_staged(const char *path, const void *data, size_t len, bool replace,
                        strata_error *err)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s" FS_STAGED_INFIX "XXXXXX", path) >= (int)sizeof tmp)
        return serr_set(err, SERR_INVALID, "path too long: %s", path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return serr_set(err, fs_errno_kind(errno), "cannot create a temp file for %s: %s", path,
                        strerror(errno));
    if (write_contents(fd, data, len) != 0 || fsync(fd) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        return serr_set(err, fs_errno_kind(e), "cannot write %s: %s", path, strerror(e));
    }
    if (close(fd) != 0 || !place_staged(tmp, path, replace)) {
        int e = errno;
        unlink(tmp);
        return serr_set(err, fs_errno_kind(e), "cannot move %s into place: %s", path, strerror(e));
    }
    if (!replace)
        unlink(tmp); /* linked (or gone after a rename) */
    parent_dir(path, dir, sizeof dir);
    return fs_sync_dir(dir, err);
}

int fs_write_atomic(const char *path, const void *data, size_t len, strata_error *err)
{
    return write_staged(path, data, len, true, err);
}

int fs_write_once(const char *path, const void *data, size_t len, strata_error *err)
{
    return write_staged(path, data, len, false, err);
}

int fs_read_file(const char *path, size_t max_len, strata_buf *out, strata_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return serr_set(err, SERR_NOT_FOUND, "no file %s", path);
        return serr_set(err, SERR_IO, "cannot open %s: %s", path, strerror(errno));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size > max_len) {
        close(fd);
        return serr_set(err, SERR_TOO_LARGE, "%s is larger than %zu bytes", path, max_len);
    }
    size_t at = out->len;
    if (sbuf_reserve(out, (size_t)st.st_size, err) != 0) {
        close(fd);
        return -1;
    }
    size_t want = (size_t)st.st_size;
    while (want > 0) {
        ssize_t r = read(fd, out->data + out->len, want);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            out->len = at;
            return serr_set(err, SERR_IO, "cannot read %s: %s", path,
                            r == 0 ? "file shrank while reading" : strerror(e));
        }
        out->len += (size_t)r;
        want -= (size_t)r;
    }
    close(fd);
    return 0;
}
