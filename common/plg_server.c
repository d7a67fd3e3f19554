/* The HTTP side of the plugin protocol, on libmicrohttpd.
 *
 * One internal polling thread (epoll) owns every connection: an idle connection costs a
 * descriptor and a little memory, never a thread, and MHD closes it after the idle timeout. Each
 * complete request is handed to a thread of its own while MHD keeps its connection suspended; a
 * suspended connection is never timed out (MHD takes it off its timeout list, and restarts its
 * idle clock when it resumes: daemon.c internal_suspend_connection_ and
 * resume_suspended_connections in 0.9.75), so a handler may work for seconds without being cut
 * off or stalling anyone else. When the reply is ready the connection is resumed, MHD calls
 * on_request once more, and the reply is queued there.
 *
 * Locking: srv->lock guards the job list, the counters and each request's reply. It is held
 * across MHD_suspend_connection and MHD_resume_connection; these take MHD's cleanup mutex inside,
 * and MHD never calls on_request or on_completed while holding that mutex (no "upgrade" here), so
 * the order is srv->lock -> MHD's cleanup mutex. Under srv->lock a connection is resumed exactly
 * once, by whoever answers its request first (its handler, or the stop), and always before
 * MHD_stop_daemon, which must find no suspended connection. handlers_lock (one for the process)
 * only counts handler threads; it may be taken under srv->lock, never the other way round.
 *
 * A handler that outlives the stop keeps running on its thread; its reply is dropped, and the
 * server's memory lives until the last such handler has returned. */
#include "plg_server.h"

#include "plg_log.h"
#include "plg_text.h"
#include "plg_util.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Descriptors kept for everything but client connections: children's pipes, sockets, files. */
#define FD_RESERVE 256

#define STOPPING_MSG "the plugin is shutting down"

struct request {
  char *body;
  size_t len;
  size_t cap;
  bool too_large;
  bool counted;  /* in srv->in_flight */
  bool answered; /* REPLY holds the answer, to queue when MHD calls again */
  struct plg_response reply;
};

struct job {
  struct job *prev, *next; /* in srv->jobs until answered */
  struct plg_server *srv;
  struct MHD_Connection *conn; /* suspended until answered */
  struct request *req;         /* the connection's; NULL once answered */
  char *method;
  char *url;
  char *body;
  size_t len;
};

struct plg_server {
  struct MHD_Daemon *mhd;
  struct plg_service svc;
  unsigned max_handlers;
  unsigned reply_flush_ms;
  pthread_mutex_t lock;
  pthread_cond_t changed; /* a job was answered, a handler or a request ended */
  struct job *jobs;       /* requests whose handler runs and whose answer is still wanted */
  int n_jobs;
  int handlers; /* handler threads alive, answered or not */
  int in_flight;
  atomic_bool started; /* MHD is up: its messages are about clients from now on */
  bool stopping;
  bool stopped; /* plg_server_stop has returned: the last handler frees the server */
};

static pthread_mutex_t handlers_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t handlers_done;
static pthread_once_t handlers_once = PTHREAD_ONCE_INIT;
static int handlers_alive;

static void init_handlers_done(void)
{
  plg_cond_init_monotonic(&handlers_done);
}

/* MHD's messages: while the daemon starts they explain a failure; afterwards nearly all are about
 * one client (a closed connection, a malformed request) and a hostile client could fill the log
 * with them, so they are debug lines, except for the connection limit being reached. */
static void log_mhd_error(void *cls, const char *fmt, va_list ap)
{
  atomic_bool *started = cls;
  cleanup_free char *msg = xvasprintf(fmt, ap);
  size_t n = strlen(msg);
  if (n > 0 && msg[n - 1] == '\n')
    msg[n - 1] = '\0';
  if (!atomic_load(started) || strstr(msg, "connection limit") != NULL)
    plg_warn("http: %s", msg);
  else
    plg_debug("http: %s", msg);
}

/* The path for a log line: MHD has decoded its %xx escapes, so it may hold any byte; at most 64
 * printable characters. */
static void printable_path(const char *url, char out[static 65])
{
  plg_text_printable(out, url, 64);
}

