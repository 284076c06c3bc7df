#include "mp_cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* Runs argv (argv[0] a path) with its output appended to DIR/cluster.log;
 * returns its exit status, or -1 when it could not run. */
static int run(const mp_cluster *c, const char *const *argv)
{
    char log[300];
    snprintf(log, sizeof log, "%s/cluster.log", c->dir);
    posix_spawn_file_actions_t fa;
    if (posix_spawn_file_actions_init(&fa) != 0)
        return -1;
    pid_t pid;
    int rc = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0)
        rc = posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (rc == 0)
        rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
    if (rc == 0)
        rc = posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        fprintf(stderr, "mp_cluster: cannot run %s: %s\n", argv[0], strerror(rc));
        return -1;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0)
        fprintf(stderr, "mp_cluster: %s %s exited with %d (see %s)\n", argv[0],
                argv[1] ? argv[1] : "", code, log);
    return code;
}

static int script(const mp_cluster *c, const char *name, char *path, size_t cap)
{
    int n = snprintf(path, cap, "%s/%s", c->scripts, name);
    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* The first integer in DIR/rel, or -1. */
static long read_num(const mp_cluster *c, const char *rel)
{
    char path[400];
    snprintf(path, sizeof path, "%s/%s", c->dir, rel);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long v = -1;
    if (fscanf(f, "%ld", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

static int fill_node(const mp_cluster *c, int i, test_server *s)
{
    char rel[64];
    memset(s, 0, sizeof *s);
    snprintf(rel, sizeof rel, "node%d/port", i + 1);
    long port = read_num(c, rel);
    snprintf(rel, sizeof rel, "node%d/pid", i + 1);
    long pid = read_num(c, rel);
    if (port <= 0 || port > 65535 || pid <= 0)
        return -1;
    s->port = (int)port;
    s->pid = (pid_t)pid;
    snprintf(s->data_dir, sizeof s->data_dir, "%s/node%d/data", c->dir, i + 1);
    snprintf(s->log_path, sizeof s->log_path, "%s/node%d/strata.log", c->dir, i + 1);
    return 0;
}

int mp_cluster_start(mp_cluster *c, int n, const char *const *args, test_server *nodes,
                     test_server *lb)
{
    const char *scripts = getenv("STRATA_CLUSTER_SCRIPTS");
    if (scripts == NULL || n < 1 || n > 16) {
        fprintf(stderr, "mp_cluster: STRATA_CLUSTER_SCRIPTS is not set (or N is not 1-16)\n");
        return -1;
    }
    memset(c, 0, sizeof *c);
    c->n = n;
    snprintf(c->scripts, sizeof c->scripts, "%s", scripts);
    const char *tmp = getenv("TMPDIR");
    int len =
        snprintf(c->dir, sizeof c->dir, "%s/strata-cluster-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (len < 0 || (size_t)len >= sizeof c->dir) {
        fprintf(stderr, "mp_cluster: TMPDIR is too long\n");
        return -1;
    }
    if (mkdtemp(c->dir) == NULL) {
        fprintf(stderr, "mp_cluster: mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    char cmd[600], nbuf[16];
    if (script(c, "cluster", cmd, sizeof cmd) != 0)
        return -1;
    snprintf(nbuf, sizeof nbuf, "%d", n);
    const char *argv[40];
    int a = 0;
    argv[a++] = cmd;
    argv[a++] = "start";
    argv[a++] = c->dir;
    argv[a++] = nbuf;
    argv[a++] = "--";
    for (int i = 0; args && args[i] && a < 39; i++)
        argv[a++] = args[i];
    argv[a] = NULL;
    if (run(c, argv) != 0)
        return -1;
    memset(lb, 0, sizeof *lb);
    long lb_port = read_num(c, "nginx/port");
    if (lb_port <= 0 || lb_port > 65535) {
        fprintf(stderr, "mp_cluster: no nginx port in %s\n", c->dir);
        mp_cluster_stop(c);
        return -1;
    }
    lb->port = (int)lb_port;
    snprintf(lb->log_path, sizeof lb->log_path, "%s/nginx/error.log", c->dir);
    for (int i = 0; i < n; i++)
        if (fill_node(c, i, &nodes[i]) != 0) {
            fprintf(stderr, "mp_cluster: node %d has no port or pid in %s\n", i + 1, c->dir);
            mp_cluster_stop(c);
            return -1;
        }
    return 0;
}

static int node_cmd(const mp_cluster *c, const char *verb, int i)
{
    char cmd[600], idx[16];
    if (script(c, "cluster", cmd, sizeof cmd) != 0)
        return -1;
    snprintf(idx, sizeof idx, "%d", i + 1);
    const char *argv[] = {cmd, verb, c->dir, idx, NULL};
    return run(c, argv) == 0 ? 0 : -1;
}

int mp_cluster_kill(const mp_cluster *c, int i)
{
    return node_cmd(c, "kill-node", i);
}

int mp_cluster_restart(const mp_cluster *c, int i, test_server *node)
{
    if (node_cmd(c, "start-node", i) != 0)
        return -1;
    return fill_node(c, i, node);
}

bool mp_cluster_alive(const test_server *node)
{
    if (node->pid <= 0 || kill(node->pid, 0) != 0)
        return false;
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)node->pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t len = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[len] = '\0';
    const char *p = strrchr(stat, ')'); /* the state follows the command's name */
    if (p != NULL && p[1] != '\0' && p[2] == 'Z')
        return false;
    /* and it is still the node, not another process that took its pid */
    char cmdline[1024], want[40];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)node->pid);
    f = fopen(path, "r");
    if (f == NULL)
        return false;
    len = fread(cmdline, 1, sizeof cmdline - 1, f);
    fclose(f);
    for (size_t i = 0; i < len; i++)
        if (cmdline[i] == '\0')
            cmdline[i] = ' ';
    cmdline[len] = '\0';
    snprintf(want, sizeof want, "127.0.0.1:%d ", node->port);
    return strstr(cmdline, want) != NULL;
}

static int server_cmd(const mp_cluster *c, const char *server, const char *verb, const char *sub)
{
    char cmd[600], dir[300];
    if (script(c, server, cmd, sizeof cmd) != 0)
        return -1;
    snprintf(dir, sizeof dir, "%s/%s", c->dir, sub);
    const char *argv[] = {cmd, verb, dir, NULL};
    return run(c, argv) == 0 ? 0 : -1;
}

int mp_cluster_redis_restart(const mp_cluster *c)
{
    return server_cmd(c, "redis-test-server", "restart", "redis");
}

int mp_cluster_s3_stop(const mp_cluster *c)
{
    return server_cmd(c, "s3-test-server", "stop", "s3");
}

int mp_cluster_s3_start(const mp_cluster *c)
{
    /* restart: started again on the same port, credentials and data */
    return server_cmd(c, "s3-test-server", "restart", "s3");
}

int mp_cluster_stop(const mp_cluster *c)
{
    char cmd[600];
    if (script(c, "cluster", cmd, sizeof cmd) != 0)
        return -1;
    const char *argv[] = {cmd, "stop", c->dir, NULL};
    return run(c, argv) == 0 ? 0 : -1;
}

void mp_cluster_remove(const mp_cluster *c)
{
    const char *argv[] = {"/bin/rm", "-rf", c->dir, NULL};
    pid_t pid;
    if (posix_spawn(&pid, argv[0], NULL, NULL, (char *const *)argv, environ) == 0)
        waitpid(pid, NULL, 0);
}

typedef struct taking {
    uint64_t token;
    char holder[MP_HOLDER_MAX]; /* node_id(): a restarted node is another holder */
} taking;

static int by_token(const void *a, const void *b)
{
    uint64_t x = ((const taking *)a)->token, y = ((const taking *)b)->token;
    return x < y ? -1 : x > y;
}

int mp_cluster_lease_history(const mp_cluster *c, mp_lease_history *out)
{
    static const char mark[] = "maintenance lease taken: token ";
    memset(out, 0, sizeof *out);
    taking *t = NULL;
    size_t nt = 0, cap = 0;
    int rc = 0;
    for (int i = 0; i < c->n && rc == 0; i++) {
        char path[300];
        snprintf(path, sizeof path, "%s/node%d/strata.log", c->dir, i + 1);
        FILE *f = fopen(path, "r");
        if (f == NULL) {
            rc = -1;
            break;
        }
        char line[1024];
        while (fgets(line, sizeof line, f) != NULL) {
            const char *m = strstr(line, mark);
            if (m == NULL)
                continue;
            if (nt == cap) {
                size_t ncap = cap ? cap * 2 : 64;
                taking *g = realloc(t, ncap * sizeof *t);
                if (g == NULL) {
                    rc = -1;
                    break;
                }
                t = g;
                cap = ncap;
            }
            char *end = NULL;
            t[nt].token = strtoull(m + sizeof mark - 1, &end, 10);
            const char *h = end ? strstr(end, "holder ") : NULL;
            t[nt].holder[0] = '\0';
            if (h != NULL)
                sscanf(h + 7, "%127s", t[nt].holder);
            nt++;
        }
        fclose(f);
    }
    if (rc == 0 && nt > 0) {
        qsort(t, nt, sizeof *t, by_token);
        out->takes = (int)nt;
        for (size_t k = 1; k < nt; k++) {
            if (t[k].token == t[k - 1].token)
                out->shared++;
            else if (strcmp(t[k].holder, t[k - 1].holder) != 0)
                out->moves++;
        }
        out->newest = t[nt - 1].token;
        snprintf(out->holder, sizeof out->holder, "%s", t[nt - 1].holder);
    }
    free(t);
    return rc;
}

int mp_cluster_node_of(const test_server *nodes, int n, const char *holder)
{
    const char *colon = strchr(holder, ':');
    if (colon == NULL)
        return -1;
    long pid = strtol(colon + 1, NULL, 10);
    for (int i = 0; i < n; i++)
        if (nodes[i].pid == (pid_t)pid)
            return i;
    return -1;
}
