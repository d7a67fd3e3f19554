#include "tr_grpc.h"

#include "plg_log.h"
#include "plg_net.h"
#include "plg_util.h"
#include "plg_version.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

struct call {
  struct call *next;
  char *path;
  uint8_t *body;
  size_t body_len, body_off;
  int32_t stream_id;
  int64_t deadline; /* 0: none */
  int timeout_ms;
  bool submitted, done;
  int http_status;
  int code;
  bool have_code;
  char *message;
  struct tr_grpc_decoder dec;
  uint8_t *resp; /* unary: the reply */
  size_t resp_len;
  int n_msgs;
  /* streams: messages waiting to be handed to ON_MSG outside the lock */
  struct msg *inbox, *inbox_last;
  tr_grpc_msg_fn on_msg;
  tr_grpc_end_fn on_end;
  void *arg;
  bool is_stream, end_notified;
};

struct msg {
  struct msg *next;
  uint8_t *data;
  size_t len;
};

struct tr_grpc {
  int fd;
  int wake_fd;
  char where[80];
  nghttp2_session *session;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond; /* CLOCK_MONOTONIC: a call ended, or the connection did */
  struct call *calls;
  bool closing, closed;
  char *close_reason;
  int close_code; /* the status of calls made after the end */
  tr_grpc_answer_fn on_answer;
  void *answer_arg;
  bool answered, answer_told;
  bool goaway; /* the daemon said it takes no new streams */
};

static void call_free(struct call *k)
{
  while (k->inbox != NULL) {
    struct msg *m = k->inbox;
    k->inbox = m->next;
    free(m->data);
    free(m);
  }
  tr_grpc_decoder_free(&k->dec);
  free(k->path);
  free(k->body);
  free(k->message);
  free(k->resp);
  free(k);
}

static void finish(struct tr_grpc *c, struct call *k, int code, const char *message)
{
  if (k->done)
    return;
  k->done = true;
  k->code = code;
  if (message != NULL && k->message == NULL)
    k->message = xstrdup(message);
  if (k->stream_id > 0 && c->session != NULL)
    nghttp2_session_set_stream_user_data(c->session, k->stream_id, NULL);
  pthread_cond_broadcast(&c->cond);
}

static struct call *stream_call(nghttp2_session *s, int32_t stream_id)
{
  return nghttp2_session_get_stream_user_data(s, stream_id);
}

/* --- nghttp2 callbacks: run on the connection thread with the lock held --- */

static ssize_t on_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *user)
{
  (void)s;
  (void)flags;
  struct tr_grpc *c = user;
  ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    return NGHTTP2_ERR_WOULDBLOCK;
  if (n < 0)
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  return n;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
  (void)flags;
  (void)user;
  struct call *k = stream_call(s, frame->hd.stream_id);
  if (k == NULL)
    return 0;
  if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
    k->http_status = atoi((const char *)value);
  } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
    k->code = tr_grpc_parse_status((const char *)value, valuelen);
    k->have_code = true;
  } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
    free(k->message);
    k->message = tr_grpc_decode_message((const char *)value, valuelen);
  }
  return 0;
}

static void take_messages(struct tr_grpc *c, struct call *k)
{
  uint8_t *m;
  size_t len;
  while (tr_grpc_decoder_next(&k->dec, &m, &len)) {
    k->n_msgs++;
    if (k->is_stream) {
      struct msg *e = xcalloc(1, sizeof *e);
      e->data = m;
      e->len = len;
      if (k->inbox == NULL)
        k->inbox = e;
      else
        k->inbox_last->next = e;
      k->inbox_last = e;
    } else if (k->resp == NULL) {
      k->resp = m;
      k->resp_len = len;
    } else {
      free(m); /* a unary call answered twice: the close handler reports it */
    }
  }
  (void)c;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t stream_id, const uint8_t *data, size_t len,
                   void *user)
{
  (void)flags;
  struct tr_grpc *c = user;
  struct call *k = stream_call(s, stream_id);
  if (k == NULL)
    return 0;
  plg_error_t err = NULL;
  if (tr_grpc_decoder_feed(&k->dec, data, len, &err) < 0) {
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_PROTOCOL_ERROR);
    finish(c, k, TR_GRPC_INTERNAL, err->msg);
    plg_error_release(&err);
    return 0;
  }
  take_messages(c, k);
  return 0;
}