static enum MHD_Result send_response(struct MHD_Connection *conn, int status, char *body)
{
  struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
  if (r == NULL) {
    free(body);
    return MHD_NO;
  }
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
  enum MHD_Result ret = MHD_queue_response(conn, (unsigned int)status, r);
  MHD_destroy_response(r);
  return ret;
}

/* MSG is ASCII without quotes or backslashes: it needs no JSON escaping. */
static char *error_body(const char *msg)
{
  return xasprintf("{\"Err\":\"%s\"}", msg);
}

static enum MHD_Result send_error(struct MHD_Connection *conn, int status, const char *msg)
{
  return send_response(conn, status, error_body(msg));
}

static bool begin_request(struct plg_server *srv)
{
  pthread_mutex_lock(&srv->lock);
  bool ok = !srv->stopping;
  if (ok)
    srv->in_flight++;
  pthread_mutex_unlock(&srv->lock);
  return ok;
}

static void end_request(struct plg_server *srv)
{
  pthread_mutex_lock(&srv->lock);
  srv->in_flight--;
  pthread_cond_broadcast(&srv->changed);
  pthread_mutex_unlock(&srv->lock);
}

static bool declared_too_large(struct MHD_Connection *conn)
{
  const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
  if (cl == NULL)
    return false;
  char *end;
  errno = 0;
  unsigned long long n = strtoull(cl, &end, 10);
  return errno == ERANGE || n > PLG_MAX_BODY;
}

static void append_body(struct request *st, const char *data, size_t size)
{
  if (st->too_large || size > PLG_MAX_BODY - st->len) {
    st->too_large = true; /* keep reading so the reply can still be sent, but keep nothing */
    return;
  }
  if (st->len + size > st->cap) {
    st->cap = st->cap * 2 > st->len + size ? st->cap * 2 : st->len + size;
    st->body = xrealloc(st->body, st->cap);
  }
  memcpy(st->body + st->len, data, size);
  st->len += size;
}

static void job_free(struct job *job)
{
  free(job->method);
  free(job->url);
  free(job->body);
  free(job);
}

static void server_free(struct plg_server *srv)
{
  pthread_cond_destroy(&srv->changed);
  pthread_mutex_destroy(&srv->lock);
  free(srv);
}

/* Gives JOB's request its reply (taking REPLY's body) and resumes its connection. */
static void answer_locked(struct plg_server *srv, struct job *job, struct plg_response *reply)
{
  job->req->reply = *reply;
  job->req->answered = true;
  reply->body = NULL;
  job->req = NULL;
  if (job->prev != NULL)
    job->prev->next = job->next;
  else
    srv->jobs = job->next;
  if (job->next != NULL)
    job->next->prev = job->prev;
  job->prev = job->next = NULL;
  srv->n_jobs--;
  MHD_resume_connection(job->conn);
  pthread_cond_broadcast(&srv->changed);
}

static void handler_exited(void)
{
  pthread_mutex_lock(&handlers_lock);
  if (--handlers_alive == 0)
    pthread_cond_broadcast(&handlers_done);
  pthread_mutex_unlock(&handlers_lock);
}

static void *run_job(void *arg)
{
  struct job *job = arg;
  struct plg_server *srv = job->srv;
  struct plg_response reply = {0};
  plg_dispatch(&srv->svc, job->method, job->url, job->body, job->len, &reply);

  pthread_mutex_lock(&srv->lock);
  bool dropped = job->req == NULL;
  if (!dropped)
    answer_locked(srv, job, &reply);
  srv->handlers--;
  bool last = srv->stopped && srv->handlers == 0;
  pthread_cond_broadcast(&srv->changed);
  pthread_mutex_unlock(&srv->lock);

  if (dropped) {
    char path[65];
    printable_path(job->url, path);
    plg_info("%s returned after the plugin stopped; its reply (%d) was dropped", path, reply.status);
  }
  free(reply.body);
  job_free(job);
  if (last)
    server_free(srv);
  handler_exited();
  return NULL;
}

static int spawn_detached(struct job *job)
{
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  /* handlers inherit the signal mask of the polling thread: every signal blocked */
  pthread_t t;
  int rc = pthread_create(&t, &attr, run_job, job);
  pthread_attr_destroy(&attr);
  return rc;
}

