/* teleroute's state: the table of networks and endpoints (tr_table.h), its file, and each
 * network's session with its daemon. This module owns the lock: handlers and the refresher change
 * the state only through these calls, and never hold the lock across a call to a daemon (they take
 * a held session, call, and record the outcome).
 *
 * Locking: state.lock -> the session group's lock -> session.lock -> session's connection lock
 * (tr_session.h, tr_grpc.h). No session is released while state.lock is held (the last release
 * joins a thread): sessions leave the table into the caller's hands and are released after.
 * Every change is saved at once; a save that fails is logged and the state in memory stays. */
#ifndef TR_STATE_H
#define TR_STATE_H

#include "plg_error.h"
#include "tr_routes.h"
#include "tr_session.h"
#include "tr_table.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct tr_state;

/* Loads STATE_FILE (missing: empty; damaged: moved aside, see tr_table_load); NULL with the reason
 * when it cannot be read now. Sessions are made on first use with the two timeouts. */
struct tr_state *tr_state_open(const char *state_file, int64_t connect_timeout_ms, int64_t call_timeout_ms,
                               plg_error_t *err);
/* The start of a stop: every session's calls end with CANCELLED, every later one too, and
 * tr_state_sleep returns at once. Quick; may be called more than once. */
void tr_state_stop(struct tr_state *st);
/* Sleeps MS unless the state stops first; false once it has stopped. */
bool tr_state_sleep(struct tr_state *st, int64_t ms);
bool tr_state_stopping(struct tr_state *st);
/* Releases the sessions and frees the state; nothing may use it any more. */
void tr_state_close(struct tr_state *st);

/* A session for N, which is not in the table yet (CreateNetwork reaches the daemon first). */
struct tr_session *tr_state_new_session(struct tr_state *st, const struct tr_network *n);
/* Adds N with its session S (whose reference the table takes), in place of a network of the same
 * id (whose session is released). */
void tr_state_add_network(struct tr_state *st, const struct tr_network *n, struct tr_session *s);
/* False when there was no such network. */
bool tr_state_remove_network(struct tr_state *st, const char *id);
/* The network's session, held for the caller (tr_session_release it), or NULL with a 404. */
struct tr_session *tr_state_session(struct tr_state *st, const char *net_id, plg_error_t *err);

/* Whether a new endpoint of NET_ID is the daemon's: DAEMON_OPT when given (0 or 1), else, as
 * long as no endpoint of the network ever said, whether it is the network's first. */
bool tr_state_endpoint_is_daemon(struct tr_state *st, const char *net_id, int daemon_opt);
/* An endpoint whose CreateEndpoint the daemon accepted (nothing when the network is gone). */
void tr_state_endpoint_created(struct tr_state *st, const char *net_id, const char *ep_id,
                               const struct tr_prefix *addr4, const struct tr_prefix *addr6, bool daemon);
/* True when EP_ID was created on NET_ID; the network's pools into POOLS (TR_MAX_POOLS of room). */
bool tr_state_endpoint_created_on(struct tr_state *st, const char *net_id, const char *ep_id,
                                  struct tr_prefix *pools, size_t *n_pools);
void tr_state_endpoint_joined(struct tr_state *st, const char *ep_id, const char *sandbox_key,
                              const char *src_name, const struct tr_route *routes, size_t n_routes);
void tr_state_endpoint_left(struct tr_state *st, const char *ep_id);
void tr_state_endpoint_removed(struct tr_state *st, const char *ep_id);
/* EndpointOperInfo's Value: daemon, interface, routes (empty for an unknown endpoint). */
json_t *tr_state_endpoint_info(struct tr_state *st, const char *ep_id);

/* What route refresh needs of one joined endpoint (not the daemon's, with a SandboxKey): a copy,
 * its session held. */
struct tr_state_item {
  char ep_id[TR_ID_MAX + 1];
  char *sandbox_key;
  struct tr_session *session;
  struct tr_prefix pools[TR_MAX_POOLS];
  size_t n_pools;
  struct tr_prefix addr4, addr6;
  struct tr_route *routes; /* what the container has, as far as we know */
  size_t n_routes;
  struct tr_state_item *next;
};
struct tr_state_item *tr_state_snapshot(struct tr_state *st);
/* Frees the items and releases their sessions (never with the lock held). */
void tr_state_snapshot_free(struct tr_state_item *items);
/* ROUTES are now in EP_ID's container: recorded if the endpoint is still joined. */
void tr_state_routes_refreshed(struct tr_state *st, const char *ep_id, const struct tr_route *routes,
                               size_t n);

#endif
