#include "blobs_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/fsutil.h"

typedef struct fs_blobs {
    blob_store base;
    char dir[PATH_MAX - 80];
} fs_blobs;

/* DIR/ab/cd/abcd...: two levels of 256 fan-out keep directories small. */
static int blob_path(const fs_blobs *b, const char *key, char *out, size_t cap, bool make_dirs,
                     strata_error *err)
{
    if (!blob_key_valid(key))
        return serr_set(err, SERR_INVALID, "bad blob key");
    char d[PATH_MAX];
    snprintf(d, sizeof d, "%s/%.2s/%.2s", b->dir, key, key + 2);
    if (make_dirs && fs_mkdir_p(d, err) != 0)
        return -1;
    if (snprintf(out, cap, "%s/%s", d, key) >= (int)cap)
        return serr_set(err, SERR_INVALID, "blob path too long");
    return 0;
}

static int fs_exists(blob_store *base, const char *key, bool *out, strata_error *err)
{
    char path[PATH_MAX];
    if (blob_path((fs_blobs *)base, key, path, sizeof path, false, err) != 0)
        return -1;
    struct stat st;
    if (stat(path, &st) == 0) {
        *out = true;
        return 0;
    }
    if (errno != ENOENT)
        return serr_set(err, SERR_IO, "cannot stat blob %s: %s", key, strerror(errno));
    *out = false;
    return 0;
}

