#include "tr_join.h"

#include "plg_json.h"
#include "plg_util.h"
#include "teleroute.pb-c.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

void tr_join_clear(struct tr_join *j)
{
  free(j->src_name);
  free(j->dst_prefix);
  free(j->routes);
  memset(j, 0, sizeof *j);
}

static int addr_field(const ProtobufCBinaryData *b, const char *name, struct tr_prefix *p, plg_error_t *err)
{
  if (tr_addr_from_bytes(b->data, b->len, p, err) < 0)
    return plg_error_wrap(err, "JoinResponse.%s", name);
  return 0;
}

static int prefix_field(const ProtobufCBinaryData *b, const char *name, struct tr_prefix *p, plg_error_t *err)
{
  if (tr_prefix_from_bytes(b->data, b->len, p, err) < 0)
    return plg_error_wrap(err, "JoinResponse.%s", name);
  return 0;
}

/* Interface names reach Docker and the kernel: at most 15 characters of [A-Za-z0-9_.-]. */
static bool valid_ifname(const char *s, bool allow_empty)
{
  size_t n = strlen(s);
  if (n == 0)
    return allow_empty;
  if (n > 15)
    return false;
  for (const char *p = s; *p != '\0'; p++)
    if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
          *p == '.' || *p == '-'))
      return false;
  return true;
}

static int decode_fields(const Telepresence__Teleroute__JoinResponse *r, struct tr_join *j, plg_error_t *err)
{
  if (!valid_ifname(r->interface_src_name, true) || !valid_ifname(r->interface_dst_prefix, true))
    return plg_error_make(err, 0, "the daemon named an invalid interface (\"%.32s\", prefix \"%.32s\")",
                          r->interface_src_name, r->interface_dst_prefix);
  j->src_name = xstrdup(r->interface_src_name);
  j->dst_prefix = xstrdup(r->interface_dst_prefix);
  j->disable_gw = r->disable_gw;
  if (addr_field(&r->via, "via", &j->via, err) < 0 ||
      addr_field(&r->via_ip_v4, "via_ip_v4", &j->via4, err) < 0 ||
      addr_field(&r->via_ip_v6, "via_ip_v6", &j->via6, err) < 0 ||
      prefix_field(&r->gw_ip_v4, "gw_ip_v4", &j->gw4, err) < 0 ||
      prefix_field(&r->gw_ip_v6, "gw_ip_v6", &j->gw6, err) < 0)
    return -1;
  if ((j->via4.family != 0 && j->via4.family != AF_INET) ||
      (j->via6.family != 0 && j->via6.family != AF_INET6) ||
      (j->gw4.family != 0 && j->gw4.family != AF_INET) || (j->gw6.family != 0 && j->gw6.family != AF_INET6))
    return plg_error_make(err, 0, "the daemon sent an address of the wrong family in JoinResponse");
  if (r->n_routes > TR_MAX_ROUTES)
    return plg_error_make(
        err, 0, "the daemon's Join reply has %zu routes; teleroute takes at most %d (TR_MAX_ROUTES)",
        r->n_routes, TR_MAX_ROUTES);
  j->routes = xcalloc(r->n_routes ? r->n_routes : 1, sizeof *j->routes);
  for (size_t i = 0; i < r->n_routes; i++) {
    if (tr_prefix_from_bytes(r->routes[i].data, r->routes[i].len, &j->routes[i], err) < 0)
      return plg_error_wrap(err, "JoinResponse.routes[%zu]", i);
    if (j->routes[i].family == 0)
      return plg_error_make(err, 0, "JoinResponse.routes[%zu] is empty", i);
    j->n_routes++;
  }
  return 0;
}

int tr_join_decode(const uint8_t *bytes, size_t len, struct tr_join *j, plg_error_t *err)
{
  memset(j, 0, sizeof *j);
  Telepresence__Teleroute__JoinResponse *r = telepresence__teleroute__join_response__unpack(NULL, len, bytes);
  if (r == NULL)
    return plg_error_make(err, 0, "the daemon's JoinResponse cannot be decoded");
  int rc = decode_fields(r, j, err);
  telepresence__teleroute__join_response__free_unpacked(r, NULL);
  if (rc < 0)
    tr_join_clear(j);
  return rc;
}

