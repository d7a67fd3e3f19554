#include "sftp_fixture.h"

#include "plg_proc.h"
#include "plg_util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct sftp_server {
  pthread_mutex_t lock;
  pthread_cond_t changed; /* the mode was applied, or a connection arrived (CLOCK_MONOTONIC) */
  int wake;               /* eventfd: the mode is wanted, or the server must end */
  int fd;                 /* the thread's alone: bound, and listening unless refusing */
  int port;
  enum sftp_mode want, have;
  bool quit;
  int connections;
  pid_t *children; /* every sftp-server started; waited for only at the end */
  size_t n_children;
  pthread_t thread;
};

/* A socket bound to 127.0.0.1:PORT (0: a new port), not listening yet: it refuses connections. */
static int bound_socket(int port)
{
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  struct sockaddr_in sa = {
      .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
      bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
    perror("sftp fixture: bind");
    abort();
  }
  return fd;
}

static void apply_mode_locked(struct sftp_server *s)
{
  if (s->want == s->have)
    return;
  if (s->want == SFTP_REFUSE) {
    close(s->fd); /* the only way to stop listening: a fresh socket on the same port */
    s->fd = bound_socket(s->port);
  } else if (s->have == SFTP_REFUSE && listen(s->fd, 16) < 0) {
    perror("sftp fixture: listen");
    abort();
  }
  s->have = s->want;
  pthread_cond_broadcast(&s->changed);
}

static void serve_connection_locked(struct sftp_server *s, int conn)
{
  const char *const argv[] = {SFTP_FIXTURE_SERVER, NULL};
  struct plg_proc_opts opts = PLG_PROC_OPTS_DEFAULT;
  opts.stdin_fd = conn;
  opts.stdout_fd = conn;
  plg_error_t err = NULL;
  pid_t pid = plg_proc_spawn(argv, &opts, &err);
  if (pid < 0) {
    fprintf(stderr, "sftp fixture: %s\n", err->msg);
    abort();
  }
  s->children = xrealloc(s->children, (s->n_children + 1) * sizeof *s->children);
  s->children[s->n_children++] = pid;
}

static void accept_one_locked(struct sftp_server *s)
{
  int conn = accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
  if (conn < 0)
    return;
  s->connections++;
  if (s->have == SFTP_SERVE)
    serve_connection_locked(s, conn);
  close(conn);
  pthread_cond_broadcast(&s->changed);
}

static void *serve(void *arg)
{
  struct sftp_server *s = arg;
  pthread_mutex_lock(&s->lock);
  while (!s->quit) {
    apply_mode_locked(s);
    struct pollfd p[2] = {{.fd = s->wake, .events = POLLIN},
                          {.fd = s->have != SFTP_REFUSE ? s->fd : -1, .events = POLLIN}};
    pthread_mutex_unlock(&s->lock);
    poll(p, 2, -1);
    uint64_t n;
    if (p[0].revents & POLLIN)
      (void)!read(s->wake, &n, sizeof n);
    pthread_mutex_lock(&s->lock);
    if (p[1].revents & POLLIN)
      accept_one_locked(s);
  }
  pthread_mutex_unlock(&s->lock);
  return NULL;
}

struct sftp_server *sftp_server_start(void)
{
  struct sftp_server *s = xcalloc(1, sizeof *s);
  pthread_mutex_init(&s->lock, NULL);
  plg_cond_init_monotonic(&s->changed);
  s->wake = eventfd(0, EFD_CLOEXEC);
  s->fd = bound_socket(0);
  struct sockaddr_in sa;
  socklen_t len = sizeof sa;
  getsockname(s->fd, (struct sockaddr *)&sa, &len);
  s->port = ntohs(sa.sin_port);
  s->have = SFTP_REFUSE;
  s->want = SFTP_SERVE;
  pthread_create(&s->thread, NULL, serve, s);
  sftp_server_set(s, SFTP_SERVE);
  return s;
}

int sftp_server_port(const struct sftp_server *s)
{
  return s->port;
}

static void wake_locked(struct sftp_server *s)
{
  uint64_t one = 1;
  (void)!write(s->wake, &one, sizeof one);
}

void sftp_server_set(struct sftp_server *s, enum sftp_mode mode)
{
  pthread_mutex_lock(&s->lock);
  s->want = mode;
  wake_locked(s);
  while (s->have != mode)
    pthread_cond_wait(&s->changed, &s->lock);
  pthread_mutex_unlock(&s->lock);
}

int sftp_server_connections(struct sftp_server *s)
{
  pthread_mutex_lock(&s->lock);
  int n = s->connections;
  pthread_mutex_unlock(&s->lock);
  return n;
}

bool sftp_server_await_connections(struct sftp_server *s, int n, int timeout_ms)
{
  struct timespec until;
  plg_timespec_in(&until, CLOCK_MONOTONIC, timeout_ms);
  pthread_mutex_lock(&s->lock);
  int rc = 0;
  while (s->connections < n && rc != ETIMEDOUT)
    rc = pthread_cond_timedwait(&s->changed, &s->lock, &until);
  bool reached = s->connections >= n;
  pthread_mutex_unlock(&s->lock);
  return reached;
}

void sftp_server_signal_all(struct sftp_server *s, int sig)
{
  pthread_mutex_lock(&s->lock);
  for (size_t i = 0; i < s->n_children; i++)
    plg_proc_kill(s->children[i], sig); /* a no-op for one already reaped */
  pthread_mutex_unlock(&s->lock);
}

void sftp_server_free(struct sftp_server *s)
{
  pthread_mutex_lock(&s->lock);
  s->quit = true;
  wake_locked(s);
  pthread_mutex_unlock(&s->lock);
  pthread_join(s->thread, NULL);
  for (size_t i = 0; i < s->n_children; i++) {
    plg_proc_kill(s->children[i], SIGKILL); /* stopped ones too */
    plg_error_t err = NULL;
    if (plg_proc_wait(s->children[i], 10000, NULL, &err) < 0)
      plg_error_release(&err);
  }
  free(s->children);
  close(s->fd);
  close(s->wake);
  pthread_cond_destroy(&s->changed);
  pthread_mutex_destroy(&s->lock);
  free(s);
}
