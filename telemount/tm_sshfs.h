/* One sshfs process: its argument vector, its start until the mount is usable, its stderr, its
 * connections and its end. sshfs runs with -o reconnect, so a dropped connection does not end the
 * FUSE mount: the next access redials, and running containers keep a working mount. sshfs itself
 * has no connect timeout and no liveness check; the plugin adds both, and cuts the connection of
 * a server that froze (tm_sshfs_cut). IPv6 servers are reached through a relay (tm_relay.h). */
#ifndef TM_SSHFS_H
#define TM_SSHFS_H

#include "plg_error.h"
#include "tm_net.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct tm_sshfs_params {
  const char *sshfs; /* program path */
  const struct tm_addr *addr;
  int port;
  bool ro;
  const char *mountpoint;
  int max_conns;
  bool default_permissions; /* DEFAULT_PERMISSIONS */
  int64_t cache_timeout_ms; /* CACHE_TIMEOUT: the longest a change on the server may go unseen */
  bool auto_cache;          /* AUTO_CACHE: keep a file's pages across opens while its mtime and size stay */
  int connect_timeout_ms;   /* the relay's dial of an IPv6 server */
  int cancel_fd;            /* tm_sshfs_start gives up at once (and stops sshfs) when it is readable */
  int relay_port;           /* tm_sshfs_argv only: sshfs dials 127.0.0.1:relay_port (0 = the server) */
};

enum tm_sshfs_event {
  TM_SSHFS_EXITED,       /* at most once: the mount is dead */
  TM_SSHFS_DISCONNECTED, /* sshfs said its connection ended; it redials on the next access */
};

/* Called from another thread. It must only record and signal: no blocking work. */
typedef void (*tm_sshfs_event_fn)(void *arg, enum tm_sshfs_event ev, const char *why);

struct tm_sshfs;

/* The argv for PARAMS (NULL-terminated, free with plg_strv_free). User text never appears in it
 * except as the already validated numeric address. */
char **tm_sshfs_argv(const struct tm_sshfs_params *p);

/* Starts sshfs and waits, at most TIMEOUT_MS, until the kernel lists the FUSE mount; on any
 * failure everything started is stopped again and the error carries what sshfs printed. */
int tm_sshfs_start(const struct tm_sshfs_params *p, int timeout_ms, tm_sshfs_event_fn on_event, void *arg,
                   struct tm_sshfs **out, plg_error_t *err);

/* Ends sshfs's connections to the server from outside: requests waiting on a frozen server fail
 * with EIO at once, and sshfs redials on the next access. -1 (with the reason) when this kernel
 * or sandbox does not allow it; the caller then has to kill sshfs instead. */
int tm_sshfs_cut(struct tm_sshfs *s, plg_error_t *err);

/* Kills sshfs (TERM, then KILL), waits for it, makes sure the mount is gone (fusermount3 -u,
 * lazily when busy) and frees S. Never touches anything below the mount point. */
void tm_sshfs_stop(struct tm_sshfs *s);

/* Kill at once: readers blocked in the mount get an error immediately, and the mount is dead. */
void tm_sshfs_kill(struct tm_sshfs *s);

/* The last lines sshfs printed, joined by "; " ("" when none). */
char *tm_sshfs_stderr_tail(struct tm_sshfs *s);
pid_t tm_sshfs_pid(const struct tm_sshfs *s);

/* Unmounts every sshfs mount below ROOT: what an earlier run of the plugin left. */
void tm_sshfs_remove_stale(const char *root);

/* fusermount3 -u PATH, then -uz if it is busy; 0 when PATH is no longer a mount point, neither
 * listed nor dead (a lookup failing with ENOTCONN). */
int tm_unmount(const char *path, plg_error_t *err);

#endif