static const struct tr_prefix *next_hop(const struct tr_join *j, int family)
{
  const struct tr_prefix *own = family == AF_INET ? &j->via4 : &j->via6;
  if (own->family != 0)
    return own;
  if (j->via.family == family)
    return &j->via;
  return NULL;
}

/* Without any pool (unknown networks, tests) every family is taken to be present. */
static bool has_family(const struct tr_prefix *pools, size_t n_pools, int family)
{
  if (n_pools == 0)
    return true;
  for (size_t i = 0; i < n_pools; i++)
    if (pools[i].family == family)
      return true;
  return false;
}

size_t tr_join_routes(const struct tr_join *j, const struct tr_prefix *pools, size_t n_pools,
                      struct tr_route *out, char **dropped)
{
  size_t n = 0, n_dropped = 0;
  cleanup_free struct tr_route *overlapping = xcalloc(j->n_routes ? j->n_routes : 1, sizeof *overlapping);
  *dropped = NULL;
  for (size_t i = 0; i < j->n_routes; i++) {
    const struct tr_prefix *dst = &j->routes[i];
    if (!has_family(pools, n_pools, dst->family))
      continue; /* the container has no address of that family here: Docker could not add it */
    bool overlap = false;
    for (size_t k = 0; k < n_pools && !overlap; k++)
      overlap = tr_prefix_overlaps(dst, &pools[k]);
    if (overlap) {
      overlapping[n_dropped++].dst = *dst;
      continue;
    }
    const struct tr_prefix *via = next_hop(j, dst->family);
    out[n].dst = *dst;
    if (via != NULL)
      out[n].via = *via;
    else
      memset(&out[n].via, 0, sizeof out[n].via);
    n++;
  }
  if (n_dropped > 0)
    *dropped = tr_routes_describe(overlapping, tr_routes_unique(overlapping, n_dropped), TR_ROUTES_SHOWN);
  /* Docker refuses a Join whose routes repeat ("file exists") */
  return tr_routes_unique(out, n);
}

json_t *tr_join_reply(const struct tr_join *j, const struct tr_route *routes, size_t n_routes)
{
  json_t *reply = json_object();
  if (*j->src_name != '\0')
    json_object_set_new(reply, "InterfaceName",
                        plg_json_pack("{s:s,s:s}", "SrcName", j->src_name, "DstPrefix", j->dst_prefix));
  json_t *list = json_array();
  for (size_t i = 0; i < n_routes; i++) {
    char dst[64], via[64];
    tr_prefix_format(&routes[i].dst, false, dst, sizeof dst);
    if (routes[i].via.family == 0) {
      json_array_append_new(list, plg_json_pack("{s:s,s:i}", "Destination", dst, "RouteType", 1));
    } else {
      tr_prefix_format(&routes[i].via, true, via, sizeof via);
      json_array_append_new(
          list, plg_json_pack("{s:s,s:i,s:s}", "Destination", dst, "RouteType", 0, "NextHop", via));
    }
  }
  json_object_set_new(reply, "StaticRoutes", list);
  /* The daemon's gw_ip_v4/gw_ip_v6 name the network's IPAM gateway, an address nothing on a
   * teleroute network holds (the daemon's bridge has none). Docker makes the Gateway of a
   * container's gateway endpoint its default route: measured on the real engine, a container on
   * the teleroute network alone got "default via <gateway>" and "No route to host" for everything
   * else, and on a non-internal teleroute network whose name sorts before "bridge" the daemon's own
   * container lost its default route to it. So no gateway is given, and the gateway service is
   * disabled (no docker_gwbridge): containers keep the default route of their other networks. */
  json_object_set_new(reply, "DisableGatewayService", json_true());
  return reply;
}
