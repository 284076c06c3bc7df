/* This process's name among the nodes sharing a store: host, pid and 64
 * random bits, so that a restarted process (same pid after a reboot, or
 * a container's pid 1) is never taken for the one before it. Used as a
 * lease holder. Thread-safe; computed once. */
#ifndef STRATA_NODE_ID_H
#define STRATA_NODE_ID_H

#define NODE_ID_MAX 128

const char *node_id(void);

#endif
