/* The daemon client: the Teleroute calls an endpoint's life needs, typed. The HTTP handlers and the
 * refresher call these; only this module and tr_session (Connect) build protobuf messages. */
#ifndef TR_DAEMON_H
#define TR_DAEMON_H

#include "plg_error.h"
#include "tr_addr.h"
#include "tr_join.h"
#include "tr_session.h"

#include <stdbool.h>
#include <stddef.h>

/* CreateEndpoint with the endpoint's addresses (family 0: none); DAEMON marks the daemon's own. */
int tr_daemon_create_endpoint(struct tr_session *s, const char *ep_id, const struct tr_prefix *addr4,
                              const struct tr_prefix *addr6, bool daemon, plg_error_t *err);

/* Join, as the daemon answers it, decoded into *J (tr_join_clear it) and translated into *ROUTES
 * (malloc'd, *N_ROUTES of them): the routes Docker is given, those overlapping POOLS dropped with
 * one warning in the log (tr_join_routes). */
int tr_daemon_join(struct tr_session *s, const char *ep_id, const struct tr_prefix *pools, size_t n_pools,
                   struct tr_join *j, struct tr_route **routes, size_t *n_routes, plg_error_t *err);

/* Leave and RemoveEndpoint: one try with a short connect deadline, since they must not wait on a
 * daemon that is gone (containers must always stop). */
int tr_daemon_leave(struct tr_session *s, const char *ep_id, plg_error_t *err);
int tr_daemon_remove_endpoint(struct tr_session *s, const char *ep_id, plg_error_t *err);

#endif
