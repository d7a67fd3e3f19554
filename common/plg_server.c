/* The HTTP side of the plugin protocol, on libmicrohttpd: collects each request body under a
 * size limit, hands it to plg_dispatch, and counts requests in flight for a clean shutdown. */
#include "plg_server.h"

#include "plg_log.h"
#include "plg_util.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct plg_server {
  struct MHD_Daemon *mhd;
  struct plg_service svc;
  int listen_fd;
  pthread_mutex_t lock;
  pthread_cond_t idle;
  int in_flight;
  bool stopping;
};

struct request_state {
  char *body;
  size_t len;
  size_t cap;
  bool too_large;
  bool counted;
};

static void log_mhd_error(void *cls, const char *fmt, va_list ap)
{
  (void)cls;
  cleanup_free char *msg = xvasprintf(fmt, ap);
  size_t n = strlen(msg);
  if (n > 0 && msg[n - 1] == '\n')
    msg[n - 1] = '\0';
  plg_warn("http: %s", msg);
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

static enum MHD_Result send_error(struct MHD_Connection *conn, int status, const char *msg)
{
  char *body = xasprintf("{\"Err\":\"%s\"}", msg); /* MSG is a fixed ASCII literal without quotes */
  return send_response(conn, status, body);
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
  if (--srv->in_flight == 0)
    pthread_cond_broadcast(&srv->idle);
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

static void append_body(struct request_state *st, const char *data, size_t size)
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
  (void)version;
  struct plg_server *srv = cls;
  struct request_state *st = *con_cls;
  if (st == NULL) {
    st = xcalloc(1, sizeof *st);
    *con_cls = st;
    if (!begin_request(srv))
      return send_error(conn, 503, "the plugin is shutting down");
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
  if (st->too_large)
    return send_error(conn, 413, "request body exceeds the limit of 1048576 bytes");
  struct plg_response resp = {0};
  plg_dispatch(&srv->svc, method, url, st->body, st->len, &resp);
  return send_response(conn, resp.status, resp.body);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
  (void)conn;
  (void)toe;
  struct plg_server *srv = cls;
  struct request_state *st = *con_cls;
  if (st == NULL)
    return;
  if (st->counted)
    end_request(srv);
  free(st->body);
  free(st);
  *con_cls = NULL;
}

int plg_server_start(const struct plg_service *svc, int listen_fd, struct plg_server **out, plg_error_t *err)
{
  struct plg_server *srv = xcalloc(1, sizeof *srv);
  srv->svc = *svc;
  srv->listen_fd = listen_fd;
  pthread_mutex_init(&srv->lock, NULL);
  pthread_cond_init(&srv->idle, NULL);
  unsigned int flags =
      MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
  srv->mhd =
      MHD_start_daemon(flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, log_mhd_error, NULL,
                       MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
                       MHD_OPTION_CONNECTION_LIMIT, (unsigned int)512, MHD_OPTION_END);
  if (srv->mhd == NULL) {
    pthread_cond_destroy(&srv->idle);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
    return plg_error_make(err, 0, "cannot start the HTTP server on the plugin socket");
  }
  *out = srv;
  return 0;
}

void plg_server_stop(struct plg_server *srv, int grace_ms)
{
  if (srv == NULL)
    return;
  pthread_mutex_lock(&srv->lock);
  srv->stopping = true;
  pthread_mutex_unlock(&srv->lock);
  MHD_socket fd = MHD_quiesce_daemon(srv->mhd);
  if (fd != MHD_INVALID_SOCKET)
    close(fd);

  struct timespec deadline;
  plg_timespec_in(&deadline, CLOCK_REALTIME, grace_ms);
  pthread_mutex_lock(&srv->lock);
  while (srv->in_flight > 0)
    if (pthread_cond_timedwait(&srv->idle, &srv->lock, &deadline) == ETIMEDOUT)
      break;
  if (srv->in_flight > 0)
    plg_warn("stopping with %d request(s) still in flight", srv->in_flight);
  pthread_mutex_unlock(&srv->lock);

  MHD_stop_daemon(srv->mhd);
  pthread_cond_destroy(&srv->idle);
  pthread_mutex_destroy(&srv->lock);
  free(srv);
}
