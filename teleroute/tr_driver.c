/* The NetworkDriver endpoints of teleroute: each parses Docker's request, asks the daemon through
 * tr_daemon, and records the outcome in tr_state. No lock is held across a call to a daemon. */
#include "tr_driver.h"

#include "plg_json.h"
#include "plg_log.h"
#include "plg_settings.h"
#include "plg_util.h"
#include "tr_daemon.h"
#include "tr_netlink.h"
#include "tr_netns.h"
#include "tr_refresh.h"
#include "tr_state.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

/* How long tr_shutdown waits for handlers still running (after tr_stopping they end at once). */
#define SHUTDOWN_WAIT_MS 1000

struct tr_config {
  const char *state_dir;      /* STATE_DIR */
  int64_t refresh_ms;         /* ROUTE_REFRESH_INTERVAL, 0 = off */
  int64_t connect_timeout_ms; /* CONNECT_TIMEOUT */
  int64_t call_timeout_ms;    /* CALL_TIMEOUT */
};

struct tr_ctx {
  struct tr_config cfg;
  struct tr_state *state;
  struct tr_refresh *refresh;
  pthread_mutex_t lock; /* BUSY; taken alone */
  pthread_cond_t idle;  /* CLOCK_MONOTONIC: BUSY reached 0 */
  int busy;             /* handlers using STATE */
};

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

static int create_network(struct tr_ctx *c, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  const char *id;
  struct tr_network n;
  if (request_ids(req, false, &id, NULL, err) < 0 || parse_network(req, id, &n, err) < 0)
    return -1;
  /* Reach the daemon now: a wrong address must fail `docker network create`, not a later run. */
  struct tr_session *s = tr_state_new_session(c->state, &n);
  if (tr_session_connect(s, err) < 0) {
    tr_session_release(s);
    return -1;
  }
  tr_state_add_network(c->state, &n, s);
  plg_info("network %.12s created: daemon %s:%d", id, n.opts.host, n.opts.port);
  return 0;
}

