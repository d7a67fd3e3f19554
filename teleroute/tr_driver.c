#include "tr_driver.h"

#include "plg_json.h"
#include "plg_log.h"
#include "plg_settings.h"
#include "plg_util.h"
#include "tr_ctx.h"
#include "tr_daemon.h"
#include "tr_netlink.h"
#include "tr_netns.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct tr_session *tr_ctx_session_locked(struct tr_ctx *c, struct tr_network *n)
{
  if (n->session == NULL)
    n->session = tr_session_new(c->sessions, n->opts.host, n->opts.port, n->gateways, n->n_gateways,
                                c->cfg.connect_timeout_ms, c->cfg.call_timeout_ms);
  tr_session_hold(n->session);
  return n->session;
}

void tr_ctx_save_locked(struct tr_ctx *c)
{
  plg_error_t err = NULL;
  if (tr_table_save(&c->table, c->state_file, TR_STATE_MAX_BYTES, &err) < 0) {
    plg_error("cannot save the network table: %s", err->msg);
    plg_error_release(&err);
  }
}

static int request_ids(json_t *req, bool endpoint, const char **net, const char **ep, plg_error_t *err)
{
  if (plg_json_string(req, "NetworkID", true, net, err) < 0 || tr_id_check("NetworkID", *net, err) < 0)
    return -1;
  if (endpoint &&
      (plg_json_string(req, "EndpointID", true, ep, err) < 0 || tr_id_check("EndpointID", *ep, err) < 0))
    return -1;
  return 0;
}

/* IPv4Data/IPv6Data: [{"Pool": "172.18.0.0/16", "Gateway": "172.18.0.1/16", ...}] */
static int ipam_data(json_t *req, const char *key, struct tr_network *n, plg_error_t *err)
{
  json_t *list, *item;
  size_t i;
  if (plg_json_array(req, key, false, &list, err) < 0)
    return -1;
  json_array_foreach(list, i, item)
  {
    const char *pool, *gw;
    if (!json_is_object(item) || plg_json_string(item, "Pool", false, &pool, err) < 0 ||
        plg_json_string(item, "Gateway", false, &gw, err) < 0)
      return plg_error_wrap(err, "%s[%zu]", key, i);
    if (pool != NULL && n->n_pools < TR_MAX_POOLS && tr_prefix_parse(pool, &n->pools[n->n_pools++], err) < 0)
      return plg_error_wrap(err, "%s[%zu].Pool", key, i);
    if (gw != NULL && n->n_gateways < TR_MAX_POOLS &&
        tr_prefix_parse(gw, &n->gateways[n->n_gateways++], err) < 0)
      return plg_error_wrap(err, "%s[%zu].Gateway", key, i);
  }
  return 0;
}

static int parse_network(json_t *req, const char *id, struct tr_network *n, plg_error_t *err)
{
  json_t *options, *generic;
  memset(n, 0, sizeof *n);
  snprintf(n->id, sizeof n->id, "%s", id);
  if (plg_json_object(req, "Options", false, &options, err) < 0)
    return -1;
  if (options != NULL && plg_json_string_map(options, "com.docker.network.generic", &generic, err) < 0)
    return -1;
  if (options == NULL)
    generic = NULL;
  if (tr_net_opts_parse(generic, &n->opts, err) < 0)
    return -1;
  return ipam_data(req, "IPv4Data", n, err) < 0 || ipam_data(req, "IPv6Data", n, err) < 0 ? -1 : 0;
}

static int handle_create_network(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  struct tr_ctx *c = ctx;
  const char *id;
  struct tr_network n;
  if (request_ids(req, false, &id, NULL, err) < 0 || parse_network(req, id, &n, err) < 0)
    return -1;
  /* Reach the daemon now: a wrong address must fail `docker network create`, not a later run. */
  struct tr_session *s = tr_session_new(c->sessions, n.opts.host, n.opts.port, n.gateways, n.n_gateways,
                                        c->cfg.connect_timeout_ms, c->cfg.call_timeout_ms);
  if (tr_session_connect(s, err) < 0) {
    tr_session_release(s);
    return -1;
  }
  pthread_mutex_lock(&c->lock);
  struct tr_network *old = tr_table_network(&c->table, id);
  if (old != NULL) { /* a repeated create: the new session replaces the old one */
    tr_session_release(old->session);
    tr_table_remove_network(&c->table, id);
  }
  struct tr_network *added = tr_table_add_network(&c->table, id);
  struct tr_network *next = added->next;
  *added = n;
  added->next = next;
  added->session = s;
  tr_ctx_save_locked(c);
  pthread_mutex_unlock(&c->lock);
  plg_info("network %.12s created: daemon %s:%d", id, n.opts.host, n.opts.port);
  return 0;
}

