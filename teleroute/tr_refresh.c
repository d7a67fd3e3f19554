/* Live route refresh. Docker installs a container's routes once, at Join, but the cluster's
 * subnets change during a session (a new node brings a new pod subnet). Every
 * ROUTE_REFRESH_INTERVAL each joined endpoint asks the daemon again (Join has no side effects)
 * and its container's routes are brought in line: new ones added, vanished ones deleted, nothing
 * else touched. Only endpoints that joined are asked: the real daemon crashes on a Join of an
 * endpoint whose CreateEndpoint failed. The container's namespace is found as tr_netns.h says.
 * One endpoint's failure is logged and retried next round; it never stops others. */
#include "plg_log.h"
#include "plg_util.h"
#include "tr_ctx.h"
#include "tr_daemon.h"
#include "tr_netlink.h"
#include "tr_netns.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct job {
  char ep_id[TR_ID_MAX + 1];
  char *netns;
  struct tr_session *session;
  struct tr_prefix pools[TR_MAX_POOLS];
  size_t n_pools;
  struct tr_prefix addr4, addr6;
  struct tr_route *current;
  size_t n_current;
  struct tr_netns_hint hint;
  const char *how; /* how the namespace was reached last time */
  struct job *next;
};

static struct job *collect_jobs(struct tr_ctx *c)
{
  struct job *jobs = NULL;
  pthread_mutex_lock(&c->lock);
  for (struct tr_endpoint *e = c->table.endpoints; e != NULL; e = e->next) {
    struct tr_network *n = tr_table_network(&c->table, e->network_id);
    if (!e->joined || e->daemon || e->sandbox_key == NULL || n == NULL)
      continue;
    struct job *j = xcalloc(1, sizeof *j);
    memcpy(j->ep_id, e->id, sizeof j->ep_id);
    j->netns = xstrdup(e->sandbox_key);
    j->session = tr_ctx_session_locked(c, n);
    memcpy(j->pools, n->pools, sizeof j->pools);
    j->n_pools = n->n_pools;
    j->addr4 = e->addr4;
    j->addr6 = e->addr6;
    j->current = xcalloc(e->n_routes ? e->n_routes : 1, sizeof *j->current);
    memcpy(j->current, e->routes, e->n_routes * sizeof *j->current);
    j->n_current = e->n_routes;
    j->hint = e->netns_hint;
    j->how = e->netns_how;
    j->next = jobs;
    jobs = j;
  }
  pthread_mutex_unlock(&c->lock);
  return jobs;
}

static void free_job(struct job *j)
{
  tr_session_release(j->session);
  free(j->netns);
  free(j->current);
  free(j);
}

/* Logs a namespace that cannot be entered once per endpoint, not every round. */
static void report(struct tr_ctx *c, const struct job *j, const char *msg, bool netns)
{
  bool first = true;
  if (netns) {
    pthread_mutex_lock(&c->lock);
    struct tr_endpoint *e = tr_table_endpoint(&c->table, j->ep_id);
    first = e != NULL && !e->netns_warned;
    if (e != NULL)
      e->netns_warned = true;
    pthread_mutex_unlock(&c->lock);
  }
  if (first && netns)
    plg_warn("route refresh of endpoint %.12s: %s; its routes stay as they are (said once)", j->ep_id, msg);
  else if (first)
    plg_warn("route refresh of endpoint %.12s: %s", j->ep_id, msg);
}

/* Brings the container's routes from what we believe is installed to ROUTES; false (logged) on
 * failure. A namespace found through a process that no longer holds the endpoint's address is
 * looked for again, once. */
