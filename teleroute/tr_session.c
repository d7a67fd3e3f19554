#include "tr_session.h"

#include "plg_log.h"
#include "plg_net.h"
#include "plg_util.h"
#include "teleroute.pb-c.h"
#include "tr_grpc.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define SERVICE "/telepresence.teleroute.Teleroute/"
/* the reference retries UNAVAILABLE 20 times, 50 ms apart */
#define RETRY_PAUSE_MS 50
#define RETRY_MAX 20
/* how long to wait for the daemon's first Info, once it answered at the HTTP/2 level, before
 * trusting an open stream */
#define INFO_WAIT_MS 2000
#define LEAVE_CONNECT_MS 1000
#define STOPPING "the plugin is stopping"

struct conn {
  struct tr_session *s;
  struct tr_grpc *g;
  int refs;
  bool answered, got_info, ended;
  int end_code;
  char *end_message;
};

struct tr_session {
  pthread_mutex_t lock;
  pthread_cond_t cond;          /* CLOCK_MONOTONIC: the session's connection changed, or it stopped */
  pthread_mutex_t connect_lock; /* one connect attempt at a time */
  struct tr_session_group *group;
  struct tr_session *group_next;
  char where[80];
  struct sockaddr_storage sa;
  socklen_t salen;
  uint8_t gateways[4][17];
  size_t gateway_len[4];
  size_t n_gateways;
  int64_t connect_timeout_ms, call_timeout_ms;
  struct conn *cur;     /* the connection in use */
  struct conn *opening; /* the one being opened, for a stop to cancel */
  int users;
  bool stopped;
  int stop_fd; /* an eventfd written at the stop: ends connects at once */
};

struct tr_session_group {
  pthread_mutex_t lock;
  struct tr_session *sessions;
  bool stopped;
};

static void conn_put(struct tr_session *s, struct conn *c)
{
  pthread_mutex_lock(&s->lock);
  bool last = --c->refs == 0;
  pthread_mutex_unlock(&s->lock);
  if (!last)
    return;
  tr_grpc_close(c->g); /* joins the connection thread: no callback can touch C after this */
  free(c->end_message);
  free(c);
}

static void on_answer(void *arg)
{
  struct conn *c = arg;
  pthread_mutex_lock(&c->s->lock);
  c->answered = true;
  pthread_cond_broadcast(&c->s->cond);
  pthread_mutex_unlock(&c->s->lock);
}

static void on_info(void *arg, const uint8_t *msg, size_t len)
{
  struct conn *c = arg;
  Telepresence__Teleroute__Info *info = telepresence__teleroute__info__unpack(NULL, len, msg);
  const char *name = "?", *version = "?";
  for (size_t i = 0; info != NULL && i < info->n_info; i++) {
    if (strcmp(info->info[i]->key, "name") == 0)
      name = info->info[i]->value;
    else if (strcmp(info->info[i]->key, "version") == 0)
      version = info->info[i]->value;
  }
  pthread_mutex_lock(&c->s->lock);
  if (!c->got_info)
    plg_info("connected to the Telepresence daemon at %s (%.64s %.32s)", c->s->where, name, version);
  c->got_info = true;
  pthread_cond_broadcast(&c->s->cond);
  pthread_mutex_unlock(&c->s->lock);
  if (info != NULL)
    telepresence__teleroute__info__free_unpacked(info, NULL);
}

static void on_end(void *arg, int code, const char *message)
{
  struct conn *c = arg;
  pthread_mutex_lock(&c->s->lock);
  c->ended = true;
  c->end_code = code;
  c->end_message = xstrdup(message);
  /* the real daemon ends its Connect streams with OK when it shuts down */
  if (c->got_info && code == TR_GRPC_OK)
    plg_warn("the Telepresence daemon at %s ended the session (it is shutting down)", c->s->where);
  else if (c->got_info && !c->s->stopped)
    plg_warn("the Telepresence daemon at %s ended the session: %s: %s", c->s->where, tr_grpc_code_name(code),
             message);
  pthread_cond_broadcast(&c->s->cond);
  pthread_mutex_unlock(&c->s->lock);
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
  *len = protobuf_c_message_get_packed_size(m);
  uint8_t *buf = xmalloc(*len ? *len : 1);
  protobuf_c_message_pack(m, buf);
  return buf;
}

