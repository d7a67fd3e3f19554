#include "tm_net.h"

#include "plg_net.h"
#include "plg_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SSH_FXP_INIT 1
#define SSH_FXP_VERSION 2

static int remaining_ms(int64_t deadline)
{
  int64_t left = deadline - plg_now_ms();
  return left > 0 ? (int)left : 0;
}

static void addr_text(struct tm_addr *a, int port)
{
  char buf[INET6_ADDRSTRLEN] = "?";
  const void *raw = a->family == AF_INET ? (const void *)&((struct sockaddr_in *)&a->sa)->sin_addr
                                         : (const void *)&((struct sockaddr_in6 *)&a->sa)->sin6_addr;
  inet_ntop(a->family, raw, buf, sizeof buf);
  snprintf(a->text, sizeof a->text, "%s", buf);
  if (a->family == AF_INET)
    ((struct sockaddr_in *)&a->sa)->sin_port = htons((uint16_t)port);
  else
    ((struct sockaddr_in6 *)&a->sa)->sin6_port = htons((uint16_t)port);
}

/* getaddrinfo_a + gai_suspend: a DNS server that does not answer cannot outlast the deadline. */
static int resolve_async(const char *host, int timeout_ms, struct addrinfo **res, plg_error_t *err)
{
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
  struct gaicb req = {.ar_name = host, .ar_request = &hints};
  struct gaicb *list[1] = {&req};
  if (getaddrinfo_a(GAI_NOWAIT, list, 1, NULL) != 0)
    return plg_error_make(err, 0, "cannot resolve host \"%s\"", host);
  int64_t deadline = plg_now_ms() + timeout_ms;
  int rc;
  while ((rc = gai_error(&req)) == EAI_INPROGRESS) {
    int left = remaining_ms(deadline);
    struct timespec ts = {left / 1000, (long)(left % 1000) * 1000000L};
    if (left == 0 || (gai_suspend((const struct gaicb *const *)list, 1, &ts) == EAI_AGAIN &&
                      remaining_ms(deadline) == 0)) {
      if (gai_cancel(&req) != EAI_CANCELED) {
        /* the lookup thread still owns REQ: wait for it rather than free what it writes to */
        while (gai_error(&req) == EAI_INPROGRESS)
          gai_suspend((const struct gaicb *const *)list, 1, NULL);
        if (req.ar_result != NULL)
          freeaddrinfo(req.ar_result);
      }
      return plg_error_make(err, 0, "cannot resolve host \"%s\": no answer within %d ms", host, timeout_ms);
    }
  }
  if (rc != 0)
    return plg_error_make(err, 0, "cannot resolve host \"%s\": %s", host, gai_strerror(rc));
  *res = req.ar_result;
  return 0;
}

int tm_net_resolve(const char *host, int port, int timeout_ms, struct tm_addr *out, plg_error_t *err)
{
  memset(out, 0, sizeof *out);
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton(AF_INET, host, &a4) == 1) {
    struct sockaddr_in *sin = (struct sockaddr_in *)&out->sa;
    sin->sin_family = out->family = AF_INET;
    sin->sin_addr = a4;
    out->len = sizeof *sin;
  } else if (inet_pton(AF_INET6, host, &a6) == 1) {
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->sa;
    sin6->sin6_family = out->family = AF_INET6;
    sin6->sin6_addr = a6;
    out->len = sizeof *sin6;
  } else {
    struct addrinfo *res = NULL;
    if (resolve_async(host, timeout_ms, &res, err) < 0)
      return -1;
    /* IPv4 first: sshfs can then connect by itself (directport), with several connections */
    const struct addrinfo *pick = res;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
      if (ai->ai_family == AF_INET) {
        pick = ai;
        break;
      }
    memcpy(&out->sa, pick->ai_addr, pick->ai_addrlen);
    out->len = pick->ai_addrlen;
    out->family = pick->ai_family;
    freeaddrinfo(res);
  }
  addr_text(out, port);
  return 0;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
  struct pollfd p = {.fd = fd, .events = events};
  for (;;) {
    int rc = poll(&p, 1, remaining_ms(deadline));
    if (rc < 0 && errno == EINTR)
      continue;
    return rc; /* 0: deadline passed */
  }
}

int tm_net_connect(const struct tm_addr *addr, int timeout_ms, plg_error_t *err)
{
  char where[96];
  plg_net_format((const struct sockaddr *)&addr->sa, where, sizeof where);
  return plg_net_connect((const struct sockaddr *)&addr->sa, addr->len, timeout_ms, false, where, err);
}

static int send_all(int fd, const unsigned char *buf, size_t len, int64_t deadline)
{
  while (len > 0) {
    if (wait_fd(fd, POLLOUT, deadline) == 0)
      return -1;
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n < 0)
      return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* 0 when LEN bytes arrived, -1 with errno (ETIMEDOUT at the deadline, ECONNRESET on EOF). */
static int recv_all(int fd, unsigned char *buf, size_t len, int64_t deadline)
{
  while (len > 0) {
    if (wait_fd(fd, POLLIN, deadline) == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    ssize_t n = recv(fd, buf, len, MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n == 0)
      errno = ECONNRESET;
    if (n <= 0)
      return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

int tm_net_sftp_hello(int fd, int timeout_ms, plg_error_t *err)
{
  static const unsigned char init[9] = {0, 0, 0, 5, SSH_FXP_INIT, 0, 0, 0, 3};
  int64_t deadline = plg_now_ms() + timeout_ms;
  if (send_all(fd, init, sizeof init, deadline) < 0)
    return plg_error_make(err, errno, "cannot send the SFTP greeting");
  unsigned char head[5];
  if (recv_all(fd, head, sizeof head, deadline) < 0) {
    if (errno == ETIMEDOUT)
      return plg_error_make(err, 0, "the SFTP server accepted the connection but did not answer within %d ms",
                            timeout_ms);
    return plg_error_make(err, errno, "the connection closed before an SFTP answer");
  }
  uint32_t len = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
  if (head[4] != SSH_FXP_VERSION || len < 5 || len > 256 * 1024)
    return plg_error_make(err, 0, "the server did not answer as an SFTP server (is the port right?)");
  return 0;
}

int tm_net_probe(const char *host, int port, int timeout_ms, struct tm_addr *addr, plg_error_t *err)
{
  int64_t deadline = plg_now_ms() + timeout_ms;
  if (tm_net_resolve(host, port, timeout_ms, addr, err) < 0)
    return -1;
  cleanup_close int fd = tm_net_connect(addr, remaining_ms(deadline), err);
  if (fd < 0)
    return -1;
  if (tm_net_sftp_hello(fd, remaining_ms(deadline), err) < 0)
    return plg_error_wrap(err, addr->family == AF_INET6 ? "[%s]:%d" : "%s:%d", addr->text, port);
  return 0;
}
