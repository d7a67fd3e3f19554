#include "tr_state.h"

#include "plg_json.h"
#include "plg_log.h"
#include "plg_util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tr_state {
  pthread_mutex_t lock;
  pthread_cond_t wake; /* CLOCK_MONOTONIC: the stop, for tr_state_sleep */
  bool stopping;
  char *file;
  struct tr_table table;
  struct tr_session_group *sessions; /* every network's session: stopped together */
  int64_t connect_timeout_ms, call_timeout_ms;
};

/* With the lock held. A failure is logged; the table in memory stays authoritative. */
static void save_locked(struct tr_state *st)
{
  plg_error_t err = NULL;
  if (tr_table_save(&st->table, st->file, TR_STATE_MAX_BYTES, &err) < 0) {
    plg_error("cannot save the network table: %s", err->msg);
    plg_error_release(&err);
  }
}

struct tr_state *tr_state_open(const char *state_file, int64_t connect_timeout_ms, int64_t call_timeout_ms,
                               plg_error_t *err)
{
  struct tr_table table;
  if (tr_table_load(&table, state_file, TR_STATE_MAX_BYTES, err) < 0) /* sessions connect on first use */
    return NULL;
  struct tr_state *st = xcalloc(1, sizeof *st);
  st->table = table;
  pthread_mutex_init(&st->lock, NULL);
  plg_cond_init_monotonic(&st->wake);
  st->file = xstrdup(state_file);
  st->sessions = tr_session_group_new();
  st->connect_timeout_ms = connect_timeout_ms;
  st->call_timeout_ms = call_timeout_ms;
  return st;
}

void tr_state_stop(struct tr_state *st)
{
  pthread_mutex_lock(&st->lock);
  st->stopping = true;
  pthread_cond_broadcast(&st->wake);
  pthread_mutex_unlock(&st->lock);
  tr_session_group_stop(st->sessions);
}

bool tr_state_sleep(struct tr_state *st, int64_t ms)
{
  int64_t until = plg_now_ms() + ms;
  pthread_mutex_lock(&st->lock);
  while (!st->stopping && plg_now_ms() < until) {
    struct timespec ts;
    plg_timespec_in(&ts, CLOCK_MONOTONIC, until - plg_now_ms());
    pthread_cond_timedwait(&st->wake, &st->lock, &ts);
  }
  bool go_on = !st->stopping;
  pthread_mutex_unlock(&st->lock);
  return go_on;
}

bool tr_state_stopping(struct tr_state *st)
{
  pthread_mutex_lock(&st->lock);
  bool stopping = st->stopping;
  pthread_mutex_unlock(&st->lock);
  return stopping;
}

void tr_state_close(struct tr_state *st)
{
  if (st == NULL)
    return;
  for (struct tr_network *n = st->table.networks; n != NULL; n = n->next) {
    tr_session_release(n->session);
    n->session = NULL;
  }
  tr_table_clear(&st->table);
  tr_session_group_free(st->sessions);
  pthread_cond_destroy(&st->wake);
  pthread_mutex_destroy(&st->lock);
  free(st->file);
  free(st);
}

struct tr_session *tr_state_new_session(struct tr_state *st, const struct tr_network *n)
{
  return tr_session_new(st->sessions, n->opts.host, n->opts.port, n->gateways, n->n_gateways,
                        st->connect_timeout_ms, st->call_timeout_ms);
}

void tr_state_add_network(struct tr_state *st, const struct tr_network *n, struct tr_session *s)
{
  pthread_mutex_lock(&st->lock);
  struct tr_network *old = tr_table_network(&st->table, n->id);
  struct tr_session *old_session = old != NULL ? old->session : NULL;
  if (old != NULL) /* a repeated create: the new session replaces the old one */
    tr_table_remove_network(&st->table, n->id);
  struct tr_network *added = tr_table_add_network(&st->table, n->id);
  struct tr_network *next = added->next;
  *added = *n;
  added->next = next;
  added->session = s;
  save_locked(st);
  pthread_mutex_unlock(&st->lock);
  tr_session_release(old_session);
}

bool tr_state_remove_network(struct tr_state *st, const char *id)
{
  pthread_mutex_lock(&st->lock);
  struct tr_network *n = tr_table_network(&st->table, id);
  struct tr_session *s = n != NULL ? n->session : NULL;
  if (n != NULL) {
    tr_table_remove_network(&st->table, id);
    save_locked(st);
  }
  pthread_mutex_unlock(&st->lock);
  tr_session_release(s);
  return n != NULL;
}

/* With the lock held: N's session, made on first use (after a restart), held for the caller. */
static struct tr_session *session_locked(struct tr_state *st, struct tr_network *n)
{
  if (n->session == NULL)
    n->session = tr_state_new_session(st, n);
  tr_session_hold(n->session);
  return n->session;
}

struct tr_session *tr_state_session(struct tr_state *st, const char *net_id, plg_error_t *err)
{
  pthread_mutex_lock(&st->lock);
  struct tr_network *n = tr_table_network(&st->table, net_id);
  struct tr_session *s = n != NULL ? session_locked(st, n) : NULL;
  pthread_mutex_unlock(&st->lock);
  if (s == NULL)
    plg_error_not_found(err, "no such teleroute network: %.12s", net_id);
  return s;
}

