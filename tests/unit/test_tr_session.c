/* The session with a daemon (tr_session.h) against test daemons (tr_test_peer.h) behind a
 * loopback listener: what counts as connected (issue 13: a port that accepts and stays silent was
 * trusted after 2 s), retries, reconnects, and a stop that ends every call, connect and wait at
 * once. Waits are on explicit signals, never on sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_util.h"
#include "teleroute.pb-c.h"
#include "tr_grpc_frame.h"
#include "tr_session.h"
#include "tr_test_peer.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_PEERS 32
#define LONG_MS 60000 /* a deadline no test waits for: only something else can end the wait */

struct fixture {
  int listener, port;
  pthread_t acceptor;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  enum peer_mode mode;
  int connect_code; /* how each new daemon answers Connect */
  struct peer *peers[MAX_PEERS];
  int n_peers;
  struct tr_session_group *group;
  char where[32];
};

static void *accept_loop(void *arg)
{
  struct fixture *f = arg;
  for (;;) {
    int fd = accept4(f->listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
      return NULL; /* the listener was shut down */
    pthread_mutex_lock(&f->lock);
    if (f->n_peers == MAX_PEERS) {
      close(fd);
    } else {
      struct peer *p = peer_new(fd, f->mode);
      if (f->connect_code != 0)
        peer_answer(p, "Connect", f->connect_code, "not now", NULL, 0);
      peer_answer(p, "Join", 0, NULL, (const uint8_t *)"joined", 6);
      peer_run(p);
      f->peers[f->n_peers++] = p;
    }
    pthread_cond_broadcast(&f->cond);
    pthread_mutex_unlock(&f->lock);
  }
}

/* The Nth daemon (from 0), once its connection was accepted. */
static struct peer *daemon_n(struct fixture *f, int n)
{
  pthread_mutex_lock(&f->lock);
  while (f->n_peers <= n)
    pthread_cond_wait(&f->cond, &f->lock);
  struct peer *p = f->peers[n];
  pthread_mutex_unlock(&f->lock);
  return p;
}

static int connections(struct fixture *f)
{
  pthread_mutex_lock(&f->lock);
  int n = f->n_peers;
  pthread_mutex_unlock(&f->lock);
  return n;
}

static struct fixture *start(enum peer_mode mode, int connect_code)
{
  struct fixture *f = xcalloc(1, sizeof *f);
  f->mode = mode;
  f->connect_code = connect_code;
  pthread_mutex_init(&f->lock, NULL);
  pthread_cond_init(&f->cond, NULL);
  f->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  assert_int_equal(bind(f->listener, (struct sockaddr *)&sa, sizeof sa), 0);
  assert_int_equal(listen(f->listener, 16), 0);
  socklen_t len = sizeof sa;
  assert_int_equal(getsockname(f->listener, (struct sockaddr *)&sa, &len), 0);
  f->port = ntohs(sa.sin_port);
  snprintf(f->where, sizeof f->where, "127.0.0.1:%d", f->port);
  assert_int_equal(pthread_create(&f->acceptor, NULL, accept_loop, f), 0);
  f->group = tr_session_group_new();
  return f;
}

static struct tr_session *session(struct fixture *f, int64_t connect_ms, int64_t call_ms)
{
  return tr_session_new(f->group, "127.0.0.1", f->port, NULL, 0, connect_ms, call_ms);
}

static void finish(struct fixture *f)
{
  shutdown(f->listener, SHUT_RDWR);
  pthread_join(f->acceptor, NULL);
  close(f->listener);
  for (int i = 0; i < f->n_peers; i++)
    peer_free(f->peers[i]);
  tr_session_group_free(f->group);
  pthread_cond_destroy(&f->cond);
  pthread_mutex_destroy(&f->lock);
  free(f);
}

/* tr_session_connect; the error message (malloc'd) or NULL */
static char *connect_msg(struct tr_session *s)
{
  plg_error_t err = NULL;
  if (tr_session_connect(s, &err) == 0)
    return NULL;
  char *msg = xstrdup(err->msg);
  plg_error_release(&err);
  return msg;
}

struct join {
  struct tr_session *s;
  int rc;
  char *msg;
  uint8_t *resp;
  size_t len;
  pthread_t thread;
};

static void *join_thread(void *arg)
{
  struct join *j = arg;
  Telepresence__Teleroute__EndpointIdentifier id = TELEPRESENCE__TELEROUTE__ENDPOINT_IDENTIFIER__INIT;
  id.id = (char *)"ep";
  plg_error_t err = NULL;
  j->rc = tr_session_call(j->s, "Join", &id.base, &j->resp, &j->len, &err);
  j->msg = err != NULL ? xstrdup(err->msg) : NULL;
  plg_error_release(&err);
  return NULL;
}

static void join_done(struct join *j)
{
  free(j->msg);
  free(j->resp);
}

static void a_port_that_accepts_and_never_speaks_fails_the_connect_naming_the_address(void **state)
{
  (void)state;
  struct fixture *f = start(PEER_SILENT, 0);
  struct tr_session *s = session(f, 300, 300);
  cleanup_free char *msg = connect_msg(s);
  if (msg == NULL)
    fail_msg("a session with a port that never speaks counts as connected");
  char want[256];
  snprintf(
      want, sizeof want,
      "cannot reach the Telepresence daemon at %s: it accepted the connection but sent nothing an HTTP/2 "
      "server sends (no SETTINGS) within 300 ms",
      f->where);
  if (strstr(msg, want) == NULL)
    fail_msg("unclear error: %s", msg);
  assert_int_equal(connections(f), 1); /* no retry: the budget is spent */
  tr_session_release(s);
  finish(f);
}

static void a_daemon_that_answers_is_connected_and_called(void **state)
{
  (void)state;
  struct fixture *f = start(PEER_DAEMON, 0);
  struct tr_session *s = session(f, LONG_MS, LONG_MS);
  cleanup_free char *msg = connect_msg(s);
  assert_null(msg);
  struct join j = {.s = s};
  join_thread(&j);
  assert_int_equal(j.rc, 0);
  assert_int_equal(j.len, 6);
  assert_memory_equal(j.resp, "joined", 6);
  assert_int_equal(connections(f), 1);
  join_done(&j);
  tr_session_release(s);
  finish(f);
}

/* The daemon may send its first Info late: an HTTP/2 answer and a stream kept open for 2 s are
 * enough; within a shorter connect timeout they are not. */
static void a_daemon_that_answers_in_http2_but_sends_no_info_is_trusted_after_a_while(void **state)
{
  (void)state;
  struct fixture *f = start(PEER_DAEMON, PEER_HANG);
  struct tr_session *s = session(f, LONG_MS, 300);
  cleanup_free char *msg = connect_msg(s);
  if (msg != NULL)
    fail_msg("refused: %s", msg);
  tr_session_release(s);
  s = session(f, 300, 300);
  cleanup_free char *early = connect_msg(s);
  assert_non_null(early);
  assert_non_null(strstr(early,
                         "it answered in HTTP/2, but its Connect stream neither sent Info nor ended within "
                         "300 ms"));
  tr_session_release(s);
  finish(f);
}

static void a_connect_refused_as_unavailable_is_tried_again_and_others_are_not(void **state)
{
  (void)state;
  struct fixture *f = start(PEER_DAEMON, TR_GRPC_UNAVAILABLE);
  struct tr_session *s = session(f, 2000, 300);
  cleanup_free char *msg = connect_msg(s);
  assert_non_null(msg);
  /* the last try may be cut short by the deadline instead */
  if (strstr(msg, "Connect: UNAVAILABLE: not now") == NULL && strstr(msg, "within 2000 ms") == NULL)
    fail_msg("unclear error: %s", msg);
  assert_true(connections(f) > 1);
  tr_session_release(s);
  finish(f);

  f = start(PEER_DAEMON, TR_GRPC_INVALID_ARGUMENT);
  s = session(f, 2000, 300);
  cleanup_free char *again = connect_msg(s);
  assert_non_null(again);
  assert_non_null(strstr(again, "Connect: INVALID_ARGUMENT: not now"));
  assert_int_equal(connections(f), 1);
  tr_session_release(s);
  finish(f);
}

static void a_call_after_the_daemon_died_connects_again(void **state)
{
  (void)state;
  struct fixture *f = start(PEER_DAEMON, 0);
  struct tr_session *s = session(f, LONG_MS, LONG_MS);
  cleanup_free char *msg = connect_msg(s);
  assert_null(msg);
  peer_die(daemon_n(f, 0));
  struct join j = {.s = s};
  join_thread(&j);
  if (j.rc != 0)
    fail_msg("Join after a daemon restart: %s", j.msg);
  assert_int_equal(connections(f), 2);
  join_done(&j);
  tr_session_release(s);
  finish(f);
}

static void a_stop_ends_a_call_that_hangs_on_a_frozen_daemon_with_cancelled(void **state)
{
  (void)state;
  struct fixture *f = start(PEER_DAEMON, 0);
  struct tr_session *s = session(f, LONG_MS, LONG_MS);
  struct peer *d;
  cleanup_free char *msg = connect_msg(s);
  assert_null(msg);
  d = daemon_n(f, 0);
  peer_answer(d, "Join", PEER_HANG, NULL, NULL, 0);
  struct join j = {.s = s};
  assert_int_equal(pthread_create(&j.thread, NULL, join_thread, &j), 0);
  peer_wait_calls(d, "Join", 1);
  tr_session_group_stop(f->group);
  pthread_join(j.thread, NULL);
  assert_int_equal(j.rc, -1);
  char want[128];
  snprintf(want, sizeof want, "the Telepresence daemon at %s: Join: CANCELLED: the plugin is stopping",
           f->where);
  assert_string_equal(j.msg, want);
  join_done(&j);
  tr_session_release(s);
  finish(f);
}

static void *connect_thread(void *arg)
{
  struct join *j = arg;
  j->msg = connect_msg(j->s);
  return NULL;
}

static void a_stop_ends_a_connect_to_a_port_that_never_speaks(void **state)
{
  (void)state;
  struct fixture *f = start(PEER_SILENT, 0);
  struct tr_session *s = session(f, LONG_MS, LONG_MS);
  struct join j = {.s = s};
  char want[128];
  assert_int_equal(pthread_create(&j.thread, NULL, connect_thread, &j), 0);
  daemon_n(f, 0); /* the connection was accepted: the session waits for an answer */
  tr_session_group_stop(f->group);
  pthread_join(j.thread, NULL);
  assert_non_null(j.msg);
  snprintf(want, sizeof want, "the Telepresence daemon at %s: CANCELLED: the plugin is stopping", f->where);
  if (strcmp(j.msg, want) != 0)
    fail_msg("not cancelled: %s", j.msg);
  join_done(&j);
  tr_session_release(s);
  finish(f);
}

static void after_a_stop_no_session_connects_or_calls_not_even_a_new_one(void **state)
{
  (void)state;
  struct fixture *f = start(PEER_DAEMON, 0);
  struct tr_session *s = session(f, LONG_MS, LONG_MS);
  tr_session_group_stop(f->group);
  struct tr_session *later = session(f, LONG_MS, LONG_MS);
  struct tr_session *both[] = {s, later};
  for (int i = 0; i < 2; i++) {
    struct join j = {.s = both[i]};
    join_thread(&j);
    assert_int_equal(j.rc, -1);
    assert_non_null(strstr(j.msg, "CANCELLED: the plugin is stopping"));
    join_done(&j);
    cleanup_free char *msg = connect_msg(both[i]);
    assert_non_null(msg);
  }
  assert_int_equal(connections(f), 0);
  tr_session_release(s);
  tr_session_release(later);
  finish(f);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(a_port_that_accepts_and_never_speaks_fails_the_connect_naming_the_address),
      cmocka_unit_test(a_daemon_that_answers_is_connected_and_called),
      cmocka_unit_test(a_daemon_that_answers_in_http2_but_sends_no_info_is_trusted_after_a_while),
      cmocka_unit_test(a_connect_refused_as_unavailable_is_tried_again_and_others_are_not),
      cmocka_unit_test(a_call_after_the_daemon_died_connects_again),
      cmocka_unit_test(a_stop_ends_a_call_that_hangs_on_a_frozen_daemon_with_cancelled),
      cmocka_unit_test(a_stop_ends_a_connect_to_a_port_that_never_speaks),
      cmocka_unit_test(after_a_stop_no_session_connects_or_calls_not_even_a_new_one),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