/* The request is complete: hand it to a handler thread and suspend its connection. */
static enum MHD_Result start_job(struct plg_server *srv, struct MHD_Connection *conn, struct request *st,
                                 const char *method, const char *url)
{
  pthread_mutex_lock(&srv->lock);
  if (srv->stopping || srv->handlers >= (int)srv->max_handlers) {
    bool stopping = srv->stopping;
    int busy = srv->handlers;
    pthread_mutex_unlock(&srv->lock);
    if (stopping)
      return send_error(conn, 503, STOPPING_MSG);
    char path[65];
    printable_path(url, path);
    plg_warn("refusing %s: %d requests are already being handled", path, busy);
    char *body = xasprintf("{\"Err\":\"the plugin is busy: %d requests are already being handled\"}", busy);
    return send_response(conn, 503, body);
  }
  struct job *job = xcalloc(1, sizeof *job);
  job->srv = srv;
  job->conn = conn;
  job->req = st;
  job->method = xstrdup(method);
  job->url = xstrdup(url);
  job->body = st->body;
  job->len = st->len;
  st->body = NULL;
  st->len = st->cap = 0;

  pthread_mutex_lock(&handlers_lock);
  handlers_alive++;
  pthread_mutex_unlock(&handlers_lock);
  int rc = spawn_detached(job);
  if (rc != 0) {
    pthread_mutex_unlock(&srv->lock);
    handler_exited();
    job_free(job);
    char path[65];
    printable_path(url, path);
    plg_error("cannot start a thread for %s: %s", path, strerror(rc));
    return send_error(conn, 500, "cannot start a thread for the request");
  }
  /* The handler cannot answer before the lock is released, so it never resumes a connection
   * that is not suspended yet. */
  srv->handlers++;
  srv->n_jobs++;
  job->next = srv->jobs;
  if (srv->jobs != NULL)
    srv->jobs->prev = job;
  srv->jobs = job;
  MHD_suspend_connection(conn);
  pthread_mutex_unlock(&srv->lock);
  return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
  (void)version;
  struct plg_server *srv = cls;
  struct request *st = *con_cls;
  if (st == NULL) {
    st = xcalloc(1, sizeof *st);
    *con_cls = st;
    if (!begin_request(srv))
      return send_error(conn, 503, STOPPING_MSG);
    st->counted = true;
    if (declared_too_large(conn))
      return send_error(conn, 413, "request body exceeds the limit of 1048576 bytes");
    return MHD_YES;
  }
  if (*upload_data_size > 0) {
    append_body(st, upload_data, *upload_data_size);
    *upload_data_size = 0;
    return MHD_YES;
  }
  if (st->answered) { /* called again after the resume */
    char *body = st->reply.body;
    st->reply.body = NULL;
    return send_response(conn, st->reply.status, body);
  }
  if (st->too_large)
    return send_error(conn, 413, "request body exceeds the limit of 1048576 bytes");
  return start_job(srv, conn, st, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
  (void)conn;
  (void)toe;
  struct plg_server *srv = cls;
  struct request *st = *con_cls;
  if (st == NULL)
    return;
  if (st->counted)
    end_request(srv);
  free(st->reply.body);
  free(st->body);
  free(st);
  *con_cls = NULL;
}

/* The connection limit, lowered to fit the descriptors this process may open; raises the soft
 * RLIMIT_NOFILE towards the hard one when it is in the way (Go's runtime does the same). */
static unsigned fit_connection_limit(unsigned want)
{
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY)
    return want;
  rlim_t need = (rlim_t)want + FD_RESERVE;
  if (rl.rlim_cur < need && rl.rlim_max > rl.rlim_cur) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > need ? need : rl.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
      getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur >= need)
    return want;
  unsigned fit =
      rl.rlim_cur > 2 * FD_RESERVE ? (unsigned)(rl.rlim_cur - FD_RESERVE) : (unsigned)rl.rlim_cur / 2;
  plg_warn("serving at most %u connections: the limit of open files is %llu", fit,
           (unsigned long long)rl.rlim_cur);
  return fit;
}