static int start_stream(struct tr_session *s, struct conn *c, plg_error_t *err)
{
  ProtobufCBinaryData gws[4];
  for (size_t i = 0; i < s->n_gateways; i++)
    gws[i] = (ProtobufCBinaryData){s->gateway_len[i], s->gateways[i]};
  Telepresence__Teleroute__ConnectRequest req = TELEPRESENCE__TELEROUTE__CONNECT_REQUEST__INIT;
  req.n_gateways = s->n_gateways;
  req.gateways = gws;
  req.pid = getpid(); /* with pidhost, our pid in the host's namespace: where the daemon puts veths */
  size_t len;
  cleanup_free uint8_t *body = pack(&req.base, &len);
  return tr_grpc_stream(c->g, SERVICE "Connect", body, len, on_info, on_end, c, err);
}

/* Waits until the daemon sent its first Info, or ended the stream, or answered at the HTTP/2
 * level and kept the stream open without an Info for INFO_WAIT_MS (the stream is then trusted:
 * the daemon may send Info late), or DEADLINE passes. Returns 0 or the code that failed it, with
 * *WHY. */
static int await_session(struct tr_session *s, struct conn *c, int64_t deadline, char **why)
{
  int64_t trust_at = plg_now_ms() + INFO_WAIT_MS;
  pthread_mutex_lock(&s->lock);
  bool trusted = false;
  for (;;) {
    int64_t now = plg_now_ms();
    trusted = c->answered && now >= trust_at;
    if (c->got_info || c->ended || s->stopped || trusted || now >= deadline)
      break;
    struct timespec ts;
    plg_timespec_in(&ts, CLOCK_MONOTONIC, (c->answered && trust_at < deadline ? trust_at : deadline) - now);
    pthread_cond_timedwait(&s->cond, &s->lock, &ts);
  }
  int code = 0;
  if (s->stopped) {
    code = TR_GRPC_CANCELLED;
    *why = xstrdup(STOPPING);
  } else if (c->ended) {
    code = c->end_code == 0 ? TR_GRPC_UNAVAILABLE : c->end_code;
    *why = xstrdup(c->end_message ? c->end_message : "the session ended");
  } else if (!c->got_info && !trusted) {
    code = TR_GRPC_DEADLINE_EXCEEDED;
    *why = c->answered
               ? xasprintf("it answered in HTTP/2, but its Connect stream neither sent Info nor ended within "
                           "%lld ms",
                           (long long)s->connect_timeout_ms)
               : xasprintf("it accepted the connection but sent nothing an HTTP/2 server sends (no SETTINGS) "
                           "within %lld ms: is this the daemon's Teleroute port?",
                           (long long)s->connect_timeout_ms);
  }
  pthread_mutex_unlock(&s->lock);
  return code;
}

/* Makes C the connection a stop cancels while it opens (or clears it); false once stopped. */
static bool set_opening(struct tr_session *s, struct conn *c)
{
  pthread_mutex_lock(&s->lock);
  bool stopped = s->stopped;
  s->opening = stopped ? NULL : c;
  pthread_mutex_unlock(&s->lock);
  return !stopped;
}

/* One attempt by DEADLINE: TCP, HTTP/2, Connect. *CODE tells whether another attempt may help. */
static struct conn *open_conn(struct tr_session *s, int64_t deadline, int *code, plg_error_t *err)
{
  struct conn *c = xcalloc(1, sizeof *c);
  c->s = s;
  c->refs = 1;
  *code = TR_GRPC_UNAVAILABLE;
  int64_t left = deadline - plg_now_ms();
  if (tr_grpc_open((struct sockaddr *)&s->sa, s->salen, left > 0 ? (int)left : 1, s->stop_fd, on_answer, c,
                   &c->g, err) < 0) {
    if ((*err)->errno_ == ECANCELED)
      *code = TR_GRPC_CANCELLED;
    free(c);
    return NULL;
  }
  char *why = NULL;
  if (!set_opening(s, c)) {
    *code = TR_GRPC_CANCELLED;
    why = xstrdup(STOPPING);
  } else if (start_stream(s, c, err) < 0) {
    set_opening(s, NULL);
    conn_put(s, c);
    return NULL;
  } else {
    *code = await_session(s, c, deadline, &why);
    set_opening(s, NULL);
  }
  if (*code == 0)
    return c;
  if (*code == TR_GRPC_DEADLINE_EXCEEDED)
    plg_error_make(err, 0, "%s", why);
  else
    plg_error_make(err, 0, "Connect: %s: %s", tr_grpc_code_name(*code), why);
  free(why);
  conn_put(s, c);
  return NULL;
}

static struct conn *get_live(struct tr_session *s)
{
  pthread_mutex_lock(&s->lock);
  struct conn *c = s->cur;
  if (c != NULL && (c->ended || tr_grpc_is_closed(c->g)))
    c = NULL;
  if (c != NULL)
    c->refs++;
  pthread_mutex_unlock(&s->lock);
  return c;
}

