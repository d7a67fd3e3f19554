/* The sshfs mounts: one per host, port and read-only flag, shared by all volumes of that
 * export. Started lazily, watched while they run (sshfs's exit and output, and a bounded check
 * through the mount), torn down at once when the connection is lost, restarted on demand. */
#ifndef TM_MOUNTS_H
#define TM_MOUNTS_H

#include "plg_error.h"
#include "tm_config.h"
#include "tm_options.h"

#include <jansson.h>

struct tm_mounts;

/* Removes the sshfs mounts an earlier run left below MOUNT_ROOT first, so call it before the
 * plugin's socket listens. */
struct tm_mounts *tm_mounts_new(const struct tm_config *cfg);
/* The stop begins (the plugin's stopping hook): every wait ends at once and every sshfs is
 * killed, so that requests in flight fail now. Quick, never blocks. */
void tm_mounts_stopping(struct tm_mounts *m);
/* Stops the watchdog and every sshfs, and removes the mounts (after tm_mounts_stopping, or
 * without it). M stays allocated for a request that may still be running. */
void tm_mounts_stop(struct tm_mounts *m);
/* Frees M: call after tm_mounts_stop, once no request runs. */
void tm_mounts_free(struct tm_mounts *m);

/* Makes sure the export of O is mounted, starting sshfs when needed, and returns the volume's
 * mountpoint once the remote directory is reachable. Fails with the address and the cause. */
int tm_mounts_ensure(struct tm_mounts *m, const struct tm_opts *o, char **mountpoint, plg_error_t *err);

/* The last volume of O's export is gone: stop its sshfs and remove the plugin's own empty
 * directories (never recursively, never while anything is mounted there). */
void tm_mounts_release(struct tm_mounts *m, const struct tm_opts *o);

/* True when the server of O's export has stopped answering for good: it did not answer for longer
 * than DISCONNECTED_LINGER_TIME (*SILENT_MS says how long). A server that is mounted and not known
 * to be lost counts as answering without being asked; otherwise it is probed (HOST_PING_TIMEOUT),
 * and while its silence is shorter than the linger time it is probed again until it answers or
 * the linger time is over, so the wait is at most DISCONNECTED_LINGER_TIME. */
bool tm_mounts_server_gone(struct tm_mounts *m, const struct tm_opts *o, int64_t *silent_ms);

/* The volume's mountpoint path (whether or not it is mounted now). */
char *tm_mounts_volume_path(struct tm_mounts *m, const struct tm_opts *o);
/* True when the export of O is mounted right now. */
bool tm_mounts_is_up(struct tm_mounts *m, const struct tm_opts *o);
/* Adds "state" (idle, mounting, mounted, disconnected, error) and "error" to STATUS. */
void tm_mounts_status(struct tm_mounts *m, const struct tm_opts *o, json_t *status);

#endif