static int delete_network(struct tr_ctx *c, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  const char *id;
  if (request_ids(req, false, &id, NULL, err) < 0)
    return -1;
  if (tr_state_remove_network(c->state, id))
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

static int create_endpoint(struct tr_ctx *c, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  const char *net_id, *ep_id;
  struct tr_prefix a4, a6;
  int daemon_opt;
  if (request_ids(req, true, &net_id, &ep_id, err) < 0 || interface_addrs(req, &a4, &a6, err) < 0 ||
      daemon_option(req, &daemon_opt, err) < 0)
    return -1;
  bool daemon = tr_state_endpoint_is_daemon(c->state, net_id, daemon_opt);
  struct tr_session *s = tr_state_session(c->state, net_id, err);
  if (s == NULL)
    return -1;
  int rc = tr_daemon_create_endpoint(s, ep_id, &a4, &a6, daemon, err);
  tr_session_release(s);
  if (rc < 0)
    return -1;
  tr_state_endpoint_created(c->state, net_id, ep_id, &a4, &a6, daemon);
  plg_info("endpoint %.12s created on network %.12s%s", ep_id, net_id, daemon ? " (the daemon's)" : "");
  return 0;
}

/* Leave and RemoveEndpoint must succeed when the daemon is gone: containers must always stop. */
static void forward_teardown(struct tr_ctx *c, const char *method,
                             int (*call)(struct tr_session *, const char *, plg_error_t *),
                             const char *net_id, const char *ep_id)
{
  plg_error_t err = NULL;
  struct tr_session *s = tr_state_session(c->state, net_id, &err);
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

static int delete_endpoint(struct tr_ctx *c, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  const char *net_id, *ep_id;
  if (request_ids(req, true, &net_id, &ep_id, err) < 0)
    return -1;
  forward_teardown(c, "RemoveEndpoint", tr_daemon_remove_endpoint, net_id, ep_id);
  tr_state_endpoint_removed(c->state, ep_id);
  return 0;
}

static int leave(struct tr_ctx *c, json_t *req, json_t **reply, plg_error_t *err)
{
  (void)reply;
  const char *net_id, *ep_id;
  if (request_ids(req, true, &net_id, &ep_id, err) < 0)
    return -1;
  forward_teardown(c, "Leave", tr_daemon_leave, net_id, ep_id);
  tr_state_endpoint_left(c->state, ep_id);
  return 0;
}

static int join(struct tr_ctx *c, json_t *req, json_t **reply, plg_error_t *err)
{
  const char *net_id, *ep_id, *sandbox;
  if (request_ids(req, true, &net_id, &ep_id, err) < 0 ||
      plg_json_string(req, "SandboxKey", true, &sandbox, err) < 0 || tr_netns_key_check(sandbox, err) < 0)
    return -1;
  struct tr_prefix pools[TR_MAX_POOLS];
  size_t n_pools;
  /* The real daemon keeps the id of an endpoint whose veth pair it could not make, without
   * links, and a Join of it dereferences nil and crashes the whole daemon (server_linux.go):
   * only endpoints whose CreateEndpoint succeeded here are ever joined. */
  if (!tr_state_endpoint_created_on(c->state, net_id, ep_id, pools, &n_pools))
    return plg_error_not_found(
        err,
        "endpoint %.12s was not created on teleroute network %.12s (its CreateEndpoint "
        "did not succeed); it cannot join",
        ep_id, net_id);
  struct tr_session *s = tr_state_session(c->state, net_id, err);
  if (s == NULL)
    return -1;
  struct tr_join j;
  cleanup_free struct tr_route *routes = NULL;
  size_t n_routes = 0;
  int rc = tr_daemon_join(s, ep_id, pools, n_pools, &j, &routes, &n_routes, err);
  tr_session_release(s);
  if (rc < 0)
    return -1;
  /* Docker would fail only later, in the container's start hook, with a less clear message */
  if (*j.src_name != '\0' && tr_link_check(j.src_name, err) < 0) {
    tr_join_clear(&j);
    return -1;
  }
  *reply = tr_join_reply(&j, routes, n_routes);
  tr_state_endpoint_joined(c->state, ep_id, sandbox, j.src_name, routes, n_routes);
  plg_info("endpoint %.12s joined: interface %s, %zu route(s)", ep_id, j.src_name, n_routes);
  tr_join_clear(&j);
  return 0;
}

static int oper_info(struct tr_ctx *c, json_t *req, json_t **reply, plg_error_t *err)
{
  const char *net_id, *ep_id;
  if (request_ids(req, true, &net_id, &ep_id, err) < 0)
    return -1;
  *reply = plg_json_pack("{s:o}", "Value", tr_state_endpoint_info(c->state, ep_id));
  return 0;
}

static void enter(struct tr_ctx *c)
{
  pthread_mutex_lock(&c->lock);
  c->busy++;
  pthread_mutex_unlock(&c->lock);
}

static void done(struct tr_ctx *c)
{
  pthread_mutex_lock(&c->lock);
  if (--c->busy == 0)
    pthread_cond_broadcast(&c->idle);
  pthread_mutex_unlock(&c->lock);
}

/* The entry of each handler that uses the state: tr_shutdown frees it only once none runs. */
#define ENTRY(name)                                                                                          \
  static int handle_##name(void *ctx, json_t *req, json_t **reply, plg_error_t *err)                         \
  {                                                                                                          \
    struct tr_ctx *c = ctx;                                                                                  \
    enter(c);                                                                                                \
    int rc = name(c, req, reply, err);                                                                       \
    done(c);                                                                                                 \
    return rc;                                                                                               \
  }

ENTRY(create_network)
ENTRY(delete_network)
ENTRY(create_endpoint)
ENTRY(delete_endpoint)
ENTRY(join)
ENTRY(leave)
ENTRY(oper_info)

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
  pthread_mutex_init(&c->lock, NULL);
  plg_cond_init_monotonic(&c->idle);
  cleanup_free char *file = xasprintf("%s/state.json", c->cfg.state_dir);
  c->state = tr_state_open(file, c->cfg.connect_timeout_ms, c->cfg.call_timeout_ms, err);
  if (c->state == NULL) {
    pthread_cond_destroy(&c->idle);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return plg_error_wrap(
        err, "the network table cannot be read now; not starting, so that it is not overwritten");
  }
  c->refresh = tr_refresh_start(c->state, c->cfg.refresh_ms);
  *ctx = c;
  return 0;
}

void tr_stopping(void *ctx)
{
  struct tr_ctx *c = ctx;
  if (c != NULL)
    tr_state_stop(c->state);
}

/* True when no handler uses the state any more, within SHUTDOWN_WAIT_MS. */
static bool wait_idle(struct tr_ctx *c)
{
  int64_t until = plg_now_ms() + SHUTDOWN_WAIT_MS;
  pthread_mutex_lock(&c->lock);
  while (c->busy > 0 && plg_now_ms() < until) {
    struct timespec ts;
    plg_timespec_in(&ts, CLOCK_MONOTONIC, until - plg_now_ms());
    pthread_cond_timedwait(&c->idle, &c->lock, &ts);
  }
  int busy = c->busy;
  pthread_mutex_unlock(&c->lock);
  if (busy > 0)
    plg_warn("%d request(s) still use the network table; it is left as it is", busy);
  return busy == 0;
}

void tr_shutdown(void *ctx)
{
  struct tr_ctx *c = ctx;
  if (c == NULL)
    return;
  tr_state_stop(c->state); /* when the stopping hook did not run */
  tr_refresh_stop(c->refresh);
  if (!wait_idle(c))
    return; /* the process ends anyway: freeing what a handler still uses would be worse */
  tr_state_close(c->state);
  pthread_cond_destroy(&c->idle);
  pthread_mutex_destroy(&c->lock);
  free(c);
}
