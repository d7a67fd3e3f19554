#include "plg_net.h"

#include "plg_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
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

bool plg_net_parse_ip(const char *text, char *canonical, int *family)
{
  unsigned char addr[16];
  char bare[INET6_ADDRSTRLEN];
  size_t n = strlen(text);
  if (n >= 2 && n - 2 < sizeof bare && text[0] == '[' && text[n - 1] == ']') {
    memcpy(bare, text + 1, n - 2);
    bare[n - 2] = '\0';
  } else if (n < sizeof bare) {
    memcpy(bare, text, n + 1);
  } else {
    return false;
  }
  const unsigned char *raw = addr;
  if (inet_pton(AF_INET, bare, addr) == 1) {
    *family = AF_INET;
  } else if (inet_pton(AF_INET6, bare, addr) == 1 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)addr)) {
    *family = AF_INET;
    raw = addr + 12;
  } else if (inet_pton(AF_INET6, bare, addr) == 1) {
    *family = AF_INET6;
  } else {
    return false;
  }
  inet_ntop(*family, raw, canonical, INET6_ADDRSTRLEN);
  return true;
}

bool plg_net_sockaddr(const char *host, int port, struct sockaddr_storage *sa, socklen_t *len)
{
  char canonical[INET6_ADDRSTRLEN];
  int family;
  if (!plg_net_parse_ip(host, canonical, &family))
    return false;
  memset(sa, 0, sizeof *sa);
  if (family == AF_INET) {
    struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)port);
    inet_pton(AF_INET, canonical, &s4->sin_addr);
    *len = sizeof *s4;
  } else {
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons((uint16_t)port);
    inet_pton(AF_INET6, canonical, &s6->sin6_addr);
    *len = sizeof *s6;
  }
  return true;
}

int plg_net_wait(int fd, short events, int64_t deadline)
{
  return plg_net_wait_cancellable(fd, events, deadline, -1);
}

int plg_net_connect(const struct sockaddr *sa, socklen_t len, int timeout_ms, bool nonblocking,
                    const char *where, plg_error_t *err)
{
  return plg_net_connect_cancellable(sa, len, timeout_ms, nonblocking, -1, where, err);
}

int plg_net_wait_cancellable(int fd, short events, int64_t deadline, int cancel_fd)
{
  struct pollfd p[2] = {{.fd = fd, .events = events}, {.fd = cancel_fd, .events = POLLIN}};
  for (;;) {
    int64_t left = deadline - plg_now_ms();
    int rc = poll(p, cancel_fd >= 0 ? 2 : 1, left > 0 ? (int)left : 0);
    if (rc < 0 && errno == EINTR)
      continue;
    if (rc > 0 && cancel_fd >= 0 && (p[1].revents & POLLIN)) {
      errno = ECANCELED;
      return -1;
    }
    return rc < 0 ? -1 : p[0].revents != 0;
  }
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
    int ready = plg_net_wait_cancellable(fd, POLLOUT, plg_now_ms() + timeout_ms, cancel_fd);
    if (ready == 0)
      return plg_error_make(err, 0, "cannot connect to %s: no answer within %d ms", where, timeout_ms);
    if (ready < 0)
      return plg_error_make(err, errno,
                            errno == ECANCELED ? "gave up connecting to %s" : "cannot connect to %s", where);
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