static int fs_head(blob_store *base, const char *key, blob_header *h, strata_error *err)
{
    char path[PATH_MAX];
    if (blob_path((fs_blobs *)base, key, path, sizeof path, false, err) != 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return serr_set(err, errno == ENOENT ? SERR_NOT_FOUND : SERR_IO, "cannot open blob %s: %s",
                        key, strerror(errno));
    unsigned char buf[BLOB_HEADER_SIZE];
    ssize_t n = pread(fd, buf, sizeof buf, 0);
    close(fd);
    if (n < 0)
        return serr_set(err, SERR_IO, "cannot read blob %s: %s", key, strerror(errno));
    return blob_header_decode(buf, (size_t)n, h, err);
}

static int fs_replace(blob_store *base, const char *key, const void *blob, size_t len,
                      strata_error *err)
{
    char path[PATH_MAX];
    if (blob_path((fs_blobs *)base, key, path, sizeof path, true, err) != 0)
        return -1;
    return fs_write_atomic(path, blob, len, err);
}

static int fs_put(blob_store *base, const char *key, const void *blob, size_t len,
                  strata_error *err)
{
    bool exists = false;
    if (fs_exists(base, key, &exists, err) != 0)
        return -1;
    if (exists)
        return 0; /* content-addressed: the same key holds the same content */
    return fs_replace(base, key, blob, len, err);
}

static int fs_get(blob_store *base, const char *key, size_t max_len, strata_buf *out,
                  strata_error *err)
{
    char path[PATH_MAX];
    if (blob_path((fs_blobs *)base, key, path, sizeof path, false, err) != 0)
        return -1;
    if (fs_read_file(path, max_len, out, err) != 0) {
        if (err && err->kind == SERR_NOT_FOUND)
            serr_set(err, SERR_NOT_FOUND, "blob %s is missing", key);
        return -1;
    }
    return 0;
}

static int fs_remove(blob_store *base, const char *key, strata_error *err)
{
    char path[PATH_MAX];
    if (blob_path((fs_blobs *)base, key, path, sizeof path, false, err) != 0)
        return -1;
    if (unlink(path) != 0) {
        if (errno == ENOENT)
            return serr_set(err, SERR_NOT_FOUND, "blob %s is missing", key);
        return serr_set(err, SERR_IO, "cannot remove blob %s: %s", key, strerror(errno));
    }
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = '\0';
    return fs_sync_dir(dir, err);
}

static int fs_touch(blob_store *base, const char *key, strata_error *err)
{
    char path[PATH_MAX];
    if (blob_path((fs_blobs *)base, key, path, sizeof path, false, err) != 0)
        return -1;
    if (utimensat(AT_FDCWD, path, NULL, 0) != 0)
        return serr_set(err, errno == ENOENT ? SERR_NOT_FOUND : SERR_IO, "cannot touch blob %s: %s",
                        key, strerror(errno));
    return 0;
}

static int64_t mtime_ms_of(const struct stat *st)
{
    return (int64_t)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000;
}

static int fs_stat(blob_store *base, const char *key, uint64_t *size, int64_t *mtime_ms,
                   strata_error *err)
{
    char path[PATH_MAX];
    if (blob_path((fs_blobs *)base, key, path, sizeof path, false, err) != 0)
        return -1;
    struct stat st;
    if (stat(path, &st) != 0)
        return serr_set(err, errno == ENOENT ? SERR_NOT_FOUND : SERR_IO, "cannot stat blob %s: %s",
                        key, strerror(errno));
    *size = (uint64_t)st.st_size;
    *mtime_ms = mtime_ms_of(&st);
    return 0;
}

static int is_hex_name(const char *s, size_t len)
{
    if (strlen(s) != len)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Walks DIR/ab/cd/<key>; anything else (temp files) is not a blob. */
static int fs_list(blob_store *base, blob_list_fn fn, void *ctx, strata_error *err)
{
    fs_blobs *b = (fs_blobs *)base;
    DIR *top = opendir(b->dir);
    if (top == NULL)
        return errno == ENOENT
                   ? 0
                   : serr_set(err, SERR_IO, "cannot list %s: %s", b->dir, strerror(errno));
    int stop = 0;
    struct dirent *e1;
    while (!stop && (e1 = readdir(top)) != NULL) {
        if (!is_hex_name(e1->d_name, 2))
            continue;
        char d1[PATH_MAX];
        if (snprintf(d1, sizeof d1, "%s/%s", b->dir, e1->d_name) >= (int)sizeof d1)
            continue;
        DIR *mid = opendir(d1);
        if (mid == NULL)
            continue;
        struct dirent *e2;
        while (!stop && (e2 = readdir(mid)) != NULL) {
            if (!is_hex_name(e2->d_name, 2))
                continue;
            char d2[PATH_MAX];
            if (snprintf(d2, sizeof d2, "%s/%s", d1, e2->d_name) >= (int)sizeof d2)
                continue;
            DIR *leaf = opendir(d2);
            if (leaf == NULL)
                continue;
            struct dirent *e3;
            while (!stop && (e3 = readdir(leaf)) != NULL) {
                if (!is_hex_name(e3->d_name, SHA256_HEX_LEN))
                    continue;
                char p[PATH_MAX];
                struct stat st;
                if (snprintf(p, sizeof p, "%s/%s", d2, e3->d_name) < (int)sizeof p &&
                    stat(p, &st) == 0)
                    stop = fn(ctx, e3->d_name, (uint64_t)st.st_size, mtime_ms_of(&st));
            }
            closedir(leaf);
        }
        closedir(mid);
    }
    closedir(top);
    return 0;
}

static void fs_close(blob_store *base)
{
    free(base);
}

static const blob_store_ops FS_OPS = {
    .name = "file",
    .put = fs_put,
    .replace = fs_replace,
    .get = fs_get,
    .exists = fs_exists,
    .head = fs_head,
    .remove = fs_remove,
    .touch = fs_touch,
    .stat = fs_stat,
    .list = fs_list,
    .close = fs_close,
};

blob_store *blobs_fs_open(const char *dir, strata_error *err)
{
    if (dir[0] == '\0' || strlen(dir) >= PATH_MAX - 80) {
        serr_set(err, SERR_INVALID, "bad blob directory '%s'", dir);
        return NULL;
    }
    if (fs_mkdir_p(dir, err) != 0)
        return NULL;
    fs_blobs *b = calloc(1, sizeof *b);
    if (b == NULL) {
        serr_set(err, SERR_NOMEM, "out of memory");
        return NULL;
    }
    b->base.ops = &FS_OPS;
    snprintf(b->dir, sizeof b->dir, "%s", dir);
    return &b->base;
}
