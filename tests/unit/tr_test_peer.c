#include "tr_test_peer.h"

#include "plg_util.h"
#include "teleroute.pb-c.h"
#include "tr_grpc_frame.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_ANSWERS 8

struct answer {
  char method[32];
  int code;
  char *message;
  uint8_t *reply;
  size_t len;
};

struct count {
  char method[32];
  int n;
};

struct stream {
  int32_t id;
  char method[32];
  uint8_t *out; /* DATA still to send */
  size_t out_len, out_off;
  bool end; /* then the trailers */
  int end_code;
  char *end_message;
  struct stream *next;
};

enum command { CMD_NONE, CMD_GOAWAY, CMD_END_CONNECT, CMD_FLOOD, CMD_DIE, CMD_STOP };

struct peer {
  int fd, ctl;
  enum peer_mode mode;
  nghttp2_session *session;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct answer answers[MAX_ANSWERS];
  size_t n_answers;
  struct count counts[MAX_ANSWERS];
  size_t n_counts;
  int resets;
  bool closed_by_client, dead, flooding;
  enum command cmd;
  int cmd_code;
  char *cmd_message;
  struct stream *streams;
};

static const char *method_of(const char *path)
{
  const char *slash = strrchr(path, '/');
  return slash != NULL ? slash + 1 : path;
}

static void count_call(struct peer *p, const char *method)
{
  pthread_mutex_lock(&p->lock);
  size_t i = 0;
  while (i < p->n_counts && strcmp(p->counts[i].method, method) != 0)
    i++;
  if (i == p->n_counts && p->n_counts < MAX_ANSWERS)
    snprintf(p->counts[p->n_counts++].method, sizeof p->counts[0].method, "%s", method);
  if (i < p->n_counts)
    p->counts[i].n++;
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
}

/* --- the server session's callbacks (on the peer's thread) --- */

static ssize_t send_all(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *user)
{
  (void)s;
  (void)flags;
  struct peer *p = user;
  size_t off = 0;
  while (off < len) {
    ssize_t n = send(p->fd, data + off, len - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    off += (size_t)n;
  }
  return (ssize_t)len;
}

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
  struct peer *p = user;
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
    return 0;
  struct stream *st = xcalloc(1, sizeof *st);
  st->id = frame->hd.stream_id;
  st->next = p->streams;
  p->streams = st;
  nghttp2_session_set_stream_user_data(s, st->id, st);
  return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user)
{
  (void)flags;
  (void)user;
  struct stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
  if (st != NULL && namelen == 5 && memcmp(name, ":path", 5) == 0) {
    char path[128];
    snprintf(path, sizeof path, "%.*s", (int)valuelen, (const char *)value);
    snprintf(st->method, sizeof st->method, "%.31s", method_of(path));
  }
  return 0;
}

