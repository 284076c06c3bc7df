/* The multiproc test's cluster mode: its nodes are not children of the
 * test but a cluster that scripts/cluster starts in a directory of its own
 * (FerretDB on PostgreSQL for the store, redis-server for the L2,
 * versitygw for the blobs, N Strata nodes, nginx in front), and the
 * faults are that script's and the test servers' own commands.
 *
 * Every function runs the scripts with posix_spawn (their output goes to
 * DIR/cluster.log) and may be called from any thread, though the test calls
 * the ones that change the cluster from one thread only. */
#ifndef STRATA_TEST_MP_CLUSTER_H
#define STRATA_TEST_MP_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../support/harness.h"

typedef struct mp_cluster {
    char dir[200];     /* made by mp_cluster_start; holds everything */
    char scripts[512]; /* the repository's scripts/ directory */
    int n;
} mp_cluster;

/* Starts the cluster: N nodes (1..16) with the extra strata arguments args
 * (NULL-terminated), the servers and nginx, in a new directory under
 * $TMPDIR (or /tmp). The scripts are found through $STRATA_CLUSTER_SCRIPTS.
 * Fills nodes[0..n-1] (port, pid, log and data paths) and lb (nginx's
 * port; pid 0). Returns 0, or -1 with a message on stderr (whatever was
 * started is stopped again; the directory stays for its logs). */
int mp_cluster_start(mp_cluster *c, int n, const char *const *args, test_server *nodes,
                     test_server *lb);

/* kill -9 node i (0-based) and wait until it is gone. 0 or -1. */
int mp_cluster_kill(const mp_cluster *c, int i);

/* Starts node i again on its port with its arguments, waits until it
 * answers /ready and refreshes node->pid. 0 or -1. */
int mp_cluster_restart(const mp_cluster *c, int i, test_server *node);

/* Whether node's process still runs (it is not this process's child). */
bool mp_cluster_alive(const test_server *node);

/* redis-server killed and started again, empty, on its port. 0 or -1. */
int mp_cluster_redis_restart(const mp_cluster *c);
/* versitygw stopped; started again on its port and data. 0 or -1. */
int mp_cluster_s3_stop(const mp_cluster *c);
int mp_cluster_s3_start(const mp_cluster *c);

/* Stops nginx, the nodes (SIGTERM) and the servers. 0 or -1. */
int mp_cluster_stop(const mp_cluster *c);
/* Removes the directory (after mp_cluster_stop). */
void mp_cluster_remove(const mp_cluster *c);

/* What the nodes' logs say of the maintenance lease: every "maintenance
 * lease taken: token T, holder H" line, from every node, in token order.
 * takes: the lines; moves: consecutive takings by different holders (a
 * restarted node is a new holder); shared: tokens that more than one line
 * names (two holders of one token: must be 0); newest and holder: the
 * newest token and the one that took it (0 and "" when none did). Returns 0, or -1 when a log
 * cannot be read. */
#define MP_HOLDER_MAX 128 /* node_id()'s NODE_ID_MAX */
typedef struct mp_lease_history {
    int takes, moves, shared;
    uint64_t newest; /* the newest token taken (0: none) */
    char holder[MP_HOLDER_MAX];
} mp_lease_history;

/* The node (0-based) whose process is `holder` (its pid is the id's
 * second field), or -1. */
int mp_cluster_node_of(const test_server *nodes, int n, const char *holder);
int mp_cluster_lease_history(const mp_cluster *c, mp_lease_history *out);

#endif
