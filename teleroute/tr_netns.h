/* Finding a container's network namespace for route refresh. The plugin binds no host path (so
 * that it enables on every engine, whatever its --exec-root), but it shares the host's pid
 * namespace (pidhost). It tries, in order:
 *  1. Docker's SandboxKey (/var/run/docker/netns/<id>, <exec-root>/netns/<id>; see
 *     tr_netns_key_check) as a path of the plugin, never following a final symbolic link: there only when the
 * binary runs on the host itself (a legacy plugin). Through /proc/<pid>/root of pid 1 or of dockerd it would
 * be reachable, but the kernel lets a process into another's /proc/<pid>/root or /proc/<pid>/ns/ only when
 * its capabilities include all of that process's (or it has CAP_SYS_PTRACE), and pid 1 and dockerd have them
 * all;
 *  2. the namespace found for the endpoint before: /proc/<pid>/ns/net, while that process still
 *     has the same namespace (pid and inode are checked);
 *  3. a scan: the network namespaces of all host processes (/proc/<pid>/ns/net), each distinct one
 *     entered once, on a thread of its own, to list the addresses on its veths; the one namespace
 *     where a veth holds the endpoint's address is the container's. One scan serves all the
 *     endpoints of a refresh round. A container whose processes all hold a capability the plugin
 *     lacks (--privileged, --cap-add SYS_PTRACE) cannot be entered this way.
 * Only what is found is returned: an endpoint whose namespace is found nowhere is an error. */
#ifndef TR_NETNS_H
#define TR_NETNS_H

#include "plg_error.h"
#include "tr_addr.h"

#include <stdint.h>
#include <sys/types.h>

/* Docker's SandboxKey names a bind mount of the container's namespace in Docker's netns directory,
 * <exec-root>/netns/<the first 12 hex digits of the sandbox id> (moby libnetwork osl.GenerateKey:
 * basePath() + "/" + id[:12], basePath() = <exec-root>/netns). The exec-root is not known to the
 * plugin (dockerd --exec-root, /var/run/docker by default), so a key is Docker's when it is an
 * absolute path without "." or ".." or empty components, whose last two components are "netns"
 * and 12 lowercase hex digits; anything else is outside Docker's netns directory and refused (Join
 * fails with 400), and route refresh never opens it. */
int tr_netns_key_check(const char *sandbox_key, plg_error_t *err);

/* Where an endpoint's namespace was found by a scan; pid 0 = nowhere yet. */
struct tr_netns_hint {
  pid_t pid;
  uint64_t ino;
};

/* The host's namespaces as one refresh round sees them: filled at its first use. */
struct tr_netns_scan;
struct tr_netns_scan *tr_netns_scan_new(void);
void tr_netns_scan_free(struct tr_netns_scan *scan);

/* Opens the namespace of the endpoint with SANDBOX_KEY (may be NULL) and ADDR4/ADDR6 (family 0 =
 * none). Returns a file descriptor, or -1 with ERR naming what was tried. *HINT is used and, after
 * a scan, updated. *HOW (static text) says which way was taken: "SandboxKey", "its process",
 * "a scan". */
int tr_netns_open(struct tr_netns_scan *scan, const char *sandbox_key, const struct tr_prefix *addr4,
                  const struct tr_prefix *addr6, struct tr_netns_hint *hint, const char **how,
                  plg_error_t *err);

#endif
