/* The daemon's JoinResponse, turned into Docker's Join reply. */
#ifndef TR_JOIN_H
#define TR_JOIN_H

#include "plg_error.h"
#include "tr_addr.h"
#include "tr_routes.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The parts of a JoinResponse this plugin uses, already decoded from bytes. */
struct tr_join {
  char *src_name;
  char *dst_prefix;
  struct tr_prefix *routes;
  size_t n_routes;
  struct tr_prefix via, via4, via6, gw4, gw6;
  bool disable_gw;
};

/* Decodes the protobuf JoinResponse BYTES. Malformed addresses are errors, and so are more than
 * TR_MAX_ROUTES routes. */
int tr_join_decode(const uint8_t *bytes, size_t len, struct tr_join *j, plg_error_t *err);
void tr_join_clear(struct tr_join *j);

/* The routes Docker should install, each with its next hop: the via address of its own family,
 * else the legacy `via` if it has that family, else none (a connected route), in the daemon's
 * order, each once. A route that overlaps one of the network's own POOLS is dropped (*DROPPED, for
 * the log, counts them and names the first few: tr_routes_describe); so is a route of a family the
 * network has no pool for (an IPv6 subnet on an IPv4-only network). OUT has room for j->n_routes. */
size_t tr_join_routes(const struct tr_join *j, const struct tr_prefix *pools, size_t n_pools,
                      struct tr_route *out, char **dropped);

/* Docker's Join reply: InterfaceName, StaticRoutes, and DisableGatewayService always true; the
 * daemon's gateways are never passed on as Gateway/GatewayIPv6 (see tr_join.c). */
json_t *tr_join_reply(const struct tr_join *j, const struct tr_route *routes, size_t n_routes);

#endif
