#include "tm_relay.h"

#include "plg_log.h"
#include "plg_util.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define RELAY_BUF (64 * 1024)

struct link {
  struct tm_relay *relay;
  int down; /* sshfs's side (loopback) */
  int up;   /* the server's side, -1 until dialled */
  struct link *next;
};

struct tm_relay {
  struct tm_addr upstream;
  int connect_timeout_ms;
  int listen_fd;
  int wake_fd; /* eventfd: stop accepting */
  int port;
  pthread_t acceptor;
  pthread_mutex_t lock; /* links, n_links, stopping; a leaf, taken under tm_export_env.lock by a cut */
  pthread_cond_t idle;  /* n_links went to 0 (CLOCK_MONOTONIC) */
  struct link *links;
  int n_links;
  bool stopping;
};

/* One direction's bytes in flight. */
struct pipe_buf {
  char data[RELAY_BUF];
  size_t len, off;
  bool eof;
};

static void unlink_link(struct tm_relay *r, struct link *l)
{
  pthread_mutex_lock(&r->lock);
  for (struct link **p = &r->links; *p != NULL; p = &(*p)->next)
    if (*p == l) {
      *p = l->next;
      break;
    }
  if (--r->n_links == 0)
    pthread_cond_broadcast(&r->idle);
  pthread_mutex_unlock(&r->lock);
}

/* Reads from FROM into B when B is empty; 0 on progress or nothing to do, -1 when FROM failed. */
static int fill(int from, struct pipe_buf *b)
{
  if (b->len > b->off || b->eof)
    return 0;
  ssize_t n = recv(from, b->data, sizeof b->data, MSG_DONTWAIT);
  if (n < 0)
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
  if (n == 0)
    b->eof = true;
  b->len = (size_t)n;
  b->off = 0;
  return 0;
}

static int drain(int to, struct pipe_buf *b)
{
  if (b->len == b->off)
    return 0;
  ssize_t n = send(to, b->data + b->off, b->len - b->off, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n < 0)
    return errno == EAGAIN || errno == EINTR ? 0 : -1;
  b->off += (size_t)n;
  return 0;
}

/* Copies both ways until either side ends: an SFTP session is over when either end closes. */
static void relay_bytes(int down, int up)
{
  struct pipe_buf *to_up = xcalloc(1, sizeof *to_up), *to_down = xcalloc(1, sizeof *to_down);
  for (;;) {
    if (fill(down, to_up) < 0 || fill(up, to_down) < 0 || drain(up, to_up) < 0 || drain(down, to_down) < 0)
      break;
    if ((to_up->eof && to_up->off == to_up->len) || (to_down->eof && to_down->off == to_down->len))
      break;
    struct pollfd fds[2] = {{.fd = down}, {.fd = up}};
    fds[0].events =
        (to_up->off == to_up->len && !to_up->eof ? POLLIN : 0) | (to_down->off < to_down->len ? POLLOUT : 0);
    fds[1].events = (to_down->off == to_down->len && !to_down->eof ? POLLIN : 0) |
                    (to_up->off < to_up->len ? POLLOUT : 0);
    if (poll(fds, 2, -1) < 0 && errno != EINTR)
      break;
  }
  free(to_up);
  free(to_down);
}

static void *run_link(void *arg)
{
  struct link *l = arg;
  struct tm_relay *r = l->relay;
  plg_error_t err = NULL;
  int up = tm_net_connect(&r->upstream, r->connect_timeout_ms, r->wake_fd, &err); /* a stop ends the dial */
  if (up < 0) {
    plg_debug("relay to %s: %s", r->upstream.text, err->msg);
    plg_error_release(&err);
  } else {
    int one = 1;
    setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pthread_mutex_lock(&r->lock);
    l->up = up;
    bool stopping = r->stopping;
    pthread_mutex_unlock(&r->lock);
    if (!stopping)
      relay_bytes(l->down, up);
  }
  unlink_link(r, l); /* from here on nobody cuts these descriptors */
  if (l->up >= 0)
    close(l->up);
  close(l->down);
  free(l);
  return NULL;
}

