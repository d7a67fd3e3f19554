#include "tr_refresh.h"

#include "plg_log.h"
#include "plg_util.h"
#include "tr_daemon.h"
#include "tr_netlink.h"
#include "tr_netns.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What the refresher remembers of an endpoint between rounds; dropped when it leaves. */
struct memo {
  char ep_id[TR_ID_MAX + 1];
  char *sandbox_key;
  struct tr_netns_hint hint;
  const char *how; /* how the namespace was reached last (static text) */
  bool warned;     /* that its namespace cannot be entered was said */
  bool seen;       /* in this round's snapshot */
  struct memo *next;
};

struct tr_refresh {
  struct tr_state *st;
  int64_t interval_ms;
  pthread_t thread;
  struct memo *memos;
};

/* The memo of IT, new (or renewed, when the endpoint joined another sandbox) if needed. */
static struct memo *memo_of(struct tr_refresh *r, const struct tr_state_item *it)
{
  struct memo *m = r->memos;
  while (m != NULL && strcmp(m->ep_id, it->ep_id) != 0)
    m = m->next;
  if (m != NULL && strcmp(m->sandbox_key, it->sandbox_key) != 0) {
    free(m->sandbox_key);
    struct memo *next = m->next;
    memset(m, 0, sizeof *m);
    m->next = next;
  } else if (m == NULL) {
    m = xcalloc(1, sizeof *m);
    m->next = r->memos;
    r->memos = m;
  }
  if (m->sandbox_key == NULL) {
    memcpy(m->ep_id, it->ep_id, sizeof m->ep_id);
    m->sandbox_key = xstrdup(it->sandbox_key);
  }
  m->seen = true;
  return m;
}

/* Forgets the endpoints that were not in this round (left, removed); ALL forgets every one. */
static void forget(struct tr_refresh *r, bool all)
{
  for (struct memo **p = &r->memos; *p != NULL;) {
    struct memo *m = *p;
    if (m->seen && !all) {
      m->seen = false;
      p = &m->next;
      continue;
    }
    *p = m->next;
    free(m->sandbox_key);
    free(m);
  }
}

/* Logs a namespace that cannot be entered once per endpoint, not every round. */
static void report(struct memo *m, const char *msg, bool netns)
{
  if (netns && m->warned)
    return;
  if (netns)
    plg_warn("route refresh of endpoint %.12s: %s; its routes stay as they are (said once)", m->ep_id, msg);
  else
    plg_warn("route refresh of endpoint %.12s: %s", m->ep_id, msg);
  m->warned |= netns;
}

/* Brings the container's routes from what we believe is installed to ROUTES; false (logged) on
 * failure. A namespace found through a process that no longer holds the endpoint's address is
 * looked for again, once. */
static bool sync_routes(const struct tr_state_item *it, struct memo *m, struct tr_netns_scan *scan,
                        const struct tr_route *routes, size_t n, int *changes)
{
  plg_error_t err = NULL;
  for (int attempt = 0;; attempt++) {
    const char *how = NULL;
    int fd = tr_netns_open(scan, it->sandbox_key, &it->addr4, &it->addr6, &m->hint, &how, &err);
    if (fd < 0) {
      report(m, err->msg, true);
      plg_error_release(&err);
      return false;
    }
    if (how != m->how)
      plg_info("route refresh of endpoint %.12s: its container's network namespace is reached through %s",
               m->ep_id, how);
    m->how = how;
    int rc =
        tr_netns_sync_routes(fd, &it->addr4, &it->addr6, it->routes, it->n_routes, routes, n, changes, &err);
    close(fd);
    if (rc == 0)
      return true;
    bool stale = err->errno_ == ENXIO && strcmp(how, "its process") == 0;
    if (stale && attempt == 0) {
      plg_error_release(&err);
      memset(&m->hint, 0, sizeof m->hint);
      continue;
    }
    report(m, err->msg, err->errno_ == ENXIO || err->errno_ == EPERM || err->errno_ == EINVAL);
    plg_error_release(&err);
    return false;
  }
}

static void refresh_one(struct tr_refresh *r, const struct tr_state_item *it, struct tr_netns_scan *scan)
{
  struct memo *m = memo_of(r, it);
  struct tr_join join;
  struct tr_route *routes = NULL;
  size_t n = 0;
  plg_error_t err = NULL;
  if (tr_daemon_join(it->session, it->ep_id, it->pools, it->n_pools, &join, &routes, &n, &err) < 0) {
    report(m, err->msg, false);
    plg_error_release(&err);
    return;
  }
  tr_join_clear(&join);
  /* compare with what we believe is installed; the kernel is only touched on a change */
  int changes = 0;
  if (!tr_routes_same(routes, n, it->routes, it->n_routes) && sync_routes(it, m, scan, routes, n, &changes)) {
    plg_info("route refresh of endpoint %.12s: %d change(s), now %zu route(s)", it->ep_id, changes, n);
    tr_state_routes_refreshed(r->st, it->ep_id, routes, n);
  }
  free(routes);
}

static void *refresher(void *arg)
{
  struct tr_refresh *r = arg;
  while (tr_state_sleep(r->st, r->interval_ms)) {
    struct tr_state_item *items = tr_state_snapshot(r->st);
    struct tr_netns_scan *scan = tr_netns_scan_new(); /* filled only if some endpoint needs it */
    for (struct tr_state_item *it = items; it != NULL && !tr_state_stopping(r->st); it = it->next)
      refresh_one(r, it, scan);
    for (struct tr_state_item *it = items; it != NULL; it = it->next)
      memo_of(r, it)->seen = true; /* those not reached this round are still there */
    forget(r, false);
    tr_netns_scan_free(scan);
    tr_state_snapshot_free(items);
  }
  return NULL;
}

struct tr_refresh *tr_refresh_start(struct tr_state *st, int64_t interval_ms)
{
  if (interval_ms == 0) {
    plg_info("route refresh is off (ROUTE_REFRESH_INTERVAL=0)");
    return NULL;
  }
  struct tr_refresh *r = xcalloc(1, sizeof *r);
  r->st = st;
  r->interval_ms = interval_ms;
  if (pthread_create(&r->thread, NULL, refresher, r) != 0) {
    plg_error("cannot start the route refresher; routes are set at Join only");
    free(r);
    return NULL;
  }
  return r;
}

void tr_refresh_stop(struct tr_refresh *r)
{
  if (r == NULL)
    return;
  pthread_join(r->thread, NULL);
  forget(r, true);
  free(r);
}
