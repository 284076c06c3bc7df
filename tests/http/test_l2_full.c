/* Invariant 6 with the L2 on a full filesystem: the disk L2 lives on an
 * 8 MiB tmpfs that is filled to the last byte (cache values, then a
 * ballast file topped up while the test runs), freed, and filled again,
 * while four writers save 2-20 KiB dictionary entries and four readers
 * read the latest records. A save may be refused (the fence that must
 * precede its commit cannot be recorded) but must then answer a
 * problem+json 5xx; a save that answers 2xx must never be followed by a
 * read of an older version: not by its own writer, and not by a reader
 * that began after the acknowledgement. The store and blobs stay in the
 * normal data directory. Needs root (mount). 8 MiB, not less: the L2
 * index's SQLite WAL is checkpointed only past about 4 MiB, so on a
 * smaller disk it takes back whatever is freed and the L2 never works
 * again, which would leave the "freed" phase with nothing to test. The
 * server runs 8 HTTP threads so that reads of one record really overlap. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../support/harness.h"

#define WRITERS  4
#define READERS  4
#define IDS      8
#define FILL_LEN (64 * 1024)
#define PHASE_MS 4000

static test_server S;
/* made by the runner process (unchecked fixture), so that it can unmount
 * and clean up even when the test process fails or times out */
static char base_dir[200], l2_dir[220], ballast[240], pid_file[240], orig_tmp[160];
static char l2_url[240];

static bool mounted(void)
{
    FILE *f = fopen("/proc/self/mounts", "r");
    if (f == NULL)
        return false;
    char line[1024];
    bool found = false;
    size_t n = strlen(l2_dir);
    while (!found && fgets(line, sizeof line, f)) {
        char *mp = strchr(line, ' ');
        if (mp && strncmp(mp + 1, l2_dir, n) == 0 && mp[1 + n] == ' ')
            found = true;
    }
    fclose(f);
    return found;
}

static void unmount(void)
{
    char cmd[400];
    for (int i = 0; i < 50 && mounted(); i++) {
        snprintf(cmd, sizeof cmd, "umount '%s' 2>/dev/null", l2_dir);
        if (system(cmd) == 0)
            break;
        usleep(100 * 1000); /* a server still closing its files */
    }
    if (mounted()) {
        snprintf(cmd, sizeof cmd, "umount -l '%s'", l2_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "l2_full: could not unmount %s\n", l2_dir);
    }
}

/* ---- runner side --------------------------------------------------------- */

static void make_dirs(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(orig_tmp, sizeof orig_tmp, "%s", tmp ? tmp : "/tmp");
    snprintf(base_dir, sizeof base_dir, "%s/strata-l2full-XXXXXX", orig_tmp);
    ck_assert_ptr_nonnull(mkdtemp(base_dir));
    snprintf(l2_dir, sizeof l2_dir, "%s/l2", base_dir);
    snprintf(ballast, sizeof ballast, "%s/ballast", l2_dir);
    snprintf(pid_file, sizeof pid_file, "%s/server.pid", base_dir);
    snprintf(l2_url, sizeof l2_url, "file:%s", l2_dir);
    ck_assert_int_eq(mkdir(l2_dir, 0755), 0);
    /* the server's data directory and log go under base_dir too */
    setenv("TMPDIR", base_dir, 1);
}

static void remove_dirs(void)
{
    /* a test process that failed leaves its server running: end it (it is
     * the one the pid file names) so that the tmpfs can go */
    FILE *f = fopen(pid_file, "r");
    int pid = 0;
    if (f != NULL) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    if (pid > 0 && kill(pid, 0) == 0) {
        kill(pid, SIGKILL);
        for (int i = 0; i < 100 && kill(pid, 0) == 0; i++)
            usleep(20 * 1000);
    }
    unmount();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "l2_full: could not remove %s\n", base_dir);
    setenv("TMPDIR", orig_tmp, 1);
}

/* ---- test side ---------------------------------------------------------- */

