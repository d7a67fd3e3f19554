#include "tr_grpc_int.h"

#include "plg_log.h"
#include "plg_net.h"
#include "plg_util.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

/* --- the connection thread --- */

static int64_t next_deadline(struct tr_grpc *c)
{
  int64_t next = 0;
  for (struct call *k = c->calls; k != NULL; k = k->next)
    if (!k->done && k->deadline > 0 && (next == 0 || k->deadline < next))
      next = k->deadline;
  return next;
}

/* With the lock held, by the connection thread or by the caller that waited in vain. */
static void expire_call(struct tr_grpc *c, struct call *k)
{
  if (k->stream_id > 0)
    nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, k->stream_id, NGHTTP2_CANCEL);
  cleanup_free char *why = xasprintf("no answer within %d ms", k->timeout_ms);
  tr_grpc_finish(c, k, TR_GRPC_DEADLINE_EXCEEDED, why);
}

static void expire(struct tr_grpc *c)
{
  int64_t now = plg_now_ms();
  for (struct call *k = c->calls; k != NULL; k = k->next)
    if (!k->done && k->deadline != 0 && now >= k->deadline)
      expire_call(c, k);
}

static void fail_all(struct tr_grpc *c, int code, const char *why)
{
  c->closed = true;
  if (c->close_reason == NULL) {
    c->close_reason = xstrdup(why);
    c->close_code = code;
  }
  for (struct call *k = c->calls; k != NULL; k = k->next)
    tr_grpc_finish(c, k, code, why);
  pthread_cond_broadcast(&c->cond);
}

/* Hands stream messages and ends to their callbacks with the lock released; frees ended
 * streams (unary calls belong to their callers). */
static void deliver(struct tr_grpc *c)
{
  if (c->answered && !c->answer_told) {
    c->answer_told = true;
    if (c->on_answer != NULL) {
      pthread_mutex_unlock(&c->lock);
      c->on_answer(c->answer_arg);
      pthread_mutex_lock(&c->lock);
    }
  }
  for (;;) {
    struct call *k = c->calls;
    while (k != NULL && !(k->is_stream && (k->inbox != NULL || (k->done && !k->end_notified))))
      k = k->next;
    if (k == NULL)
      return;
    struct msg *m = k->inbox;
    if (m != NULL) {
      k->inbox = m->next;
      if (k->inbox == NULL)
        k->inbox_last = NULL;
      pthread_mutex_unlock(&c->lock);
      if (k->on_msg != NULL)
        k->on_msg(k->arg, m->data, m->len);
      free(m->data);
      free(m);
      pthread_mutex_lock(&c->lock);
      continue;
    }
    k->end_notified = true;
    for (struct call **p = &c->calls; *p != NULL; p = &(*p)->next)
      if (*p == k) {
        *p = k->next;
        break;
      }
    pthread_mutex_unlock(&c->lock);
    k->on_end(k->arg, k->code, k->message ? k->message : tr_grpc_code_name(k->code));
    tr_grpc_call_free(k);
    pthread_mutex_lock(&c->lock);
  }
}

/* Reads what the socket has, up to SIZE bytes, without the lock (only this thread reads). Returns
 * the bytes read; *GONE is set (with a reason) when the connection ended. */
static size_t read_round(struct tr_grpc *c, uint8_t *buf, size_t size, char **gone)
{
  size_t used = 0;
  while (used < size) {
    ssize_t n = recv(c->fd, buf + used, size - used, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (n <= 0) {
      *gone = n == 0 ? xasprintf("the daemon at %s closed the connection", c->where)
                     : xasprintf("connection to the daemon at %s failed: %s", c->where, strerror(errno));
      break;
    }
    used += (size_t)n;
  }
  return used;
}

/* Submits new calls, expires late ones, sends, hands messages over; false when the connection
 * has ended. With the lock held. */
static bool work(struct tr_grpc *c)
{
  for (struct call *k = c->calls; k != NULL; k = k->next)
    if (!k->submitted && !k->done)
      tr_grpc_submit(c, k);
  expire(c);
  int rc = nghttp2_session_send(c->session);
  if (rc != 0) {
    /* a peer that died is noticed here as often as on the read side: say it the same way */
    cleanup_free char *why =
        c->send_errno != 0
            ? xasprintf("connection to the daemon at %s failed: %s", c->where, strerror(c->send_errno))
            : xasprintf("cannot write to the daemon at %s: %s", c->where, nghttp2_strerror(rc));
    fail_all(c, TR_GRPC_UNAVAILABLE, why);
    return false;
  }
  if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) {
    cleanup_free char *why = xasprintf("the daemon at %s ended the connection", c->where);
    fail_all(c, TR_GRPC_UNAVAILABLE, why);
    return false;
  }
  deliver(c);
  return !c->closing && !c->closed;
}

