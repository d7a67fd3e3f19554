/* stat() of a path inside a FUSE mount, with a deadline. A frozen sshfs blocks stat until sshfs
 * is killed, so the call runs on its own thread and the caller stops waiting at the deadline;
 * the thread ends by itself once the mount is torn down. */
#ifndef TM_STAT_H
#define TM_STAT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

struct tm_stat_probe;

struct tm_stat_probe *tm_stat_probe_start(const char *path);
/* Waits up to TIMEOUT_MS (0 = just look). True when the stat finished; then *ERRNO_OUT is 0 or
 * its errno and *ST (if not NULL) the result. */
bool tm_stat_probe_wait(struct tm_stat_probe *p, int timeout_ms, int *errno_out, struct stat *st);
int64_t tm_stat_probe_started(const struct tm_stat_probe *p);
void tm_stat_probe_release(struct tm_stat_probe *p);

/* Start, wait, release: 0, or -1 with errno (ETIMEDOUT when no answer came in time). */
int tm_stat_deadline(const char *path, int timeout_ms, struct stat *st);

#endif
