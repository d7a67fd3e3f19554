/* Waiting on one socket with a deadline, and with a descriptor that cancels the wait: the wait
 * under every blocking network call, so that none outlives its deadline or a stop. */
#ifndef PLG_POLL_H
#define PLG_POLL_H

#include <stdint.h>

/* Waits until FD has one of EVENTS (POLLIN, POLLOUT), the absolute DEADLINE_MS (plg_now_ms())
 * passes, or CANCEL_FD (-1: none) becomes readable; restarts after a signal. Returns FD's revents
 * (> 0, which may be POLLERR or POLLHUP), 0 at the deadline, or -1 with errno (ECANCELED when
 * cancelled). CANCEL_FD is only polled, never read: an eventfd that is written once stays set. */
int plg_poll_wait(int fd, short events, int64_t deadline_ms, int cancel_fd);

#endif
