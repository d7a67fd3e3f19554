/* The gRPC client (tr_grpc.h) against an nghttp2 server in the test (tr_test_peer.h) on a
 * socketpair: replies, statuses, streams, deadlines, GOAWAY, a peer that dies, a peer that floods,
 * a peer that never speaks, and a cancel. Waits are on explicit signals, never on sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "plg_util.h"
#include "tr_grpc.h"
#include "tr_test_peer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define JOIN "/telepresence.teleroute.Teleroute/Join"
#define LEAVE "/telepresence.teleroute.Teleroute/Leave"
#define CONNECT "/telepresence.teleroute.Teleroute/Connect"
#define LONG_MS 60000 /* a deadline no test waits for: only something else can end the call */

/* What the client saw, signalled to the test. */
struct seen {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool answered;
  int msgs;
  bool ended;
  int end_code;
  char end_message[256];
};

struct fixture {
  struct tr_grpc *client;
  struct peer *peer;
  struct seen seen;
};

static void on_answer(void *arg)
{
  struct seen *s = arg;
  pthread_mutex_lock(&s->lock);
  s->answered = true;
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

static void on_msg(void *arg, const uint8_t *msg, size_t len)
{
  (void)msg;
  (void)len;
  struct seen *s = arg;
  pthread_mutex_lock(&s->lock);
  s->msgs++;
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

static void on_end(void *arg, int code, const char *message)
{
  struct seen *s = arg;
  pthread_mutex_lock(&s->lock);
  s->ended = true;
  s->end_code = code;
  snprintf(s->end_message, sizeof s->end_message, "%s", message);
  pthread_cond_broadcast(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

/* Waits until *FLAG (an int or bool member of SEEN, read as int) reaches WANT. */
static void wait_seen(struct seen *s, const bool *flag, const int *count, int want)
{
  pthread_mutex_lock(&s->lock);
  while ((flag != NULL && !*flag) || (count != NULL && *count < want))
    pthread_cond_wait(&s->cond, &s->lock);
  pthread_mutex_unlock(&s->lock);
}

static int setup_mode(void **state, enum peer_mode mode)
{
  struct fixture *f = xcalloc(1, sizeof *f);
  pthread_mutex_init(&f->seen.lock, NULL);
  pthread_cond_init(&f->seen.cond, NULL);
  int sp[2];
  assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  f->peer = peer_start(sp[1], mode);
  plg_error_t err = NULL;
  if (tr_grpc_start(sp[0], "test-peer", on_answer, &f->seen, &f->client, &err) < 0)
    fail_msg("tr_grpc_start: %s", err->msg);
  *state = f;
  return 0;
}

static int setup(void **state)
{
  return setup_mode(state, PEER_DAEMON);
}

static int setup_silent(void **state)
{
  return setup_mode(state, PEER_SILENT);
}

static int teardown(void **state)
{
  struct fixture *f = *state;
  tr_grpc_close(f->client);
  peer_free(f->peer);
  pthread_cond_destroy(&f->seen.cond);
  pthread_mutex_destroy(&f->seen.lock);
  free(f);
  return 0;
}

struct call {
  struct tr_grpc *client;
  const char *path;
  int timeout_ms;
  int rc, code;
  char *msg; /* the error */
  uint8_t *resp;
  size_t resp_len;
  pthread_t thread;
};

static void *call_thread(void *arg)
{
  struct call *k = arg;
  plg_error_t err = NULL;
  k->rc = tr_grpc_unary(k->client, k->path, (const uint8_t *)"", 0, k->timeout_ms, &k->resp, &k->resp_len,
                        &k->code, &err);
  k->msg = err != NULL ? xstrdup(err->msg) : NULL;
  plg_error_release(&err);
  return NULL;
}

static void call(struct call *k, struct tr_grpc *client, const char *path, int timeout_ms)
{
  memset(k, 0, sizeof *k);
  k->client = client;
  k->path = path;
  k->timeout_ms = timeout_ms;
  call_thread(k);
}

static void call_start(struct call *k, struct tr_grpc *client, const char *path, int timeout_ms)
{
  memset(k, 0, sizeof *k);
  k->client = client;
  k->path = path;
  k->timeout_ms = timeout_ms;
  assert_int_equal(pthread_create(&k->thread, NULL, call_thread, k), 0);
}

static void call_join(struct call *k)
{
  pthread_join(k->thread, NULL);
}

static void call_free(struct call *k)
{
  free(k->msg);
  free(k->resp);
}

static void a_unary_call_gets_the_daemons_reply(void **state)
{
  struct fixture *f = *state;
  peer_answer(f->peer, "Join", 0, NULL, (const uint8_t *)"reply", 5);
  struct call k;
  call(&k, f->client, JOIN, LONG_MS);
  if (k.rc != 0)
    fail_msg("Join failed: %s", k.msg);
  assert_int_equal(k.resp_len, 5);
  assert_memory_equal(k.resp, "reply", 5);
  call_free(&k);
}

static void the_peers_settings_are_reported_once_it_speaks(void **state)
{
  struct fixture *f = *state;
  wait_seen(&f->seen, &f->seen.answered, NULL, 0);
  assert_false(tr_grpc_is_closed(f->client));
}

static void an_error_status_reaches_the_caller_with_the_method_and_the_daemons_words(void **state)
{
  struct fixture *f = *state;
  peer_answer(f->peer, "Join", 13, "IPv6 is not enabled for the teleroute network", NULL, 0);
  struct call k;
  call(&k, f->client, JOIN, LONG_MS);
  assert_int_equal(k.rc, -1);
  assert_int_equal(k.code, 13);
  assert_string_equal(k.msg, "Join: INTERNAL: IPv6 is not enabled for the teleroute network");
  call_free(&k);
}

static void calls_on_one_connection_are_answered_each_on_its_own(void **state)
{
  struct fixture *f = *state;
  peer_answer(f->peer, "Join", PEER_HANG, NULL, NULL, 0);
  struct call join;
  call_start(&join, f->client, JOIN, 300);
  peer_wait_calls(f->peer, "Join", 1);
  struct call leave;
  call(&leave, f->client, LEAVE, LONG_MS); /* answered while Join waits */
  assert_int_equal(leave.rc, 0);
  call_join(&join);
  assert_int_equal(join.code, 4);
  call_free(&join);
  call_free(&leave);
}

static void a_call_without_an_answer_ends_at_its_deadline_and_its_stream_is_reset(void **state)
{
  struct fixture *f = *state;
  peer_answer(f->peer, "Join", PEER_HANG, NULL, NULL, 0);
  struct call k;
  call(&k, f->client, JOIN, 100);
  assert_int_equal(k.rc, -1);
  assert_int_equal(k.code, 4);
  assert_string_equal(k.msg, "Join: DEADLINE_EXCEEDED: no answer within 100 ms");
  peer_wait_resets(f->peer, 1);
  call_free(&k);
}

static void a_server_stream_delivers_its_messages_then_its_end(void **state)
{
  struct fixture *f = *state;
  plg_error_t err = NULL;
  assert_int_equal(tr_grpc_stream(f->client, CONNECT, (const uint8_t *)"", 0, on_msg, on_end, &f->seen, &err),
                   0);
  wait_seen(&f->seen, NULL, &f->seen.msgs, 1);
  assert_false(f->seen.ended);
  peer_end_connect(f->peer, 14, "shutting down");
  wait_seen(&f->seen, &f->seen.ended, NULL, 0);
  assert_int_equal(f->seen.end_code, 14);
  assert_string_equal(f->seen.end_message, "shutting down");
  assert_int_equal(f->seen.msgs, 1);
}

/* grpc-go's graceful stop: GOAWAY, then the open streams end. After it no call goes on this
 * connection (the session opens a new one). */
static void after_a_goaway_the_connection_takes_no_new_call(void **state)
{
  struct fixture *f = *state;
  plg_error_t err = NULL;
  assert_int_equal(tr_grpc_stream(f->client, CONNECT, (const uint8_t *)"", 0, on_msg, on_end, &f->seen, &err),
                   0);
  wait_seen(&f->seen, NULL, &f->seen.msgs, 1);
  peer_goaway(f->peer);
  peer_end_connect(f->peer, 0, NULL); /* after the GOAWAY on the wire: its end proves the GOAWAY arrived */
  wait_seen(&f->seen, &f->seen.ended, NULL, 0);
  assert_true(tr_grpc_is_closed(f->client));
  struct call k;
  call(&k, f->client, LEAVE, LONG_MS);
  assert_int_equal(k.rc, -1);
  assert_int_equal(k.code, 14);
  call_free(&k);
}

static void a_peer_that_dies_ends_every_call_at_once_with_unavailable(void **state)
{
  struct fixture *f = *state;
  peer_answer(f->peer, "Join", PEER_HANG, NULL, NULL, 0);
  plg_error_t err = NULL;
  assert_int_equal(tr_grpc_stream(f->client, CONNECT, (const uint8_t *)"", 0, on_msg, on_end, &f->seen, &err),
                   0);
  struct call k;
  call_start(&k, f->client, JOIN, LONG_MS);
  peer_wait_calls(f->peer, "Join", 1);
  peer_die(f->peer);
  call_join(&k);
  assert_int_equal(k.code, 14);
  /* a close, or a reset when the peer left bytes unread; seen by a read or by a write */
  bool clear = strstr(k.msg, "the daemon at test-peer closed the connection") != NULL ||
               strstr(k.msg, "connection to the daemon at test-peer failed") != NULL;
  if (!clear) {
    char msg[256];
    snprintf(msg, sizeof msg, "%s", k.msg);
    call_free(&k);
    fail_msg("unclear error: %s", msg);
  }
  wait_seen(&f->seen, &f->seen.ended, NULL, 0);
  assert_int_equal(f->seen.end_code, 14);
  assert_true(tr_grpc_is_closed(f->client));
  call_free(&k);
}

/* Issue 13: the read loop drained the socket while holding the connection's lock, so a peer that
 * writes frames faster than they are read held every call past its deadline. */
static void a_peer_that_floods_frames_cannot_hold_a_call_past_its_deadline(void **state)
{
  struct fixture *f = *state;
  peer_answer(f->peer, "Join", PEER_HANG, NULL, NULL, 0);
  struct call k;
  call_start(&k, f->client, JOIN, 300);
  peer_wait_calls(f->peer, "Join", 1);
  peer_flood(f->peer);
  call_join(&k);
  assert_int_equal(k.code, 4);
  /* and a call made while the flood goes on is taken, and ends by its own deadline too */
  struct call later;
  call(&later, f->client, JOIN, 200);
  assert_int_equal(later.code, 4);
  call_free(&k);
  call_free(&later);
}

static void a_call_to_a_peer_that_never_speaks_ends_at_its_deadline(void **state)
{
  struct fixture *f = *state;
  struct call k;
  call(&k, f->client, JOIN, 100);
  assert_int_equal(k.code, 4);
  assert_false(f->seen.answered);
  call_free(&k);
}

static void a_cancel_ends_calls_and_streams_at_once_and_every_later_call(void **state)
{
  struct fixture *f = *state;
  peer_answer(f->peer, "Join", PEER_HANG, NULL, NULL, 0);
  plg_error_t err = NULL;
  assert_int_equal(tr_grpc_stream(f->client, CONNECT, (const uint8_t *)"", 0, on_msg, on_end, &f->seen, &err),
                   0);
  struct call k;
  call_start(&k, f->client, JOIN, LONG_MS);
  peer_wait_calls(f->peer, "Join", 1);
  tr_grpc_cancel(f->client, "the plugin is stopping");
  call_join(&k);
  assert_int_equal(k.code, 1);
  assert_string_equal(k.msg, "Join: CANCELLED: the plugin is stopping");
  wait_seen(&f->seen, &f->seen.ended, NULL, 0);
  assert_int_equal(f->seen.end_code, 1);
  struct call later;
  call(&later, f->client, LEAVE, LONG_MS);
  assert_int_equal(later.code, 1);
  assert_string_equal(later.msg, "Leave: CANCELLED: the plugin is stopping");
  call_free(&k);
  call_free(&later);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(a_unary_call_gets_the_daemons_reply, setup, teardown),
      cmocka_unit_test_setup_teardown(the_peers_settings_are_reported_once_it_speaks, setup, teardown),
      cmocka_unit_test_setup_teardown(
          an_error_status_reaches_the_caller_with_the_method_and_the_daemons_words, setup, teardown),
      cmocka_unit_test_setup_teardown(calls_on_one_connection_are_answered_each_on_its_own, setup, teardown),
      cmocka_unit_test_setup_teardown(a_call_without_an_answer_ends_at_its_deadline_and_its_stream_is_reset,
                                      setup, teardown),
      cmocka_unit_test_setup_teardown(a_server_stream_delivers_its_messages_then_its_end, setup, teardown),
      cmocka_unit_test_setup_teardown(after_a_goaway_the_connection_takes_no_new_call, setup, teardown),
      cmocka_unit_test_setup_teardown(a_peer_that_dies_ends_every_call_at_once_with_unavailable, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_peer_that_floods_frames_cannot_hold_a_call_past_its_deadline, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_call_to_a_peer_that_never_speaks_ends_at_its_deadline, setup_silent,
                                      teardown),
      cmocka_unit_test_setup_teardown(a_cancel_ends_calls_and_streams_at_once_and_every_later_call, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