static int handle_delete_network(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  struct tr_ctx *c = ctx;
  const char *id;
  if (request_ids(req, false, &id, NULL, err) < 0)
    return -1;
  pthread_mutex_lock(&c->lock);
  struct tr_network *n = tr_table_network(&c->table, id);
  struct tr_session *s = n != NULL ? n->session : NULL;
  if (n != NULL) {
    tr_table_remove_network(&c->table, id);
    tr_ctx_save_locked(c);
  }
  pthread_mutex_unlock(&c->lock);
  tr_session_release(s); /* outside the lock: closing joins the connection's thread */
  if (n != NULL)
    plg_info("network %.12s deleted", id);
  return 0;
}

/* "daemon" from `docker network connect --driver-opt daemon=true`; other options Docker adds
 * (exposed ports, port maps) are not strings and are not ours. */
static int daemon_option(json_t *req, int *value, plg_error_t *err)
{
  json_t *options;
  *value = -1;
  if (plg_json_object(req, "Options", false, &options, err) < 0)
    return -1;
  json_t *d = options != NULL ? json_object_get(options, "daemon") : NULL;
  if (d == NULL)
    return 0;
  bool b;
  plg_error_t inner = NULL;
  if (!json_is_string(d) || plg_parse_bool(json_string_value(d), &b, &inner) < 0) {
    plg_error_release(&inner);
    return plg_error_bad_request(err, "endpoint option \"daemon\" must be true or false");
  }
  *value = b;
  return 0;
}

static int interface_addrs(json_t *req, struct tr_prefix *a4, struct tr_prefix *a6, plg_error_t *err)
{
  json_t *iface;
  const char *v4 = NULL, *v6 = NULL;
  memset(a4, 0, sizeof *a4);
  memset(a6, 0, sizeof *a6);
  if (plg_json_object(req, "Interface", false, &iface, err) < 0)
    return -1;
  if (iface != NULL && (plg_json_string(iface, "Address", false, &v4, err) < 0 ||
                        plg_json_string(iface, "AddressIPv6", false, &v6, err) < 0))
    return -1;
  if (v4 != NULL && *v4 != '\0' && tr_prefix_parse(v4, a4, err) < 0)
    return plg_error_wrap(err, "Interface.Address");
  if (v6 != NULL && *v6 != '\0' && tr_prefix_parse(v6, a6, err) < 0)
    return plg_error_wrap(err, "Interface.AddressIPv6");
  return 0;
}

/* The network, held session and all, for a call to the daemon made without the lock. */
static struct tr_session *network_session(struct tr_ctx *c, const char *net_id, plg_error_t *err)
{
  pthread_mutex_lock(&c->lock);
  struct tr_network *n = tr_table_network(&c->table, net_id);
  struct tr_session *s = n != NULL ? tr_ctx_session_locked(c, n) : NULL;
  pthread_mutex_unlock(&c->lock);
  if (s == NULL)
    plg_error_not_found(err, "no such teleroute network: %.12s", net_id);
  return s;
}

static int handle_create_endpoint(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  struct tr_ctx *c = ctx;
  const char *net_id, *ep_id;
  struct tr_prefix a4, a6;
  int daemon_opt;
  if (request_ids(req, true, &net_id, &ep_id, err) < 0 || interface_addrs(req, &a4, &a6, err) < 0 ||
      daemon_option(req, &daemon_opt, err) < 0)
    return -1;
  pthread_mutex_lock(&c->lock);
  struct tr_network *n = tr_table_network(&c->table, net_id);
  bool daemon = false;
  if (n != NULL) {
    /* without any daemon option, the first endpoint of a network is the daemon's own */
    daemon = daemon_opt >= 0 ? daemon_opt : !n->daemon_option_seen && n->endpoints_created == 0;
    n->daemon_option_seen |= daemon_opt >= 0;
  }
  pthread_mutex_unlock(&c->lock);
  struct tr_session *s = network_session(c, net_id, err);
  if (s == NULL)
    return -1;
  int rc = tr_daemon_create_endpoint(s, ep_id, &a4, &a6, daemon, err);
  tr_session_release(s);
  if (rc < 0)
    return -1;
  pthread_mutex_lock(&c->lock);
  n = tr_table_network(&c->table, net_id);
  if (n != NULL) {
    n->endpoints_created++;
    tr_table_remove_endpoint(&c->table, ep_id);
    struct tr_endpoint *e = tr_table_add_endpoint(&c->table, ep_id, net_id);
    e->addr4 = a4;
    e->addr6 = a6;
    e->daemon = daemon;
    tr_ctx_save_locked(c);
  }
  pthread_mutex_unlock(&c->lock);
  plg_info("endpoint %.12s created on network %.12s%s", ep_id, net_id, daemon ? " (the daemon's)" : "");
  return 0;
}