static int poll_timeout(struct tr_grpc *c)
{
  int64_t deadline = next_deadline(c);
  if (deadline == 0)
    return 1000;
  int64_t left = deadline - plg_now_ms();
  return left < 0 ? 0 : left < 1000 ? (int)left : 1000;
}

/* Feeds bytes to nghttp2 (its callbacks run now, under the lock); false when they broke HTTP/2. */
static bool feed(struct tr_grpc *c, const uint8_t *buf, size_t n)
{
  ssize_t used = nghttp2_session_mem_recv(c->session, buf, n);
  if (used >= 0)
    return true;
  cleanup_free char *why =
      xasprintf("HTTP/2 error from the daemon at %s: %s", c->where, nghttp2_strerror((int)used));
  fail_all(c, TR_GRPC_UNAVAILABLE, why);
  return false;
}

static void *io_thread(void *arg)
{
  struct tr_grpc *c = arg;
  cleanup_free uint8_t *buf = xmalloc(TR_GRPC_ROUND_BYTES);
  pthread_mutex_lock(&c->lock);
  while (!c->closing && !c->closed && work(c)) {
    struct pollfd fds[2] = {
        {.fd = c->fd, .events = POLLIN | (nghttp2_session_want_write(c->session) ? POLLOUT : 0)},
        {.fd = c->wake_fd, .events = POLLIN},
    };
    int timeout = poll_timeout(c);
    pthread_mutex_unlock(&c->lock);
    poll(fds, 2, timeout);
    uint64_t v;
    if (fds[1].revents & POLLIN) {
      ssize_t r = read(c->wake_fd, &v, sizeof v);
      (void)r;
    }
    char *gone = NULL;
    size_t n = 0;
    if (fds[0].revents & (POLLIN | POLLHUP | POLLERR))
      n = read_round(c, buf, TR_GRPC_ROUND_BYTES, &gone);
    pthread_mutex_lock(&c->lock);
    bool ok = c->closed || n == 0 || feed(c, buf, n);
    if (ok && gone != NULL && !c->closed)
      fail_all(c, TR_GRPC_UNAVAILABLE, gone);
    free(gone);
    if (!ok)
      break;
  }
  if (!c->closed)
    fail_all(c, TR_GRPC_CANCELLED, "the connection to the daemon was closed");
  deliver(c);
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

static void wake(struct tr_grpc *c)
{
  uint64_t one = 1;
  ssize_t n = write(c->wake_fd, &one, sizeof one);
  (void)n;
}

int tr_grpc_start(int fd, const char *where, tr_grpc_answer_fn on_answer, void *arg, struct tr_grpc **out,
                  plg_error_t *err)
{
  struct tr_grpc *c = xcalloc(1, sizeof *c);
  snprintf(c->where, sizeof c->where, "%s", where);
  c->fd = fd;
  c->on_answer = on_answer;
  c->answer_arg = arg;
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails harmlessly off TCP */
  c->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  c->session = tr_grpc_session_new(c);
  pthread_mutex_init(&c->lock, NULL);
  plg_cond_init_monotonic(&c->cond);
  if (c->wake_fd < 0 || c->session == NULL || pthread_create(&c->thread, NULL, io_thread, c) != 0) {
    int saved = errno;
    if (c->session != NULL)
      nghttp2_session_del(c->session);
    if (c->wake_fd >= 0)
      close(c->wake_fd);
    close(c->fd);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
    return plg_error_make(err, saved, "cannot set up the HTTP/2 connection");
  }
  *out = c;
  return 0;
}

int tr_grpc_open(const struct sockaddr *sa, socklen_t len, int timeout_ms, int cancel_fd,
                 tr_grpc_answer_fn on_answer, void *arg, struct tr_grpc **out, plg_error_t *err)
{
  char where[80];
  plg_net_format(sa, where, sizeof where);
  int fd = plg_net_connect_cancellable(sa, len, timeout_ms, true, cancel_fd, where, err);
  if (fd < 0)
    return -1;
  return tr_grpc_start(fd, where, on_answer, arg, out, err);
}

static struct call *new_call(const char *path, const uint8_t *req, size_t req_len)
{
  struct call *k = xcalloc(1, sizeof *k);
  k->path = xstrdup(path);
  k->body = tr_grpc_frame(req, req_len, &k->body_len);
  tr_grpc_decoder_init(&k->dec);
  return k;
}

/* Adds K to the connection, or fails when the connection has ended. */
static int enqueue(struct tr_grpc *c, struct call *k, int *code, plg_error_t *err)
{
  pthread_mutex_lock(&c->lock);
  if (c->closed || c->closing || c->goaway) {
    cleanup_free char *why = c->close_reason ? xstrdup(c->close_reason)
                             : c->goaway     ? xasprintf("the daemon at %s is going away (GOAWAY)", c->where)
                                             : xstrdup("the connection is closed");
    *code = c->close_reason ? c->close_code : TR_GRPC_UNAVAILABLE;
    pthread_mutex_unlock(&c->lock);
    const char *method = strrchr(k->path, '/');
    return plg_error_make(err, 0, "%s: %s: %s", method != NULL ? method + 1 : k->path,
                          tr_grpc_code_name(*code), why);
  }
  k->next = c->calls;
  c->calls = k;
  pthread_mutex_unlock(&c->lock);
  wake(c);
  return 0;
}

int tr_grpc_unary(struct tr_grpc *c, const char *path, const uint8_t *req, size_t req_len, int timeout_ms,
                  uint8_t **resp, size_t *resp_len, int *code, plg_error_t *err)
{
  struct call *k = new_call(path, req, req_len);
  k->timeout_ms = timeout_ms;
  k->deadline = plg_now_ms() + timeout_ms;
  if (enqueue(c, k, code, err) < 0) {
    tr_grpc_call_free(k);
    return -1;
  }
  /* the connection thread ends a call at its deadline, but the caller keeps its own */
  pthread_mutex_lock(&c->lock);
  while (!k->done) {
    struct timespec ts;
    plg_timespec_in(&ts, CLOCK_MONOTONIC, k->deadline - plg_now_ms());
    if (pthread_cond_timedwait(&c->cond, &c->lock, &ts) == ETIMEDOUT && !k->done &&
        plg_now_ms() >= k->deadline)
      expire_call(c, k);
  }
  for (struct call **p = &c->calls; *p != NULL; p = &(*p)->next)
    if (*p == k) {
      *p = k->next;
      break;
    }
  pthread_mutex_unlock(&c->lock);
  wake(c); /* a reset stream to send, perhaps */
  *code = k->code;
  int rc = 0;
  if (k->code != TR_GRPC_OK) {
    /* "Join: INTERNAL: IPv6 is not enabled for the teleroute network": the method, not the whole
     * path, and the daemon's message exactly as it sent it */
    const char *method = strrchr(path, '/');
    rc = plg_error_make(err, 0, "%s: %s%s%s", method != NULL ? method + 1 : path, tr_grpc_code_name(k->code),
                        k->message ? ": " : "", k->message ? k->message : "");
  } else {
    *resp = k->resp;
    *resp_len = k->resp_len;
    k->resp = NULL;
  }
  tr_grpc_call_free(k);
  return rc;
}

int tr_grpc_stream(struct tr_grpc *c, const char *path, const uint8_t *req, size_t req_len,
                   tr_grpc_msg_fn on_msg, tr_grpc_end_fn on_end, void *arg, plg_error_t *err)
{
  struct call *k = new_call(path, req, req_len);
  k->is_stream = true;
  k->on_msg = on_msg;
  k->on_end = on_end;
  k->arg = arg;
  int code;
  if (enqueue(c, k, &code, err) < 0) {
    tr_grpc_call_free(k);
    return -1;
  }
  return 0;
}

bool tr_grpc_is_closed(struct tr_grpc *c)
{
  pthread_mutex_lock(&c->lock);
  bool closed = c->closed || c->closing || c->goaway;
  pthread_mutex_unlock(&c->lock);
  return closed;
}

void tr_grpc_cancel(struct tr_grpc *c, const char *why)
{
  pthread_mutex_lock(&c->lock);
  if (!c->closed)
    fail_all(c, TR_GRPC_CANCELLED, why);
  pthread_mutex_unlock(&c->lock);
  wake(c);
}

void tr_grpc_close(struct tr_grpc *c)
{
  if (c == NULL)
    return;
  pthread_mutex_lock(&c->lock);
  c->closing = true;
  pthread_mutex_unlock(&c->lock);
  wake(c);
  pthread_join(c->thread, NULL);
  /* unary callers have all been woken with an error and have removed their calls */
  while (c->calls != NULL) {
    struct call *k = c->calls;
    c->calls = k->next;
    tr_grpc_call_free(k);
  }
  nghttp2_session_del(c->session);
  close(c->fd);
  close(c->wake_fd);
  pthread_cond_destroy(&c->cond);
  pthread_mutex_destroy(&c->lock);
  free(c->close_reason);
  free(c);
}
