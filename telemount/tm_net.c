#include "tm_net.h"

#include "plg_net.h"
#include "plg_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
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

/* A lookup that may outlive the request that started it: a DNS server that does not answer keeps
 * the resolver busy past our deadline. So each lookup runs on a detached thread of its own, and
 * its state is freed by whichever lets go last: the caller, or the thread. */
struct lookup {
  char *host;
  pthread_mutex_t lock; /* a leaf: done and caller_gone, between the caller and the lookup thread */
  int done_fd;          /* eventfd: readable once the lookup is done */
  bool done, caller_gone;
  int rc;
  struct addrinfo *res;
};

static void lookup_free(struct lookup *l)
{
  if (l->res != NULL)
    freeaddrinfo(l->res);
  close(l->done_fd);
  pthread_mutex_destroy(&l->lock);
  free(l->host);
  free(l);
}

static void *run_lookup(void *arg)
{
  struct lookup *l = arg;
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG};
  struct addrinfo *res = NULL;
  int rc = getaddrinfo(l->host, NULL, &hints, &res);
  pthread_mutex_lock(&l->lock);
  l->rc = rc;
  l->res = res;
  l->done = true;
  bool last = l->caller_gone;
  uint64_t one = 1;
  (void)!write(l->done_fd, &one, sizeof one);
  pthread_mutex_unlock(&l->lock);
  if (last)
    lookup_free(l);
  return NULL;
}

static int resolve_async(const char *host, int timeout_ms, int cancel_fd, struct addrinfo **res,
                         plg_error_t *err)
{
  struct lookup *l = xcalloc(1, sizeof *l);
  l->host = xstrdup(host);
  pthread_mutex_init(&l->lock, NULL);
  l->done_fd = eventfd(0, EFD_CLOEXEC);
  if (l->done_fd < 0) {
    int e = errno;
    lookup_free(l);
    return plg_error_make(err, e, "cannot resolve host \"%s\"", host);
  }
  pthread_t t;
  pthread_attr_t ta;
  pthread_attr_init(&ta);
  pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
  int started = pthread_create(&t, &ta, run_lookup, l);
  pthread_attr_destroy(&ta);
  if (started != 0) {
    lookup_free(l);
    return plg_error_make(err, started, "cannot resolve host \"%s\"", host);
  }
  bool cancelled = plg_net_wait_cancellable(l->done_fd, POLLIN, plg_now_ms() + timeout_ms, cancel_fd) < 0 &&
                   errno == ECANCELED;
  pthread_mutex_lock(&l->lock);
  bool done = l->done;
  int rc = l->rc;
  *res = done && rc == 0 ? l->res : NULL;
  if (*res != NULL)
    l->res = NULL;
  l->caller_gone = true;
  pthread_mutex_unlock(&l->lock);
  if (done) /* the thread has let go: it never touches L after setting done */
    lookup_free(l);
  if (!done && cancelled)
    return plg_error_make(err, 0, "cannot resolve host \"%s\": the plugin is stopping", host);
  if (!done)
    return plg_error_make(err, 0, "cannot resolve host \"%s\": no answer within %d ms", host, timeout_ms);
  if (rc != 0)
    return plg_error_make(err, 0, "cannot resolve host \"%s\": %s", host, gai_strerror(rc));
  return 0;
}

int tm_net_resolve(const char *host, int port, int timeout_ms, int cancel_fd, struct tm_addr *out,
                   plg_error_t *err)
{
  memset(out, 0, sizeof *out);
  if (plg_net_sockaddr(host, port, &out->sa, &out->len)) {
    out->family = out->sa.ss_family;
  } else {
    struct addrinfo *res = NULL;
    if (resolve_async(host, timeout_ms, cancel_fd, &res, err) < 0)
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

int tm_net_connect(const struct tm_addr *addr, int timeout_ms, int cancel_fd, plg_error_t *err)
{
  char where[96];
  plg_net_format((const struct sockaddr *)&addr->sa, where, sizeof where);
  return plg_net_connect_cancellable((const struct sockaddr *)&addr->sa, addr->len, timeout_ms, false,
                                     cancel_fd, where, err);
}

/* 0 when LEN bytes left, -1 with errno (ETIMEDOUT at the deadline, ECANCELED at a stop). */
static int send_all(int fd, const unsigned char *buf, size_t len, int64_t deadline, int cancel_fd)
{
  while (len > 0) {
    int ready = plg_net_wait_cancellable(fd, POLLOUT, deadline, cancel_fd);
    if (ready <= 0) {
      if (ready == 0)
        errno = ETIMEDOUT;
      return -1;
    }
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

/* 0 when LEN bytes arrived, -1 with errno (ETIMEDOUT at the deadline, ECONNRESET on EOF,
 * ECANCELED at a stop). */
static int recv_all(int fd, unsigned char *buf, size_t len, int64_t deadline, int cancel_fd)
{
  while (len > 0) {
    int ready = plg_net_wait_cancellable(fd, POLLIN, deadline, cancel_fd);
    if (ready <= 0) {
      if (ready == 0)
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

int tm_net_sftp_hello(int fd, int timeout_ms, int cancel_fd, plg_error_t *err)
{
  static const unsigned char init[9] = {0, 0, 0, 5, SSH_FXP_INIT, 0, 0, 0, 3};
  int64_t deadline = plg_now_ms() + timeout_ms;
  if (send_all(fd, init, sizeof init, deadline, cancel_fd) < 0)
    return plg_error_make(err, errno, "cannot send the SFTP greeting");
  unsigned char head[5];
  if (recv_all(fd, head, sizeof head, deadline, cancel_fd) < 0) {
    if (errno == ECANCELED)
      return plg_error_make(err, 0, "the plugin is stopping");
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

int tm_net_probe(const char *host, int port, int timeout_ms, int cancel_fd, struct tm_addr *addr,
                 plg_error_t *err)
{
  int64_t deadline = plg_now_ms() + timeout_ms;
  if (tm_net_resolve(host, port, timeout_ms, cancel_fd, addr, err) < 0)
    return -1;
  cleanup_close int fd = tm_net_connect(addr, remaining_ms(deadline), cancel_fd, err);
  if (fd < 0)
    return -1;
  if (tm_net_sftp_hello(fd, remaining_ms(deadline), cancel_fd, err) < 0)
    return plg_error_wrap(err, addr->family == AF_INET6 ? "[%s]:%d" : "%s:%d", addr->text, port);
  return 0;
}
