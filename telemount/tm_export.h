/* One export: the sshfs of one host, port and read-only flag, shared by all volumes of it, and its
 * life: mounted on demand, checked through the mount while it serves, broken off from a server that
 * froze, redialled by sshfs when the server is back, torn down when sshfs ends or the last volume
 * goes.
 *
 *   IDLE --mount--> STARTING --sshfs mounted--> MOUNTED <--answers again-- RECONNECTING
 *                      |                          |  \--stops answering (cut if frozen)--^
 *                      v                          v
 *                    ERROR                   LOST (sshfs ended; torn down; a Mount starts it again)
 *
 * Locking: every export of a registry shares the registry's lock (struct tm_export_env.lock), which
 * guards every field that changes. Functions named _locked expect it held; those that wait (a
 * probe, sshfs starting or stopping) drop it meanwhile and take it again, as their comment says.
 * Lock order: tm_ctx.lock (the volume table) -> tm_export_env.lock -> tm_sshfs.lock. */
#ifndef TM_EXPORT_H
#define TM_EXPORT_H

#include "plg_error.h"
#include "tm_config.h"
#include "tm_options.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

/* What the exports of one registry share. */
struct tm_export_env {
  struct tm_config cfg;
  pthread_mutex_t lock;   /* see the header comment */
  pthread_cond_t changed; /* an export changed state, or the stop began (CLOCK_MONOTONIC) */
  bool stopping;          /* under lock: no new sshfs, and every wait ends */
  int cancel_fd;          /* eventfd, written once at the stop: ends every network wait at once */
};

struct tm_export;

struct tm_export *tm_export_new(struct tm_export_env *env, const struct tm_opts *o);
/* Frees X, which must be torn down (tm_export_stop_locked). */
void tm_export_free(struct tm_export *x);
/* True when X serves the volumes of O (the same host, port and read-only flag). */
bool tm_export_serves(const struct tm_export *x, const struct tm_opts *o);

/* Brings X to MOUNTED, starting sshfs when needed, or to RECONNECTING with a server that answers
 * again (sshfs redials on the first access); else fails with the address and the cause. Drops the
 * lock while it probes or starts sshfs. */
int tm_export_mount_locked(struct tm_export *x, plg_error_t *err);
/* The volume's directory must exist on the server: checked through the mount with a deadline (a
 * timeout means the server froze: it is broken off). Takes the lock itself when it must. */
int tm_export_check_dir(struct tm_export *x, const struct tm_opts *o, const char *path, plg_error_t *err);

/* The last volume of X is gone: sshfs stops, the plugin's own empty directories go. Drops the lock. */
void tm_export_release_locked(struct tm_export *x);
/* The plugin stops: the same, whatever state X is in. Drops the lock. */
void tm_export_stop_locked(struct tm_export *x);
/* The stop begins: sshfs is killed at once (never waited for), which ends every wait on the
 * mount. For the stopping hook: quick, never blocks. */
void tm_export_stopping_locked(struct tm_export *x);

/* One round of the watchdog for X: tears down a lost sshfs (then returns true: the lock was
 * dropped) or runs the check through the mount when it is due (never waits). */
bool tm_export_watch_locked(struct tm_export *x, int64_t now);

/* True when the mount point of X holds a live FUSE mount (MOUNTED or RECONNECTING). */
bool tm_export_usable_locked(const struct tm_export *x);
/* Adds "state" (idle, mounting, mounted, reconnecting, disconnected, error) and "error". */
void tm_export_status_locked(const struct tm_export *x, json_t *status);

/* True when the server of X stopped answering for good: silent for longer than the linger time
 * (*SILENT_MS says how long). A server of a usable mount that is not known to be lost counts as
 * answering; otherwise it is probed, and while its silence is shorter than the linger time it is
 * probed again until it answers or the linger time is over. Drops the lock while it probes. */
bool tm_export_server_gone_locked(struct tm_export *x, int64_t *silent_ms);

/* Telepresence names volumes <container>-<i> and creates the same names again, with a new port,
 * in its next intercept; Docker reuses a volume its driver still knows without passing the new
 * options. So a volume that no container holds is let go once its server has been silent
 * (SILENT_SINCE, 0 = it answers) for longer than the linger time. */
bool tm_silence_is_final(int64_t silent_since, int64_t now, int64_t linger_ms);

#endif
