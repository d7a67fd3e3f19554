#include "tr_netns.h"

#include "plg_log.h"
#include "plg_util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/nsfs.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* enough for any host; a bound on the work of one scan */
#define MAX_NAMESPACES 4096

struct ns_entry {
  pid_t pid;
  uint64_t ino;
  struct tr_prefix *addrs; /* addresses on its veths */
  size_t n_addrs;
};

struct tr_netns_scan {
  bool done;
  struct ns_entry *ns;
  size_t n, cap;
  size_t entered;
  char *problem; /* why a scan could see nothing, for the error */
};

struct tr_netns_scan *tr_netns_scan_new(void)
{
  return xcalloc(1, sizeof(struct tr_netns_scan));
}

void tr_netns_scan_free(struct tr_netns_scan *scan)
{
  if (scan == NULL)
    return;
  for (size_t i = 0; i < scan->n; i++)
    free(scan->ns[i].addrs);
  free(scan->ns);
  free(scan->problem);
  free(scan);
}

static bool is_netns(int fd)
{
  return ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET;
}

/* A namespace file, if it is one; -1 with errno otherwise. */
static int open_netns(const char *path)
{
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return -1;
  if (!is_netns(fd)) {
    close(fd);
    errno = ENOTTY; /* there, but not a mounted network namespace */
    return -1;
  }
  return fd;
}

static bool plain_absolute(const char *p)
{
  if (p[0] != '/' || strlen(p) > PATH_MAX - 32)
    return false;
  for (const char *s = p; *s != '\0'; s++)
    if (s[0] == '/' &&
        (s[1] == '/' || s[1] == '\0' ||
         (s[1] == '.' && (s[2] == '/' || s[2] == '\0' || (s[2] == '.' && (s[3] == '/' || s[3] == '\0'))))))
      return false;
  return true;
}

static bool sandbox_name(const char *s)
{
  size_t n = 0;
  for (; s[n] != '\0'; n++)
    if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
      return false;
  return n == 12;
}

int tr_netns_key_check(const char *key, plg_error_t *err)
{
  const char *base = strrchr(key, '/');
  bool ok = plain_absolute(key) && base != NULL && sandbox_name(base + 1) && base - key >= 6 &&
            memcmp(base - 6, "/netns", 6) == 0;
  if (!ok)
    return plg_error_bad_request(err,
                                 "SandboxKey \"%.128s\" is not a network namespace file of Docker's "
                                 "(<exec-root>/netns/<12 hex digits>)",
                                 key);
  return 0;
}

static int open_pid_netns(pid_t pid, uint64_t ino)
{
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/ns/net", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return -1;
  struct stat st;
  if (fstat(fd, &st) < 0 || (uint64_t)st.st_ino != ino) {
    close(fd);
    return -1;
  }
  return fd;
}

/* The distinct network namespaces of host processes, the plugin's own left out. */
static void list_namespaces(struct tr_netns_scan *scan)
{
  struct stat self;
  if (stat("/proc/self/ns/net", &self) < 0) {
    scan->problem = xasprintf("cannot stat /proc/self/ns/net: %s", strerror(errno));
    return;
  }
  DIR *d = opendir("/proc");
  if (d == NULL) {
    scan->problem = xasprintf("cannot list /proc: %s", strerror(errno));
    return;
  }
  size_t refused = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL && scan->n < MAX_NAMESPACES) {
    char *end;
    long pid = strtol(de->d_name, &end, 10);
    if (*end != '\0' || pid <= 0)
      continue;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/ns/net", pid);
    struct stat st;
    if (stat(path, &st) < 0) {
      refused += errno == EACCES || errno == EPERM;
      continue;
    }
    if (st.st_ino == self.st_ino)
      continue;
    bool seen = false;
    for (size_t i = 0; i < scan->n && !seen; i++)
      seen = scan->ns[i].ino == (uint64_t)st.st_ino;
    if (seen)
      continue;
    if (scan->n == scan->cap) {
      scan->cap = scan->cap ? scan->cap * 2 : 32;
      scan->ns = xrealloc(scan->ns, scan->cap * sizeof *scan->ns);
    }
    scan->ns[scan->n++] = (struct ns_entry){(pid_t)pid, (uint64_t)st.st_ino, NULL, 0};
  }
  closedir(d);
  if (scan->n == 0)
    scan->problem = xasprintf("no host process has a network namespace of its own that the plugin may open "
                              "(%zu refused)",
                              refused);
}

static void add_addr(struct ns_entry *e, struct nl_addr *a)
{
  int family = nl_addr_get_family(a);
  size_t len = nl_addr_get_len(a);
  if ((family != AF_INET || len != 4) && (family != AF_INET6 || len != 16))
    return;
  e->addrs = xrealloc(e->addrs, (e->n_addrs + 1) * sizeof *e->addrs);
  struct tr_prefix *p = &e->addrs[e->n_addrs++];
  memset(p, 0, sizeof *p);
  p->family = family;
  memcpy(p->addr, nl_addr_get_binary_addr(a), len);
  p->len = (int)len * 8;
}

