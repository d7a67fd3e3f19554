#include "tr_options.h"

#include "plg_net.h"
#include "plg_settings.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static const char *const known = "host, port, pid";

/* An IPv4-mapped address is the IPv4 address (plg_net_parse_ip): Telepresence sends
 * ::ffff:a.b.c.d for an IPv6-only daemon network (pkg/client/docker/teleroute/network.go,
 * netip.AddrFrom16), and a host booted without IPv6 can reach it only as a.b.c.d. */
static int parse_host(const char *value, struct tr_net_opts *o, plg_error_t *err)
{
  char canonical[INET6_ADDRSTRLEN];
  int family;
  if (!plg_net_parse_ip(value, canonical, &family))
    return plg_error_bad_request(err,
                                 "option \"host\": \"%.64s\" is not an IPv4 or IPv6 address (the daemon "
                                 "container's address)",
                                 value);
  snprintf(o->host, sizeof o->host, "%s", canonical);
  return 0;
}

static int parse_one(const char *key, const char *value, struct tr_net_opts *o, plg_error_t *err)
{
  int64_t v;
  plg_error_t inner = NULL;
  if (strcmp(key, "host") == 0)
    return parse_host(value, o, err);
  if (strcmp(key, "port") == 0)
    return plg_parse_port("port", value, &o->port, err);
  if (strcmp(key, "pid") == 0) {
    if (plg_parse_int(value, 1, 4194304, &v, &inner) < 0 || value[0] == '+' || value[0] == '-') {
      plg_error_release(&inner);
      return plg_error_bad_request(err, "option \"pid\": \"%.32s\" is not a process id", value);
    }
    o->pid = v;
    return 0;
  }
  return plg_error_bad_request(err, "unknown option \"%.64s\" (valid options: %s)", key, known);
}

int tr_net_opts_parse(json_t *generic, struct tr_net_opts *o, plg_error_t *err)
{
  memset(o, 0, sizeof *o);
  o->port = TR_DEFAULT_PORT;
  const char *key;
  json_t *value;
  json_object_foreach(generic, key, value)
  {
    if (!json_is_string(value))
      return plg_error_bad_request(err, "option \"%.64s\" must be a string", key);
    if (parse_one(key, json_string_value(value), o, err) < 0)
      return -1;
  }
  if (o->host[0] == '\0')
    return plg_error_bad_request(err, "option \"host\" is required: the daemon container's IP address "
                                      "(-o host=172.17.0.2)");
  return 0;
}
