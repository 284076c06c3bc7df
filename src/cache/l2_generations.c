#include "l2_generations.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../common/fsutil.h"

#define GEN_FILE      "generations"
#define GEN_MAGIC     "STRATAGN"
#define GEN_VERSION   1u
#define GEN_KEY_SLOTS 65536u
#define GEN_NS_SLOTS  1024u
#define GEN_HEADER    4096u /* the slots start on their own page */
#define GEN_SIZE      (GEN_HEADER + 8u * (GEN_KEY_SLOTS + GEN_NS_SLOTS))

/* Shared between processes: the atomics must work on any address, which
 * lock-free ones do. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");
_Static_assert(sizeof(l2_gen_slot) == 8, "a slot is 8 bytes");

struct l2_gen_header {
    char magic[8];
    uint32_t version;
    uint32_t header_size;
    uint32_t key_slots;
    uint32_t ns_slots;
    atomic_ullong next_id; /* write ids and fence ids */
};

_Static_assert(sizeof(struct l2_gen_header) <= GEN_HEADER, "the header fits its page");

/* ---- slots ------------------------------------------------------------------ */

#define FNV_OFFSET 1469598103934665603ull

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

l2_gen_slot *l2_gen_ns_slot(const l2_gen_table *g, const char *ns)
{
    return &g->nss[mix(fnv(FNV_OFFSET, ns, strlen(ns))) % GEN_NS_SLOTS];
}

l2_gen_slot *l2_gen_key_slot(const l2_gen_table *g, const char *ns, const char *key)
{
    uint64_t h = fnv(FNV_OFFSET, ns, strlen(ns) + 1); /* with its NUL */
    return &g->keys[mix(fnv(h, key, strlen(key))) % GEN_KEY_SLOTS];
}

/* ---- the settle protocol ------------------------------------------------------ */

uint64_t l2_gen_settle(l2_gen_slot *s)
{
    unsigned long long v = atomic_load(s);
    while ((v & 1) != 0 && !atomic_compare_exchange_weak(s, &v, v + 1))
        ;
    return (v & 1) != 0 ? v + 1 : v;
}

uint64_t l2_gen_begin(l2_gen_slot *s)
{
    for (;;) {
        unsigned long long v = l2_gen_settle(s);
        if (atomic_compare_exchange_strong(s, &v, v + 1))
            return v + 1;
    }
}

bool l2_gen_end(l2_gen_slot *s, uint64_t odd)
{
    unsigned long long v = odd;
    return atomic_compare_exchange_strong(s, &v, odd + 1);
}

/* ---- tokens and ids ----------------------------------------------------------- */

void l2_gen_token(const l2_gen_table *g, const char *ns, const char *key, l2_token *out)
{
    /* a change makes its slot odd before its commit and even after it:
     * read before the value, an even pair means every change it names is
     * visible in the index */
    uint64_t n = atomic_load_explicit(l2_gen_ns_slot(g, ns), memory_order_acquire);
    uint64_t k = atomic_load_explicit(l2_gen_key_slot(g, ns, key), memory_order_acquire);
    out->w[0] = n;
    out->w[1] = k;
    out->w[2] = 0;
    out->w[3] = ((n | k) & 1) == 0 ? 1 : 0;
}

void l2_gen_token_make(l2_token *out, uint64_t ns_gen, uint64_t key_gen)
{
    out->w[0] = ns_gen;
    out->w[1] = key_gen;
    out->w[2] = 0;
    out->w[3] = 1;
}

bool l2_gen_token_names(const l2_token *t, uint64_t ns_gen, uint64_t key_gen)
{
    return t->w[0] == ns_gen && t->w[1] == key_gen;
}

uint64_t l2_gen_next_id(l2_gen_table *g)
{
    return atomic_fetch_add(&g->hdr->next_id, 1) + 1;
}

/* ---- creating and mapping the file -------------------------------------------- */

/* Creates the table whole under a temp name, then links it into place:
 * the name only ever shows a complete table. EEXIST (another process won)
 * is success. */
