/* Readahead of a FUSE mount. The kernel reads ahead at most 128 KiB on a FUSE mount, so a single
 * reader has little more than that in flight: over a 10 ms round trip, 20 MB/s whatever sshfs
 * does. The limit is the mount's backing device's read_ahead_kb in sysfs (bench/README.md). */
#ifndef TM_READAHEAD_H
#define TM_READAHEAD_H

#include "plg_error.h"

/* Sets read_ahead_kb of the mount on MOUNTPOINT to KB. Inside a managed plugin /sys is mounted
 * read-only; then the write happens on a thread in a private mount namespace whose /sys is writable,
 * which ends with the thread and is seen by no one else. */
int tm_readahead_set(const char *mountpoint, int kb, plg_error_t *err);

#endif
