/* Crash-safe file writes (fsutil.h) and aligned buffers (buf.h): large
 * aligned contents go around the page cache where the file system allows
 * O_DIRECT, and through it where it does not; either way the file reads
 * back as written, whatever the length's alignment. */
#include <check.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <unistd.h>

#include "../../src/common/buf.h"
#include "../../src/common/fsutil.h"
#include "../support/harness.h"

static char dir[256];

static void make_dir(const char *base)
{
    snprintf(dir, sizeof dir, "%s/strata-fsutil-XXXXXX", base);
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
    }
}

/* Whether writes in dir can go around a page cache: a file there opens
 * with O_DIRECT, and the file system is not tmpfs (which is all page cache;
 * older kernels refuse O_DIRECT there, newer ones accept it). */
static bool direct_io_works(void)
{
    struct statfs fs;
    ck_assert_int_eq(statfs(dir, &fs), 0);
    if (fs.f_type == TMPFS_MAGIC)
        return false;
    char p[300];
    snprintf(p, sizeof p, "%s/probe", dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_DIRECT, 0600);
    if (fd >= 0)
        close(fd);
    unlink(p);
    return fd >= 0;
}

/* How many of the file's pages are in the page cache. */
static size_t resident_pages(const char *path, size_t len)
{
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    void *m = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    ck_assert_ptr_ne(m, MAP_FAILED);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = (len + page - 1) / page, in = 0;
    unsigned char *vec = malloc(n);
    ck_assert_int_eq(mincore(m, len, vec), 0);
    for (size_t i = 0; i < n; i++)
        in += vec[i] & 1;
    free(vec);
    munmap(m, len);
    close(fd);
    return in;
}

static const size_t SIZES[] = {FS_DIRECT_MIN, FS_DIRECT_MIN + 1, (1u << 20) + 123, 4u << 20, 5000};

/* Each size, from an aligned and from an unaligned address, over a file
 * that exists already; reads back byte for byte. */
static void write_and_read_back(const char *base)
{
    make_dir(base);
    bool direct = direct_io_works();
    for (size_t i = 0; i < sizeof SIZES / sizeof SIZES[0]; i++) {
        for (int shift = 0; shift < 2; shift++) {
            size_t len = SIZES[i];
            strata_buf b;
            sbuf_init(&b, 0);
            strata_error err;
            ck_assert_int_eq(sbuf_reserve_aligned(&b, len + 1, FS_DIRECT_ALIGN, &err), 0);
            ck_assert_uint_eq((uintptr_t)b.data % FS_DIRECT_ALIGN, 0);
            unsigned char *data = b.data + shift;
            fill(data, len, (unsigned)(i * 2 + (size_t)shift));
            char path[300];
            snprintf(path, sizeof path, "%s/f%zu", dir, i);
            ck_assert_int_eq(fs_write_atomic(path, "old", 3, &err), 0);
            ck_assert_msg(fs_write_atomic(path, data, len, &err) == 0, "%s", err.detail);
            if (direct && shift == 0 && len >= FS_DIRECT_MIN)
                /* written around the page cache: at most the tail's page */
                ck_assert_uint_le(resident_pages(path, len), 1);
            strata_buf back;
            sbuf_init(&back, 0);
            ck_assert_int_eq(fs_read_file(path, 8u << 20, &back, &err), 0);
            ck_assert_uint_eq(back.len, len);
            ck_assert_int_eq(memcmp(back.data, data, len), 0);
            sbuf_free(&back);
            sbuf_free(&b);
        }
    }
    remove_dir();
}

START_TEST(large_aligned_writes_read_back_on_disk)
{
    const char *t = getenv("TMPDIR");
    write_and_read_back(t != NULL && t[0] != '\0' ? t : "/tmp");
}
END_TEST

START_TEST(large_aligned_writes_read_back_on_tmpfs)
{
    struct stat st;
    ck_assert_msg(stat("/dev/shm", &st) == 0, "no /dev/shm (a tmpfs) on this machine");
    write_and_read_back("/dev/shm");
}
END_TEST