static int gen_create(const char *dir, const char *path, uint64_t first_id, strata_error *err)
{
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/" GEN_FILE ".tmp.XXXXXX", dir);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0)
        return serr_set(err, fs_errno_kind(errno), "L2: cannot create %s: %s", tmp,
                        strerror(errno));
    unsigned char hdr[GEN_HEADER] = {0};
    struct l2_gen_header h = {.version = GEN_VERSION,
                              .header_size = GEN_HEADER,
                              .key_slots = GEN_KEY_SLOTS,
                              .ns_slots = GEN_NS_SLOTS};
    memcpy(h.magic, GEN_MAGIC, 8);
    atomic_init(&h.next_id, first_id);
    memcpy(hdr, &h, sizeof h);
    /* allocated, not sparse: a store into the mapping never needs a block
     * that a full disk cannot give (which would be SIGBUS) */
    int rc = posix_fallocate(fd, 0, GEN_SIZE);
    int e = rc;
    if (rc == 0 && (pwrite(fd, hdr, sizeof hdr, 0) != (ssize_t)sizeof hdr || fsync(fd) != 0)) {
        e = errno;
        rc = -1;
    }
    if (rc == 0 && link(tmp, path) != 0 && errno != EEXIST) {
        e = errno;
        rc = -1;
    }
    close(fd);
    unlink(tmp);
    if (rc != 0)
        return serr_set(err, fs_errno_kind(e), "L2: cannot create %s: %s", path, strerror(e));
    return fs_sync_dir(dir, err);
}

/* Opens the table's file, creating it when it is missing (a table removed
 * between the create and the open is made again, a few times). */
static int gen_open_file(const char *dir, const char *path, uint64_t first_id, strata_error *err)
{
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 3; attempt++) {
        fd = open(path, O_RDWR | O_CLOEXEC);
        if (fd < 0 && errno != ENOENT)
            return serr_set(err, fs_errno_kind(errno), "L2: cannot open %s: %s", path,
                            strerror(errno));
        if (fd < 0 && gen_create(dir, path, first_id, err) != 0)
            return -1;
    }
    if (fd < 0)
        return serr_set(err, SERR_IO, "L2: %s keeps disappearing", path);
    return fd;
}

int l2_gen_open(l2_gen_table *g, const char *dir, uint64_t first_id, strata_error *err)
{
    memset(g, 0, sizeof *g);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/" GEN_FILE, dir);
    int fd = gen_open_file(dir, path, first_id, err);
    if (fd < 0)
        return -1;
    struct stat st = {0};
    if (fstat(fd, &st) != 0 || st.st_size != (off_t)GEN_SIZE) {
        close(fd);
        return serr_set(err, SERR_CORRUPT,
                        "L2: %s is not a generation table of this version (size %lld); remove it "
                        "while no strata process uses %s",
                        path, (long long)st.st_size, dir);
    }
    void *map = mmap(NULL, GEN_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (map == MAP_FAILED)
        return serr_set(err, SERR_IO, "L2: cannot map %s: %s", path, strerror(e));
    const struct l2_gen_header *h = map;
    if (memcmp(h->magic, GEN_MAGIC, 8) != 0 || h->version != GEN_VERSION ||
        h->header_size != GEN_HEADER || h->key_slots != GEN_KEY_SLOTS ||
        h->ns_slots != GEN_NS_SLOTS) {
        munmap(map, GEN_SIZE);
        return serr_set(err, SERR_CORRUPT,
                        "L2: %s is not a generation table of this version; remove it while no "
                        "strata process uses %s",
                        path, dir);
    }
    g->map = map;
    g->hdr = map;
    g->keys = (l2_gen_slot *)((char *)map + GEN_HEADER);
    g->nss = g->keys + GEN_KEY_SLOTS;
    return 0;
}

void l2_gen_close(l2_gen_table *g)
{
    if (g->map != NULL)
        munmap(g->map, GEN_SIZE);
    memset(g, 0, sizeof *g);
}