bool tr_state_endpoint_is_daemon(struct tr_state *st, const char *net_id, int daemon_opt)
{
  pthread_mutex_lock(&st->lock);
  struct tr_network *n = tr_table_network(&st->table, net_id);
  bool daemon = false;
  if (n != NULL) {
    /* without any daemon option, the first endpoint of a network is the daemon's own */
    daemon = daemon_opt >= 0 ? daemon_opt : !n->daemon_option_seen && n->endpoints_created == 0;
    n->daemon_option_seen |= daemon_opt >= 0;
  }
  pthread_mutex_unlock(&st->lock);
  return daemon;
}

void tr_state_endpoint_created(struct tr_state *st, const char *net_id, const char *ep_id,
                               const struct tr_prefix *addr4, const struct tr_prefix *addr6, bool daemon)
{
  pthread_mutex_lock(&st->lock);
  struct tr_network *n = tr_table_network(&st->table, net_id);
  if (n != NULL) {
    n->endpoints_created++;
    tr_table_remove_endpoint(&st->table, ep_id);
    struct tr_endpoint *e = tr_table_add_endpoint(&st->table, ep_id, net_id);
    e->addr4 = *addr4;
    e->addr6 = *addr6;
    e->daemon = daemon;
    save_locked(st);
  }
  pthread_mutex_unlock(&st->lock);
}

bool tr_state_endpoint_created_on(struct tr_state *st, const char *net_id, const char *ep_id,
                                  struct tr_prefix *pools, size_t *n_pools)
{
  pthread_mutex_lock(&st->lock);
  struct tr_network *n = tr_table_network(&st->table, net_id);
  struct tr_endpoint *e = tr_table_endpoint(&st->table, ep_id);
  bool created = e != NULL && strcmp(e->network_id, net_id) == 0;
  *n_pools = n != NULL ? n->n_pools : 0;
  if (n != NULL)
    memcpy(pools, n->pools, n->n_pools * sizeof *pools);
  pthread_mutex_unlock(&st->lock);
  return created;
}

void tr_state_endpoint_joined(struct tr_state *st, const char *ep_id, const char *sandbox_key,
                              const char *src_name, const struct tr_route *routes, size_t n_routes)
{
  pthread_mutex_lock(&st->lock);
  struct tr_endpoint *e = tr_table_endpoint(&st->table, ep_id);
  if (e != NULL) {
    e->joined = true;
    free(e->sandbox_key);
    e->sandbox_key = xstrdup(sandbox_key);
    snprintf(e->src_name, sizeof e->src_name, "%s", src_name);
    tr_endpoint_set_routes(e, routes, n_routes);
    save_locked(st);
  }
  pthread_mutex_unlock(&st->lock);
}

void tr_state_endpoint_left(struct tr_state *st, const char *ep_id)
{
  pthread_mutex_lock(&st->lock);
  struct tr_endpoint *e = tr_table_endpoint(&st->table, ep_id);
  if (e != NULL) {
    e->joined = false;
    save_locked(st);
  }
  pthread_mutex_unlock(&st->lock);
}

void tr_state_endpoint_removed(struct tr_state *st, const char *ep_id)
{
  pthread_mutex_lock(&st->lock);
  tr_table_remove_endpoint(&st->table, ep_id);
  save_locked(st);
  pthread_mutex_unlock(&st->lock);
}

json_t *tr_state_endpoint_info(struct tr_state *st, const char *ep_id)
{
  json_t *value = json_object();
  pthread_mutex_lock(&st->lock);
  struct tr_endpoint *e = tr_table_endpoint(&st->table, ep_id);
  if (e != NULL) {
    json_object_set_new(value, "daemon", json_boolean(e->daemon));
    if (e->src_name[0] != '\0')
      json_object_set_new(value, "interface", json_string(e->src_name));
    json_object_set_new(value, "routes", json_integer((json_int_t)e->n_routes));
  }
  pthread_mutex_unlock(&st->lock);
  return value;
}

struct tr_state_item *tr_state_snapshot(struct tr_state *st)
{
  struct tr_state_item *items = NULL;
  pthread_mutex_lock(&st->lock);
  for (struct tr_endpoint *e = st->table.endpoints; e != NULL; e = e->next) {
    struct tr_network *n = tr_table_network(&st->table, e->network_id);
    if (!e->joined || e->daemon || e->sandbox_key == NULL || n == NULL)
      continue;
    struct tr_state_item *it = xcalloc(1, sizeof *it);
    memcpy(it->ep_id, e->id, sizeof it->ep_id);
    it->sandbox_key = xstrdup(e->sandbox_key);
    it->session = session_locked(st, n);
    memcpy(it->pools, n->pools, sizeof it->pools);
    it->n_pools = n->n_pools;
    it->addr4 = e->addr4;
    it->addr6 = e->addr6;
    it->routes = xcalloc(e->n_routes ? e->n_routes : 1, sizeof *it->routes);
    memcpy(it->routes, e->routes, e->n_routes * sizeof *it->routes);
    it->n_routes = e->n_routes;
    it->next = items;
    items = it;
  }
  pthread_mutex_unlock(&st->lock);
  return items;
}

void tr_state_snapshot_free(struct tr_state_item *items)
{
  while (items != NULL) {
    struct tr_state_item *it = items;
    items = it->next;
    tr_session_release(it->session);
    free(it->sandbox_key);
    free(it->routes);
    free(it);
  }
}

void tr_state_routes_refreshed(struct tr_state *st, const char *ep_id, const struct tr_route *routes,
                               size_t n)
{
  pthread_mutex_lock(&st->lock);
  struct tr_endpoint *e = tr_table_endpoint(&st->table, ep_id);
  if (e != NULL && e->joined) {
    tr_endpoint_set_routes(e, routes, n);
    save_locked(st);
  }
  pthread_mutex_unlock(&st->lock);
}