/* Leave and RemoveEndpoint must succeed when the daemon is gone: containers must always stop. */
static void forward_teardown(struct tr_ctx *c, const char *method,
                             int (*call)(struct tr_session *, const char *, plg_error_t *),
                             const char *net_id, const char *ep_id)
{
  plg_error_t err = NULL;
  struct tr_session *s = network_session(c, net_id, &err);
  if (s == NULL) {
    plg_error_release(&err);
    return;
  }
  if (call(s, ep_id, &err) < 0) {
    plg_warn("%s of endpoint %.12s: %s (the daemon may be gone; going on)", method, ep_id, err->msg);
    plg_error_release(&err);
  }
  tr_session_release(s);
}

static int handle_delete_endpoint(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  struct tr_ctx *c = ctx;
  const char *net_id, *ep_id;
  if (request_ids(req, true, &net_id, &ep_id, err) < 0)
    return -1;
  forward_teardown(c, "RemoveEndpoint", tr_daemon_remove_endpoint, net_id, ep_id);
  pthread_mutex_lock(&c->lock);
  tr_table_remove_endpoint(&c->table, ep_id);
  tr_ctx_save_locked(c);
  pthread_mutex_unlock(&c->lock);
  return 0;
}

static int handle_leave(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  struct tr_ctx *c = ctx;
  const char *net_id, *ep_id;
  if (request_ids(req, true, &net_id, &ep_id, err) < 0)
    return -1;
  forward_teardown(c, "Leave", tr_daemon_leave, net_id, ep_id);
  pthread_mutex_lock(&c->lock);
  struct tr_endpoint *e = tr_table_endpoint(&c->table, ep_id);
  if (e != NULL) {
    e->joined = false;
    tr_ctx_save_locked(c);
  }
  pthread_mutex_unlock(&c->lock);
  return 0;
}

static int handle_join(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  struct tr_ctx *c = ctx;
  const char *net_id, *ep_id, *sandbox;
  if (request_ids(req, true, &net_id, &ep_id, err) < 0 ||
      plg_json_string(req, "SandboxKey", true, &sandbox, err) < 0 || tr_netns_key_check(sandbox, err) < 0)
    return -1;
  pthread_mutex_lock(&c->lock);
  struct tr_network *n = tr_table_network(&c->table, net_id);
  struct tr_endpoint *known = tr_table_endpoint(&c->table, ep_id);
  bool created = known != NULL && strcmp(known->network_id, net_id) == 0;
  struct tr_prefix pools[TR_MAX_POOLS];
  size_t n_pools = n != NULL ? n->n_pools : 0;
  if (n != NULL)
    memcpy(pools, n->pools, sizeof pools);
  pthread_mutex_unlock(&c->lock);
  /* The real daemon keeps the id of an endpoint whose veth pair it could not make, without
   * links, and a Join of it dereferences nil and crashes the whole daemon (server_linux.go):
   * only endpoints whose CreateEndpoint succeeded here are ever joined. */
  if (!created)
    return plg_error_not_found(
        err,
        "endpoint %.12s was not created on teleroute network %.12s (its CreateEndpoint "
        "did not succeed); it cannot join",
        ep_id, net_id);
  struct tr_session *s = network_session(c, net_id, err);
  if (s == NULL)
    return -1;
  struct tr_join j;
  struct tr_route *routes = NULL;
  size_t n_routes = 0;
  int rc = tr_daemon_join(s, ep_id, pools, n_pools, &j, &routes, &n_routes, err);
  tr_session_release(s);
  if (rc < 0)
    return -1;
  /* Docker would fail only later, in the container's start hook, with a less clear message */
  if (*j.src_name != '\0' && tr_link_check(j.src_name, err) < 0) {
    tr_join_clear(&j);
    free(routes);
    return -1;
  }
  *reply = tr_join_reply(&j, routes, n_routes);
  pthread_mutex_lock(&c->lock);
  struct tr_endpoint *e = tr_table_endpoint(&c->table, ep_id);
  if (e != NULL) {
    e->joined = true;
    free(e->sandbox_key);
    e->sandbox_key = xstrdup(sandbox);
    e->netns_warned = false;
    memset(&e->netns_hint, 0, sizeof e->netns_hint);
    e->netns_how = NULL;
    snprintf(e->src_name, sizeof e->src_name, "%s", j.src_name);
    tr_endpoint_set_routes(e, routes, n_routes);
    tr_ctx_save_locked(c);
  }
  pthread_mutex_unlock(&c->lock);
  plg_info("endpoint %.12s joined: interface %s, %zu route(s)", ep_id, j.src_name, n_routes);
  tr_join_clear(&j);
  free(routes);
  return 0;
}

