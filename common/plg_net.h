/* TCP connections with a deadline: the kernel's own connect timeout is minutes long, and a
 * plugin call must never wait that long. */
#ifndef PLG_NET_H
#define PLG_NET_H

#include "plg_error.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

/* Connects to SA within TIMEOUT_MS; a refused connection fails at once. WHERE names the peer in
 * messages ("172.17.0.2:4039"). The socket is close-on-exec, and non-blocking only when asked. */
int plg_net_connect(const struct sockaddr *sa, socklen_t len, int timeout_ms, bool nonblocking,
                    const char *where, plg_error_t *err);

/* An IP literal ("172.17.0.2", "fd00::1", "[fd00::1]"); an IPv4-mapped IPv6 address
 * ("::ffff:172.17.0.2", as Telepresence sends for IPv6-only networks) is its IPv4 address, so that
 * it works on hosts without IPv6. Fills CANONICAL (INET6_ADDRSTRLEN bytes) and *FAMILY; false for
 * anything else (names included). */
bool plg_net_parse_ip(const char *text, char *canonical, int *family);

/* The socket address of the IP literal HOST (as plg_net_parse_ip takes it) and PORT. */
bool plg_net_sockaddr(const char *host, int port, struct sockaddr_storage *sa, socklen_t *len);

/* Waits until FD has one of EVENTS (POLLIN, POLLOUT) or the monotonic DEADLINE (plg_now_ms)
 * passes: > 0 ready, 0 at the deadline, -1 with errno. */
int plg_net_wait(int fd, short events, int64_t deadline);

/* "host:port", with brackets for IPv6 ("[fd00::1]:4039"), from a numeric address. */
void plg_net_format(const struct sockaddr *sa, char *buf, size_t size);

/* plg_net_wait that also ends, with -1 and errno ECANCELED, once CANCEL_FD (-1: none) is readable:
 * a stop need not wait for a deadline. CANCEL_FD is only polled, never read (an eventfd written
 * once stays set). */
int plg_net_wait_cancellable(int fd, short events, int64_t deadline, int cancel_fd);
/* plg_net_connect, given up at once (errno ECANCELED in the error) when CANCEL_FD is readable. */
int plg_net_connect_cancellable(const struct sockaddr *sa, socklen_t len, int timeout_ms, bool nonblocking,
                                int cancel_fd, const char *where, plg_error_t *err);

#endif