static void mount_and_start(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "mount -t tmpfs -o size=8M tmpfs '%s'", l2_dir);
    int rc = system(cmd);
    ck_assert_msg(rc == 0 && mounted(),
                  "needs root to mount a tmpfs (mount -t tmpfs on %s failed with %d): this test "
                  "cannot run without it",
                  l2_dir, rc);
    const char *args[] = {"--cache-l2", l2_url, "--threads", "8", NULL};
    ck_assert_int_eq(server_start(&S, args), 0);
    FILE *f = fopen(pid_file, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "%d\n", (int)S.pid);
    fclose(f);
}

static void stop_and_unmount(void)
{
    if (S.pid > 0) {
        kill(S.pid, SIGKILL);
        waitpid(S.pid, NULL, 0);
        S.pid = 0;
    }
    server_cleanup(&S);
    unlink(pid_file);
    unmount();
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t vkey_of(const char *v)
{
    unsigned a, b, c;
    if (v == NULL || sscanf(v, "%u.%u.%u", &a, &b, &c) != 3)
        return 0;
    return ((uint64_t)a << 40) | ((uint64_t)b << 20) | c;
}

static const char *version_of(json_t *rec)
{
    return json_string_value(json_object_get(json_object_get(rec, "version_info"), "version"));
}

static unsigned rnd(unsigned *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

enum { PH_FULL, PH_FREE, PH_REFILL, PH_N };
static const char *const PHASE_NAME[PH_N] = {"full", "freed", "full again"};

static atomic_ullong acked[IDS]; /* newest acknowledged version key per id */
static atomic_int phase, stop;
static atomic_long saves_ok[PH_N], saves_refused[PH_N], saves_bad, reads, stale, read_errors;
static atomic_long own_reads, own_stale;
static atomic_long reported;

__attribute__((format(printf, 1, 2))) static void report(const char *fmt, ...)
{
    if (atomic_fetch_add(&reported, 1) >= 30)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "l2_full: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void raise_acked(int id, uint64_t k)
{
    unsigned long long cur = atomic_load(&acked[id]);
    while (cur < k && !atomic_compare_exchange_weak(&acked[id], &cur, k))
        ;
}

static bool is_problem(const http_resp *r)
{
    char ct[128];
    return http_header(r, "Content-Type", ct, sizeof ct) == 0 &&
           strncmp(ct, "application/problem+json", 24) == 0;
}

/* GET /dictionary/dN: the version key read, 0 on anything but 200. */
static uint64_t read_latest(http_client *c, int id, long *status, char *rid, size_t rcap)
{
    char path[64];
    snprintf(path, sizeof path, "/dictionary/d%d", id);
    http_resp r;
    if (http_client_do(c, &S, "GET", path, NULL, NULL, 0, &r) != 0) {
        *status = -1;
        return 0;
    }
    *status = r.status;
    rid[0] = '\0';
    http_header(&r, "X-Request-Id", rid, rcap);
    uint64_t k = 0;
    if (r.status == 200) {
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        k = vkey_of(version_of(j));
        json_decref(j);
    }
    http_resp_free(&r);
    return k;
}

static void *writer(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 2654435761u + 1u;
    http_client *c = http_client_new();
    const char *h[] = {"Content-Type: application/json", NULL};
    size_t cap = 21 * 1024 + 256;
    char *body = malloc(cap);
    while (!atomic_load(&stop)) {
        int id = (int)(rnd(&seed) % IDS);
        size_t len = 2048 + rnd(&seed) % (18 * 1024);
        size_t n = (size_t)snprintf(body, cap, "{\"content\": \"");
        for (size_t i = 0; i < len; i++)
            body[n++] = (char)('a' + rnd(&seed) % 26);
        n += (size_t)snprintf(body + n, cap - n, "\", \"word\": \"w\", \"provider\": \"p\"}");
        char path[64];
        snprintf(path, sizeof path, "/dictionary/d%d/versions", id);
        int ph = atomic_load(&phase);
        http_resp r;
        if (http_client_do(c, &S, "POST", path, h, body, n, &r) != 0) {
            atomic_fetch_add(&saves_bad, 1);
            report("POST %s: no answer", path);
            continue;
        }
        if (r.status == 201 || r.status == 200) {
            json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
            const char *v = version_of(j);
            uint64_t k = vkey_of(v);
            char ver[24], save_rid[80] = "";
            snprintf(ver, sizeof ver, "%s", v ? v : "?");
            http_header(&r, "X-Request-Id", save_rid, sizeof save_rid);
            json_decref(j);
            http_resp_free(&r);
            atomic_fetch_add(&saves_ok[ph], 1);
            raise_acked(id, k);
            /* read your write */
            long st;
            char rid[80];
            uint64_t got = read_latest(c, id, &st, rid, sizeof rid);
            atomic_fetch_add(&own_reads, 1);
            if (st != 200) {
                atomic_fetch_add(&read_errors, 1);
                report("GET /dictionary/d%d after its save answered %ld (request %s)", id, st, rid);
            } else if (got < k) {
                atomic_fetch_add(&own_stale, 1);
                report("STALE: d%d saved as %s (request %s, phase %s), then its writer read "
                       "%u.%u.%u (request %s)",
                       id, ver, save_rid, PHASE_NAME[ph], (unsigned)(got >> 40),
                       (unsigned)(got >> 20) & 0xfffff, (unsigned)got & 0xfffff, rid);
            }
            continue;
        }
        if (r.status >= 500 && r.status < 600 && is_problem(&r)) {
            atomic_fetch_add(&saves_refused[ph], 1);
        } else {
            atomic_fetch_add(&saves_bad, 1);
            report("POST %s answered %ld (not 2xx nor a problem+json 5xx): %.200s", path, r.status,
                   r.body);
        }
        http_resp_free(&r);
    }
    free(body);
    http_client_free(c);
    return NULL;
}

static void *reader(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 40503u + 7u;
    http_client *c = http_client_new();
    while (!atomic_load(&stop)) {
        int id = (int)(rnd(&seed) % IDS);
        uint64_t floor = atomic_load(&acked[id]); /* acknowledged before this read began */
        long st;
        char rid[80];
        uint64_t got = read_latest(c, id, &st, rid, sizeof rid);
        atomic_fetch_add(&reads, 1);
        if (st != 200) {
            atomic_fetch_add(&read_errors, 1);
            report("GET /dictionary/d%d answered %ld (request %s)", id, st, rid);
        } else if (got < floor) {
            atomic_fetch_add(&stale, 1);
            report("STALE: GET /dictionary/d%d gave 1.0.%u, but 1.0.%u was acknowledged "
                   "before the read began (phase %s, request %s)",
                   id, (unsigned)got & 0xfffff, (unsigned)floor & 0xfffff,
                   PHASE_NAME[atomic_load(&phase)], rid);
        }
    }
    http_client_free(c);
    return NULL;
}

/* Appends to the ballast file until the tmpfs has no byte left. */
static void top_up(void)
{
    int fd = open(ballast, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
        return;
    static char chunk[4096];
    for (size_t sz = sizeof chunk; sz >= 1; sz /= 2)
        while (write(fd, chunk, sz) == (ssize_t)sz)
            ;
    close(fd);
}

static unsigned long long free_bytes(void)
{
    struct statvfs v;
    if (statvfs(l2_dir, &v) != 0)
        return ~0ull;
    return (unsigned long long)v.f_bavail * v.f_frsize;
}

static long fill_puts_ok, fill_put_fail_status[600];
static int fill_no;

/* Cache values (at most max_puts, stopping at the first that fails),
 * then the ballast: the disk is full. */
static void fill(int max_puts)
{
    static char value[FILL_LEN];
    memset(value, 'f', sizeof value);
    const char *h[] = {"Content-Type: application/octet-stream", NULL};
    for (int i = 0; i < max_puts; i++) {
        char path[64];
        snprintf(path, sizeof path, "/cache/default/fill%d", fill_no++);
        http_resp r;
        ck_assert_int_eq(http_do(&S, "PUT", path, h, value, sizeof value, &r), 0);
        long st = r.status;
        bool problem = is_problem(&r);
        http_resp_free(&r);
        if (st == 201 || st == 200) {
            fill_puts_ok++;
            continue;
        }
        ck_assert_msg(st >= 500 && problem, "PUT %s on a full L2 answered %ld", path, st);
        fill_put_fail_status[st]++;
        break;
    }
    unsigned long long left = ~0ull;
    for (int i = 0; i < 50 && left != 0; i++) { /* invalidations may free a little meanwhile */
        top_up();
        left = free_bytes();
    }
    ck_assert_msg(left == 0, "could not fill the tmpfs at %s: %llu bytes still free", l2_dir, left);
}

static void run_for(int ms, bool keep_full)
{
    int64_t end = now_ms() + ms;
    while (now_ms() < end) {
        if (keep_full)
            top_up(); /* invalidations free entries: take the space back */
        usleep(20 * 1000);
    }
}

static void keep_log(void)
{
    char kept[400], cmd[1000];
    snprintf(kept, sizeof kept, "%s/strata-l2full-failure.log", orig_tmp);
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", S.log_path, kept);
    if (system(cmd) == 0)
        fprintf(stderr, "l2_full: the server's log is kept at %s\n", kept);
}

START_TEST(latest_is_never_stale_when_the_l2_disk_is_full)
{
    /* every id exists before the disk fills, so reads answer 200 */
    const char *h[] = {"Content-Type: application/json", NULL};
    for (int id = 0; id < IDS; id++) {
        char path[64], body[128];
        snprintf(path, sizeof path, "/dictionary/d%d/versions", id);
        snprintf(body, sizeof body,
                 "{\"content\": \"first\", \"word\": \"w\", \"provider\": \"p\"}");
        http_resp r;
        ck_assert_int_eq(http_do(&S, "POST", path, h, body, strlen(body), &r), 0);
        ck_assert_int_eq(r.status, 201);
        json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
        atomic_store(&acked[id], vkey_of(version_of(j)));
        json_decref(j);
        http_resp_free(&r);
    }
    /* a few cache values, and a ballast large enough that removing it
     * leaves the L2 room to work again */
    atomic_store(&phase, PH_FULL);
    fill(4);
    int64_t t0 = now_ms();
    pthread_t w[WRITERS], rd[READERS];
    for (uintptr_t i = 0; i < WRITERS; i++)
        pthread_create(&w[i], NULL, writer, (void *)(i + 1));
    for (uintptr_t i = 0; i < READERS; i++)
        pthread_create(&rd[i], NULL, reader, (void *)(i + 1));
    run_for(PHASE_MS, true);

    /* free the space: the ballast first (the index needs room to delete) */
    atomic_store(&phase, PH_FREE);
    unlink(ballast);
    unsigned long long unlinked = free_bytes();
    http_resp r;
    ck_assert_int_eq(http_do(&S, "DELETE", "/cache/default?pattern=fill*", NULL, NULL, 0, &r), 0);
    long del_status = r.status;
    http_resp_free(&r);
    unsigned long long freed = free_bytes();
    run_for(PHASE_MS, false);

    /* values until the disk refuses one, then the ballast for the rest */
    atomic_store(&phase, PH_REFILL);
    fill(1000);
    run_for(PHASE_MS, true);
    atomic_store(&stop, 1);
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i], NULL);
    for (int i = 0; i < READERS; i++)
        pthread_join(rd[i], NULL);
    double secs = (double)(now_ms() - t0) / 1000.0;

    /* at rest, with the disk still full: every id at its newest */
    long final_stale = 0;
    http_client *c = http_client_new();
    for (int id = 0; id < IDS; id++) {
        long st;
        char rid[80];
        uint64_t got = read_latest(c, id, &st, rid, sizeof rid);
        if (st != 200 || got < atomic_load(&acked[id])) {
            final_stale++;
            report("at rest: GET /dictionary/d%d answered %ld with key %llx, acknowledged %llx", id,
                   st, (unsigned long long)got, (unsigned long long)atomic_load(&acked[id]));
        }
    }
    /* how often concurrent misses on a latest record shared one store read */
    http_resp cs;
    long long coalesced = -1, loads = -1;
    if (http_client_do(c, &S, "GET", "/cache", NULL, NULL, 0, &cs) == 0) {
        json_t *j = json_loadb(cs.body, cs.body_len, 0, NULL);
        json_t *d = json_object_get(json_object_get(j, "internal"), "dictionary");
        coalesced = json_integer_value(json_object_get(d, "coalesced_waits"));
        loads = json_integer_value(json_object_get(d, "loader_calls"));
        json_decref(j);
        http_resp_free(&cs);
    }
    http_client_free(c);

    fprintf(stderr,
            "l2_full: %.1f s; fill PUTs accepted %ld; saves ok/refused: full %ld/%ld, freed "
            "%ld/%ld, full again %ld/%ld; saves with another answer %ld; reads %ld (+%ld by "
            "writers after their save), stale %ld (+%ld own, %ld at rest), read errors %ld\n",
            secs, fill_puts_ok, atomic_load(&saves_ok[PH_FULL]),
            atomic_load(&saves_refused[PH_FULL]), atomic_load(&saves_ok[PH_FREE]),
            atomic_load(&saves_refused[PH_FREE]), atomic_load(&saves_ok[PH_REFILL]),
            atomic_load(&saves_refused[PH_REFILL]), atomic_load(&saves_bad), atomic_load(&reads),
            atomic_load(&own_reads), atomic_load(&stale), atomic_load(&own_stale), final_stale,
            atomic_load(&read_errors));
    fprintf(stderr,
            "l2_full: latest records loaded from the store %lld times, %lld reads waited "
            "for a load in flight\n",
            loads, coalesced);
    fprintf(stderr, "l2_full: a full L2 refused PUTs with:");
    for (int st = 0; st < 600; st++)
        if (fill_put_fail_status[st])
            fprintf(stderr, " %d x%ld", st, fill_put_fail_status[st]);
    fprintf(stderr,
            "; freeing: %llu bytes free without the ballast, DELETE fill* answered %ld, %llu bytes "
            "free after\n",
            unlinked, del_status, freed);

    bool failed = atomic_load(&stale) + atomic_load(&own_stale) + final_stale +
                          atomic_load(&saves_bad) + atomic_load(&read_errors) >
                      0 ||
                  del_status != 200 || atomic_load(&saves_ok[PH_FREE]) == 0;
    if (failed)
        keep_log();
    /* stop before asserting: a failed assertion ends this process */
    int code = server_stop(&S, 60);
    ck_assert_int_eq(atomic_load(&stale), 0);
    ck_assert_int_eq(atomic_load(&own_stale), 0);
    ck_assert_int_eq(final_stale, 0);
    ck_assert_int_eq(atomic_load(&saves_bad), 0);
    ck_assert_int_eq(atomic_load(&read_errors), 0);
    ck_assert_int_eq(del_status, 200);
    ck_assert_int_gt(atomic_load(&saves_ok[PH_FREE]), 0); /* with room, saves go through */
    ck_assert_int_gt(atomic_load(&reads), 100);
    ck_assert_msg(code == 0, "the server exited with %d on SIGTERM", code);
}
END_TEST

static Suite *l2_full_suite(void)
{
    Suite *s = suite_create("l2_full");
    TCase *t = tcase_create("l2_full");
    tcase_set_timeout(t, 300);
    tcase_add_unchecked_fixture(t, make_dirs, remove_dirs);
    tcase_add_checked_fixture(t, mount_and_start, stop_and_unmount);
    tcase_add_test(t, latest_is_never_stale_when_the_l2_disk_is_full);
    suite_add_tcase(s, t);
    return s;
}

int main(void)
{
    return run_suite(l2_full_suite());
}