static int handle_oper_info(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  struct tr_ctx *c = ctx;
  const char *net_id, *ep_id;
  if (request_ids(req, true, &net_id, &ep_id, err) < 0)
    return -1;
  json_t *value = json_object();
  pthread_mutex_lock(&c->lock);
  struct tr_endpoint *e = tr_table_endpoint(&c->table, ep_id);
  if (e != NULL) {
    json_object_set_new(value, "daemon", json_boolean(e->daemon));
    if (e->src_name[0] != '\0')
      json_object_set_new(value, "interface", json_string(e->src_name));
    json_object_set_new(value, "routes", json_integer((json_int_t)e->n_routes));
  }
  pthread_mutex_unlock(&c->lock);
  *reply = plg_json_pack("{s:o}", "Value", value);
  return 0;
}

static int handle_capabilities(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)err;
  *reply = plg_json_pack("{s:s,s:s}", "Scope", "local", "ConnectivityScope", "local");
  return 0;
}

/* Swarm-only and external-connectivity calls: nothing to do for an internal, local network. */
static int handle_nothing(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)reply;
  (void)err;
  return 0;
}

static int handle_allocate_network(void *ctx, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)ctx;
  (void)req;
  (void)err;
  *reply = plg_json_pack("{s:{}}", "Options");
  return 0;
}

const struct plg_route tr_routes[TR_N_ROUTES] = {
    {"NetworkDriver.GetCapabilities", handle_capabilities, true},
    {"NetworkDriver.CreateNetwork", handle_create_network, false},
    {"NetworkDriver.DeleteNetwork", handle_delete_network, false},
    {"NetworkDriver.CreateEndpoint", handle_create_endpoint, false},
    {"NetworkDriver.EndpointOperInfo", handle_oper_info, false},
    {"NetworkDriver.DeleteEndpoint", handle_delete_endpoint, false},
    {"NetworkDriver.Join", handle_join, false},
    {"NetworkDriver.Leave", handle_leave, false},
    {"NetworkDriver.DiscoverNew", handle_nothing, true},
    {"NetworkDriver.DiscoverDelete", handle_nothing, true},
    {"NetworkDriver.ProgramExternalConnectivity", handle_nothing, true},
    {"NetworkDriver.RevokeExternalConnectivity", handle_nothing, true},
    {"NetworkDriver.AllocateNetwork", handle_allocate_network, true},
    {"NetworkDriver.FreeNetwork", handle_nothing, true},
};

static int load_config(struct tr_config *cfg, plg_error_t *err)
{
  cfg->state_dir = plg_setting_string("STATE_DIR", "/var/lib/teleroute");
  if (plg_setting_duration_ms("ROUTE_REFRESH_INTERVAL", 10000, 3600000, &cfg->refresh_ms, err) < 0 ||
      plg_setting_duration_ms("CONNECT_TIMEOUT", 5000, 60000, &cfg->connect_timeout_ms, err) < 0 ||
      plg_setting_duration_ms("CALL_TIMEOUT", 3000, 60000, &cfg->call_timeout_ms, err) < 0)
    return -1;
  if (cfg->connect_timeout_ms == 0 || cfg->call_timeout_ms == 0)
    return plg_error_make(err, 0, "CONNECT_TIMEOUT and CALL_TIMEOUT must be longer than 0");
  if (cfg->state_dir[0] != '/')
    return plg_error_make(err, 0, "STATE_DIR must be an absolute path");
  return 0;
}

int tr_init(void **ctx, plg_error_t *err)
{
  struct tr_ctx *c = xcalloc(1, sizeof *c);
  if (load_config(&c->cfg, err) < 0) {
    free(c);
    return -1;
  }
  c->state_file = xasprintf("%s/state.json", c->cfg.state_dir);
  pthread_mutex_init(&c->lock, NULL);
  plg_cond_init_monotonic(&c->wake);
  c->sessions = tr_session_group_new();
  tr_table_load(&c->table, c->state_file, TR_STATE_MAX_BYTES); /* sessions reconnect on first use, not here */
  tr_refresh_start(c);
  *ctx = c;
  return 0;
}

void tr_stopping(void *ctx)
{
  struct tr_ctx *c = ctx;
  if (c == NULL)
    return;
  pthread_mutex_lock(&c->lock);
  c->stopping = true;
  pthread_cond_broadcast(&c->wake);
  pthread_mutex_unlock(&c->lock);
  tr_session_group_stop(c->sessions);
}

void tr_shutdown(void *ctx)
{
  struct tr_ctx *c = ctx;
  if (c == NULL)
    return;
  tr_refresh_stop(c);
  for (struct tr_network *n = c->table.networks; n != NULL; n = n->next) {
    tr_session_release(n->session);
    n->session = NULL;
  }
  tr_table_clear(&c->table);
  tr_session_group_free(c->sessions);
  pthread_cond_destroy(&c->wake);
  pthread_mutex_destroy(&c->lock);
  free(c->state_file);
  free(c);
}
