/* TCP connections with a deadline: the kernel's own connect timeout is minutes long, and a
 * plugin call must never wait that long. */
#ifndef PLG_NET_H
#define PLG_NET_H

#include "plg_error.h"

#include <stdbool.h>
#include <sys/socket.h>

/* Connects to SA within TIMEOUT_MS; a refused connection fails at once. WHERE names the peer in
 * messages ("172.17.0.2:4039"). The socket is close-on-exec, and non-blocking only when asked. */
int plg_net_connect(const struct sockaddr *sa, socklen_t len, int timeout_ms, bool nonblocking,
                    const char *where, plg_error_t *err);
/* The same, given up at once (errno ECANCELED in the error) when CANCEL_FD (-1: none) becomes
 * readable: a stop need not wait for the deadline. */
int plg_net_connect_cancellable(const struct sockaddr *sa, socklen_t len, int timeout_ms, bool nonblocking,
                                int cancel_fd, const char *where, plg_error_t *err);

/* "host:port", with brackets for IPv6 ("[fd00::1]:4039"), from a numeric address. */
void plg_net_format(const struct sockaddr *sa, char *buf, size_t size);

#endif