static void start_link(struct tm_relay *r, int down)
{
  int one = 1;
  setsockopt(down, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct link *l = xcalloc(1, sizeof *l);
  l->relay = r;
  l->down = down;
  l->up = -1;
  pthread_mutex_lock(&r->lock);
  l->next = r->links;
  r->links = l;
  r->n_links++;
  pthread_mutex_unlock(&r->lock);
  pthread_t t;
  pthread_attr_t ta;
  pthread_attr_init(&ta);
  pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&t, &ta, run_link, l) != 0) {
    plg_warn("relay to %s: cannot start a thread; the connection is refused", r->upstream.text);
    unlink_link(r, l);
    close(down);
    free(l);
  }
  pthread_attr_destroy(&ta);
}

static void *accept_loop(void *arg)
{
  struct tm_relay *r = arg;
  for (;;) {
    struct pollfd fds[2] = {{.fd = r->listen_fd, .events = POLLIN}, {.fd = r->wake_fd, .events = POLLIN}};
    if (poll(fds, 2, -1) < 0 && errno != EINTR)
      break;
    if (fds[1].revents != 0)
      break;
    int fd = accept4(r->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0)
      start_link(r, fd);
    else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
      plg_sleep_ms(10); /* EMFILE and the like: do not spin */
  }
  return NULL;
}

static int listen_loopback(int *port, plg_error_t *err)
{
  cleanup_close int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof sa;
  if (fd < 0 || bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 16) < 0 ||
      getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
    return plg_error_make(err, errno, "cannot listen on a loopback port for the IPv6 relay");
  *port = ntohs(sa.sin_port);
  int ret = fd;
  fd = -1;
  return ret;
}

int tm_relay_start(const struct tm_addr *upstream, int connect_timeout_ms, struct tm_relay **out,
                   plg_error_t *err)
{
  struct tm_relay *r = xcalloc(1, sizeof *r);
  r->upstream = *upstream;
  r->connect_timeout_ms = connect_timeout_ms;
  r->listen_fd = listen_loopback(&r->port, err);
  if (r->listen_fd < 0) {
    free(r);
    return -1;
  }
  r->wake_fd = eventfd(0, EFD_CLOEXEC);
  pthread_mutex_init(&r->lock, NULL);
  plg_cond_init_monotonic(&r->idle);
  if (r->wake_fd < 0 || pthread_create(&r->acceptor, NULL, accept_loop, r) != 0) {
    int saved = errno;
    if (r->wake_fd >= 0)
      close(r->wake_fd);
    close(r->listen_fd);
    pthread_cond_destroy(&r->idle);
    pthread_mutex_destroy(&r->lock);
    free(r);
    return plg_error_make(err, saved, "cannot start the IPv6 relay");
  }
  *out = r;
  return 0;
}

int tm_relay_port(const struct tm_relay *r)
{
  return r->port;
}

int tm_relay_cut(struct tm_relay *r)
{
  int n = 0;
  pthread_mutex_lock(&r->lock);
  for (struct link *l = r->links; l != NULL; l = l->next, n++) {
    shutdown(l->down, SHUT_RDWR);
    if (l->up >= 0)
      shutdown(l->up, SHUT_RDWR);
  }
  pthread_mutex_unlock(&r->lock);
  return n;
}

void tm_relay_stop(struct tm_relay *r)
{
  if (r == NULL)
    return;
  uint64_t one = 1;
  (void)!write(r->wake_fd, &one, sizeof one);
  pthread_join(r->acceptor, NULL);
  pthread_mutex_lock(&r->lock);
  r->stopping = true;
  pthread_mutex_unlock(&r->lock);
  tm_relay_cut(r);
  /* a link still dialling ends within the connect timeout */
  struct timespec deadline;
  plg_timespec_in(&deadline, CLOCK_MONOTONIC, r->connect_timeout_ms + 1000);
  pthread_mutex_lock(&r->lock);
  while (r->n_links > 0)
    if (pthread_cond_timedwait(&r->idle, &r->lock, &deadline) == ETIMEDOUT)
      break;
  bool leaked = r->n_links > 0;
  pthread_mutex_unlock(&r->lock);
  close(r->listen_fd);
  close(r->wake_fd);
  if (leaked) { /* the links still point at R: keep it */
    plg_error("the IPv6 relay to %s did not stop; leaving it", r->upstream.text);
    return;
  }
  pthread_cond_destroy(&r->idle);
  pthread_mutex_destroy(&r->lock);
  free(r);
}
