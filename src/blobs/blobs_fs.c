#include "blobs_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../common/fsutil.h"
#include "../common/hex.h"

/* Layouts, named by the number of fan-out directory levels above a blob:
 *   1  DIR/ab/<key>     the 256 directories made when the store is opened;
 *   2  DIR/ab/cd/<key>  stores written before DIR/layout existed.
 * One level keeps a directory per 256th of the keys (40,000 files in each
 * at ten million blobs, which ext4's hashed directories take in stride);
 * two levels made a new directory, a 4 KiB block and two more syncs for
 * nearly every one of a store's first 100,000 blobs. DIR/layout
 * ("fanout-levels N") is written once, when a store is first opened, and
 * never changes; without it, a directory's layout is told from what its
 * fan-out directories hold (layout_guess). */
#define LAYOUT_FILE   "layout"
#define LAYOUT_PREFIX "fanout-levels "
#define LAYOUT_NEW    1
#define LAYOUT_LEGACY 2

typedef struct fs_blobs {
    blob_store base;
    char dir[PATH_MAX - 80];
    int levels; /* the layout: 1 or 2 */
    /* fan-out directories (ab: 256, ab/cd: 65,536) this process has seen
     * synced into their parents, one bit each */
    _Atomic uint64_t synced1[256 / 64];
    _Atomic uint64_t synced2[65536 / 64];
} fs_blobs;

/* Makes fan-out directory `dir` in `parent` unless it exists (and parent
 * too, should it have gone), and syncs it into its parent once per
 * process (bit `ix` of `synced`): the blob's own directory sync makes its
 * entry durable, not the path to it. Also when it existed: another
 * process sharing the directory may have made it and not synced it yet,
 * and a blob acknowledged here must not hang on that process's sync. */
static int make_fanout_dir(const char *parent, const char *dir, _Atomic uint64_t *synced,
                           unsigned ix, strata_error *err)
{
    int rc = mkdir(dir, 0755);
    if (rc != 0 && errno == ENOENT) {
        if (fs_mkdir_p(parent, err) != 0)
            return -1;
        rc = mkdir(dir, 0755);
    }
    if (rc != 0 && errno != EEXIST)
        return serr_set(err, fs_errno_kind(errno), "cannot create a blob directory: %s",
                        strerror(errno));
    uint64_t bit = UINT64_C(1) << (ix % 64);
    if (rc != 0 && (atomic_load_explicit(&synced[ix / 64], memory_order_acquire) & bit))
        return 0;
    if (fs_sync_dir(parent, err) != 0)
        return -1;
    atomic_fetch_or_explicit(&synced[ix / 64], bit, memory_order_release);
    return 0;
}

/* DIR/ab/<key>, or DIR/ab/cd/<key> in layout 2; with make_dirs, the
 * fan-out directories are made (and synced) first. */
