#include "plg_net.h"

#include "plg_poll.h"
#include "plg_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

void plg_net_format(const struct sockaddr *sa, char *buf, size_t size)
{
  char ip[INET6_ADDRSTRLEN] = "?";
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
    snprintf(buf, size, "[%s]:%d", ip, ntohs(s6->sin6_port));
  } else {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
    inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
    snprintf(buf, size, "%s:%d", ip, ntohs(s4->sin_port));
  }
}

int plg_net_connect(const struct sockaddr *sa, socklen_t len, int timeout_ms, bool nonblocking,
                    const char *where, plg_error_t *err)
{
  return plg_net_connect_cancellable(sa, len, timeout_ms, nonblocking, -1, where, err);
}

int plg_net_connect_cancellable(const struct sockaddr *sa, socklen_t len, int timeout_ms, bool nonblocking,
                                int cancel_fd, const char *where, plg_error_t *err)
{
  cleanup_close int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return plg_error_make(err, errno, "cannot create a socket for %s", where);
  if (connect(fd, sa, len) < 0) {
    if (errno != EINPROGRESS)
      return plg_error_make(err, errno, "cannot connect to %s", where);
    int ready = plg_poll_wait(fd, POLLOUT, plg_now_ms() + timeout_ms, cancel_fd);
    if (ready == 0)
      return plg_error_make(err, 0, "cannot connect to %s: no answer within %d ms", where, timeout_ms);
    if (ready < 0 && errno == ECANCELED)
      return plg_error_make(err, ECANCELED, "gave up connecting to %s", where);
    if (ready < 0)
      return plg_error_make(err, errno, "cannot connect to %s", where);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    if (soerr != 0)
      return plg_error_make(err, soerr, "cannot connect to %s", where);
  }
  if (!nonblocking) {
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
      return plg_error_make(err, errno, "cannot configure the socket for %s", where);
  }
  int ret = fd;
  fd = -1;
  return ret;
}