static void install(struct tr_session *s, struct conn *c)
{
  pthread_mutex_lock(&s->lock);
  struct conn *old = s->cur;
  s->cur = c;
  c->refs++;
  pthread_mutex_unlock(&s->lock);
  if (old != NULL)
    conn_put(s, old);
}

/* Sleeps MS unless the session stops first; false when it did. */
static bool pause_unless_stopped(struct tr_session *s, int64_t ms)
{
  int64_t until = plg_now_ms() + ms;
  pthread_mutex_lock(&s->lock);
  while (!s->stopped && plg_now_ms() < until) {
    struct timespec ts;
    plg_timespec_in(&ts, CLOCK_MONOTONIC, until - plg_now_ms());
    pthread_cond_timedwait(&s->cond, &s->lock, &ts);
  }
  bool go_on = !s->stopped;
  pthread_mutex_unlock(&s->lock);
  return go_on;
}

static struct conn *connect_with_retries(struct tr_session *s, int64_t budget_ms, bool retry, int *code,
                                         plg_error_t *err)
{
  int64_t deadline = plg_now_ms() + budget_ms;
  for (int attempt = 0;; attempt++) {
    plg_error_t try_err = NULL;
    struct conn *c = open_conn(s, deadline, code, &try_err);
    if (c != NULL)
      return c;
    int64_t left = deadline - plg_now_ms();
    if (*code == TR_GRPC_UNAVAILABLE && retry && attempt + 1 < RETRY_MAX && left > RETRY_PAUSE_MS &&
        !pause_unless_stopped(s, RETRY_PAUSE_MS))
      *code = TR_GRPC_CANCELLED;
    if (*code == TR_GRPC_CANCELLED) {
      plg_error_release(&try_err);
      plg_error_make(err, 0, "the Telepresence daemon at %s: CANCELLED: " STOPPING, s->where);
      return NULL;
    }
    if (!retry || *code != TR_GRPC_UNAVAILABLE || attempt + 1 >= RETRY_MAX || left <= RETRY_PAUSE_MS) {
      plg_error_make(err, 0, "cannot reach the Telepresence daemon at %s: %s", s->where, try_err->msg);
      plg_error_release(&try_err);
      return NULL;
    }
    plg_error_release(&try_err);
  }
}

/* A live connection with a reference for the caller, connecting when needed. */
static struct conn *acquire(struct tr_session *s, int64_t budget_ms, bool retry, int *code, plg_error_t *err)
{
  *code = TR_GRPC_UNAVAILABLE;
  struct conn *c = get_live(s);
  if (c != NULL)
    return c;
  pthread_mutex_lock(&s->connect_lock);
  c = get_live(s); /* another request may have connected meanwhile */
  pthread_mutex_lock(&s->lock);
  bool stopped = s->stopped;
  pthread_mutex_unlock(&s->lock);
  if (c == NULL && stopped) {
    *code = TR_GRPC_CANCELLED;
    plg_error_make(err, 0, "the Telepresence daemon at %s: CANCELLED: " STOPPING, s->where);
  } else if (c == NULL) {
    c = connect_with_retries(s, budget_ms, retry, code, err);
    if (c != NULL)
      install(s, c); /* the session's reference; C keeps the caller's */
  }
  pthread_mutex_unlock(&s->connect_lock);
  return c;
}

int tr_session_connect(struct tr_session *s, plg_error_t *err)
{
  int code;
  struct conn *c = acquire(s, s->connect_timeout_ms, true, &code, err);
  if (c == NULL)
    return -1;
  conn_put(s, c);
  return 0;
}

static int call_on(struct tr_session *s, struct conn *c, const char *method, const ProtobufCMessage *req,
                   uint8_t **resp, size_t *resp_len, int *code, plg_error_t *err)
{
  size_t len;
  cleanup_free uint8_t *body = pack(req, &len);
  cleanup_free char *path = xasprintf(SERVICE "%s", method);
  uint8_t *r = NULL;
  size_t rlen = 0;
  int rc = tr_grpc_unary(c->g, path, body, len, (int)s->call_timeout_ms, &r, &rlen, code, err);
  if (rc == 0 && resp != NULL) {
    *resp = r;
    *resp_len = rlen;
  } else {
    free(r);
  }
  return rc;
}