static bool sync_routes(struct tr_ctx *c, struct job *j, struct tr_netns_scan *scan,
                        const struct tr_route *routes, size_t n, int *changes)
{
  plg_error_t err = NULL;
  for (int attempt = 0;; attempt++) {
    const char *how = NULL;
    int fd = tr_netns_open(scan, j->netns, &j->addr4, &j->addr6, &j->hint, &how, &err);
    if (fd < 0) {
      report(c, j, err->msg, true);
      plg_error_release(&err);
      return false;
    }
    if (how != j->how)
      plg_info("route refresh of endpoint %.12s: its container's network namespace is reached through %s",
               j->ep_id, how);
    j->how = how;
    int rc =
        tr_netns_sync_routes(fd, &j->addr4, &j->addr6, j->current, j->n_current, routes, n, changes, &err);
    close(fd);
    if (rc == 0)
      return true;
    bool stale = err->errno_ == ENXIO && strcmp(how, "its process") == 0;
    if (stale && attempt == 0) {
      plg_error_release(&err);
      memset(&j->hint, 0, sizeof j->hint);
      continue;
    }
    report(c, j, err->msg, err->errno_ == ENXIO || err->errno_ == EPERM || err->errno_ == EINVAL);
    plg_error_release(&err);
    return false;
  }
}

static void refresh_one(struct tr_ctx *c, struct job *j, struct tr_netns_scan *scan)
{
  struct tr_join join;
  struct tr_route *routes = NULL;
  size_t n = 0;
  plg_error_t err = NULL;
  if (tr_daemon_join(j->session, j->ep_id, j->pools, j->n_pools, &join, &routes, &n, &err) < 0) {
    report(c, j, err->msg, false);
    plg_error_release(&err);
    return;
  }
  tr_join_clear(&join);
  /* compare with what we believe is installed; the kernel is only touched on a change */
  if (tr_routes_same(routes, n, j->current, j->n_current)) {
    free(routes);
    return;
  }
  int changes = 0;
  bool ok = sync_routes(c, j, scan, routes, n, &changes);
  if (ok)
    plg_info("route refresh of endpoint %.12s: %d change(s), now %zu route(s)", j->ep_id, changes, n);
  pthread_mutex_lock(&c->lock);
  struct tr_endpoint *e = tr_table_endpoint(&c->table, j->ep_id);
  if (e != NULL && e->joined) {
    e->netns_hint = j->hint;
    e->netns_how = j->how;
    if (ok) {
      tr_endpoint_set_routes(e, routes, n);
      tr_ctx_save_locked(c);
    }
  }
  pthread_mutex_unlock(&c->lock);
  free(routes);
}

static bool wait_round(struct tr_ctx *c)
{
  struct timespec ts;
  plg_timespec_in(&ts, CLOCK_MONOTONIC, c->cfg.refresh_ms);
  pthread_mutex_lock(&c->lock);
  while (!c->stopping)
    if (pthread_cond_timedwait(&c->wake, &c->lock, &ts) == ETIMEDOUT)
      break;
  bool go_on = !c->stopping;
  pthread_mutex_unlock(&c->lock);
  return go_on;
}

static void *refresher(void *arg)
{
  struct tr_ctx *c = arg;
  while (wait_round(c)) {
    struct job *jobs = collect_jobs(c);
    struct tr_netns_scan *scan = tr_netns_scan_new(); /* filled only if some endpoint needs it */
    while (jobs != NULL) {
      struct job *j = jobs;
      jobs = j->next;
      pthread_mutex_lock(&c->lock);
      bool stopping = c->stopping;
      pthread_mutex_unlock(&c->lock);
      if (!stopping)
        refresh_one(c, j, scan);
      free_job(j);
    }
    tr_netns_scan_free(scan);
  }
  return NULL;
}

void tr_refresh_start(struct tr_ctx *c)
{
  if (c->cfg.refresh_ms == 0) {
    plg_info("route refresh is off (ROUTE_REFRESH_INTERVAL=0)");
    return;
  }
  c->refresher_started = pthread_create(&c->refresher, NULL, refresher, c) == 0;
  if (!c->refresher_started)
    plg_error("cannot start the route refresher; routes are set at Join only");
}

void tr_refresh_stop(struct tr_ctx *c)
{
  pthread_mutex_lock(&c->lock);
  c->stopping = true;
  pthread_cond_broadcast(&c->wake);
  pthread_mutex_unlock(&c->lock);
  if (c->refresher_started)
    pthread_join(c->refresher, NULL);
}
