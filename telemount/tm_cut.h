/* Cutting another process's TCP connections from outside. sshfs with -o reconnect redials by
 * itself when its connection ends, but a frozen server (it accepts, it never answers) never ends
 * it: readers hang. The plugin takes a duplicate of each of sshfs's TCP sockets with
 * pidfd_getfd(2) and shuts it down, which ends the connection for sshfs too (the duplicate is the
 * same socket): its waiting requests fail with EIO at once, and its next request redials. */
#ifndef TM_CUT_H
#define TM_CUT_H

#include "plg_error.h"

#include <sys/types.h>

/* Shuts down every TCP socket of PID with SHUT_RDWR, which also aborts a connect still in
 * progress (the kernel disconnects a socket in SYN_SENT on shutdown). Returns how many were cut
 * (0 when it had none open), or -1 with the reason: pidfd_getfd needs Linux 5.6 and the right to
 * ptrace PID (the plugin's own child qualifies). */
int tm_cut_tcp(pid_t pid, plg_error_t *err);

#endif