/* In the namespace this thread has entered: the addresses on its veths. */
static void read_addrs(struct ns_entry *e)
{
  struct nl_sock *sk = nl_socket_alloc();
  if (sk == NULL)
    return;
  struct nl_cache *links = NULL, *addrs = NULL;
  if (nl_connect(sk, NETLINK_ROUTE) == 0 && rtnl_link_alloc_cache(sk, AF_UNSPEC, &links) == 0 &&
      rtnl_addr_alloc_cache(sk, &addrs) == 0) {
    for (struct nl_object *o = nl_cache_get_first(addrs); o != NULL; o = nl_cache_get_next(o)) {
      struct rtnl_addr *a = (struct rtnl_addr *)o;
      struct rtnl_link *link = rtnl_link_get(links, rtnl_addr_get_ifindex(a));
      const char *type = link != NULL ? rtnl_link_get_type(link) : NULL;
      if (type != NULL && strcmp(type, "veth") == 0 && rtnl_addr_get_local(a) != NULL)
        add_addr(e, rtnl_addr_get_local(a));
      if (link != NULL)
        rtnl_link_put(link);
    }
  }
  if (addrs != NULL)
    nl_cache_free(addrs);
  if (links != NULL)
    nl_cache_free(links);
  nl_socket_free(sk);
}

/* setns changes the calling thread only: this thread enters each namespace in turn and ends,
 * leaving every other thread of the plugin where it was. */
static void *scan_thread(void *arg)
{
  struct tr_netns_scan *scan = arg;
  for (size_t i = 0; i < scan->n; i++) {
    int fd = open_pid_netns(scan->ns[i].pid, scan->ns[i].ino);
    if (fd < 0)
      continue; /* the process went away, or its namespace changed */
    int rc = setns(fd, CLONE_NEWNET);
    close(fd);
    if (rc < 0)
      continue;
    scan->entered++;
    read_addrs(&scan->ns[i]);
  }
  return NULL;
}

static void run_scan(struct tr_netns_scan *scan)
{
  scan->done = true;
  list_namespaces(scan);
  if (scan->n == 0)
    return;
  pthread_t t;
  if (pthread_create(&t, NULL, scan_thread, scan) != 0) {
    scan->problem = xasprintf("cannot start a thread to enter namespaces: %s", strerror(errno));
    return;
  }
  pthread_join(t, NULL);
  if (scan->entered == 0)
    scan->problem =
        xasprintf("none of the %zu network namespaces of host processes could be entered", scan->n);
  plg_debug("scanned %zu network namespaces of host processes (%zu entered)", scan->n, scan->entered);
}

static bool holds(const struct ns_entry *e, const struct tr_prefix *a)
{
  if (a->family == 0)
    return false;
  for (size_t i = 0; i < e->n_addrs; i++)
    if (e->addrs[i].family == a->family &&
        memcmp(e->addrs[i].addr, a->addr, a->family == AF_INET ? 4 : 16) == 0)
      return true;
  return false;
}

static void describe(const struct tr_prefix *addr4, const struct tr_prefix *addr6, char *buf, size_t size)
{
  char a[64] = "", b[64] = "";
  if (addr4->family != 0)
    tr_prefix_format(addr4, true, a, sizeof a);
  if (addr6->family != 0)
    tr_prefix_format(addr6, true, b, sizeof b);
  snprintf(buf, size, "%s%s%s", a, *a && *b ? " or " : "", b);
}

int tr_netns_open(struct tr_netns_scan *scan, const char *sandbox_key, const struct tr_prefix *addr4,
                  const struct tr_prefix *addr6, struct tr_netns_hint *hint, const char **how,
                  plg_error_t *err)
{
  const char *why = "it is not in Docker's netns directory";
  plg_error_t refused = NULL;
  if (sandbox_key != NULL && tr_netns_key_check(sandbox_key, &refused) == 0) {
    int fd = open_netns(sandbox_key);
    if (fd >= 0) {
      *how = "SandboxKey";
      return fd;
    }
    why = strerror(errno);
  }
  plg_error_release(&refused);
  if (hint->pid > 0) {
    int fd = open_pid_netns(hint->pid, hint->ino);
    if (fd >= 0) {
      *how = "its process";
      return fd;
    }
    memset(hint, 0, sizeof *hint); /* gone or changed: look again */
  }
  char want[140];
  describe(addr4, addr6, want, sizeof want);
  if (*want == '\0')
    return plg_error_make(err, 0, "the endpoint has no address to find its network namespace by");
  if (!scan->done)
    run_scan(scan);
  const struct ns_entry *found = NULL;
  size_t matches = 0;
  for (size_t i = 0; i < scan->n; i++)
    if (holds(&scan->ns[i], addr4) || holds(&scan->ns[i], addr6)) {
      matches++;
      if (found == NULL)
        found = &scan->ns[i];
    }
  if (matches > 1)
    return plg_error_make(
        err, 0,
        "%zu network namespaces of host processes (pid %d and others) have a veth holding %s: "
        "not guessing which is the container's",
        matches, (int)found->pid, want);
  int fd = found != NULL ? open_pid_netns(found->pid, found->ino) : -1;
  if (fd < 0) {
    cleanup_free char *where =
        scan->problem ? xasprintf("the host's namespaces cannot be searched: %s", scan->problem)
        : found
            ? xasprintf("the process (pid %d) whose namespace has a veth holding %s is gone", (int)found->pid,
                        want)
            : xasprintf("none of the %zu network namespaces of host processes that the plugin may enter "
                        "has a veth holding %s (it may not enter those of processes holding a capability it "
                        "lacks, as --privileged or --cap-add give)",
                        scan->n, want);
    return plg_error_make(err, 0,
                          "cannot find the container's network namespace: its SandboxKey %s cannot be opened "
                          "in the plugin (%s), and %s",
                          sandbox_key ? sandbox_key : "(none)", why, where);
  }
  hint->pid = found->pid;
  hint->ino = found->ino;
  *how = "a scan";
  return fd;
}
