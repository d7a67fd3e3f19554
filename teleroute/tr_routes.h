/* Route sets, as a container is given them: de-duplicated, compared and diffed in n log n, and
 * described in log lines of bounded length, whatever the daemon sends. */
#ifndef TR_ROUTES_H
#define TR_ROUTES_H

#include "tr_addr.h"

#include <stdbool.h>
#include <stddef.h>

/* The most routes one Join may give a container; a JoinResponse with more is refused, naming both
 * numbers. Telepresence's daemon sends the cluster's subnets, which it merges: a few dozen. The cap
 * bounds the work of a Join and of every refresh round, Docker's reply, and the state file. */
#define TR_MAX_ROUTES 4096

/* How many routes a log line names before it says "and N more". */
#define TR_ROUTES_SHOWN 3

struct tr_route {
  struct tr_prefix dst;
  struct tr_prefix via; /* family 0: connected */
};

/* A total order: destination (family, address, length), then next hop (family, address). */
int tr_route_cmp(const struct tr_route *a, const struct tr_route *b);

/* Removes repeats from R in place, keeping the first of each in its place; returns the new count. */
size_t tr_routes_unique(struct tr_route *r, size_t n);

/* True when A and B hold the same routes, in any order (a repeat counts once). */
bool tr_routes_same(const struct tr_route *a, size_t na, const struct tr_route *b, size_t nb);

/* One step of bringing a container's routes from OLD to NEW. */
struct tr_route_change {
  const struct tr_route *route; /* points into OLD (a delete) or NEW (an add) */
  bool add;
  int ifindex;
};

/* The changes from OLD to NEW: each route of OLD that NEW lacks is deleted, each route of NEW that
 * OLD lacks is added, on the interface of its family (IF4, IF6; 0 = none found). A route whose
 * family has no interface is left alone, counted in *SKIPPED: the kernel would delete a route of
 * that destination on any interface, one that is not ours included. Returns the number of changes,
 * in *CHANGES (malloc'd; deletes first). */
size_t tr_routes_plan(const struct tr_route *old, size_t n_old, const struct tr_route *new_routes,
                      size_t n_new, int if4, int if6, struct tr_route_change **changes, size_t *skipped);

/* "2 route(s): 10.1.0.0/16, 10.2.0.0/16 via 172.30.0.2", or, past SHOWN routes,
 * "5000 route(s): 10.1.0.0/16, ... and 4997 more". Malloc'd. */
char *tr_routes_describe(const struct tr_route *r, size_t n, size_t shown);

#endif
