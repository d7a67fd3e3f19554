#include "tr_daemon.h"

#include "plg_log.h"
#include "plg_util.h"
#include "teleroute.pb-c.h"

#include <stdlib.h>

int tr_daemon_create_endpoint(struct tr_session *s, const char *ep_id, const struct tr_prefix *addr4,
                              const struct tr_prefix *addr6, bool daemon, plg_error_t *err)
{
  uint8_t b4[17], b6[17];
  Telepresence__Teleroute__CreateEndpointRequest msg = TELEPRESENCE__TELEROUTE__CREATE_ENDPOINT_REQUEST__INIT;
  msg.id = (char *)ep_id;
  msg.daemon = daemon;
  msg.addr_ipv4 = (ProtobufCBinaryData){tr_addr_to_bytes(addr4, b4), b4};
  msg.addr_ipv6 = (ProtobufCBinaryData){tr_addr_to_bytes(addr6, b6), b6};
  uint8_t *resp = NULL;
  size_t len;
  int rc = tr_session_call(s, "CreateEndpoint", &msg.base, &resp, &len, err);
  free(resp);
  return rc;
}

int tr_daemon_join(struct tr_session *s, const char *ep_id, const struct tr_prefix *pools, size_t n_pools,
                   struct tr_join *j, struct tr_route **routes, size_t *n_routes, plg_error_t *err)
{
  Telepresence__Teleroute__EndpointIdentifier msg = TELEPRESENCE__TELEROUTE__ENDPOINT_IDENTIFIER__INIT;
  msg.id = (char *)ep_id;
  uint8_t *resp = NULL;
  size_t len = 0;
  if (tr_session_call(s, "Join", &msg.base, &resp, &len, err) < 0)
    return -1;
  int rc = tr_join_decode(resp, len, j, err);
  free(resp);
  if (rc < 0)
    return -1;
  *routes = xcalloc(j->n_routes ? j->n_routes : 1, sizeof **routes);
  cleanup_free char *dropped = NULL;
  *n_routes = tr_join_routes(j, pools, n_pools, *routes, &dropped);
  if (dropped != NULL)
    plg_warn("endpoint %.12s: dropped %s: they overlap the network's own address pool", ep_id, dropped);
  return 0;
}

static int teardown(struct tr_session *s, const char *method, const char *ep_id, plg_error_t *err)
{
  Telepresence__Teleroute__EndpointIdentifier msg = TELEPRESENCE__TELEROUTE__ENDPOINT_IDENTIFIER__INIT;
  msg.id = (char *)ep_id;
  return tr_session_call_once(s, method, &msg.base, err);
}

int tr_daemon_leave(struct tr_session *s, const char *ep_id, plg_error_t *err)
{
  return teardown(s, "Leave", ep_id, err);
}

int tr_daemon_remove_endpoint(struct tr_session *s, const char *ep_id, plg_error_t *err)
{
  return teardown(s, "RemoveEndpoint", ep_id, err);
}