START_TEST(aligned_buffers_keep_their_cap_and_grow)
{
    strata_buf b;
    sbuf_init(&b, 10000);
    strata_error err;
    ck_assert_int_eq(sbuf_reserve_aligned(&b, 20000, 4096, &err), -1);
    ck_assert_int_eq(err.kind, SERR_TOO_LARGE);
    ck_assert_ptr_null(b.data);
    ck_assert_int_eq(sbuf_reserve_aligned(&b, 8192, 4096, &err), 0);
    ck_assert_uint_eq((uintptr_t)b.data % 4096, 0);
    unsigned char chunk[3000];
    memset(chunk, 'x', sizeof chunk);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sbuf_append(&b, chunk, sizeof chunk, &err), 0); /* grows past 8192 */
    ck_assert_int_eq(sbuf_append(&b, chunk, sizeof chunk, &err), -1);    /* 12,000 > cap */
    ck_assert_uint_eq(b.len, 9000);
    ck_assert_int_eq(b.data[8999], 'x');
    /* a buffer that holds an allocation just reserves */
    ck_assert_int_eq(sbuf_reserve_aligned(&b, 9500, 4096, &err), 0);
    ck_assert_uint_ge(b.alloc, 9500);
    sbuf_free(&b);
}
END_TEST

/* A first reservation is taken as asked (a 1 MiB file read took 2 MiB
 * when it was doubled up from 256 bytes); growth after it doubles. */
START_TEST(a_first_reservation_is_exact)
{
    strata_buf b;
    sbuf_init(&b, 0);
    strata_error err;
    ck_assert_int_eq(sbuf_reserve(&b, (1u << 20) + 96, &err), 0);
    ck_assert_uint_eq(b.alloc, (1u << 20) + 96);
    b.len = b.alloc;
    ck_assert_int_eq(sbuf_reserve(&b, 1, &err), 0);
    ck_assert_uint_eq(b.alloc, 2 * ((1u << 20) + 96));
    sbuf_free(&b);
    sbuf_init(&b, 0); /* small first appends still start at 256 */
    ck_assert_int_eq(sbuf_append(&b, "x", 1, &err), 0);
    ck_assert_uint_eq(b.alloc, 256);
    sbuf_free(&b);
}
END_TEST

/* fs_write_once places a file that is not there and leaves one that is;
 * fs_write_atomic replaces it. Neither leaves its staged file behind. */
START_TEST(a_write_once_keeps_the_first)
{
    make_dir("/tmp");
    char path[300];
    snprintf(path, sizeof path, "%s/once", dir);
    strata_error err;
    strata_buf got;
    const char *want[] = {"first", "first", "third"};
    for (int i = 0; i < 3; i++) {
        const char *text = i == 0 ? "first" : i == 1 ? "second" : "third";
        int rc = i < 2 ? fs_write_once(path, text, strlen(text), &err)
                       : fs_write_atomic(path, text, strlen(text), &err);
        ck_assert_msg(rc == 0, "%s", err.detail);
        sbuf_init(&got, 0);
        ck_assert_int_eq(fs_read_file(path, 64, &got, &err), 0);
        ck_assert_uint_eq(got.len, strlen(want[i]));
        ck_assert(memcmp(got.data, want[i], got.len) == 0);
        sbuf_free(&got);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "test $(ls -A '%s' | wc -l) -eq 1", dir);
    ck_assert_msg(system(cmd) == 0, "staged files left in %s", dir);
    remove_dir();
}
END_TEST

static Suite *fsutil_suite(void)
{
    Suite *s = suite_create("fsutil");
    TCase *t = tcase_create("writes");
    tcase_set_timeout(t, 60);
    tcase_add_test(t, large_aligned_writes_read_back_on_disk);
    tcase_add_test(t, large_aligned_writes_read_back_on_tmpfs);
    tcase_add_test(t, aligned_buffers_keep_their_cap_and_grow);
    tcase_add_test(t, a_first_reservation_is_exact);
    tcase_add_test(t, a_write_once_keeps_the_first);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(fsutil_suite());
}
