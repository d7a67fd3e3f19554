/* One sshfs process: its argument vector, its start until the mount is usable, its stderr, and
 * its end. sshfs itself has no connect timeout and no liveness check; the plugin adds both. */
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
  int max_conns;            /* > 1 only with directport (IPv4) */
  int slave_fd;             /* IPv6: a connected socket that becomes sshfs's stdin/stdout */
  int64_t cache_timeout_ms; /* CACHE_TIMEOUT: the longest a change on the server may go unseen */
  bool auto_cache;          /* AUTO_CACHE: keep a file's pages across opens while its mtime and size stay */
};

/* Called at most once, from another thread, when the connection is lost (sshfs exited or said
 * the remote disconnected). It must only record and signal: no blocking work. */
typedef void (*tm_sshfs_lost_fn)(void *arg, const char *why);

struct tm_sshfs;

/* The argv for PARAMS (NULL-terminated, free with tm_strv_free). User text never appears in it
 * except as the already validated numeric address. */
char **tm_sshfs_argv(const struct tm_sshfs_params *p);

/* Starts sshfs and waits, at most TIMEOUT_MS, until the kernel lists the FUSE mount; on any
 * failure everything started is stopped again and the error carries what sshfs printed. */
int tm_sshfs_start(const struct tm_sshfs_params *p, int timeout_ms, tm_sshfs_lost_fn on_lost, void *arg,
                   struct tm_sshfs **out, plg_error_t *err);

/* Kills sshfs (TERM, then KILL), waits for it, makes sure the mount is gone (fusermount3 -u,
 * lazily when busy) and frees S. Never touches anything below the mount point. */
void tm_sshfs_stop(struct tm_sshfs *s);

/* Kill at once (a frozen server): readers blocked in the mount get an error immediately. */
void tm_sshfs_kill(struct tm_sshfs *s);

/* The last lines sshfs printed, joined by "; " ("" when none). */
char *tm_sshfs_stderr_tail(struct tm_sshfs *s);
pid_t tm_sshfs_pid(const struct tm_sshfs *s);

/* fusermount3 -u PATH, then -uz if it is busy; 0 when PATH is no longer a mount point. */
int tm_unmount(const char *path, plg_error_t *err);

#endif