static int blob_path(fs_blobs *b, const char *key, char *out, size_t cap, bool make_dirs,
                     strata_error *err)
{
    if (!blob_key_valid(key))
        return serr_set(err, SERR_INVALID, "bad blob key");
    char d1[PATH_MAX], d[PATH_MAX];
    snprintf(d1, sizeof d1, "%s/%.2s", b->dir, key);
    if (b->levels == 1)
        snprintf(d, sizeof d, "%s", d1);
    else
        snprintf(d, sizeof d, "%s/%.2s/%.2s", b->dir, key, key + 2);
    unsigned char fan[2];
    hex_decode(key, 2, fan); /* (a valid key is hex: checked above) */
    if (make_dirs &&
        (make_fanout_dir(b->dir, d1, b->synced1, fan[0], err) != 0 ||
         (b->levels == 2 &&
          make_fanout_dir(d1, d, b->synced2, (unsigned)fan[0] << 8 | fan[1], err) != 0)))
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

/* Streamed reads: the file itself, read as the caller asks. */
typedef struct fs_reader {
    blob_reader base;
    int fd;
} fs_reader;

static long fs_reader_read(blob_reader *base, void *buf, size_t cap, strata_error *err)
{
    fs_reader *r = (fs_reader *)base;
    for (;;) {
        ssize_t n = read(r->fd, buf, cap);
        if (n >= 0)
            return (long)n;
        if (errno != EINTR)
            return serr_set(err, SERR_IO, "cannot read a blob: %s", strerror(errno));
    }
}

static void fs_reader_close(blob_reader *base)
{
    fs_reader *r = (fs_reader *)base;
    close(r->fd);
    free(r);
}

static const blob_reader_ops FS_READER_OPS = {.read = fs_reader_read, .close = fs_reader_close};

static int fs_open_read(blob_store *base, const char *key, uint64_t offset, blob_reader **out,
                        uint64_t *total, strata_error *err)
{
    char path[PATH_MAX];
    if (blob_path((fs_blobs *)base, key, path, sizeof path, false, err) != 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return serr_set(err, errno == ENOENT ? SERR_NOT_FOUND : SERR_IO, "cannot open blob %s: %s",
                        key, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || (offset > 0 && lseek(fd, (off_t)offset, SEEK_SET) < 0)) {
        int e = errno;
        close(fd);
        return serr_set(err, SERR_IO, "cannot read blob %s: %s", key, strerror(e));
    }
    fs_reader *r = malloc(sizeof *r);
    if (r == NULL) {
        close(fd);
        return serr_set(err, SERR_NOMEM, "out of memory");
    }
    r->base.ops = &FS_READER_OPS;
    r->fd = fd;
    *out = &r->base;
    *total = (uint64_t)st.st_size;
    return 0;
}

/* Streamed writes go to DIR/.w-XXXXXX (a name list() never takes for a
 * blob), header space first; commit writes the header, fsyncs and renames
 * into place. A crash leaves only a .w- file, removed by list() once it is
 * older than STAGING_MAX_AGE_MS. */
#define STAGING_MAX_AGE_MS (3600 * 1000LL)

/* Written bytes are handed to the disk every WRITEBACK_STEP as they
 * arrive (sync_file_range, which does not wait), so that the fsync at
 * commit, which still makes them durable, finds little left to write. */
#define WRITEBACK_STEP (1 << 20)

typedef struct fs_writer {
    blob_writer base;
    fs_blobs *store;
    int fd;
    off_t written, started; /* file bytes written; those handed to writeback */
    char tmp[PATH_MAX];
} fs_writer;

static void fs_writer_drop(fs_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    unlink(w->tmp);
    free(w);
}

static int fs_writer_write(blob_writer *base, const void *data, size_t len, strata_error *err)
{
    fs_writer *w = (fs_writer *)base;
    if (fs_write_all(w->fd, data, len) != 0)
        return serr_set(err, fs_errno_kind(errno), "cannot write a blob: %s", strerror(errno));
    w->written += (off_t)len;
    if (w->written - w->started >= WRITEBACK_STEP) {
        /* a hint: an error here is the fsync's to report */
        (void)sync_file_range(w->fd, w->started, w->written - w->started, SYNC_FILE_RANGE_WRITE);
        w->started = w->written;
    }
    return 0;
}

static int fs_writer_commit(blob_writer *base, const char *key,
                            const unsigned char header[BLOB_HEADER_SIZE], strata_error *err)
{
    fs_writer *w = (fs_writer *)base;
    char path[PATH_MAX];
    bool exists = false;
    int rc = blob_path(w->store, key, path, sizeof path, true, err);
    if (rc == 0)
        rc = fs_exists(&w->store->base, key, &exists, err);
    if (rc == 0 && !exists) {
        if (pwrite(w->fd, header, BLOB_HEADER_SIZE, 0) != BLOB_HEADER_SIZE || fsync(w->fd) != 0)
            rc = serr_set(err, fs_errno_kind(errno), "cannot write blob %s: %s", key,
                          strerror(errno));
        else if (rename(w->tmp, path) != 0)
            rc = serr_set(err, fs_errno_kind(errno), "cannot move blob %s into place: %s", key,
                          strerror(errno));
        else {
            char dir[PATH_MAX];
            snprintf(dir, sizeof dir, "%s", path);
            *strrchr(dir, '/') = '\0';
            rc = fs_sync_dir(dir, err);
        }
    }
    fs_writer_drop(w); /* after a rename the unlink finds nothing */
    return rc;
}

static void fs_writer_abort(blob_writer *base)
{
    fs_writer_drop((fs_writer *)base);
}

static const blob_writer_ops FS_WRITER_OPS = {
    .write = fs_writer_write, .commit = fs_writer_commit, .abort = fs_writer_abort};

static int fs_begin_write(blob_store *base, blob_writer **out, strata_error *err)
{
    fs_blobs *b = (fs_blobs *)base;
    fs_writer *w = calloc(1, sizeof *w);
    if (w == NULL)
        return serr_set(err, SERR_NOMEM, "out of memory");
    w->base.ops = &FS_WRITER_OPS;
    w->store = b;
    snprintf(w->tmp, sizeof w->tmp, "%s/.w-XXXXXX", b->dir);
    w->fd = mkostemp(w->tmp, O_CLOEXEC);
    if (w->fd < 0) {
        int e = errno;
        free(w);
        return serr_set(err, fs_errno_kind(e), "cannot start a blob: %s", strerror(e));
    }
    static const unsigned char zero[BLOB_HEADER_SIZE];
    if (fs_write_all(w->fd, zero, sizeof zero) != 0) {
        int e = errno;
        fs_writer_drop(w);
        return serr_set(err, fs_errno_kind(e), "cannot start a blob: %s", strerror(e));
    }
    w->written = BLOB_HEADER_SIZE;
    *out = &w->base;
    return 0;
}

/* Removes staging files a crash left behind (older than an hour: no live
 * writer takes that long between two writes of one body): streamed
 * writes' .w- files, and the layout file's (fs_write_once stages it
 * beside it, as fsutil.h says). */
static void drop_stale_staging(const fs_blobs *b, const char *name)
{
    char p[PATH_MAX];
    struct stat st;
    if ((strncmp(name, ".w-", 3) != 0 &&
         strncmp(name, LAYOUT_FILE FS_STAGED_INFIX, sizeof LAYOUT_FILE FS_STAGED_INFIX - 1) != 0) ||
        snprintf(p, sizeof p, "%s/%s", b->dir, name) >= (int)sizeof p || stat(p, &st) != 0)
        return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (now_ms - mtime_ms_of(&st) > STAGING_MAX_AGE_MS)
        unlink(p);
}

/* Lists the blobs below fan-out directory `dir`, `levels` more levels
 * deep; names that are not a fan-out directory or a key (temp files) are
 * passed over. Returns fn's nonzero answer, which stops the walk. */
static int list_below(const char *dir, int levels, blob_list_fn fn, void *ctx)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0; /* removed meanwhile, or not a directory: no blobs */
    int stop = 0;
    struct dirent *e;
    while (!stop && (e = readdir(d)) != NULL) {
        char p[PATH_MAX];
        if (!is_hex_name(e->d_name, levels > 0 ? 2 : SHA256_HEX_LEN) ||
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p)
            continue;
        struct stat st;
        if (levels > 0)
            stop = list_below(p, levels - 1, fn, ctx);
        else if (stat(p, &st) == 0)
            stop = fn(ctx, e->d_name, (uint64_t)st.st_size, mtime_ms_of(&st));
    }
    closedir(d);
    return stop;
}

/* Walks the fan-out directories; at the top, removes stale staging files. */
static int fs_list(blob_store *base, blob_list_fn fn, void *ctx, strata_error *err)
{
    fs_blobs *b = (fs_blobs *)base;
    DIR *top = opendir(b->dir);
    if (top == NULL)
        return errno == ENOENT
                   ? 0
                   : serr_set(err, SERR_IO, "cannot list %s: %s", b->dir, strerror(errno));
    int stop = 0;
    struct dirent *e;
    while (!stop && (e = readdir(top)) != NULL) {
        char d1[PATH_MAX];
        if (!is_hex_name(e->d_name, 2))
            drop_stale_staging(b, e->d_name);
        else if (snprintf(d1, sizeof d1, "%s/%s", b->dir, e->d_name) < (int)sizeof d1)
            stop = list_below(d1, b->levels - 1, fn, ctx);
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
    .open_read = fs_open_read,
    .begin_write = fs_begin_write,
    .close = fs_close,
};

/* The layout named by DIR/layout in *levels, or 0 when there is none. */
static int layout_read(const char *dir, int *levels, strata_error *err)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" LAYOUT_FILE, dir);
    strata_buf text;
    strata_error rerr;
    sbuf_init(&text, 0);
    *levels = 0;
    if (fs_read_file(path, 64, &text, &rerr) != 0 && rerr.kind != SERR_TOO_LARGE) {
        sbuf_free(&text);
        if (rerr.kind == SERR_NOT_FOUND)
            return 0;
        if (err)
            *err = rerr;
        return -1;
    }
    size_t n = strlen(LAYOUT_PREFIX);
    const char *t = (const char *)text.data;
    if (text.len == n + 2 && memcmp(t, LAYOUT_PREFIX, n) == 0 && t[n + 1] == '\n' &&
        (t[n] == '1' || t[n] == '2'))
        *levels = t[n] - '0';
    sbuf_free(&text);
    if (*levels == 0)
        return serr_set(err, SERR_INVALID,
                        "%s names a blob layout this build does not know (it reads \"" LAYOUT_PREFIX
                        "1\" and \"" LAYOUT_PREFIX "2\")",
                        path);
    return 0;
}

/* The next entry of directory d (at path) in *e, NULL at its end. */
static int next_entry(DIR *d, const char *path, struct dirent **e, strata_error *err)
{
    errno = 0;
    *e = readdir(d);
    if (*e == NULL && errno != 0)
        return serr_set(err, SERR_IO, "cannot list %s: %s", path, strerror(errno));
    return 0;
}

/* The layout of a directory without DIR/layout, from what its fan-out
 * directories hold: a second level of them (layout 2, written before
 * layouts) or blobs (layout 1, its layout file lost); layout 1 when
 * neither shows, which is every new store. A fan-out directory that
 * cannot be read fails the guess (SERR_IO): a wrong guess would be
 * written down for good and hide every blob of the other layout. */
static int layout_guess(const char *dir, int *levels, strata_error *err)
{
    DIR *top = opendir(dir);
    if (top == NULL)
        return serr_set(err, SERR_IO, "cannot list %s: %s", dir, strerror(errno));
    *levels = 0;
    int rc = 0;
    struct dirent *e1, *e2;
    while (*levels == 0 && (rc = next_entry(top, dir, &e1, err)) == 0 && e1 != NULL) {
        char d1[PATH_MAX];
        if (!is_hex_name(e1->d_name, 2) ||
            snprintf(d1, sizeof d1, "%s/%s", dir, e1->d_name) >= (int)sizeof d1)
            continue;
        DIR *mid = opendir(d1);
        if (mid == NULL && (errno == ENOENT || errno == ENOTDIR))
            continue; /* gone meanwhile, or not a fan-out directory */
        if (mid == NULL) {
            rc = serr_set(err, SERR_IO, "cannot list %s: %s", d1, strerror(errno));
            break;
        }
        while (*levels == 0 && (rc = next_entry(mid, d1, &e2, err)) == 0 && e2 != NULL)
            *levels = is_hex_name(e2->d_name, 2)                ? LAYOUT_LEGACY
                      : is_hex_name(e2->d_name, SHA256_HEX_LEN) ? LAYOUT_NEW
                                                                : 0;
        closedir(mid);
        if (rc != 0)
            break;
    }
    closedir(top);
    if (rc == 0 && *levels == 0)
        *levels = LAYOUT_NEW;
    return rc;
}

/* Settles the store's layout (writing it down when DIR has none) and, in
 * layout 1, makes the 256 fan-out directories where missing and syncs
 * them into DIR, here at open, so that no write pays for a directory of
 * its own. */
static int layout_settle(fs_blobs *b, strata_error *err)
{
    if (layout_read(b->dir, &b->levels, err) != 0)
        return -1;
    if (b->levels == 0) {
        int guess = 0;
        if (layout_guess(b->dir, &guess, err) != 0)
            return -1;
        if (access(b->dir, W_OK) != 0 && (errno == EROFS || errno == EACCES)) {
            b->levels = guess; /* read-only: read as before layouts */
        } else {
            char path[PATH_MAX], text[32];
            snprintf(path, sizeof path, "%s/" LAYOUT_FILE, b->dir);
            int len = snprintf(text, sizeof text, LAYOUT_PREFIX "%d\n", guess);
            if (fs_write_once(path, text, (size_t)len, err) != 0 ||
                layout_read(b->dir, &b->levels, err) != 0) /* whichever was placed first */
                return -1;
        }
    }
    if (b->levels != 1)
        return 0;
    for (unsigned i = 0; i < 256; i++) {
        char d1[PATH_MAX];
        snprintf(d1, sizeof d1, "%s/%02x", b->dir, i);
        if (mkdir(d1, 0755) != 0 && errno != EEXIST)
            return serr_set(err, fs_errno_kind(errno), "cannot create a blob directory: %s",
                            strerror(errno));
    }
    if (fs_sync_dir(b->dir, err) != 0)
        return -1;
    for (unsigned i = 0; i < 256 / 64; i++)
        atomic_store_explicit(&b->synced1[i], UINT64_MAX, memory_order_release);
    return 0;
}

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
    if (layout_settle(b, err) != 0) {
        free(b);
        return NULL;
    }
    return &b->base;
}
