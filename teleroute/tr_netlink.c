#include "tr_netlink.h"

#include "plg_log.h"
#include "plg_util.h"

#include <errno.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/route.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct nl_sock *route_socket(plg_error_t *err)
{
  struct nl_sock *sk = nl_socket_alloc();
  if (sk == NULL) {
    plg_error_make(err, ENOMEM, "cannot allocate a netlink socket");
    return NULL;
  }
  int rc = nl_connect(sk, NETLINK_ROUTE);
  if (rc < 0) {
    nl_socket_free(sk);
    plg_error_make(err, 0, "cannot open a netlink socket: %s", nl_geterror(rc));
    return NULL;
  }
  return sk;
}

int tr_link_check(const char *name, plg_error_t *err)
{
  struct nl_sock *sk = route_socket(err);
  if (sk == NULL)
    return -1;
  struct rtnl_link *link = NULL;
  int rc = rtnl_link_get_kernel(sk, 0, name, &link);
  nl_socket_free(sk);
  if (rc < 0)
    return plg_error_make(err, 0,
                          "the daemon named interface \"%s\", but there is no such interface in the plugin's "
                          "network namespace (%s)",
                          name, nl_geterror(rc));
  const char *type = rtnl_link_get_type(link);
  bool veth = type != NULL && strcmp(type, "veth") == 0;
  plg_debug("interface %s: index %d, type %s, %s, mtu %u", name, rtnl_link_get_ifindex(link),
            type ? type : "?", (rtnl_link_get_flags(link) & IFF_UP) ? "up" : "down", rtnl_link_get_mtu(link));
  rtnl_link_put(link);
  if (!veth)
    return plg_error_make(err, 0, "the daemon named interface \"%s\", which is a %s, not a veth", name,
                          type ? type : "device of unknown type");
  return 0;
}

static struct nl_addr *nl_from_prefix(const struct tr_prefix *p, bool with_len)
{
  struct nl_addr *a = nl_addr_build(p->family, p->addr, p->family == AF_INET ? 4 : 16);
  if (a != NULL && with_len)
    nl_addr_set_prefixlen(a, p->len);
  return a;
}

/* The interface holding the endpoint's address: where Docker put the endpoint. */
static int endpoint_ifindex(struct nl_sock *sk, const struct tr_prefix *addr)
{
  struct nl_cache *cache = NULL;
  if (addr->family == 0 || rtnl_addr_alloc_cache(sk, &cache) < 0)
    return 0;
  int ifindex = 0;
  for (struct nl_object *o = nl_cache_get_first(cache); o != NULL && ifindex == 0; o = nl_cache_get_next(o)) {
    struct rtnl_addr *a = (struct rtnl_addr *)o;
    struct nl_addr *local = rtnl_addr_get_local(a);
    if (local != NULL && nl_addr_get_family(local) == addr->family &&
        memcmp(nl_addr_get_binary_addr(local), addr->addr, addr->family == AF_INET ? 4 : 16) == 0)
      ifindex = rtnl_addr_get_ifindex(a);
  }
  nl_cache_free(cache);
  return ifindex;
}

static struct rtnl_route *route_for(const struct tr_route *r, int ifindex)
{
  struct rtnl_route *route = rtnl_route_alloc();
  struct nl_addr *dst = nl_from_prefix(&r->dst, true);
  rtnl_route_set_family(route, (uint8_t)r->dst.family);
  rtnl_route_set_table(route, RT_TABLE_MAIN);
  rtnl_route_set_dst(route, dst);
  rtnl_route_set_scope(route, r->via.family == 0 ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE);
  nl_addr_put(dst);
  struct rtnl_nexthop *nh = rtnl_route_nh_alloc();
  if (ifindex > 0)
    rtnl_route_nh_set_ifindex(nh, ifindex);
  if (r->via.family != 0) {
    struct nl_addr *gw = nl_from_prefix(&r->via, false);
    rtnl_route_nh_set_gateway(nh, gw);
    nl_addr_put(gw);
  }
  rtnl_route_add_nexthop(route, nh);
  return route;
}

struct sync_job {
  int netns_fd;
  const struct tr_prefix *addr4, *addr6;
  const struct tr_route *old, *new_routes;
  size_t n_old, n_new;
  int changes;
  plg_error_t err;
};

static void route_error(struct sync_job *job, const char *what, const struct tr_route *r, int rc)
{
  char dst[64], via[64] = "";
  tr_prefix_format(&r->dst, false, dst, sizeof dst);
  if (r->via.family != 0)
    tr_prefix_format(&r->via, true, via, sizeof via);
  plg_error_make(&job->err, 0, "cannot %s the route %s%s%s: %s", what, dst, *via ? " via " : "", via,
                 nl_geterror(rc));
}

static void apply(struct sync_job *job, struct nl_sock *sk)
{
  int if4 = endpoint_ifindex(sk, job->addr4), if6 = endpoint_ifindex(sk, job->addr6);
  struct tr_route_change *plan;
  size_t skipped;
  size_t n = tr_routes_plan(job->old, job->n_old, job->new_routes, job->n_new, if4, if6, &plan, &skipped);
  for (size_t i = 0; i < n; i++) {
    const struct tr_route *r = plan[i].route;
    struct rtnl_route *route = route_for(r, plan[i].ifindex);
    int rc;
    if (plan[i].add) {
      rc = rtnl_route_add(sk, route, NLM_F_CREATE | NLM_F_EXCL);
      rc = rc == -NLE_EXIST ? 1 : rc;
    } else {
      /* Docker installs routes as "boot" and we as "static": leave the protocol out so the kernel
       * matches either; the interface is always given, so no other interface's route matches */
      rtnl_route_set_protocol(route, RTPROT_UNSPEC);
      rc = rtnl_route_delete(sk, route, 0);
      rc = rc == -NLE_OBJ_NOTFOUND ? 1 : rc;
    }
    rtnl_route_put(route);
    if (rc == 0)
      job->changes++;
    else if (rc < 0 && job->err == NULL)
      route_error(job, plan[i].add ? "add" : "delete", r, rc);
  }
  free(plan);
  if (skipped > 0 && job->err == NULL)
    plg_error_make(&job->err, ENXIO, "no interface holds the endpoint's address in the container");
}

/* setns changes only the calling thread's namespace: a thread that exits afterwards leaves the
 * rest of the plugin where it was. */
static void *sync_thread(void *arg)
{
  struct sync_job *job = arg;
  if (setns(job->netns_fd, CLONE_NEWNET) < 0) {
    plg_error_make(&job->err, errno, "cannot enter the container's network namespace");
    return NULL;
  }
  struct nl_sock *sk = route_socket(&job->err);
  if (sk != NULL) {
    apply(job, sk);
    nl_socket_free(sk);
  }
  return NULL;
}

int tr_netns_sync_routes(int netns_fd, const struct tr_prefix *addr4, const struct tr_prefix *addr6,
                         const struct tr_route *old, size_t n_old, const struct tr_route *new_routes,
                         size_t n_new, int *changes, plg_error_t *err)
{
  struct sync_job job = {netns_fd, addr4, addr6, old, new_routes, n_old, n_new, 0, NULL};
  pthread_t t;
  if (pthread_create(&t, NULL, sync_thread, &job) != 0)
    return plg_error_make(err, errno, "cannot start a thread to enter the container's network namespace");
  pthread_join(t, NULL);
  *changes = job.changes;
  if (job.err != NULL) {
    *err = job.err;
    return -1;
  }
  return 0;
}