int tr_session_call(struct tr_session *s, const char *method, const ProtobufCMessage *req, uint8_t **resp,
                    size_t *resp_len, plg_error_t *err)
{
  for (int attempt = 0;; attempt++) {
    int code;
    struct conn *c = acquire(s, s->connect_timeout_ms, true, &code, err);
    if (c == NULL)
      return -1;
    plg_error_t call_err = NULL;
    int rc = call_on(s, c, method, req, resp, resp_len, &code, &call_err);
    bool lost = rc < 0 && code == TR_GRPC_UNAVAILABLE && tr_grpc_is_closed(c->g);
    conn_put(s, c);
    if (rc == 0)
      return 0;
    if (!lost || attempt > 0) {
      *err = call_err;
      return plg_error_wrap(err, "the Telepresence daemon at %s", s->where);
    }
    plg_error_release(&call_err); /* the connection had died under us: one fresh try */
  }
}

int tr_session_call_once(struct tr_session *s, const char *method, const ProtobufCMessage *req,
                         plg_error_t *err)
{
  int code;
  struct conn *c = acquire(s, LEAVE_CONNECT_MS, false, &code, err);
  if (c == NULL)
    return -1;
  int rc = call_on(s, c, method, req, NULL, NULL, &code, err);
  conn_put(s, c);
  return rc;
}

/* Cancels what S is doing and will do; with the group's lock held (the group's order). */
static void session_stop(struct tr_session *s)
{
  pthread_mutex_lock(&s->lock);
  s->stopped = true;
  struct conn *cur = s->cur, *opening = s->opening;
  if (cur != NULL)
    tr_grpc_cancel(cur->g, STOPPING);
  if (opening != NULL)
    tr_grpc_cancel(opening->g, STOPPING);
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
  uint64_t one = 1;
  ssize_t n = write(s->stop_fd, &one, sizeof one);
  (void)n;
}

struct tr_session *tr_session_new(struct tr_session_group *g, const char *host, int port,
                                  const struct tr_prefix *gateways, size_t n_gateways,
                                  int64_t connect_timeout_ms, int64_t call_timeout_ms)
{
  struct tr_session *s = xcalloc(1, sizeof *s);
  s->users = 1;
  pthread_mutex_init(&s->lock, NULL);
  pthread_mutex_init(&s->connect_lock, NULL);
  plg_cond_init_monotonic(&s->cond);
  s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s->stop_fd < 0)
    abort(); /* out of descriptors at creation: nothing could be served anyway */
  s->connect_timeout_ms = connect_timeout_ms;
  s->call_timeout_ms = call_timeout_ms;
  plg_net_sockaddr(host, port, &s->sa, &s->salen); /* host is validated by tr_net_opts_parse */
  plg_net_format((struct sockaddr *)&s->sa, s->where, sizeof s->where);
  for (size_t i = 0; i < n_gateways && i < 4; i++) {
    s->gateway_len[i] = tr_prefix_to_bytes(&gateways[i], s->gateways[i]);
    s->n_gateways++;
  }
  s->group = g;
  pthread_mutex_lock(&g->lock);
  s->group_next = g->sessions;
  g->sessions = s;
  if (g->stopped)
    session_stop(s);
  pthread_mutex_unlock(&g->lock);
  return s;
}

void tr_session_hold(struct tr_session *s)
{
  pthread_mutex_lock(&s->lock);
  s->users++;
  pthread_mutex_unlock(&s->lock);
}

void tr_session_release(struct tr_session *s)
{
  if (s == NULL)
    return;
  pthread_mutex_lock(&s->lock);
  bool last = --s->users == 0;
  pthread_mutex_unlock(&s->lock);
  if (!last)
    return;
  pthread_mutex_lock(&s->group->lock);
  for (struct tr_session **p = &s->group->sessions; *p != NULL; p = &(*p)->group_next)
    if (*p == s) {
      *p = s->group_next;
      break;
    }
  pthread_mutex_unlock(&s->group->lock);
  pthread_mutex_lock(&s->lock);
  struct conn *c = s->cur;
  s->cur = NULL;
  pthread_mutex_unlock(&s->lock);
  if (c != NULL)
    conn_put(s, c);
  close(s->stop_fd);
  pthread_cond_destroy(&s->cond);
  pthread_mutex_destroy(&s->connect_lock);
  pthread_mutex_destroy(&s->lock);
  free(s);
}

struct tr_session_group *tr_session_group_new(void)
{
  struct tr_session_group *g = xcalloc(1, sizeof *g);
  pthread_mutex_init(&g->lock, NULL);
  return g;
}

void tr_session_group_stop(struct tr_session_group *g)
{
  pthread_mutex_lock(&g->lock);
  g->stopped = true;
  for (struct tr_session *s = g->sessions; s != NULL; s = s->group_next)
    session_stop(s);
  pthread_mutex_unlock(&g->lock);
}

void tr_session_group_free(struct tr_session_group *g)
{
  if (g == NULL)
    return;
  pthread_mutex_destroy(&g->lock);
  free(g);
}