/* The status of a stream that ended: from its trailers, or what its absence means. */
static void close_status(struct call *k, uint32_t error_code, int *code, char **why)
{
  *why = NULL;
  if (k->http_status != 0 && k->http_status != 200) {
    *code = k->http_status == 404 ? TR_GRPC_UNIMPLEMENTED : TR_GRPC_UNAVAILABLE;
    *why = xasprintf("the daemon answered HTTP %d", k->http_status);
  } else if (!k->have_code) {
    *code = error_code == NGHTTP2_REFUSED_STREAM ? TR_GRPC_UNAVAILABLE : TR_GRPC_INTERNAL;
    *why = error_code != 0 ? xasprintf("stream reset by the daemon (%s)", nghttp2_http2_strerror(error_code))
                           : xstrdup("the reply ended without a gRPC status");
  } else if (k->code < 0) {
    *code = TR_GRPC_INTERNAL;
    *why = xstrdup("the reply carried a malformed grpc-status");
  } else if (k->code == TR_GRPC_OK && tr_grpc_decoder_pending(&k->dec)) {
    *code = TR_GRPC_INTERNAL;
    *why = xstrdup("the reply ended inside a message");
  } else if (k->code == TR_GRPC_OK && !k->is_stream && k->n_msgs != 1) {
    *code = TR_GRPC_INTERNAL;
    *why = xasprintf("a unary reply carried %d messages", k->n_msgs);
  } else {
    *code = k->code;
  }
}

static int on_stream_close(nghttp2_session *s, int32_t stream_id, uint32_t error_code, void *user)
{
  struct tr_grpc *c = user;
  struct call *k = stream_call(s, stream_id);
  if (k == NULL)
    return 0;
  int code;
  char *why;
  close_status(k, error_code, &code, &why);
  finish(c, k, code, why);
  free(why);
  return 0;
}

/* Any frame from the peer (the first must be its SETTINGS) shows it speaks HTTP/2; after a GOAWAY
 * the streams open go on, but new calls go to a new connection. */
static int on_frame(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
  (void)s;
  struct tr_grpc *c = user;
  c->answered = true;
  if (frame->hd.type == NGHTTP2_GOAWAY)
    c->goaway = true;
  return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user)
{
  (void)s;
  (void)stream_id;
  (void)user;
  struct call *k = source->ptr;
  size_t n = k->body_len - k->body_off;
  if (n > length)
    n = length;
  memcpy(buf, k->body + k->body_off, n);
  k->body_off += n;
  if (k->body_off == k->body_len)
    *flags |= NGHTTP2_DATA_FLAG_EOF;
  return (ssize_t)n;
}

/* --- the connection thread --- */

#define NV(n, v)                                                                                             \
  {                                                                                                          \
    (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE                           \
  }

static void submit(struct tr_grpc *c, struct call *k)
{
  char timeout[32] = "";
  if (k->timeout_ms > 0)
    tr_grpc_timeout_header(k->timeout_ms, timeout, sizeof timeout);
  nghttp2_nv hdrs[] = {
      NV(":method", "POST"),
      NV(":scheme", "http"),
      NV(":path", k->path),
      NV(":authority", c->where),
      NV("content-type", "application/grpc"),
      NV("te", "trailers"),
      NV("user-agent", "teleroute/" PLG_VERSION),
      NV("grpc-timeout", timeout),
  };
  size_t n = k->timeout_ms > 0 ? 8 : 7;
  nghttp2_data_provider body = {.source.ptr = k, .read_callback = read_body};
  k->submitted = true;
  k->stream_id = nghttp2_submit_request(c->session, NULL, hdrs, n, &body, k);
  if (k->stream_id < 0)
    finish(c, k, TR_GRPC_UNAVAILABLE, nghttp2_strerror(k->stream_id));
}

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
  finish(c, k, TR_GRPC_DEADLINE_EXCEEDED, why);
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
    finish(c, k, code, why);
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
    call_free(k);
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
      submit(c, k);
  expire(c);
  if (nghttp2_session_send(c->session) != 0) {
    fail_all(c, TR_GRPC_UNAVAILABLE, "cannot write to the daemon");
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

static nghttp2_session *new_session(struct tr_grpc *c)
{
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, on_send);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
  nghttp2_session *s = NULL;
  nghttp2_session_client_new(&s, cbs, c);
  nghttp2_session_callbacks_del(cbs);
  if (s != NULL) {
    nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
                                         {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, settings, 2);
  }
  return s;
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
  c->session = new_session(c);
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
                             : c->goaway      ? xasprintf("the daemon at %s is going away (GOAWAY)", c->where)
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
    call_free(k);
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
  call_free(k);
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
    call_free(k);
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
    call_free(k);
  }
  nghttp2_session_del(c->session);
  close(c->fd);
  close(c->wake_fd);
  pthread_cond_destroy(&c->cond);
  pthread_mutex_destroy(&c->lock);
  free(c->close_reason);
  free(c);
}
