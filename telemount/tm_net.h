/* Reaching an SFTP export before sshfs does: sshfs's own connect has no timeout and a frozen
 * server would hang it, so the plugin resolves, connects and says hello itself, each with a
 * deadline, and fails with the address and the cause. */
#ifndef TM_NET_H
#define TM_NET_H

#include "plg_error.h"
#include "tm_options.h"

#include <sys/socket.h>

struct tm_addr {
  struct sockaddr_storage sa;
  socklen_t len;
  char text[64]; /* the numeric address, for sshfs and messages */
  int family;
};

/* Every wait here ends at its deadline, or at once (ECANCELED, "the plugin is stopping") when
 * CANCEL_FD (-1: none) becomes readable. */

/* Resolves HOST (a literal or a DNS name, asynchronously so the deadline holds). */
int tm_net_resolve(const char *host, int port, int timeout_ms, int cancel_fd, struct tm_addr *out,
                   plg_error_t *err);

/* A connected TCP socket (blocking, close-on-exec) or -1; refused connections fail at once. */
int tm_net_connect(const struct tm_addr *addr, int timeout_ms, int cancel_fd, plg_error_t *err);

/* Sends SSH_FXP_INIT and expects SSH_FXP_VERSION: proves an SFTP server answers, not just a
 * listening socket (a frozen server still completes TCP handshakes). */
int tm_net_sftp_hello(int fd, int timeout_ms, int cancel_fd, plg_error_t *err);

/* resolve + connect + hello, closing the connection. "host:port" in every message. */
int tm_net_probe(const char *host, int port, int timeout_ms, int cancel_fd, struct tm_addr *addr,
                 plg_error_t *err);

#endif