int plg_server_start(const struct plg_service *svc, int listen_fd, const struct plg_server_limits *limits,
                     struct plg_server **out, plg_error_t *err)
{
  pthread_once(&handlers_once, init_handlers_done);
  struct plg_server_limits lim = limits != NULL ? *limits : PLG_SERVER_LIMITS_DEFAULT;
  struct plg_server *srv = xcalloc(1, sizeof *srv);
  srv->svc = *svc;
  srv->max_handlers = lim.max_handlers > 0 ? lim.max_handlers : 1;
  srv->reply_flush_ms = lim.reply_flush_ms;
  pthread_mutex_init(&srv->lock, NULL);
  plg_cond_init_monotonic(&srv->changed);
  unsigned int flags =
      MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  /* The polling thread, and the handler threads it starts, take no signal: plg_main waits for
   * them synchronously, and a test's handlers must not take them either. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  srv->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER,
                              log_mhd_error, &srv->started, MHD_OPTION_LISTEN_SOCKET, listen_fd,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_CONNECTION_LIMIT,
                              fit_connection_limit(lim.max_connections), MHD_OPTION_CONNECTION_TIMEOUT,
                              lim.idle_timeout_s, MHD_OPTION_END);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (srv->mhd == NULL) {
    server_free(srv);
    return plg_error_make(err, 0, "cannot start the HTTP server on the plugin socket");
  }
  atomic_store(&srv->started, true);
  *out = srv;
  return 0;
}

int plg_server_stop(struct plg_server *srv, int grace_ms)
{
  if (srv == NULL)
    return 0;
  pthread_mutex_lock(&srv->lock);
  srv->stopping = true;
  pthread_mutex_unlock(&srv->lock);
  if (srv->svc.stopping != NULL)
    srv->svc.stopping(srv->svc.ctx);
  /* The polling thread may still touch the listening socket as it notices the quiesce, so it is
   * only shut down now (connects are refused from here on) and closed once MHD has stopped: a
   * descriptor number closed under it could be reused by a new socket. */
  MHD_socket listen_fd = MHD_quiesce_daemon(srv->mhd);
  if (listen_fd != MHD_INVALID_SOCKET)
    shutdown(listen_fd, SHUT_RDWR);

  struct timespec deadline;
  plg_timespec_in(&deadline, CLOCK_MONOTONIC, grace_ms);
  pthread_mutex_lock(&srv->lock);
  while (srv->n_jobs > 0)
    if (pthread_cond_timedwait(&srv->changed, &srv->lock, &deadline) == ETIMEDOUT)
      break;
  if (srv->n_jobs > 0)
    plg_warn("stopping: %d request(s) still in their handler after %d ms; answering them with an error",
             srv->n_jobs, grace_ms);
  while (srv->jobs != NULL) {
    struct plg_response reply = {503, error_body("the plugin stopped before this request finished")};
    answer_locked(srv, srv->jobs, &reply);
  }
  plg_timespec_in(&deadline, CLOCK_MONOTONIC, srv->reply_flush_ms);
  while (srv->in_flight > 0)
    if (pthread_cond_timedwait(&srv->changed, &srv->lock, &deadline) == ETIMEDOUT)
      break;
  pthread_mutex_unlock(&srv->lock);

  MHD_stop_daemon(srv->mhd);
  srv->mhd = NULL;
  if (listen_fd != MHD_INVALID_SOCKET)
    close(listen_fd);
  pthread_mutex_lock(&srv->lock);
  srv->stopped = true;
  int left = srv->handlers;
  pthread_mutex_unlock(&srv->lock);
  if (left == 0)
    server_free(srv);
  return left;
}

int plg_server_wait_handlers(int timeout_ms)
{
  pthread_once(&handlers_once, init_handlers_done);
  struct timespec deadline;
  plg_timespec_in(&deadline, CLOCK_MONOTONIC, timeout_ms);
  pthread_mutex_lock(&handlers_lock);
  while (handlers_alive > 0)
    if (pthread_cond_timedwait(&handlers_done, &handlers_lock, &deadline) == ETIMEDOUT)
      break;
  int left = handlers_alive;
  pthread_mutex_unlock(&handlers_lock);
  return left;
}