static ssize_t read_out(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                        nghttp2_data_source *source, void *user)
{
  (void)user;
  struct stream *st = source->ptr;
  size_t n = st->out_len - st->out_off;
  if (n > length)
    n = length;
  if (n > 0) {
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    return (ssize_t)n;
  }
  if (!st->end)
    return NGHTTP2_ERR_DEFERRED;
  *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
  char code[16];
  snprintf(code, sizeof code, "%d", st->end_code);
  const char *msg = st->end_message ? st->end_message : "";
  nghttp2_nv trailers[] = {
      {(uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"grpc-message", (uint8_t *)msg, 12, strlen(msg), NGHTTP2_NV_FLAG_NONE},
  };
  nghttp2_submit_trailer(s, id, trailers, 2);
  return 0;
}

static void queue_message(struct stream *st, const uint8_t *msg, size_t len)
{
  size_t framed_len;
  cleanup_free uint8_t *framed = tr_grpc_frame(msg, len, &framed_len);
  st->out = xrealloc(st->out, st->out_len + framed_len);
  memcpy(st->out + st->out_len, framed, framed_len);
  st->out_len += framed_len;
}

static void queue_info(struct stream *st)
{
  Telepresence__Teleroute__Info info = TELEPRESENCE__TELEROUTE__INFO__INIT;
  Telepresence__Teleroute__Info__InfoEntry name = TELEPRESENCE__TELEROUTE__INFO__INFO_ENTRY__INIT;
  Telepresence__Teleroute__Info__InfoEntry version = TELEPRESENCE__TELEROUTE__INFO__INFO_ENTRY__INIT;
  name.key = (char *)"name";
  name.value = (char *)"test-peer";
  version.key = (char *)"version";
  version.value = (char *)"1.0.0";
  Telepresence__Teleroute__Info__InfoEntry *entries[] = {&name, &version};
  info.n_info = 2;
  info.info = entries;
  uint8_t buf[128];
  size_t len = telepresence__teleroute__info__pack(&info, buf);
  queue_message(st, buf, len);
}

/* The request on ST is complete: answer it as the test said. */
static void answer(struct peer *p, nghttp2_session *s, struct stream *st)
{
  struct answer a = {.code = 0};
  pthread_mutex_lock(&p->lock);
  for (size_t i = 0; i < p->n_answers; i++)
    if (strcmp(p->answers[i].method, st->method) == 0)
      a = p->answers[i];
  uint8_t *reply = a.len > 0 ? xmalloc(a.len) : NULL;
  if (a.len > 0)
    memcpy(reply, a.reply, a.len);
  char *message = a.message ? xstrdup(a.message) : NULL;
  pthread_mutex_unlock(&p->lock);
  count_call(p, st->method);
  if (a.code == PEER_HANG) {
    free(reply);
    free(message);
    return;
  }
  nghttp2_nv head[] = {
      {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
      {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, NGHTTP2_NV_FLAG_NONE}};
  nghttp2_data_provider body = {.source.ptr = st, .read_callback = read_out};
  if (a.code != 0) { /* trailers only */
    char code[16];
    snprintf(code, sizeof code, "%d", a.code);
    nghttp2_nv nv[] = {head[0],
                       head[1],
                       {(uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), NGHTTP2_NV_FLAG_NONE},
                       {(uint8_t *)"grpc-message", (uint8_t *)(message ? message : ""), 12,
                        message ? strlen(message) : 0, NGHTTP2_NV_FLAG_NONE}};
    nghttp2_submit_response(s, st->id, nv, 4, NULL);
  } else if (strcmp(st->method, "Connect") == 0) {
    queue_info(st);
    nghttp2_submit_response(s, st->id, head, 2, &body);
  } else {
    queue_message(st, reply, a.len);
    st->end = true;
    nghttp2_submit_response(s, st->id, head, 2, &body);
  }
  free(reply);
  free(message);
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *frame, void *user)
{
  struct peer *p = user;
  if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
      !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
    return 0;
  struct stream *st = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
  if (st != NULL)
    answer(p, s, st);
  return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t error_code, void *user)
{
  struct peer *p = user;
  nghttp2_session_set_stream_user_data(s, id, NULL);
  for (struct stream **q = &p->streams; *q != NULL; q = &(*q)->next)
    if ((*q)->id == id) {
      struct stream *st = *q;
      *q = st->next;
      free(st->out);
      free(st->end_message);
      free(st);
      break;
    }
  if (error_code != NGHTTP2_NO_ERROR) {
    pthread_mutex_lock(&p->lock);
    p->resets++;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
  }
  return 0;
}

static nghttp2_session *server_session(struct peer *p)
{
  nghttp2_session_callbacks *cbs;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_send_callback(cbs, send_all);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
  nghttp2_session *s;
  nghttp2_session_server_new(&s, cbs, p);
  nghttp2_session_callbacks_del(cbs);
  nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, NULL, 0);
  return s;
}

/* --- the peer's thread --- */

/* Guards every wait of the test on the peer: a wait this long means the test is broken. */
#define HANG_GUARD_MS 60000

static void close_end(struct peer *p)
{
  pthread_mutex_lock(&p->lock);
  if (p->fd >= 0) {
    close(p->fd);
    p->fd = -1;
  }
  p->dead = true;
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
}

static void client_gone(struct peer *p)
{
  pthread_mutex_lock(&p->lock);
  p->closed_by_client = true;
  pthread_cond_broadcast(&p->cond);
  pthread_mutex_unlock(&p->lock);
}

static void end_connects(struct peer *p, int code, const char *message)
{
  for (struct stream *st = p->streams; st != NULL; st = st->next)
    if (strcmp(st->method, "Connect") == 0 && !st->end) {
      st->end = true;
      st->end_code = code;
      st->end_message = message ? xstrdup(message) : NULL;
      nghttp2_session_resume_data(p->session, st->id);
    }
}

static void do_command(struct peer *p, enum command cmd, int code, const char *message)
{
  if (cmd == CMD_GOAWAY && p->session != NULL)
    nghttp2_submit_goaway(p->session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(p->session),
                          NGHTTP2_NO_ERROR, NULL, 0);
  else if (cmd == CMD_END_CONNECT && p->session != NULL)
    end_connects(p, code, message);
  else if (cmd == CMD_FLOOD)
    p->flooding = true;
  else if (cmd == CMD_DIE)
    close_end(p);
}

/* Frames of an unknown type on stream 0: HTTP/2 says to ignore them, and they need no answer. */
static bool flood_batch(struct peer *p)
{
  static const uint8_t frame[9] = {0, 0, 0, 0xfa, 0, 0, 0, 0, 0};
  uint8_t batch[4096 * sizeof frame];
  for (size_t i = 0; i < sizeof batch; i += sizeof frame)
    memcpy(batch + i, frame, sizeof frame);
  for (size_t off = 0; off < sizeof batch;) {
    ssize_t n = send(p->fd, batch + off, sizeof batch - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    off += (size_t)n;
  }
  return true;
}

/* One look at the socket and the commands; false once the peer is to stop. */
static bool serve_once(struct peer *p, uint8_t *buf, size_t size, bool *reading)
{
  pthread_mutex_lock(&p->lock);
  enum command cmd = p->cmd;
  int code = p->cmd_code;
  cleanup_free char *message = p->cmd_message ? xstrdup(p->cmd_message) : NULL;
  pthread_mutex_unlock(&p->lock);
  if (cmd == CMD_STOP)
    return false;
  if (cmd != CMD_NONE) {
    do_command(p, cmd, code, message);
    pthread_mutex_lock(&p->lock);
    p->cmd = CMD_NONE;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
  }
  if (!p->dead && p->session != NULL && nghttp2_session_send(p->session) != 0)
    *reading = false;
  if (p->flooding && !p->dead) {
    if (!flood_batch(p)) {
      p->flooding = false;
      client_gone(p);
    }
    return true;
  }
  struct pollfd fds[2] = {{.fd = p->ctl, .events = POLLIN},
                          {.fd = p->dead || !*reading ? -1 : p->fd, .events = POLLIN}};
  poll(fds, 2, -1);
  uint64_t v;
  if ((fds[0].revents & POLLIN) && read(p->ctl, &v, sizeof v) < 0)
    return false;
  if (fds[1].revents == 0)
    return true;
  ssize_t n = recv(p->fd, buf, size, 0);
  if (n <= 0) {
    *reading = false;
    client_gone(p);
  } else if (p->session != NULL && nghttp2_session_mem_recv(p->session, buf, (size_t)n) < 0) {
    *reading = false;
  }
  return true;
}

static void *peer_thread(void *arg)
{
  struct peer *p = arg;
  uint8_t buf[16384];
  bool reading = true;
  while (serve_once(p, buf, sizeof buf, &reading))
    ;
  return NULL;
}

static void command(struct peer *p, enum command cmd, int code, const char *message)
{
  pthread_mutex_lock(&p->lock);
  p->cmd = cmd;
  p->cmd_code = code;
  free(p->cmd_message);
  p->cmd_message = message ? xstrdup(message) : NULL;
  uint64_t one = 1;
  if (write(p->ctl, &one, sizeof one) < 0)
    abort();
  while (p->cmd != CMD_NONE)
    pthread_cond_wait(&p->cond, &p->lock);
  pthread_mutex_unlock(&p->lock);
}

/* Waits on the peer's condition until DONE(p) holds; aborts after HANG_GUARD_MS. */
static void wait_until(struct peer *p, bool (*done)(struct peer *, const void *), const void *arg,
                       const char *what)
{
  int64_t until = plg_now_ms() + HANG_GUARD_MS;
  pthread_mutex_lock(&p->lock);
  while (!done(p, arg)) {
    struct timespec ts;
    plg_timespec_in(&ts, CLOCK_MONOTONIC, until - plg_now_ms());
    if (pthread_cond_timedwait(&p->cond, &p->lock, &ts) != 0 && plg_now_ms() >= until) {
      fprintf(stderr, "the test peer waited %d ms for %s: the test is broken\n", HANG_GUARD_MS, what);
      abort();
    }
  }
  pthread_mutex_unlock(&p->lock);
}

struct peer *peer_new(int fd, enum peer_mode mode)
{
  struct peer *p = xcalloc(1, sizeof *p);
  p->fd = fd;
  p->mode = mode;
  p->ctl = eventfd(0, EFD_CLOEXEC);
  pthread_mutex_init(&p->lock, NULL);
  plg_cond_init_monotonic(&p->cond);
  if (mode == PEER_DAEMON)
    p->session = server_session(p);
  if (p->ctl < 0)
    abort();
  return p;
}

void peer_run(struct peer *p)
{
  if (pthread_create(&p->thread, NULL, peer_thread, p) != 0)
    abort();
}

struct peer *peer_start(int fd, enum peer_mode mode)
{
  struct peer *p = peer_new(fd, mode);
  peer_run(p);
  return p;
}

void peer_answer(struct peer *p, const char *method, int code, const char *message, const uint8_t *reply,
                 size_t len)
{
  pthread_mutex_lock(&p->lock);
  size_t i = 0;
  while (i < p->n_answers && strcmp(p->answers[i].method, method) != 0)
    i++;
  if (i == MAX_ANSWERS)
    abort();
  if (i == p->n_answers)
    p->n_answers++;
  struct answer *a = &p->answers[i];
  free(a->message);
  free(a->reply);
  snprintf(a->method, sizeof a->method, "%s", method);
  a->code = code;
  a->message = message ? xstrdup(message) : NULL;
  a->reply = xmalloc(len ? len : 1);
  if (len > 0)
    memcpy(a->reply, reply, len);
  a->len = len;
  pthread_mutex_unlock(&p->lock);
}

static bool calls_reached(struct peer *p, const void *arg)
{
  const struct count *want = arg;
  for (size_t i = 0; i < p->n_counts; i++)
    if (strcmp(p->counts[i].method, want->method) == 0)
      return p->counts[i].n >= want->n;
  return want->n <= 0;
}

void peer_wait_calls(struct peer *p, const char *method, int n)
{
  struct count want = {.n = n};
  snprintf(want.method, sizeof want.method, "%s", method);
  wait_until(p, calls_reached, &want, method);
}

static bool resets_reached(struct peer *p, const void *arg)
{
  return p->resets >= *(const int *)arg;
}

void peer_wait_resets(struct peer *p, int n)
{
  wait_until(p, resets_reached, &n, "stream resets");
}

static bool client_closed(struct peer *p, const void *arg)
{
  (void)arg;
  return p->closed_by_client;
}

void peer_wait_closed(struct peer *p)
{
  wait_until(p, client_closed, NULL, "the client to close");
}

void peer_goaway(struct peer *p)
{
  command(p, CMD_GOAWAY, 0, NULL);
}

void peer_end_connect(struct peer *p, int code, const char *message)
{
  command(p, CMD_END_CONNECT, code, message);
}

void peer_flood(struct peer *p)
{
  command(p, CMD_FLOOD, 0, NULL);
}

void peer_die(struct peer *p)
{
  command(p, CMD_DIE, 0, NULL);
}

void peer_free(struct peer *p)
{
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->lock);
  p->cmd = CMD_STOP;
  if (p->fd >= 0)
    shutdown(p->fd, SHUT_RDWR); /* a flood blocked in send ends */
  uint64_t one = 1;
  if (write(p->ctl, &one, sizeof one) < 0)
    abort();
  pthread_mutex_unlock(&p->lock);
  pthread_join(p->thread, NULL);
  if (p->fd >= 0)
    close(p->fd);
  close(p->ctl);
  if (p->session != NULL)
    nghttp2_session_del(p->session);
  while (p->streams != NULL) {
    struct stream *st = p->streams;
    p->streams = st->next;
    free(st->out);
    free(st->end_message);
    free(st);
  }
  for (size_t i = 0; i < p->n_answers; i++) {
    free(p->answers[i].message);
    free(p->answers[i].reply);
  }
  free(p->cmd_message);
  pthread_cond_destroy(&p->cond);
  pthread_mutex_destroy(&p->lock);
  free(p);
}
