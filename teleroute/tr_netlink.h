/* Netlink, through libnl: checking the interface the daemon named, and bringing a container's
 * routes in line with what the daemon announces. teleroute never creates, deletes or changes an
 * interface: the veth pairs are the daemon's. */
#ifndef TR_NETLINK_H
#define TR_NETLINK_H

#include "plg_error.h"
#include "tr_join.h"

/* NAME must be a veth in the plugin's own network namespace (where Docker looks for it). */
int tr_link_check(const char *name, plg_error_t *err);

/* Inside the network namespace NETNS_FD (on a thread of its own): adds the routes of NEW missing
 * from OLD, deletes those of OLD missing from NEW, and touches no other route (tr_routes_plan).
 * Routes are added and deleted on the interface that holds ADDR4 (or ADDR6) only; when none does,
 * nothing of that family is touched and the error's errno is ENXIO (not the container's
 * namespace). *CHANGES counts what was done. */
int tr_netns_sync_routes(int netns_fd, const struct tr_prefix *addr4, const struct tr_prefix *addr6,
                         const struct tr_route *old, size_t n_old, const struct tr_route *new_routes,
                         size_t n_new, int *changes, plg_error_t *err);

#endif
